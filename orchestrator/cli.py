"""The `deepwatch` command line: campaigns for monitoring teams, evidence for investigators."""
from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from orchestrator.spec import DEFAULT_BLOBS, DEFAULT_DATABASE, SpecError, load_spec

app = typer.Typer(
    help="deepwatch: find election deepfakes, prove what was found, get it taken down.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals can hold database passwords
)
campaign_app = typer.Typer(help="Run and check crawl campaigns.", no_args_is_help=True)
evidence_app = typer.Typer(help="Query and export the evidence database.", no_args_is_help=True)
detectors_app = typer.Typer(help="Train and manage detector models.", no_args_is_help=True)
demo_app = typer.Typer(help="The bundled demo platform.", no_args_is_help=True)
bank_app = typer.Typer(help="The known-fakes bank: hashes of confirmed fakes, exchanged as hash lists.", no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")
app.add_typer(evidence_app, name="evidence")
app.add_typer(detectors_app, name="detectors")
app.add_typer(demo_app, name="demo")
app.add_typer(bank_app, name="bank")

console = Console()
err = Console(stderr=True)

DbOpt = typer.Option(None, "--db", help=f"Database URL [env DEEPWATCH_DB; default {DEFAULT_DATABASE}]")
TzOpt = typer.Option("UTC", "--tz", help="Show times in this zone (they are stored in UTC)")
BlobsOpt = typer.Option(None, "--blobs", help=f"Blob store path [env DEEPWATCH_BLOBS; default {DEFAULT_BLOBS}]")


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    raise typer.Exit(code)


def _db(url: Optional[str]) -> str:
    return url or os.environ.get("DEEPWATCH_DB") or DEFAULT_DATABASE


def _blobs(path: Optional[str]) -> str:
    return path or os.environ.get("DEEPWATCH_BLOBS") or DEFAULT_BLOBS


def _open_store(url: Optional[str], *, new_ok: bool = False) -> Any:
    from orchestrator.db_checks import DatabaseCheckError, check_database_url, check_existing_database
    from storage.db import Store, StorageError

    try:  # a mistyped --db must not become a new empty database (issue 16)
        (check_database_url if new_ok else check_existing_database)(_db(url))
        return Store(_db(url))
    except (StorageError, DatabaseCheckError) as exc:
        _fail(str(exc))


# -- campaigns -----------------------------------------------------------------------------------
@campaign_app.command("validate")
def campaign_validate(spec_path: Path = typer.Argument(..., help="Campaign YAML file")) -> None:
    """Check a campaign file and print what it will do."""
    try:
        spec, _ = load_spec(spec_path)
    except SpecError as exc:
        _fail(str(exc))
    problems = _agent_problems(spec)
    try:
        from orchestrator.db_checks import DatabaseCheckError, check_database_url

        check_database_url(spec.storage.database)
    except DatabaseCheckError as exc:
        problems.append(f"storage.database: {exc}")
    if problems:
        _fail(f"{spec_path}: invalid source parameters:\n" + "\n".join(f"  - {p}" for p in problems))
    console.print(f"[green]ok[/]: campaign '{spec.name}' with {len(spec.sources)} source(s)")
    for src in spec.sources:
        terms = spec.terms_for(src)
        shown = f"terms {terms}" if terms != [""] else "a feed, read once per pass"
        console.print(f"  {src.name} ({src.type}): {shown}")
    if spec.interval:
        console.print(f"  re-polled every {spec.interval:g} s until the window ends")


def _agent_problems(spec: Any) -> list[str]:
    """Build each source's agent (nothing is fetched) so a bad parameter shows before a run."""
    import tempfile

    from agents.errors import AgentConfigError
    from agents.fetch import Fetcher
    from agents.registry import build_agent
    from orchestrator.spec import EMBEDDED
    from storage.blobs import BlobStore

    problems = []
    with Fetcher() as fetcher, tempfile.TemporaryDirectory() as tmp:
        for src in spec.sources:
            params = dict(src.params)
            if params.get("base_url") == EMBEDDED:
                params["base_url"] = "http://127.0.0.1:1"  # stands in for the run's own address
            try:
                build_agent(src.type, params, fetcher=fetcher, blobs=BlobStore(tmp)).close()
            except AgentConfigError as exc:
                problems.append(f"source '{src.name}': {exc}")
    return problems


MetricsPortOpt = typer.Option(None, "--metrics-port", min=0, max=65535,
                              help="Export Prometheus metrics on this port while the run lasts (0: any free port)")
MetricsHostOpt = typer.Option("127.0.0.1", "--metrics-host", help="Address the metrics exporter binds to")


def _stats_path(report: Optional[Path]) -> Optional[Path]:
    """REPORT.stats.json beside the report (run.json -> run.stats.json)."""
    return report.with_name(report.stem + ".stats.json") if report else None


@campaign_app.command("run")
def campaign_run(
    spec_path: Path = typer.Argument(..., help="Campaign YAML file"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster to join (default: a local Ray)"),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the JSON run report here"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Live progress display"),
    db: Optional[str] = typer.Option(None, "--db", help="Database URL instead of the file's storage.database "
                                     "(keeps a password out of the campaign file)"),
    blobs: Optional[str] = typer.Option(None, "--blobs", help="Blob store instead of the file's storage.blobs "
                                        "(a path or s3://bucket/prefix)"),
    metrics_port: Optional[int] = MetricsPortOpt,
    metrics_host: str = MetricsHostOpt,
) -> None:
    """Crawl, fetch, deduplicate, detect and write evidence for one campaign.

    Running a campaign again reads only what is new since its last run. Per-stage figures are
    saved as REPORT.stats.json (with --report) or beside the campaign file as NAME.stats.json."""
    try:
        spec, text = load_spec(spec_path)
    except SpecError as exc:
        _fail(str(exc))
    stats = _stats_path(report) or spec_path.with_name(spec_path.stem + ".stats.json")
    _run_campaign(_with_storage(spec, db, blobs), text, address, report, progress,
                  metrics_port=metrics_port, metrics_host=metrics_host, stats_path=stats)


def _with_storage(spec: Any, db: Optional[str], blobs: Optional[str]) -> Any:
    """The spec with its storage taken from the command line, when given there."""
    from orchestrator.db_checks import DatabaseCheckError, check_database_url

    update = {k: v for k, v in (("database", db), ("blobs", blobs)) if v}
    spec = spec.model_copy(update={"storage": spec.storage.model_copy(update=update)}) if update else spec
    try:
        check_database_url(spec.storage.database)
    except DatabaseCheckError as exc:
        _fail(f"storage.database: {exc}")
    return spec


@campaign_app.command("resume")
def campaign_resume(
    name: str = typer.Argument(..., help="Name of a campaign stored in the database"),
    db: Optional[str] = DbOpt,
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster to join (default: a local Ray)"),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the JSON run report here (and its "
                                          "per-stage figures as REPORT.stats.json)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Live progress display"),
    metrics_port: Optional[int] = MetricsPortOpt,
    metrics_host: str = MetricsHostOpt,
) -> None:
    """Go on with a campaign that was interrupted (killed, crashed, out of time), from the spec
    saved with it: unfinished sources continue at their stored cursors, stored posts whose media
    was not fetched are fetched, unanalysed media is analysed. Nothing is fetched or written twice."""
    from orchestrator.spec import parse_spec_text

    store = _open_store(db)
    row = store.get_campaign(name)
    store.close()
    if row is None:
        _fail(f"no campaign named {name!r} in {_db(db)}; run it first with 'deepwatch campaign run FILE'")
    try:
        spec, text = parse_spec_text(row.spec_yaml, origin=f"campaign {name!r} as saved in the database")
    except SpecError as exc:
        _fail(str(exc))
    # The campaign goes on in the database it was found in (its saved spec may name the same
    # database by a relative path).
    spec = spec.model_copy(update={"storage": spec.storage.model_copy(update={"database": _db(db)})})
    console.print(f"resuming campaign '{name}' (last status: {row.status})")
    _run_campaign(spec, text, address, report, progress, metrics_port=metrics_port, metrics_host=metrics_host,
                  stats_path=_stats_path(report))


def _run_campaign(spec: Any, text: str, address: Optional[str], report: Optional[Path], progress: bool,
                  metrics_port: Optional[int] = None, metrics_host: str = "127.0.0.1",
                  stats_path: Optional[Path] = None) -> None:
    from orchestrator.campaign import CampaignRun
    from orchestrator.progress import LiveProgress, print_summary

    live = LiveProgress(console, enabled=progress and console.is_terminal)
    try:
        with live:
            result = CampaignRun(spec, text, address=address, progress=live.update, metrics_port=metrics_port,
                                 metrics_host=metrics_host, stats_path=str(stats_path) if stats_path else None).run()
    except Exception as exc:  # noqa: BLE001 - the run failed; what is saved stays saved
        from storage.db import StorageError

        if isinstance(exc, (StorageError, RuntimeError)):
            _fail(f"campaign '{spec.name}' failed: {exc}", code=1)
        raise
    print_summary(console, result, spec.window.timezone)
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str), "utf-8")
        console.print(f"report written to {report}")


