"""Benchmark of the console gallery query (console.gallery.gallery) at a million evidence rows.

    .venv/bin/python bench/console_search.py --backend both            # 1M rows on SQLite and PostgreSQL
    .venv/bin/python bench/console_search.py --quick --backend sqlite  # 100k rows

PostgreSQL comes from DEEPWATCH_TEST_PG_URL (a URL to an existing database of a role that may
CREATE DATABASE); the benchmark creates its own database next to it and drops it afterwards.
The schema is made by the real migrations (Store opens at head: 0005's composite indexes, the
pg_trgm GIN indexes or the SQLite FTS5 trigram table and its triggers). Rows are synthetic but
spread like a real deployment: 5 campaigns, 8 platforms, 20k accounts with a long tail, Korean
and English post texts and hashtags, four verdict bands, scores, review states, posts over 60
days with each item flagged minutes to hours after its post, and one in ten items a re-upload
of an earlier fake. They go in with executemany (SQLite; the FTS triggers index each post) or
COPY (PostgreSQL), then ANALYZE, as a deployment's autovacuum / `PRAGMA optimize` would.

Each of ~20 filter mixes is timed for the first page and for a deep page (a keyset cursor in the
middle of the 60 days), 50 runs each after one warm-up, 48 items a page. The last line printed
is one JSON object: p50/p95/p99 per query and backend, the worst p95, `target_p95_ms: 100` and
`ratio_vs_target` (worst p95 / 100).
"""
from __future__ import annotations

import argparse
import json
import os
import platform as host_platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `.venv/bin/python bench/console_search.py` from anywhere
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from console.gallery import GalleryFilter, encode_cursor, gallery  # noqa: E402
from storage.db import Store  # noqa: E402

TARGET_P95_MS = 100.0
RUNS = 50
PAGE = 48
END = datetime(2026, 6, 3, 0, 0, tzinfo=timezone.utc)  # the newest post
DAYS = 60
CAMPAIGNS = ["지방선거-2026", "presidential-2027", "seoul-mayor", "busan-by-election", "eu-watch"]
CAMPAIGN_WEIGHTS = [40, 25, 15, 12, 8]
PLATFORMS = ["x", "youtube", "tiktok", "facebook", "instagram", "naver-blog", "telegram", "threads"]
PLATFORM_WEIGHTS = [25, 18, 17, 12, 10, 8, 6, 4]
VERDICTS = ["likely_fake", "confirmed_ai", "needs_review", "no_signal"]
VERDICT_WEIGHTS = [45, 15, 35, 5]
REVIEWS = ["unreviewed", "confirmed", "dismissed"]
REVIEW_WEIGHTS = [90, 7, 3]
N_ACCOUNTS = 20_000
KO_WORDS = ["후보", "선거", "투표", "조작", "영상", "합성", "딥페이크", "가짜", "뉴스", "공약", "토론", "여론조사",
            "사전투표", "개표", "부정", "속보", "충격", "발언", "시장", "국회의원", "지지", "반대", "확산", "공유"]
EN_WORDS = ["candidate", "election", "vote", "rigged", "video", "leaked", "deepfake", "fake", "news", "debate",
            "poll", "ballot", "fraud", "breaking", "shocking", "speech", "mayor", "share", "before", "deleted",
            "truth", "exposed", "campaign", "rally"]
KO_TAGS = ["선거", "투표", "가짜뉴스", "딥페이크", "속보", "부정선거", "후보토론"]
EN_TAGS = ["election2026", "vote", "deepfake", "fakenews", "breaking", "exposed"]
RARE = "qxzwvotescam"  # in about one post in a thousand: a selective keyword


# -- synthetic rows ----------------------------------------------------------------------------

