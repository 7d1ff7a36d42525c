"""The console's evidence gallery: filters, keyword search in any script, keyset paging, and the
dashboard's campaign figures. Every test runs on SQLite and on PostgreSQL (`store`)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from agents.base import Post
from console.gallery import (
    GalleryFilter,
    campaign_stats,
    encode_cursor,
    gallery,
    parse_filter,
)
from storage import models as m
from tests.evidence_factory import make_evidence

pytestmark = pytest.mark.timeout(120)

D0 = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)  # post times
FLAGGED0 = datetime(2026, 5, 10, 8, 0, tzinfo=timezone.utc)  # evidence times (the gallery's order)

# name: (seed, platform, campaign, text, score, post day)
ITEMS = {
    "kim": (1, "tw", "c1", "Candidate KIM deepfake video", 0.95, 0),
    "ko": (2, "tw", "c2", "후보 합성 영상 선거 조작", 0.80, 1),
    "meta": (3, "yt", "c1", 'score 100% real_fake "quoted" text', 0.60, 2),
    "near": (4, "yt", "c2", "plain words 100 percent realXfake", 0.99, 3),
    "tags": (5, "fb", "c1", "no keyword here", 0.70, 4),
}


def _set_post(store, evidence_id: int, **fields) -> None:
    with store.session() as s:
        ev = s.get(m.Evidence, evidence_id)
        post = s.get(m.Post, ev.post_pk)
        for name, value in fields.items():
            setattr(post, name, value)
        if "created_at" in fields:  # a post made with another time: evidence keeps a copy of it
            ev.post_created_at = fields["created_at"]
            s.add(ev)
        s.add(post)
        s.commit()


@pytest.fixture
def world(store, blobs):
    """Five evidence items flagged one hour apart ("tags" newest), with varied fields."""
    ids = {}
    for n, (name, (seed, platform, campaign, text, score, day)) in enumerate(ITEMS.items()):
        ev = make_evidence(store, blobs, seed=seed, platform=platform, campaign=campaign, text=text,
                           score=score, posted=D0 + timedelta(days=day))
        store.update_evidence(ev, created_at=FLAGGED0 + timedelta(hours=n))
        ids[name] = ev
    store.update_evidence(ids["ko"], verdict="needs_review")
    store.update_evidence(ids["near"], verdict="confirmed_ai")
    store.update_evidence(ids["kim"], review_status="confirmed")
    store.update_evidence(ids["meta"], review_status="dismissed")
    # Hashtags arrive with the post; set here through an UPDATE, which the SQLite index must follow.
    _set_post(store, ids["tags"], hashtags=["선거조작", "Deepfake"], search_tags=" 선거조작 Deepfake ")
    return ids


def _names(store, world, f: GalleryFilter) -> list[str]:
    by_id = {v: k for k, v in world.items()}
    return [by_id[item.evidence_id] for item in gallery(store, f, limit=100).items]


def test_no_filter_lists_everything_newest_flagged_first(store, world):
    page = gallery(store, GalleryFilter())
    assert [i.evidence_id for i in page.items] == [world[n] for n in ("tags", "near", "meta", "ko", "kim")]
    assert page.next_cursor is None
    kim = page.items[-1]
    assert (kim.campaign, kim.platform, kim.account, kim.post_url) == ("c1", "tw", "acct1", "https://tw.example/p/1")
    assert kim.post_text == "Candidate KIM deepfake video" and kim.post_created_at == D0
    assert (kim.kind, kim.mime, kim.verdict, kim.score) == ("image", "image/jpeg", "likely_fake", 0.95)
    assert kim.reasons == ["classifier scored 0.95"] and kim.review_status == "confirmed"
    assert len(kim.media_sha256) == 64 and kim.working_sha256 is None and kim.matched_sha256 is None


SINGLE_FILTERS = [
    (GalleryFilter(campaign="c1"), {"kim", "meta", "tags"}),
    (GalleryFilter(campaign="no-such-campaign"), set()),
    (GalleryFilter(platform="yt"), {"meta", "near"}),
    (GalleryFilter(account="acct2"), {"ko"}),
    (GalleryFilter(account="acct"), set()),  # exact, not a prefix
    (GalleryFilter(verdict="likely_fake"), {"kim", "meta", "tags"}),
    (GalleryFilter(verdict="confirmed_ai"), {"near"}),
    (GalleryFilter(min_score=0.9), {"kim", "near"}),
    (GalleryFilter(min_score=0.95), {"kim", "near"}),  # inclusive
    (GalleryFilter(since=D0 + timedelta(days=3)), {"near", "tags"}),  # post time, inclusive
    (GalleryFilter(until=D0 + timedelta(days=1)), {"kim"}),  # exclusive
    (GalleryFilter(since=D0 + timedelta(days=1), until=D0 + timedelta(days=3)), {"ko", "meta"}),
    (GalleryFilter(since=datetime(2026, 5, 2, 21, 0, tzinfo=timezone(timedelta(hours=9)))), {"ko", "meta", "near", "tags"}),
    (GalleryFilter(review="confirmed"), {"kim"}),
    (GalleryFilter(review="unreviewed"), {"ko", "near", "tags"}),

]


def test_each_filter_alone(store, world):
    for f, expected in SINGLE_FILTERS:
        assert set(_names(store, world, f)) == expected, f


COMBINED_FILTERS = [
    (GalleryFilter(campaign="c1", platform="yt"), ["meta"]),
    (GalleryFilter(campaign="c2", min_score=0.9, verdict="confirmed_ai"), ["near"]),
    (GalleryFilter(campaign="c1", keyword="deepfake"), ["tags", "kim"]),
    (GalleryFilter(platform="tw", review="unreviewed", since=D0), ["ko"]),
    (GalleryFilter(keyword="fake", min_score=0.65, until=D0 + timedelta(days=4)), ["near", "kim"]),
    (GalleryFilter(campaign="c1", platform="tw", account="acct1", keyword="KIM", verdict="likely_fake",
                   min_score=0.9, since=D0, until=D0 + timedelta(days=1), review="confirmed"), ["kim"]),
    (GalleryFilter(campaign="c1", verdict="needs_review"), []),

]


def test_filters_combined(store, world):
    for f, expected in COMBINED_FILTERS:
        assert _names(store, world, f) == expected, f


KEYWORDS = [
    ("선거", {"ko", "tags"}),  # two characters: below a trigram, the LIKE path
    ("합성 영상", {"ko"}),  # Korean with a space, the trigram index path
    ("선거 조작", {"ko"}),
    ("#선거조작", {"tags"}),  # a hashtag, with its "#"
    ("조작", {"ko", "tags"}),
    ("DEEPFAKE", {"kim", "tags"}),  # Latin is case-insensitive; a hashtag counts
    ("kim", {"kim"}),
    ("Ki", {"kim"}),
    ("없는말", set()),

]


def test_keyword_in_text_and_hashtags_any_script(store, world):
    for keyword, expected in KEYWORDS:
        assert set(_names(store, world, GalleryFilter(keyword=keyword))) == expected, keyword


METACHARACTERS = [
    ("100%", {"meta"}),  # as a wildcard "%" would also match "100 percent"
    ("%", {"meta"}),
    ("real_fake", {"meta"}),  # as a wildcard "_" would also match "realXfake"
    ("_", {"meta"}),
    ("\\", set()),
    ('"quoted"', {"meta"}),  # double quotes: FTS5 syntax on SQLite, plain text here
    ('"', {"meta"}),
    ("'", set()),
    ("fake AND video", set()),  # FTS5 operators are text too
    ("fake*", set()),

]


def test_keyword_metacharacters_are_literal(store, world):
    for keyword, expected in METACHARACTERS:
        assert set(_names(store, world, GalleryFilter(keyword=keyword))) == expected, keyword


def test_keyword_index_follows_post_updates_and_deletes(store, world):
    _set_post(store, world["kim"], text="전혀 다른 문장")
    assert _names(store, world, GalleryFilter(keyword="deepfake")) == ["tags"]
    assert _names(store, world, GalleryFilter(keyword="다른 문장")) == ["kim"]
    # A post with no evidence, stored then deleted, must leave the index consistent.
    cid = store.get_campaign("c1").id
    pk, _ = store.upsert_post(cid, Post(platform="tw", post_id="gone", url="https://tw.example/p/gone", account="a",
                                        text="다른 문장 잠깐", created_at=D0))
    with store.session() as s:
        s.delete(s.get(m.Post, pk))
        s.commit()
    assert _names(store, world, GalleryFilter(keyword="다른 문장")) == ["kim"]
    if store.engine.dialect.name == "sqlite":
        with store.engine.begin() as conn:  # FTS5 checks its index against the post table
            conn.exec_driver_sql("INSERT INTO gallery_fts(gallery_fts, rank) VALUES ('integrity-check', 1)")


def test_paging_visits_every_row_exactly_once_in_order(store, blobs):
    ids = [make_evidence(store, blobs, seed=s, platform="tw" if s % 3 else "yt", campaign="c1") for s in range(1, 15)]
    # Ties on created_at (four rows share one instant) are broken by id.
    for n, ev in enumerate(ids):
        store.update_evidence(ev, created_at=FLAGGED0 + timedelta(minutes=n // 4))
    expected = sorted(ids, key=lambda ev: (ids.index(ev) // 4, ev), reverse=True)
    by_post = sorted(ids, reverse=True)  # a date filter lists by post time: all equal here, so by id
    for f, want in ((GalleryFilter(), expected), (GalleryFilter(platform="tw"), [e for e in expected if (ids.index(e) + 1) % 3]),
                    (GalleryFilter(since=datetime(2026, 1, 1, tzinfo=timezone.utc)), by_post)):
        seen, cursor, pages = [], None, 0
        while pages <= len(ids):  # bounded: a cursor that does not advance fails, not hangs
            page = gallery(store, f, cursor=cursor, limit=3)
            seen += [i.evidence_id for i in page.items]
            pages += 1
            assert len(page.items) <= 3
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == want
        assert page.next_cursor is None and pages == -(-len(want) // 3)


def test_a_date_filter_lists_newest_post_first(store, world):
    # Flag order is kim, ko, meta, near, tags; make post time disagree with it for two items.
    _set_post(store, world["tags"], created_at=D0 - timedelta(days=1))
    page = gallery(store, GalleryFilter(since=D0 - timedelta(days=30)), limit=2)
    assert page.order == "posted"
    assert [i.evidence_id for i in page.items] == [world["near"], world["meta"]]
    rest = gallery(store, GalleryFilter(since=D0 - timedelta(days=30)), cursor=page.next_cursor, limit=10)
    assert [i.evidence_id for i in rest.items] == [world["ko"], world["kim"], world["tags"]]
    assert gallery(store, GalleryFilter()).order == "flagged"
    # A cursor belongs to the order it was made in: one from the flag-ordered list is refused.
    flagged_cursor = gallery(store, GalleryFilter(), limit=2).next_cursor
    with pytest.raises(ValueError, match=r"^cursor: "):
        gallery(store, GalleryFilter(until=D0 + timedelta(days=9)), cursor=flagged_cursor)


def test_bad_cursor_and_limit_name_the_field(store, world):
    good = encode_cursor(FLAGGED0, 3)
    assert gallery(store, GalleryFilter(), cursor=good).items  # a well-formed cursor works
    for bad in ("garbage!", "Zm9v", encode_cursor(FLAGGED0, 3)[:-3], "ZzF8bm90LWEtZGF0ZXwz", "ZzF8MjAyNi0wNS0xMHwteA",
                encode_cursor(FLAGGED0, 2**31), encode_cursor(FLAGGED0, 10**12)):  # ids past a 32-bit integer
        with pytest.raises(ValueError, match=r"^cursor: "):
            gallery(store, GalleryFilter(), cursor=bad)
    for bad in (0, -1, 501, "10", True):
        with pytest.raises(ValueError, match=r"^limit: "):
            gallery(store, GalleryFilter(), limit=bad)


def test_parse_filter_reads_query_strings():
    f = parse_filter({"campaign": "c1", "platform": " tw ", "account": "", "q": "선거", "verdict": "likely_fake",
                      "min_score": "0.5", "since": "2026-05-01", "until": "2026-05-02T09:00:00+09:00",
                      "review": "unreviewed", "cursor": "ignored", "csrf_token": "x"})
    assert f == GalleryFilter(campaign="c1", platform="tw", account=None, keyword="선거", verdict="likely_fake",
                              min_score=0.5, since=datetime(2026, 5, 1, tzinfo=timezone.utc),
                              until=datetime(2026, 5, 2, tzinfo=timezone.utc), review="unreviewed")
    assert parse_filter({}) == GalleryFilter()
    naive = parse_filter({"since": "2026-05-01T10:30:00"}).since
    assert naive == datetime(2026, 5, 1, 10, 30, tzinfo=timezone.utc)
    assert parse_filter({"until": "2026-05-01T10:30:00Z"}).until == naive
    assert parse_filter({"keyword": "kim"}).keyword == "kim"


@pytest.mark.parametrize("query, field", [
    ({"min_score": "high"}, "min_score"),
    ({"min_score": "1.5"}, "min_score"),
    ({"min_score": "nan"}, "min_score"),
    ({"since": "yesterday"}, "since"),
    ({"until": "2026-13-01"}, "until"),
    ({"since": "2026-05-02", "until": "2026-05-01"}, "until"),
    ({"verdict": "fake"}, "verdict"),
    ({"review": "approved"}, "review"),
    ({"q": "x" * 201}, "q"),
    ({"platform": "tw\x00"}, "platform"),
])
def test_parse_filter_bad_values_name_the_field(query, field):
    with pytest.raises(ValueError, match=rf"^{field}: "):
        parse_filter(query)


def test_campaign_stats(store, blobs):
    a = make_evidence(store, blobs, seed=1, platform="tw", campaign="c1")
    b = make_evidence(store, blobs, seed=1, platform="fb", campaign="c1")  # the same fake, another post
    c = make_evidence(store, blobs, seed=2, platform="yt", campaign="c1")  # a re-upload matched to it
    d = make_evidence(store, blobs, seed=3, platform="tw", campaign="c1")  # seen once
    other = make_evidence(store, blobs, seed=1, platform="yt", campaign="c2")  # another campaign
    with store.session() as s:
        sha1 = s.get(m.Evidence, a).media_sha256
    store.update_evidence(c, matched_sha256=sha1, match_distance=6.0)
    store.update_evidence(b, working_sha256="f" * 64)
    for ev, day in ((a, 0), (b, 0), (c, 1), (d, 3), (other, 0)):
        store.update_evidence(ev, created_at=FLAGGED0 + timedelta(days=day))
    store.update_evidence(d, verdict="needs_review")
    cid = store.get_campaign("c1").id
    store.set_campaign_status(cid, "finished", {"counts": {"posts": 40, "media_fetched": 12, "flagged": 4}})

    stats = campaign_stats(store, "c1")
    assert stats["campaign"] == "c1" and stats["status"] == "finished"
    assert stats["stage_counts"] == {"posts": 40, "media_fetched": 12, "flagged": 4}
    assert stats["flagged_per_day"] == [("2026-05-10", 2), ("2026-05-11", 1), ("2026-05-13", 1)]
    assert stats["per_platform"] == {"fb": 1, "tw": 2, "yt": 1}
    assert stats["verdicts"] == {"likely_fake": 3, "needs_review": 1} and stats["evidence"] == 4
    assert stats["top_reuploads"] == [(sha1, "f" * 64, 3, ["fb", "tw", "yt"])]

    fresh = campaign_stats(store, "c2")
    assert fresh["stage_counts"] == {} and fresh["top_reuploads"] == [] and fresh["flagged_per_day"] == [("2026-05-10", 1)]
    with pytest.raises(ValueError, match=r"^campaign: "):
        campaign_stats(store, "nope")


def test_flagged_per_day_is_by_utc_day(store, blobs):
    ev = make_evidence(store, blobs, seed=1, campaign="c1")
    store.update_evidence(ev, created_at=datetime(2026, 5, 10, 23, 30, tzinfo=timezone.utc))
    if store.engine.dialect.name == "postgresql":
        # Sessions in another zone (every new connection, via the database default) must not move the day.
        with store.engine.begin() as conn:
            name = conn.execute(sa.text("SELECT current_database()")).scalar_one()
            conn.execute(sa.text(f'ALTER DATABASE "{name}" SET timezone TO \'Asia/Seoul\''))
        store.engine.dispose()
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SHOW timezone")).scalar_one() == "Asia/Seoul"
    assert campaign_stats(store, "c1")["flagged_per_day"] == [("2026-05-10", 1)]


def test_keyword_results_do_not_depend_on_the_plan(store, world, monkeypatch):
    # A keyword found in many posts is checked row by row while the newest items are walked
    # (SQLite: instead of the FTS index; PostgreSQL: with the planner pinned to that walk); with
    # the thresholds at 1 every keyword takes that path and must find the same rows.
    import console.gallery

    monkeypatch.setattr(console.gallery, "_FTS_COMMON", 1)
    monkeypatch.setattr(console.gallery, "_PG_COMMON_IN_SAMPLE", 1)
    for keyword, expected in KEYWORDS + METACHARACTERS:
        assert set(_names(store, world, GalleryFilter(keyword=keyword))) == expected, keyword
    page = gallery(store, GalleryFilter(keyword="deepfake"), limit=1)  # keyset paging on that path
    rest = gallery(store, GalleryFilter(keyword="deepfake"), cursor=page.next_cursor, limit=10)
    assert len({i.evidence_id for i in page.items + rest.items}) == len(page.items + rest.items) >= 2