# -- evidence ------------------------------------------------------------------------------------
def _parse_time(value: Optional[str], name: str) -> Optional[datetime]:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"--{name}: not an ISO 8601 time: {value!r} (e.g. 2026-05-01 or 2026-05-01T09:00+09:00)")
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def _list(db: Optional[str], as_json: bool, tz: str, **filters: Any) -> None:
    from orchestrator.progress import print_evidence_table
    from storage.queries import EvidenceFilter, search_evidence

    _check_zone(tz)
    store = _open_store(db)
    rows = search_evidence(store, EvidenceFilter(**filters))
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
    else:
        print_evidence_table(console, rows, tz)


def _check_zone(tz: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        _fail(f"--tz: unknown time zone {tz!r} (use an IANA name like Asia/Seoul)")



@evidence_app.command("list")
def evidence_list(
    campaign: Optional[str] = typer.Option(None, help="Campaign name"),
    platform: Optional[str] = typer.Option(None, help="Platform, e.g. demo"),
    keyword: Optional[str] = typer.Option(None, help="Text, account or hashtag (Korean works)"),
    verdict: Optional[str] = typer.Option(None, help="confirmed_ai | likely_fake | needs_review"),
    min_score: Optional[float] = typer.Option(None, help="Minimum fused score"),
    since: Optional[str] = typer.Option(None, help="Posted at or after (ISO 8601; UTC if no zone)"),
    until: Optional[str] = typer.Option(None, help="Posted before (ISO 8601)"),
    limit: int = typer.Option(100, min=1, max=10_000),
    offset: int = typer.Option(0, min=0),
    as_json: bool = typer.Option(False, "--json", help="JSON output"),
    tz: str = TzOpt,
    db: Optional[str] = DbOpt,
) -> None:
    """List evidence records, newest post first."""
    _list(db, as_json, tz, campaign=campaign, platform=platform, keyword=keyword, verdict=verdict, min_score=min_score,
          since=_parse_time(since, "since"), until=_parse_time(until, "until"), limit=limit, offset=offset)


@evidence_app.command("search")
def evidence_search(
    keyword: str = typer.Argument(..., help="Text, account or hashtag to look for (Korean works)"),
    campaign: Optional[str] = typer.Option(None),
    platform: Optional[str] = typer.Option(None),
    verdict: Optional[str] = typer.Option(None),
    min_score: Optional[float] = typer.Option(None),
    since: Optional[str] = typer.Option(None),
    until: Optional[str] = typer.Option(None),
    limit: int = typer.Option(100, min=1, max=10_000),
    as_json: bool = typer.Option(False, "--json"),
    tz: str = TzOpt,
    db: Optional[str] = DbOpt,
) -> None:
    """Search evidence by keyword, with the same filters as list."""
    _list(db, as_json, tz, campaign=campaign, platform=platform, keyword=keyword, verdict=verdict, min_score=min_score,
          since=_parse_time(since, "since"), until=_parse_time(until, "until"), limit=limit)


@evidence_app.command("show")
def evidence_show(
    evidence_id: int = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json"),
    tz: str = TzOpt,
    db: Optional[str] = DbOpt,
) -> None:
    """One evidence record with its sightings and detections."""
    from orchestrator.progress import print_evidence_detail
    from storage.queries import evidence_detail

    _check_zone(tz)
    record = evidence_detail(_open_store(db), evidence_id)
    if record is None:
        _fail(f"no evidence record with id {evidence_id}", code=1)
    if as_json:
        typer.echo(json.dumps(record, indent=2, ensure_ascii=False, default=str))
    else:
        print_evidence_detail(console, record, tz)


@evidence_app.command("export")
def evidence_export(
    evidence_id: int = typer.Argument(...),
    out: Path = typer.Argument(..., help="New folder for the takedown packet"),
    actor: str = typer.Option(..., "--actor", help="Who exports (recorded in the custody log)"),
    db: Optional[str] = DbOpt,
    blobs: Optional[str] = BlobsOpt,
) -> None:
    """Write a takedown packet: JSON, an HTML page, the media, the screenshot and a sha256 manifest."""
    from storage.blobs import BlobStoreError, open_blobs
    from storage.packet import PacketError, export_packet

    from orchestrator.cli_guards import check_ids, prepare_output_folder
    from storage.models import Evidence

    try:
        check_ids([evidence_id])
        store = _open_store(db)
        with store.session() as s:
            known = s.get(Evidence, evidence_id) is not None
        if known:  # no empty folder left behind for an unknown id
            prepare_output_folder(out)  # a file, a path under a file, /proc/x: an error, not a traceback
        folder = export_packet(store, open_blobs(_blobs(blobs)), evidence_id, out, actor=actor)
    except (PacketError, KeyError, BlobStoreError, ValueError) as exc:
        _fail(str(exc), code=1)
    except OSError as exc:
        _fail(f"cannot write the packet to {out}: {exc.strerror or exc}", code=1)
    console.print(f"takedown packet written to {folder}")


@evidence_app.command("similar")
def evidence_similar(
    image: Path = typer.Argument(..., help="An image or video file"),
    max_pdq: int = typer.Option(31, help="Largest PDQ Hamming distance to list (of 256 bits)"),
    max_phash: int = typer.Option(10, help="Largest pHash Hamming distance to list (of 64 bits)"),
    limit: int = typer.Option(20, min=1),
    as_json: bool = typer.Option(False, "--json"),
    db: Optional[str] = DbOpt,
) -> None:
    """Near-duplicates of an image among everything seen, and known-fakes bank matches."""
    from detectors.hashing import MediaDecodeError, image_phash, sniff_mime
    from detectors.pdq import pdq_from_bytes
    from orchestrator.progress import print_similar
    from storage.similar import similar_images

    try:
        data = image.read_bytes()
        if (sniff_mime(data) or "").startswith("video/"):  # videos: vPDQ frames, aligned in time
            from orchestrator.cli_video import similar_video

            return similar_video(data, str(image), _open_store(db), limit=limit, as_json=as_json, console=console, fail=_fail)
        phash = image_phash(data)
        pdq, quality = pdq_from_bytes(data)
    except OSError as exc:
        _fail(f"{image}: cannot read: {exc.strerror or exc}")
    except MediaDecodeError as exc:
        _fail(f"{image}: {exc}")
    found = similar_images(_open_store(db), phash=phash, pdq=pdq, max_phash=max_phash, max_pdq=max_pdq, limit=limit)
    query = {"phash": phash, "pdq": pdq, "pdq_quality": quality}
    if as_json:
        typer.echo(json.dumps({"query": query, **found}, indent=2, ensure_ascii=False, default=str))
    else:
        print_similar(console, query, found)


# -- scan ----------------------------------------------------------------------------------------
@app.command("scan")
def scan(
    inputs: list[str] = typer.Argument(..., help="Files or http(s) URLs"),
    model: Optional[str] = typer.Option(
        None, help="Classifier (hub id or local path) [default: env DEEPWATCH_MODEL, else 'model:' in "
                   "$XDG_CONFIG_HOME/deepwatch/config.yaml; none: provenance detectors only]"),
    threshold: Optional[float] = typer.Option(
        None, min=0.0, max=1.0, help="Fake at or above this score (default: the model's calibrated threshold, else 0.5)"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per input, one per line"),
    allow_network: list[str] = typer.Option([], "--allow-network", help="CIDR that URLs may resolve to (e.g. 127.0.0.0/8)"),
    db: Optional[str] = typer.Option(None, "--db", help="Database whose known-fakes bank is checked [env DEEPWATCH_DB; "
                                     f"default {DEFAULT_DATABASE} when that file exists]"),
    blobs: Optional[str] = BlobsOpt,
    trust_anchor: list[Path] = typer.Option([], "--trust-anchor", help="PEM of a CA whose C2PA signers count (besides the C2PA trust list)"),
    allowed_signer: list[Path] = typer.Option([], "--allowed-signer", help="PEM of a C2PA signing certificate to trust as is"),
    vpdq_dir: Optional[Path] = typer.Option(None, "--vpdq-dir", help="Write each video's vPDQ frames here (<sha256>.txt, ThreatExchange format) instead of inline in --json"),
) -> None:
    """Analyse files or URLs without a campaign; exits 1 when any input could not be analysed."""
    from detectors.c2pa_trust import TrustConfigError, TrustSettings
    from orchestrator.scan_cli import run_scan

    try:
        trust = TrustSettings.from_env(anchors=trust_anchor, allowed_signers=allowed_signer)
    except TrustConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    failed = run_scan(inputs, model=model, threshold=threshold, as_json=as_json,
                      allow_network=tuple(allow_network), db=db, blobs=blobs, c2pa_trust=trust,
                      vpdq_dir=str(vpdq_dir) if vpdq_dir else None)
    if failed:
        raise typer.Exit(1)


DEMO_MODEL = "var/models/demo-detector"


# -- known-fakes bank ----------------------------------------------------------------------------
@bank_app.command("import")
def bank_import(
    path: Path = typer.Argument(..., help="Hash list: one hash per line (PDQ hex by default); for vpdq, a file or folder of them"),
    case: str = typer.Option(..., "--case", help="Case the hashes belong to, e.g. NEC-2026-0042"),
    signal: str = typer.Option("pdq", help="pdq | phash | sha256 | vpdq (ThreatExchange frame,quality,hash,timestamp; one file per video)"),
    db: Optional[str] = DbOpt,
) -> None:
    """Import a hash list from a commission or a platform; a bad line imports nothing."""
    from storage.bank import KnownFakesBank

    if signal == "vpdq":
        from orchestrator.cli_video import bank_import_vpdq

        return bank_import_vpdq([path], case, _open_store(db), console, _fail)

    try:
        result = KnownFakesBank(_open_store(db, new_ok=True)).import_hash_list(path, case_id=case, signal=signal)
    except FileNotFoundError:
        _fail(f"{path}: no such file")
    except ValueError as exc:
        _fail(str(exc))
    console.print(f"imported {result.added} hash(es); {result.skipped_existing} already banked")


@bank_app.command("export")
def bank_export(
    path: Path = typer.Argument(..., help="Where to write the hash list (for vpdq: a folder, one file per video)"),
    signal: str = typer.Option("pdq", help="pdq | phash | sha256 | vpdq"),
    db: Optional[str] = DbOpt,
) -> None:
    """Export the bank as a hash list (one hash per line) for exchange."""
    from storage.bank import KnownFakesBank

    if signal == "vpdq":
        from orchestrator.cli_video import bank_export_vpdq

        return bank_export_vpdq(path, _open_store(db), console)

    try:
        n = KnownFakesBank(_open_store(db)).export_hash_list(path, signal=signal)
    except ValueError as exc:
        _fail(str(exc))
    console.print(f"wrote {n} {signal} hash(es) to {path}")


# -- demo platform -------------------------------------------------------------------------------
@demo_app.command("serve")
def demo_serve(
    seed: int = typer.Option(7),
    posts: int = typer.Option(120),
    port: int = typer.Option(8377),
    host: str = typer.Option("127.0.0.1"),
) -> None:
    """Serve the bundled demo social network until interrupted."""
    import time

    from demo_platform.server import DemoPlatform
    from demo_platform.world import build_world

    platform = DemoPlatform(build_world(seed=seed, n_posts=posts))
    url = platform.start(host=host, port=port)
    console.print(f"demo platform at {url}  (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        platform.stop()


# Review, seals, verification, liveness and takedown commands, and the database commands, live in
# their own modules.
from orchestrator import cli_console, cli_db, cli_evidence, cli_rescan, cli_users  # noqa: E402,F401  (register their commands on `app`)
from orchestrator import cli_detectors  # noqa: E402,F401  (registers `detectors` commands on `detectors_app`)
from orchestrator import cli_profile  # noqa: E402,F401  (registers `profile` commands: site profiles)
from orchestrator import cli_keys  # noqa: E402,F401  (registers `keys` commands on `app`)
from orchestrator import cli_reference  # noqa: E402,F401  (registers `reference` commands on `app`)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