def make_rows(n: int, seed: int = 6):
    """(campaigns, media, posts, evidence) as dicts of plain values, ids from 1."""
    rng = random.Random(seed)
    start = END - timedelta(days=DAYS)
    span = DAYS * 86400
    # A long tail of accounts: a few post a lot, most a little (squared uniform).
    accounts = [f"user{int(N_ACCOUNTS * rng.random() ** 2)}" for _ in range(n)]
    campaigns = [{"id": i + 1, "name": name} for i, name in enumerate(CAMPAIGNS)]
    camp_ids = rng.choices(range(1, len(CAMPAIGNS) + 1), CAMPAIGN_WEIGHTS, k=n)
    plats = rng.choices(PLATFORMS, PLATFORM_WEIGHTS, k=n)
    verdicts = rng.choices(VERDICTS, VERDICT_WEIGHTS, k=n)
    reviews = rng.choices(REVIEWS, REVIEW_WEIGHTS, k=n)
    media, posts, evidence = [], [], []
    shas: list[str] = []
    for i in range(n):
        korean = rng.random() < 0.6
        words = rng.choices(KO_WORDS if korean else EN_WORDS, k=rng.randint(5, 14))
        if rng.random() < 0.001:
            words.insert(rng.randrange(len(words)), RARE)
        tags = rng.sample(KO_TAGS if korean else EN_TAGS, k=rng.randint(0, 3))
        text = " ".join(words) + "".join(f" #{t}" for t in tags)
        posted = start + timedelta(seconds=rng.random() * span)
        flagged = posted + timedelta(seconds=rng.uniform(60, 6 * 3600))
        if shas and rng.random() < 0.1:  # a re-upload of an earlier fake: same media, another post
            sha, new_media = rng.choice(shas), False
        else:
            sha, new_media = uuid.UUID(int=rng.getrandbits(128)).hex * 2, True
            shas.append(sha)
        if new_media:
            video = rng.random() < 0.2
            media.append({"sha256": sha, "kind": "video" if video else "image",
                          "mime": "video/mp4" if video else "image/jpeg", "size": rng.randint(20_000, 9_000_000),
                          "first_seen_at": flagged, "verdict": verdicts[i], "score": None})
        pid = i + 1
        platform, account = plats[i], accounts[i]
        url = f"https://{platform}.example/{account}/status/{pid}"
        posts.append({"id": pid, "platform": platform, "post_id": str(pid), "url": url, "account": account,
                      "text": text, "lang": "ko" if korean else "en", "hashtags": tags,
                      "search_tags": " " + " ".join(tags) + " ", "created_at": posted, "first_seen_at": flagged,
                      "campaign_id": camp_ids[i], "source": "bench"})
        score = round(rng.uniform(0.5, 1.0), 4)
        evidence.append({"id": pid, "campaign_id": camp_ids[i], "media_sha256": sha, "post_pk": pid,
                         "platform": platform, "post_id": str(pid), "post_url": url, "account": account,
                         "media_url": f"https://cdn.{platform}.example/{sha[:16]}", "captured_at": flagged,
                         "verdict": verdicts[i], "score": score, "reasons": [f"classifier scored {score}"],
                         "created_at": flagged, "post_created_at": posted, "review_status": reviews[i]})
    return campaigns, media, posts, evidence


CAMPAIGN_COLS = ["id", "name", "spec_yaml", "spec_sha256", "status", "created_at", "updated_at"]
MEDIA_COLS = ["sha256", "kind", "mime", "size", "frame_hashes", "vpdq", "first_seen_at", "verdict", "reasons"]
POST_COLS = ["id", "platform", "post_id", "url", "account", "text", "lang", "hashtags", "search_tags",
             "created_at", "first_seen_at", "campaign_id", "source"]
EVIDENCE_COLS = ["id", "campaign_id", "media_sha256", "post_pk", "platform", "post_id", "post_url", "account",
                 "media_url", "captured_at", "verdict", "score", "reasons", "created_at", "post_created_at", "review_status",
                 "capture_headers", "legal_notes"]


def _tuples(rows, cols, fmt_time):
    """Rows as tuples in column order, times and JSON written as the backend stores them."""
    out = []
    for row in rows:
        values = []
        for col in cols:
            v = row.get(col)
            if col in ("frame_hashes", "vpdq", "reasons", "hashtags"):
                v = json.dumps(v if v is not None else [], ensure_ascii=False)
            elif col == "capture_headers":
                v = "{}"
            elif col == "legal_notes":
                v = ""
            elif col in ("spec_yaml",):
                v = f"name: {row['name']}\n"
            elif col == "spec_sha256":
                v = "0" * 64
            elif col == "status":
                v = "finished"
            elif col in ("created_at", "updated_at") and v is None:
                v = END
            if isinstance(v, datetime):
                v = fmt_time(v)
            values.append(v)
        out.append(tuple(values))
    return out


