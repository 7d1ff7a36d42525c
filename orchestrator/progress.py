"""What people see in the terminal: live progress, the run summary, evidence tables."""
from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

_STAGES = (
    ("posts_seen", "posts"),
    ("media_fetched", "media fetched"),
    ("unique", "unique"),
    ("duplicates_near", "near-duplicates"),
    ("analysed", "analysed"),
    ("evidence_written", "evidence"),
    ("dropped", "dropped"),
)


class LiveProgress:
    """A live table of stage counters; a no-op when output is not a terminal (CI logs)."""

    def __init__(self, console: Console, enabled: bool = True):
        self.console = console
        self.enabled = enabled
        self._live: Live | None = None
        self._last = 0.0

    def __enter__(self) -> "LiveProgress":
        if self.enabled:
            self._live = Live(self._table(Counter()), console=self.console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def update(self, counts: Counter) -> None:
        if self._live is not None:
            self._live.update(self._table(counts))

    @staticmethod
    def _table(counts: Counter) -> Table:
        table = Table(title="campaign running", show_header=False)
        for key, label in _STAGES:
            table.add_row(label, str(counts.get(key, 0)))
        return table


def print_summary(console: Console, report: dict[str, Any], tz: str = "UTC") -> None:
    c = report["counts"]
    table = Table(title=f"campaign {escape(report['campaign'])}: finished in {report['seconds']:.0f} s")
    table.add_column("stage")
    table.add_column("count", justify="right")
    for key in ("posts", "posts_new", "media_refs", "media_fetched", "unique", "duplicates_exact",
                "duplicates_near", "analysed", "provenance_checked", "bank_matches", "banked", "flagged", "needs_review",
                "evidence_written", "captures", "dropped"):
        table.add_row(key.replace("_", " "), str(c.get(key, 0)))
    console.print(table)
    if report.get("stages"):
        print_stages(console, report["stages"], report.get("queues") or {})
    if report.get("drops"):
        drops = Table(title="dropped, by reason")
        drops.add_column("stage")
        drops.add_column("reason")
        drops.add_column("count", justify="right")
        for stage, reasons in report["drops"].items():
            for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
                drops.add_row(stage, escape(reason), str(n))
        console.print(drops)
    window = report.get("window") or {}
    if window.get("start") or window.get("end"):
        console.print(f"election window: {_local(window.get('start'), tz) or '-'} to {_local(window.get('end'), tz) or '-'}")
    gt = report.get("ground_truth")
    if gt:
        console.print(
            f"demo ground truth: recall [bold]{gt['recall']}[/] of {gt['planted_fakes']} planted fakes, "
            f"precision [bold]{gt['precision']}[/], real media flagged [bold]{gt['real_flagged_rate']}[/] "
            f"of {gt['planted_real']}; recall by kind {gt['recall_by_kind']}"
        )


def print_stages(console: Console, stages: dict[str, Any], queues: dict[str, Any]) -> None:
    """Per-stage flow: in, out, dropped, retries and call latency (the figures /metrics exports)."""
    table = Table(title="stages")
    for col in ("stage", "in", "out", "dropped", "retries", "calls", "mean s", "p95 s", "max s"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for stage, s in stages.items():
        lat = s.get("latency_s") or {}
        if not (s["in"] or s["out"] or s["dropped"] or s["retries"] or lat):
            continue
        table.add_row(stage, str(s["in"]), str(s["out"]), str(s["dropped"]), str(s["retries"]), str(lat.get("calls", "")),
                      _secs(lat.get("mean")), _secs(lat.get("p95")), _secs(lat.get("max")))
    console.print(table)
    peaks = ", ".join(f"{q} {v['peak']}" for q, v in queues.items() if v.get("peak"))
    if peaks:
        console.print(f"queue peaks: {peaks}")


def _secs(value: Any) -> str:
    return "" if value is None else f"{value:.3f}"


def _local(value: Any, tz: str) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")
    return str(value or "")


def print_evidence_table(console: Console, rows: list[dict[str, Any]], tz: str = "UTC") -> None:
    table = Table(title=f"{len(rows)} evidence record(s)")
    for col in ("id", "verdict", "score", "platform", "account", "posted", "post", "media sha256"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["id"]), r["verdict"], "" if r["score"] is None else f"{r['score']:.2f}", escape(r["platform"]),
            escape(r["account"]), _local(r["posted_at"], tz), escape(r["post_url"]), r["media_sha256"][:12],
        )
    console.print(table)


def print_evidence_detail(console: Console, rec: dict[str, Any], tz: str = "UTC") -> None:
    post, media = rec["post"], rec["media"]
    console.print(f"[bold]evidence #{rec['id']}[/]  verdict [bold]{rec['verdict']}[/]  score {rec['score']}")
    console.print(f"post      {escape(post['url'])} by {escape(post['account'])} ({post['platform']}), posted {_local(post['created_at'], tz)}")
    console.print(f"text      {escape(post['text'])}")
    console.print(f"media     {escape(media['url'])} ({media['kind']}, {media['mime']}, {media['size']} bytes)")
    console.print(f"sha256    {media['sha256']}   pHash {media['phash']}")
    console.print(f"captured  {_local(rec['captured_at'], tz)}   screenshot {rec['screenshot_sha256'] or '-'}")
    if rec["matched_sha256"]:
        console.print(f"re-upload of {rec['matched_sha256']} (distance {rec['match_distance']})")
    for reason in rec["reasons"]:
        console.print(f"  - {escape(reason)}")
    from detectors.c2pa_trust import trust_of, trust_words

    if (trust := trust_of(rec["detections"])) is not None:
        console.print(f"C2PA trust {escape(trust_words(trust))}", highlight=False)
    det = Table(title="detections")
    for col in ("detector", "version", "model", "weights", "outcome", "score", "threshold", "domain check"):
        det.add_column(col)
    for d in rec["detections"]:
        det.add_row(d["detector"], d["version"], escape(str(d["model_id"] or "")), (d["weights_digest"] or "")[:12],
                    d["outcome"], "" if d["score"] is None else f"{d['score']:.3f}", str(d["threshold"] or ""),
                    escape(domain_line(d) or ""))
    console.print(det)
    sights = Table(title="sightings")
    for col in ("platform", "account", "post", "seen"):
        sights.add_column(col)
    for s in rec["sightings"]:
        sights.add_row(s["platform"], escape(s["account"]), escape(s["post_url"]), _local(s["seen_at"], tz))
    console.print(sights)


def print_similar(console: Console, query: dict[str, Any], found: dict[str, Any]) -> None:
    table = Table(title=f"near-duplicates (pHash {query['phash']}, PDQ quality {query['pdq_quality']})")
    for col in ("signal", "distance", "sha256", "verdict", "copy of", "bank case", "example post"):
        table.add_column(col)
    for r in found["matches"]:
        table.add_row(r["signal"], str(r["distance"]), r["sha256"][:16], str(r["verdict"] or "-"),
                      (r["duplicate_of"] or "")[:12], escape(r["bank_case"] or ""), escape(str(r["example_post"] or "")))
    console.print(table)
    for hit in found["bank"]:
        console.print(f"[bold red]known fake[/]: {escape(hit['reason'])}")


def print_scan(console: Console, result: dict[str, Any]) -> None:
    if result.get("error"):
        console.print(f"[red]{escape(result['input'])}[/]: {escape(result['error'])}")
        return
    v = result["verdict"]
    console.print(f"[bold]{escape(result['input'])}[/]  {v['band']}  score {v['score']}  sha256 {result['sha256'][:16]}")
    for reason in v["reasons"]:
        console.print(f"  - {escape(reason)}")
    if result.get("c2pa_trust"):
        from detectors.c2pa_trust import trust_words

        console.print(f"  C2PA trust: {escape(trust_words(result['c2pa_trust']))}")
    clf = result.get("classifier")
    who = clf if isinstance(clf, str) else f"{clf['model_id']} (chosen by {clf.get('chosen_by')})"
    console.print(f"  classifier: {escape(str(who))}; detectors run: {', '.join(result.get('detectors_run', []))}; "
                  f"database: {result.get('database', 'not configured')}", highlight=False)
    for det in result.get("detections", []):
        line = domain_line(det)
        if line:
            console.print(f"  domain check ({escape(det['detector'])}): {escape(line)}", highlight=False)


def domain_line(det: dict[str, Any]) -> str | None:
    """A learned detection's domain check in words; None for detectors that have none."""
    dom = (det.get("details") or {}).get("domain")
    if not isinstance(dom, dict):
        return None
    if dom.get("inside") is None:
        return f"none ({dom.get('note') or 'not fitted'})"
    where = "inside" if dom["inside"] else "OUTSIDE"
    return f"{where} the data the model was validated on (distance {dom['distance']:.1f}, limit {dom['limit']:.1f})"