def load_sqlite(store: Store, data) -> None:
    fmt = lambda t: t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's SQLite form
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        for table, cols, rows in zip(("campaign", "media", "post", "evidence"),
                                     (CAMPAIGN_COLS, MEDIA_COLS, POST_COLS, EVIDENCE_COLS), data):
            marks = ", ".join("?" for _ in cols)
            cur.executemany(f'INSERT INTO "{table}" ({", ".join(cols)}) VALUES ({marks})', _tuples(rows, cols, fmt))
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def load_postgresql(store: Store, data) -> None:
    fmt = lambda t: t.astimezone(timezone.utc).isoformat()
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        for table, cols, rows in zip(("campaign", "media", "post", "evidence"),
                                     (CAMPAIGN_COLS, MEDIA_COLS, POST_COLS, EVIDENCE_COLS), data):
            with cur.copy(f'COPY "{table}" ({", ".join(cols)}) FROM STDIN') as copy:
                for values in _tuples(rows, cols, fmt):
                    copy.write_row(values)
        for table in ("campaign", "post", "evidence"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM \"{table}\"))")
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


# -- the queries -------------------------------------------------------------------------------

def query_mixes(busy_account: str) -> dict[str, GalleryFilter]:
    week = timedelta(days=7)
    mid = END - timedelta(days=30)
    c0, c3 = CAMPAIGNS[0], CAMPAIGNS[3]
    return {
        "none": GalleryFilter(),
        "campaign": GalleryFilter(campaign=c0),
        "campaign_small": GalleryFilter(campaign=CAMPAIGNS[4]),
        "platform": GalleryFilter(platform="tiktok"),
        "account": GalleryFilter(account=busy_account),
        "verdict": GalleryFilter(verdict="confirmed_ai"),
        "review_confirmed": GalleryFilter(review="confirmed"),
        "min_score_0.95": GalleryFilter(min_score=0.95),
        "since_last_week": GalleryFilter(since=END - week),
        "window_30_days_back": GalleryFilter(since=mid - week, until=mid),
        "kw_en_deepfake": GalleryFilter(keyword="deepfake"),
        "kw_ko_2chars": GalleryFilter(keyword="선거"),
        "kw_ko_phrase": GalleryFilter(keyword="투표 조작"),
        "kw_hashtag": GalleryFilter(keyword="#가짜뉴스"),
        "kw_rare": GalleryFilter(keyword=RARE),
        "kw_no_match": GalleryFilter(keyword="zzqqxx"),
        "campaign+platform": GalleryFilter(campaign=c0, platform="youtube"),
        "campaign+verdict+score": GalleryFilter(campaign=c3, verdict="likely_fake", min_score=0.9),
        "campaign+keyword": GalleryFilter(campaign=c0, keyword="딥페이크"),
        "platform+window+review": GalleryFilter(platform="telegram", since=mid - week, until=mid, review="unreviewed"),
        "campaign+review+week": GalleryFilter(campaign=c3, review="dismissed", since=END - week),
        "everything": GalleryFilter(campaign=c0, platform="x", keyword="선거", verdict="likely_fake",
                                    min_score=0.6, since=END - timedelta(days=45), until=END - timedelta(days=5),
                                    review="unreviewed"),
    }


def _percentiles(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    pick = lambda q: ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]
    return {"p50": round(statistics.median(ordered), 2), "p95": round(pick(0.95), 2), "p99": round(pick(0.99), 2),
            "runs": len(ordered)}


def time_queries(store: Store, mixes: dict[str, GalleryFilter], runs: int, budget_s: float) -> dict:
    """p50/p95/p99 per mix for the first page and a deep page; each (mix, page) stops early
    after `budget_s` seconds so one slow query cannot stall the run (its `runs` says so)."""
    out = {}
    for name, f in mixes.items():
        out[name] = {}
        # The middle of the 60 days, in the order the filter lists by (post time when dated).
        order = "posted" if f.since or f.until else "flagged"
        deep = encode_cursor(END - timedelta(days=30), 2**31 - 1, order)
        for page_name, cursor in (("first", None), ("deep", deep)):
            gallery(store, f, cursor=cursor, limit=PAGE)  # warm-up (plans, caches)
            ms, found = [], 0
            began = time.perf_counter()
            for _ in range(runs):
                t = time.perf_counter()
                page = gallery(store, f, cursor=cursor, limit=PAGE)
                ms.append((time.perf_counter() - t) * 1000)
                found = len(page.items)
                if time.perf_counter() - began > budget_s:
                    break
            out[name][page_name] = {**_percentiles(ms), "items": found}
            print(f"  {name:24s} {page_name:5s} p50 {out[name][page_name]['p50']:8.2f} ms  "
                  f"p95 {out[name][page_name]['p95']:8.2f} ms  ({found} items)", file=sys.stderr, flush=True)
    return out


# -- one backend ---------------------------------------------------------------------------------

def run_backend(backend: str, n: int, data, runs: int, budget_s: float, sqlite_file: str | None = None) -> dict:
    admin = os.environ.get("DEEPWATCH_TEST_PG_URL")
    workdir = tempfile.TemporaryDirectory(prefix="dw-bench-search-")
    dbname = None
    if backend == "sqlite":
        # --sqlite-file keeps the loaded database for the next run (a 1M-row load takes minutes).
        url = f"sqlite:///{sqlite_file or workdir.name + '/bench.db'}"
    else:
        if not admin:
            raise SystemExit("--backend postgresql needs DEEPWATCH_TEST_PG_URL (a PostgreSQL URL)")
        dbname = f"dw_bench_{uuid.uuid4().hex[:10]}"
        engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{dbname}"'))
        engine.dispose()
        url = admin.rsplit("/", 1)[0] + "/" + dbname
    store = None
    try:
        store = Store(url)
        with store.engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT count(*) FROM evidence")).scalar_one()
        if stored == n:  # a kept --sqlite-file from an earlier run (made by the same seed)
            load_s = None
            print(f"{backend}: reusing {n:,} evidence rows", file=sys.stderr, flush=True)
        elif stored:
            raise SystemExit(f"{url}: holds {stored:,} evidence rows, not {n:,}; delete it or pass --rows {stored}")
        else:
            t = time.perf_counter()
            (load_sqlite if backend == "sqlite" else load_postgresql)(store, data)
            load_s = round(time.perf_counter() - t, 1)
            print(f"{backend}: loaded {n:,} evidence rows in {load_s:.1f} s", file=sys.stderr, flush=True)
        with store.engine.connect() as conn:
            busy = conn.execute(sa.text("SELECT account FROM evidence GROUP BY account ORDER BY count(*) DESC LIMIT 1")).scalar_one()
        store.engine.dispose()  # fresh connections for the timing (as a web worker would have)
        queries = time_queries(store, query_mixes(busy), runs, budget_s)
        worst = max(q[p]["p95"] for q in queries.values() for p in q)
        return {"rows": n, "load_s": load_s, "queries": queries, "worst_p95_ms": worst,
                "ratio_vs_target": round(worst / TARGET_P95_MS, 3)}
    finally:
        if store is not None:
            store.close()
        if dbname:
            _drop_database(admin, dbname)
        workdir.cleanup()


def _drop_database(admin: str, dbname: str) -> None:
    """Drop the benchmark's database; retried, since an autovacuum worker started by the load
    (a superuser's process, which this role may not end) can hold it for a moment."""
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        for attempt in range(15):
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{dbname}"'))
                return
            except sa.exc.DBAPIError:
                if attempt == 14:
                    raise
                time.sleep(2)
    finally:
        engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100k rows instead of 1M")
    ap.add_argument("--rows", type=int, help="evidence rows (overrides --quick)")
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--runs", type=int, default=RUNS, help="timed runs per query and page")
    ap.add_argument("--budget-s", type=float, default=20.0, help="time cap per query and page")
    ap.add_argument("--sqlite-file", help="keep the SQLite database here and reuse it on the next run")
    args = ap.parse_args()
    n = args.rows or (100_000 if args.quick else 1_000_000)
    t = time.perf_counter()
    data = make_rows(n)
    print(f"generated {n:,} rows in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = {b: run_backend(b, n, data, args.runs, args.budget_s, args.sqlite_file) for b in backends}
    worst = max(r["worst_p95_ms"] for r in results.values())
    import sqlite3
    print(json.dumps({
        "benchmark": "console_search", "rows": n, "page_size": PAGE, "runs": args.runs,
        "machine": {"cpus": os.cpu_count(), "python": host_platform.python_version(), "sqlite": sqlite3.sqlite_version},
        "backends": results, "target_p95_ms": TARGET_P95_MS, "worst_p95_ms": worst,
        "ratio_vs_target": round(worst / TARGET_P95_MS, 3),
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
