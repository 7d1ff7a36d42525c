"""One campaign run: the order of stages and the bookkeeping between them.

    crawl (one actor per source) -> fetch + probe (actor pool) -> dedup (here) ->
    detect (detector actor pool, batched) -> evidence (here, plus browser capture)

The driver is the single writer to the database, so every write is ordered and idempotent;
actors only read the spec and the blob store. Every item that does not make it through a
stage is counted with its reason in the run report.
"""
from __future__ import annotations

import heapq
import time
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from agents.base import Drop, MediaRef
from agents.base import Post as PostRecord
from detectors.base import Detection, MediaInput
from detectors.signals import SIGNALS
from evidence.custody import append_event
from evidence.review import in_window, looks_ai_labelled
from orchestrator import wiring
from orchestrator.crawlbook import Chain, CrawlBook
from detectors.regions import RegionHashes
from orchestrator.dedup import PerceptualIndex
from orchestrator.references_hook import reference_checker, with_references
from orchestrator.metrics import DEFAULT_HOST, CampaignMetrics
from orchestrator.spec import EMBEDDED, CampaignSpec
from orchestrator.stages import FetchPolicySpec, MediaRecord, PageResult
from orchestrator.writer_retry import RetryingStore
from storage.bank import KnownFakesBank
from storage.bank_video import VideoBank
from storage.blobs import open_blobs
from storage.db import Store

ProgressFn = Callable[[Counter], None]
FLAGGED = ("confirmed_ai", "likely_fake")
BANK_MIN_SCORE = 0.9  # a likely_fake verdict at least this sure enters the known-fakes bank
BANK_PDQ_QUALITY = SIGNALS["pdq"].quality_cutoff or 0  # weaker PDQ hashes are neither banked nor matched
_INFLIGHT_PER_ACTOR = 2  # backpressure: crawlers cannot outrun fetchers and detectors
_CRAWL_RETRIES = 2  # a page whose crawler died past Ray's retries is asked for again this often
# Bounded queues between stages, so memory stays flat however large the campaign: while the fetch
# queue holds this many media refs no further crawl page is asked for (the next cursor waits, and
# is saved, so a killed run loses nothing), and while this many items wait for detectors no more
# fetches are sent. A page can still add its own refs on top (at most page size x media per post).
FETCH_QUEUE_MAX = 256
DETECT_QUEUE_MAX = 512
URL_SHA_MAX = 20_000  # recently fetched URLs remembered (~6 MB)


class LruMap(OrderedDict):
    """A dict that keeps its `capacity` most recently used keys."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity

    def get(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            return default
        self.move_to_end(key)
        return self[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        if len(self) > self.capacity:
            self.popitem(last=False)


class CampaignRun:
    def __init__(self, spec: CampaignSpec, spec_text: str, *, address: str | None = None, progress: ProgressFn | None = None,
                 metrics_port: int | None = None, metrics_host: str = DEFAULT_HOST, stats_path: str | None = None,
                 db_retry_s: float | None = None):
        self.spec = spec
        self.spec_text = spec_text
        self.address = address
        self.progress = progress or (lambda counts: None)
        # Per-stage figures: exported on metrics_port while the run lasts (None: not exported),
        # put in the report's "stages" and saved as JSON at stats_path.
        self.metrics = CampaignMetrics(spec.name)
        self.metrics_port = metrics_port
        self.metrics_host = metrics_host
        self.stats_path = stats_path
        self.db_retry_s = db_retry_s  # None: DEEPWATCH_DB_RETRY_S or 120 s
        self.counts: Counter[str] = Counter()
        self.drops: dict[str, Counter[str]] = defaultdict(Counter)
        # Media URL -> sha256 of what it served in this run, so a URL re-posted later is sighted
        # without another fetch. Bounded (least recently used out): a URL that fell out is fetched
        # again and its bytes land on the stored item through exact dedup, so the cap costs a
        # fetch, never a wrong link, and the driver's memory stays flat on a long run.
        self.url_sha: LruMap[str, str] = LruMap(URL_SHA_MAX)
        self.platform: Any = None  # the embedded demo platform, when the spec uses it
        self.dedup_index: PerceptualIndex | None = None  # the run's index, once built (benchmarks report its size)

    # -- bookkeeping ---------------------------------------------------------------------------
    def _count(self, key: str, n: int = 1) -> None:
        self.counts[key] += n
        self.progress(self.counts)

    def _drop(self, drop: Drop, stage: str | None = None) -> None:
        """Count a drop in the report and in the metrics of `stage` (default: the drop's own stage)."""
        self.drops[drop.stage][drop.reason] += 1
        self.metrics.dropped(stage or drop.stage, drop.reason)
        self._count("dropped")

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        started = datetime.now(timezone.utc)
        t0 = time.monotonic()
        self.deadline = t0 + self.spec.limits.max_seconds
        # Every write of the driver goes through the retry wrapper: a database that goes away for
        # a while (restart, failover) is waited for, and each unit of work is redone once it is back.
        store = RetryingStore(Store(self.spec.storage.database), max_wait_s=self.db_retry_s,
                              on_retry=lambda op, exc: self.metrics.retried("db"))
        self.store = store
        self.bank = KnownFakesBank(store.store)  # its calls go through store.call
        self.video_bank = VideoBank(store.store)  # known-fake videos, matched by vPDQ frames
        self.blobs = open_blobs(self.spec.storage.blobs)  # one client for the run (an s3:// store checks its bucket on open)
        refs = self.spec.detectors.references
        self.references = None if refs == [] else reference_checker(store.store, self.blobs, refs)
        campaign_id = store.upsert_campaign(self.spec.name, self.spec_text)
        self.campaign_id = campaign_id
        store.set_campaign_status(campaign_id, "running")
        with ExitStack() as stack:
            try:
                if self.metrics_port is not None:
                    self.metrics_port = self.metrics.serve(self.metrics_port, self.metrics_host)
                    stack.callback(self.metrics.stop)
                base_url = self._start_embedded_platform(stack)
                cluster = wiring.init_ray(self.address)
                stack.callback(wiring.shutdown_ray)
                detectors = self._crawl_fetch_detect(base_url)
                self._write_evidence()
                report = self._report(started, time.monotonic() - t0, cluster, detectors)
                self._save_stats(report)
                store.set_campaign_status(campaign_id, "finished", report)
            except BaseException:
                try:
                    store.store.set_campaign_status(campaign_id, "failed")  # one try: the database may be the failure
                except Exception:
                    pass
                raise
        store.close()
        return report

    def _save_stats(self, report: dict[str, Any]) -> None:
        """The run's figures as JSON beside the campaign file or report (stats_path)."""
        if not self.stats_path:
            return
        import json
        from pathlib import Path

        stats = {"campaign": report["campaign"], "started_at": report["started_at"], "seconds": report["seconds"],
                 "counts": report["counts"], "drops": report["drops"], **self.metrics.snapshot()}
        path = Path(self.stats_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stats, indent=2, ensure_ascii=False, default=str), "utf-8")

    def _start_embedded_platform(self, stack: ExitStack) -> str | None:
        if not self.spec.uses_embedded_platform():
            return None
        from pathlib import Path

        from demo_platform.cache import load_world
        from demo_platform.server import DemoPlatform

        demo = self.spec.demo_platform
        # The built world is cached on local disk beside local blobs (under var/ for object stores).
        blobs = self.spec.storage.blobs
        cache = Path("var") if "://" in blobs else Path(blobs).parent
        world = load_world(demo.seed, demo.posts, cache / "demo-world")
        self.platform = DemoPlatform(world)
        try:
            base_url = self.platform.start(port=demo.port)
        except OSError:  # the usual port is taken (another run?): any free one still works
            base_url = self.platform.start(port=0)
        stack.callback(self.platform.stop)
        return base_url

    def _policy(self) -> FetchPolicySpec:
        net = self.spec.network
        # Every crawler and fetch actor holds its own client, so each gets an equal share of the
        # campaign's per-host rate: together they stay within it.
        workers = len(self.spec.sources) + self.spec.scaling.fetch_actors
        return FetchPolicySpec(
            allow_networks=tuple(net.allow_networks),
            contact_url=net.contact_url,
            timeout_s=net.timeout_s,
            max_bytes=self.spec.limits.max_media_bytes,
            respect_robots=net.respect_robots,
            per_host_concurrency=net.per_host_concurrency,
            per_host_rps=net.per_host_rps / workers if net.per_host_rps else None,
        )

    def _c2pa_trust(self) -> Any:
        """The spec's C2PA trust settings (plus the environment's), and the demo world's CA when
        this run crawls the embedded demo platform and the spec trusts it."""
        from detectors.c2pa_trust import TrustSettings

        t, demo = self.spec.detectors.c2pa_trust, self.spec.demo_platform
        own = {}
        if self.spec.uses_embedded_platform() and demo.trust_own_ca:
            from demo_platform.provenance import signing_identity

            own["the demo platform's own CA"] = signing_identity(demo.seed).ca_pem
        return TrustSettings.from_env(anchors=t.anchors, allowed_signers=t.allowed_signers,
                                      use_c2pa_list=t.c2pa_trust_list, extra_anchor_pem=own)
    def _compare_with_references(self, analysis: Any, batch: list[tuple[str, str, str]]) -> Any:
        """The analysis fused again with its comparison to an authentic original, if one matches."""
        if getattr(self, "references", None) is None:  # set in run(); none in the library: nothing to do
            return analysis
        kind, mime = next((k, m) for sha, k, m in batch if sha == analysis.sha256)
        item = MediaInput(analysis.sha256, kind, self.blobs.get(analysis.sha256), mime)  # type: ignore[arg-type]
        return with_references(self.references, analysis, item,
                               self._detector_kwargs().get("review_threshold") or 0.3)

    def _detector_kwargs(self) -> dict[str, Any]:
        d = self.spec.detectors
        kwargs: dict[str, Any] = dict(
            c2pa=d.c2pa, watermark=d.watermark, metadata=d.metadata, video_frames=d.video_frames,
            video_faces=d.video_faces, video_frame_with_faces=d.video_frame_with_faces,
            scene_changes=d.scene_changes, scene_threshold=d.scene_threshold, max_scene_frames=d.max_scene_frames,
            c2pa_trust=self._c2pa_trust(),
        )
        if d.classifier is not None:
            c = d.classifier
            kwargs.update(
                classifier_model=c.model,
                fake_label=c.fake_label,
                threshold=c.threshold,  # None: the model's calibrated threshold, else 0.5
                review_threshold=c.review_threshold,
                batch_size=c.batch_size,
                classifier_revision=c.revision,
            )
        elif d.classifiers is not None:
            e = d.ensemble_settings()
            kwargs.update(
                classifier_model=None,
                classifiers=[member.model_dump() for member in d.classifiers],
                threshold=e.threshold,
                review_threshold=e.review_threshold,
                batch_size=e.batch_size,
            )
        else:
            # No model in the campaign: the configured default (orchestrator.model_choice), never
            # a folder that happens to sit under the current directory.
            from orchestrator.model_choice import choose_model

            kwargs["classifier_model"] = choose_model(None).model
        return kwargs

    def _crawl_fetch_detect(self, base_url: str | None) -> list[dict[str, Any]]:
        import ray

        spec, store, policy = self.spec, self.store, self._policy()
        blobs_root = spec.storage.blobs
        index = PerceptualIndex(image_max_distance=spec.detectors.phash_max_distance, image_loader=self._stored_image)
        self.dedup_index = index
        images, videos = store.perceptual_hashes()
        for sha, ph, pdq, quality, region in images:
            index.add_image(sha, ph, pdq, quality, region=RegionHashes.from_json(region))
        for sha, fh, vp in videos:
            index.add_video(sha, fh, vp)

        crawlers: dict[str, Any] = {}
        for src in spec.sources:
            params = dict(src.params)
            if params.get("base_url") == EMBEDDED:
                params["base_url"] = base_url
            crawlers[src.name] = wiring.crawler_actor(src.name, src.type, params, policy, blobs_root)
        self.crawlers = crawlers  # tests kill one mid-run to show the run survives it
        fetchers = [wiring.fetch_actor(policy, blobs_root) for _ in range(spec.scaling.fetch_actors)]
        self.fetchers = fetchers
        detector_pool = [wiring.detector_actor(self._detector_kwargs(), blobs_root) for _ in range(spec.scaling.detector_actors)]
        self.detector_pool = detector_pool  # fault tests kill one mid-run
        try:
            described = ray.get(detector_pool[0].describe.remote())
        except Exception as exc:  # the model did not load: nothing can be judged, say why
            raise RuntimeError(f"the detectors could not start: {_root_cause(exc)}") from None

        book = CrawlBook(store, self.campaign_id)
        pending: dict[Any, tuple[str, Any]] = {}  # ObjectRef -> (kind, context)
        fetch_queue: deque[MediaRef] = deque()
        # Work left over by an interrupted run: canonical items get the full analysis, near
        # duplicates the provenance checks only; media refs of stored posts that were never
        # fetched go back on the fetch queue.
        detect_queue: deque[tuple[str, str, str]] = deque()
        provenance_queue: deque[tuple[str, str, str]] = deque()
        for media in store.unanalysed_media():
            (provenance_queue if media.duplicate_of else detect_queue).append((media.sha256, media.kind, media.mime))
            self.metrics.came_in("detect")
        queued_urls: set[str] = set()  # URLs on the fetch queue or being fetched
        sightings_waiting: dict[str, list[tuple[int, int]]] = defaultdict(list)  # url -> [(post_pk, pos)]
        for task in store.pending_media_tasks(self.campaign_id):
            sightings_waiting[task.url].append((task.post_pk, task.position))
            if task.url not in queued_urls:
                queued_urls.add(task.url)
                fetch_queue.append(MediaRef(task.url, task.kind, task.position, task.resolver))  # type: ignore[arg-type]
                self.metrics.came_in("fetch")
                self._count("fetches_resumed")
        load: Counter[tuple[str, int]] = Counter()  # in-flight calls per fetcher / detector index
        bytes_used = 0
        polls: list[tuple[float, str, str]] = []  # (due time, source, term): a scheduled campaign's next passes
        sent_at: dict[Any, float] = {}  # ObjectRef -> when it was sent: each call's latency
        parked: deque[tuple[Chain, str]] = deque()  # next pages held back while the fetch queue is full
        metrics = self.metrics

        def send(ref: Any, kind: str, ctx: Any) -> None:
            pending[ref] = (kind, ctx)
            sent_at[ref] = time.monotonic()

        def next_page(chain: Chain, cursor: str) -> None:
            if len(fetch_queue) >= FETCH_QUEUE_MAX:
                parked.append((chain, cursor))  # backpressure: asked for once the fetchers catch up
            else:
                send(crawlers[chain.source].page.remote(chain.term, cursor), "crawl", (chain, cursor, 0))

        def report_depths() -> None:
            inflight = Counter(kind for kind, _ in pending.values())
            metrics.queue_depths(fetch=len(fetch_queue), detect=len(detect_queue), provenance=len(provenance_queue),
                                 parked_pages=len(parked),
                                 inflight_crawl=inflight["crawl"], inflight_fetch=inflight["fetch"],
                                 inflight_detect=inflight["detect"])

        def out_of_time() -> bool:
            return time.monotonic() > self.deadline

        def start_pass(source: str, term: str, backfill: bool) -> None:
            self._count("polls")
            for chain, cursor in book.start(source, term, backfill=backfill):
                send(crawlers[source].page.remote(term, cursor), "crawl", (chain, cursor, 0))

        def schedule_next_poll(source: str, term: str) -> None:
            if spec.interval is None:
                return
            due = time.monotonic() + spec.interval
            window_end = spec.window.end
            if due > self.deadline or (window_end is not None and _utc_in(spec.interval) >= window_end):
                return  # the campaign's window or time budget ends before the next poll
            heapq.heappush(polls, (due, source, term))

        for src in spec.sources:
            for term in spec.terms_for(src):
                start_pass(src.name, term, backfill=True)

        def schedule() -> None:
            # Hand queued work to the least-loaded actors, at most _INFLIGHT_PER_ACTOR each.
            while fetch_queue and len(detect_queue) + len(provenance_queue) < DETECT_QUEUE_MAX:
                i = min(range(len(fetchers)), key=lambda k: load[("f", k)])
                if load[("f", i)] >= _INFLIGHT_PER_ACTOR:
                    break
                batch = [fetch_queue.popleft() for _ in range(min(8, len(fetch_queue)))]
                send(fetchers[i].run.remote(batch), "fetch", (i, batch))
                load[("f", i)] += 1
            while parked and len(fetch_queue) < FETCH_QUEUE_MAX:
                chain, cursor = parked.popleft()
                if not out_of_time() and self.counts["posts_seen"] < spec.limits.max_posts:
                    send(crawlers[chain.source].page.remote(chain.term, cursor), "crawl", (chain, cursor, 0))
            crawl_or_fetch_busy = any(kind in ("crawl", "fetch") for kind, _ in pending.values())
            batch_size = spec.detectors.classifier.batch_size if spec.detectors.classifier else 32
            for queue, provenance_only in ((detect_queue, False), (provenance_queue, True)):
                while queue and (len(queue) >= batch_size or not crawl_or_fetch_busy):
                    i = min(range(len(detector_pool)), key=lambda k: load[("d", k)])
                    if load[("d", i)] >= _INFLIGHT_PER_ACTOR:
                        break
                    batch = [queue.popleft() for _ in range(min(batch_size, len(queue)))]
                    send(detector_pool[i].run.remote(batch, provenance_only), "detect", (i, batch, provenance_only))
                    load[("d", i)] += 1

        schedule()  # work left by an earlier, interrupted run can start at once
        report_depths()
        while pending or polls or parked:
            if not pending and parked:
                schedule()  # only parked pages are left: the fetch queue drains, they go out
            if not pending:
                if not polls:
                    break
                # Idle between polls of a scheduled campaign: what is judged so far becomes evidence.
                self._write_evidence()
                wait_s = polls[0][0] - time.monotonic()
                if wait_s > 0:
                    time.sleep(min(wait_s, max(0.0, self.deadline - time.monotonic())))
                if out_of_time():
                    break
            while polls and polls[0][0] <= time.monotonic():
                _, source, term = heapq.heappop(polls)
                start_pass(source, term, backfill=False)
            if not pending:
                continue
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            kind, ctx = pending.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as exc:  # an actor died past its retries, or a stage raised
                result = exc
            metrics.observe(kind, time.monotonic() - sent_at.pop(ref))
            if kind == "crawl":
                chain, cursor, attempt = ctx
                if isinstance(result, Exception) and attempt < _CRAWL_RETRIES and not out_of_time():
                    # The actor died past Ray's own retries (a restarted actor has a new client):
                    # ask again for the same page; the cursor makes the retry exact.
                    send(crawlers[chain.source].page.remote(chain.term, cursor), "crawl", (chain, cursor, attempt + 1))
                    metrics.retried("crawl")
                    self._count("crawl_retries")
                else:
                    more = self._on_page(result, chain, book, fetch_queue, queued_urls, sightings_waiting)
                    if more is not None and not out_of_time() and self.counts["posts_seen"] < spec.limits.max_posts:
                        next_page(chain, more)
                    elif chain.mode != "backfill":
                        schedule_next_poll(chain.source, chain.term)
            elif kind == "fetch":
                load[("f", ctx[0])] -= 1
                if isinstance(result, Exception):
                    result = [Drop("fetch", "fetch worker failed", r.url, _root_cause(result)) for r in ctx[1]]
                for ref in ctx[1]:
                    queued_urls.discard(ref.url)  # out of the fetch stage: a later post may queue it again
                for item in result:
                    if isinstance(item, Drop):
                        self._drop(item, stage="fetch")
                        if item.reason != "fetch worker failed":  # a dead worker's batch stays owed
                            self.store.finish_media_tasks(self.campaign_id, item.subject, "dropped", item.reason)
                        sightings_waiting.pop(item.subject, None)
                        continue
                    bytes_used += item.size
                    metrics.went_out("fetch")
                    with metrics.timed("dedup"):
                        self._on_media(item, index, detect_queue, provenance_queue, sightings_waiting)
            elif kind == "detect":
                load[("d", ctx[0])] -= 1
                if isinstance(result, Exception):
                    for sha, _, _ in ctx[1]:
                        self._drop(Drop("detect", "detector failed", sha, _root_cause(result)))
                    result = []
                for analysis in result:
                    analysis = self._compare_with_references(analysis, ctx[1])
                    v = analysis.verdict
                    store.save_analysis(analysis.sha256, analysis.detections, v.band, v.score, v.reasons)
                    metrics.went_out("detect")
                    self._count("provenance_checked" if ctx[2] else "analysed")
                    self._bank_if_confident(analysis.sha256, v.band, v.score)
                    if any(d.outcome == "error" for d in analysis.detections):
                        for d in analysis.detections:
                            if d.outcome == "error":
                                reason = f"{d.detector}: {'; '.join(d.reasons) or 'error'}"
                                self.drops["detect"][reason] += 1
                                metrics.errored("detect", reason)  # the item is judged all the same
            # Limits: the post limit is enforced in _on_page; bytes and time stop new fetches.
            # What is left stays pending in the database, so a resumed run fetches it.
            if bytes_used >= spec.limits.max_bytes or out_of_time():
                reason = "campaign byte limit reached" if bytes_used >= spec.limits.max_bytes else "campaign time limit reached"
                while fetch_queue:
                    url = fetch_queue.popleft().url
                    queued_urls.discard(url)
                    self._drop(Drop("fetch", reason, url))
                polls.clear()
                parked.clear()  # their cursors are saved: a later run reads on from there
            schedule()
            report_depths()

        for actor in crawlers.values():
            try:
                ray.get(actor.close.remote(), timeout=30)
            except Exception:
                pass  # a crawler that died has nothing left to close
        return described

    def _on_page(self, result: Any, chain: Chain, book: CrawlBook, fetch_queue: deque, queued_urls: set[str],
                 sightings_waiting: dict) -> str | None:
        """Store one page's posts and queue their media; returns the cursor to read next, if any."""
        source = chain.source
        if isinstance(result, Exception):
            self._drop(Drop("crawl", "source failed", source, _root_cause(result)))
            return None
        assert isinstance(result, PageResult)
        for d in result.drops:
            self._drop(d, stage="crawl")
        if result.error is not None:
            self._drop(Drop("crawl", "source unreachable", source, result.error))
            return None
        page = result.page
        self._count("pages")
        self.metrics.came_in("crawl", len(page.posts))
        for post in page.posts:
            if self.counts["posts_seen"] >= self.spec.limits.max_posts:
                self._drop(Drop("crawl", "campaign post limit reached", post.url))
                continue
            self._count("posts_seen")
            if not self.spec.window.contains(post.created_at):
                self._drop(Drop("crawl", "outside campaign window", post.url))
                continue
            post = _with_source(post, source)
            post_pk, created = self.store.upsert_post(self.campaign_id, post)
            self.metrics.went_out("crawl")
            if created:
                self._count("posts_new")
            refs = [(r.url, r.kind, r.position, r.resolver) for r in post.media]
            states = self.store.ensure_media_tasks(self.campaign_id, post_pk, refs)
            for ref, state in zip(post.media, states):
                self._count("media_refs")
                if state != "pending":
                    continue  # fetched (or dropped) by an earlier pass: its sighting is recorded
                known = self.url_sha.get(ref.url)
                if known is not None:
                    self._sight(known, post_pk, ref.url, ref.position)
                    self.store.finish_media_tasks(self.campaign_id, ref.url, "done")
                    continue
                sightings_waiting[ref.url].append((post_pk, ref.position))
                if ref.url not in queued_urls:
                    queued_urls.add(ref.url)
                    fetch_queue.append(ref)
                    self.metrics.came_in("fetch")
        more = book.after_page(chain, page)
        return page.next_cursor if more else None

    def _sight(self, sha: str, post_pk: int, url: str, position: int) -> None:
        if self.store.add_sighting(media_sha256=sha, post_pk=post_pk, campaign_id=self.campaign_id, media_url=url, position=position):
            self._count("sightings_new")

    def _on_media(self, item: MediaRecord, index: PerceptualIndex, detect_queue: deque, provenance_queue: deque,
                  sightings_waiting: dict) -> None:
        self.metrics.came_in("dedup")
        self._count("media_fetched")
        self.url_sha[item.url] = item.sha256
        created = self.store.upsert_media(
            sha256=item.sha256,
            kind=item.kind,
            mime=item.mime,
            size=item.size,
            width=item.width,
            height=item.height,
            duration_s=item.duration_s,
            phash=item.phash,
            pdq=item.pdq,
            pdq_quality=item.pdq_quality,
            frame_hashes=list(item.frame_hashes),
            vpdq=[list(f) for f in item.vpdq],
            region=item.region.to_json() if item.region is not None else None,
        )
        for post_pk, position in sightings_waiting.pop(item.url, []):
            self._sight(item.sha256, post_pk, item.url, position)
        self.store.finish_media_tasks(self.campaign_id, item.url, "done")
        if not created:
            self._count("duplicates_exact")
            self.metrics.dropped("dedup", "exact duplicate")
            return
        if item.kind == "image":
            # The query's pixels are read back only if a band over the picture must be verified.
            match = index.match_image(item.phash, item.pdq, item.pdq_quality, region=item.region,
                                      image=lambda: self._stored_image(item.sha256))
        else:
            match = index.match_video(list(item.frame_hashes), list(item.vpdq))
        if match is not None:
            self.store.mark_duplicate(item.sha256, match.sha256, match.distance)
            self._count("duplicates_near")
        elif item.kind == "image":
            index.add_image(item.sha256, item.phash, item.pdq, item.pdq_quality, region=item.region)
        else:
            index.add_video(item.sha256, list(item.frame_hashes), list(item.vpdq))
        if self._judge_by_bank(item):
            self.metrics.dropped("dedup", "known fake (bank)")
            return  # a known fake: no detector is spent on it
        self.metrics.went_out("dedup")
        self.metrics.came_in("detect")
        if match is not None:
            provenance_queue.append((item.sha256, item.kind, item.mime))
        else:
            self._count("unique")
            detect_queue.append((item.sha256, item.kind, item.mime))

    def _judge_by_bank(self, item: MediaRecord) -> bool:
        """Look a new item up in the known-fakes bank (exact bytes, then PDQ)."""
        matches = self.store.call(self.bank.match, "sha256", item.sha256)
        if not matches and item.pdq and (item.pdq_quality or 0) >= BANK_PDQ_QUALITY:
            matches = self.store.call(self.bank.match, "pdq", item.pdq)
        if matches:
            best = matches[0]
            case, reason = best.case_id, best.reason
            details = {"case_id": best.case_id, "entry_id": best.entry_id, "distance": best.distance,
                       "banked_media_sha256": best.media_sha256}
        elif item.kind == "video" and item.vpdq:
            # Videos by their frames: a re-timed or trimmed copy of a banked fake, with where it aligns.
            from orchestrator.video_bank_check import check_video_bank

            details = self.store.call(check_video_bank, self.store.store, list(item.vpdq), self.video_bank)
            if details is None:
                return False
            case, reason = details["case_id"], details["reason"]
        else:
            return False
        detection = Detection(
            detector="known-fakes-bank",
            version="1",
            outcome="fake",
            reasons=[reason],
            details=details,
        )
        self.store.save_analysis(item.sha256, [detection], "likely_fake", None, [reason])
        self.store.set_bank_case(item.sha256, case)
        self._count("bank_matches")
        return True

    def _bank_if_confident(self, sha256: str, band: str, score: float | None) -> None:
        """A confirmed-AI or high-confidence fake enters the bank, so later copies anywhere are
        caught without detectors. Its case is the campaign plus the item."""
        if band != "confirmed_ai" and not (band == "likely_fake" and (score or 0) >= BANK_MIN_SCORE):
            return
        media = self.store.get_media(sha256)
        if media is None or media.bank_case:
            return
        case_id = f"{self.spec.name}:{sha256[:12]}"
        added = self.store.call(self.bank.add, "sha256", sha256, case_id=case_id, source="verdict", media_sha256=sha256)
        if media.pdq and (media.pdq_quality or 0) >= BANK_PDQ_QUALITY:
            added |= self.store.call(self.bank.add, "pdq", media.pdq, case_id=case_id, source="verdict", media_sha256=sha256)
        if media.kind == "video" and media.vpdq:
            from orchestrator.video_bank_check import as_frames

            added |= self.store.call(self.video_bank.add, as_frames(media.vpdq), case_id=case_id, name=sha256[:16],
                                     source="verdict", media_sha256=sha256)
        if added:
            self._count("banked")

    # -- evidence ------------------------------------------------------------------------------
    def _write_evidence(self) -> None:
        """One evidence record per flagged media item per post, with its first legal assessment,
        custody events, capture and seal. A record an interrupted run left unsealed (the driver
        died between writing it and sealing it) is finished here, each missing step once."""
        from storage.queries import flagged_sightings_page

        store = self.store
        unfinished = store.call(_unsealed_evidence, store.store, self.campaign_id)
        after: int | None = None
        while True:  # a page of sightings at a time, so memory does not grow with the campaign
            rows, after = store.call(flagged_sightings_page, store.store, self.campaign_id, FLAGGED, after_id=after)
            self._write_evidence_page(rows, unfinished)
            if after is None:
                return

    def _write_evidence_page(self, rows: list[dict[str, Any]], unfinished: dict[int, tuple[bool, bool]]) -> None:
        store = self.store
        new_ids: dict[str, list[int]] = defaultdict(list)  # post URL -> evidence ids lacking capture
        post_media: dict[str, list[str]] = defaultdict(list)  # post URL -> its flagged media URLs
        to_seal: list[int] = []
        spent: dict[int, float] = {}  # evidence id -> seconds spent writing it (its latency, with the seal)
        ban_start, ban_end = self.spec.ban_window()
        for row in rows:
            t0 = time.perf_counter()
            ev_id, created = store.upsert_evidence(**row)
            if not created and ev_id not in unfinished:
                continue  # written and sealed by an earlier pass or run
            has_analysed, captured = unfinished.get(ev_id, (False, False))
            self.metrics.came_in("evidence")
            self._count("evidence_written" if created else "evidence_resumed")
            to_seal.append(ev_id)
            if not captured:
                new_ids[row["post_url"]].append(ev_id)
                post_media[row["post_url"]].append(row["media_url"])
            if not has_analysed:
                self._first_assessment(ev_id, row, ban_start, ban_end)
            spent[ev_id] = time.perf_counter() - t0
        if new_ids and self.spec.scaling.capture_evidence:
            self._capture(new_ids, post_media)
        for ev_id in to_seal:
            t0 = time.perf_counter()
            self._seal(ev_id)
            self.metrics.observe("evidence", spent[ev_id] + time.perf_counter() - t0)

    def _first_assessment(self, ev_id: int, row: dict[str, Any], ban_start: Any, ban_end: Any) -> None:
        post = self.store.get_post(row["post_pk"])
        # First legal assessment from what the post itself shows; investigators can change it.
        self.store.update_evidence(
            ev_id, in_ban_window=in_window(post.created_at, ban_start, ban_end),
            ai_label_present=looks_ai_labelled(post.text), capture_operator=self.spec.operator(),
            working_sha256=self._working_copy(row["media_sha256"]),
        )
        # The judgement that made this a finding: the fused verdict and the detections behind
        # it (of the item itself, or of the cluster member it was matched to).
        judged_by = row["matched_sha256"] or row["media_sha256"]
        request_id = self._request(ev_id, "analysed")
        self.store.call(append_event, self.store.store, ev_id, "analysed", self.spec.operator(), request_id=request_id, details={
            "verdict": row["verdict"], "score": row["score"], "reasons": row["reasons"],
            "media_sha256": row["media_sha256"], "judged_by_sha256": judged_by,
            "post_url": row["post_url"], "media_url": row["media_url"],
            "detections": [{"detector": d.detector, "version": d.version, "model": d.model_key or None,
                            "outcome": d.outcome, "score": d.score, "threshold": d.threshold}
                           for d in self.store.detections_for(judged_by)],
        })

    def _stored_image(self, sha256: str) -> Any:
        """A stored image's pixels (as dedup hashes them), for verifying a region match; None if unreadable."""
        from detectors.hashing import MediaDecodeError
        from detectors.pdq import decode_for_pdq

        try:
            return decode_for_pdq(self.blobs.get(sha256))
        except (MediaDecodeError, OSError, KeyError):
            return None

    def _working_copy(self, media_sha256: str) -> str | None:
        """A preview kept apart from the untouched original (both by sha256)."""
        from evidence.capture import make_working_copy

        media = self.store.get_media(media_sha256)
        copy = make_working_copy(self.blobs.get(media_sha256), media.mime) if media else None
        return self.blobs.put(copy) if copy else None

    def _seal(self, evidence_id: int) -> None:
        """Sign the record as written (and timestamp it when an authority is configured)."""
        from evidence.seal import SealError, seal_evidence
        from evidence.tsa import TimestampError

        ev = self.spec.evidence
        try:
            cert = open(ev.tsa_cert, "rb").read() if ev.tsa_cert else None
            self.store.call(seal_evidence, self.store.store, evidence_id, self._signer(), tsa_url=ev.tsa_url, tsa_cert=cert,
                            actor=self.spec.operator(), request_id=self._request(evidence_id, "sealed"))
            self.metrics.went_out("evidence")
            self._count("sealed")
        except (SealError, TimestampError, OSError) as exc:
            # The record stays (unsealed, which verify reports); `deepwatch evidence seal` retries.
            self._drop(Drop("seal", "seal failed", str(evidence_id), str(exc)))

    def _request(self, evidence_id: int, step: str) -> str:
        """The custody log's name for one evidence step of this campaign: a retried write (its
        commit landed, the acknowledgement did not) or a resumed run finds it done."""
        return f"campaign-{self.campaign_id}/evidence-{evidence_id}/{step}"

    def _signer(self) -> Any:
        from evidence.signing import Signer

        if getattr(self, "_signer_cache", None) is None:
            self._signer_cache = Signer.load_or_create()
        return self._signer_cache

    def _capture(self, new_ids: dict[str, list[int]], post_media: dict[str, list[str]]) -> None:
        import ray

        from evidence.signing import key_dir

        self._signer()  # the key exists before capture actors sign with it
        actor = wiring.capture_actor(self.spec.storage.blobs, self._policy(), operator=self.spec.operator(),
                                     archive=self.spec.evidence.archive, key_dir=str(key_dir().resolve()))
        urls = list(new_ids)
        try:
            for start in range(0, len(urls), 16):
                chunk = urls[start:start + 16]
                self.metrics.came_in("capture", len(chunk))
                try:
                    with self.metrics.timed("capture"):
                        results = ray.get(actor.run.remote([(u, post_media[u]) for u in chunk]))
                except Exception as exc:
                    for url in chunk:
                        self._drop(Drop("capture", "capture worker failed", url, _root_cause(exc)), stage="capture")
                    continue
                for url, result in zip(chunk, results):
                    if isinstance(result, Drop):
                        self._drop(result, stage="capture")
                        continue
                    shot, archive = result
                    if isinstance(archive, Drop):
                        # The page is captured all the same (screenshot and DOM); only its archive failed.
                        self.drops[archive.stage][archive.reason] += 1
                        self._count("dropped")
                        self.metrics.errored("capture", archive.reason)
                        archive = None
                    for ev_id in new_ids[url]:
                        self._record_capture(ev_id, shot, archive)
                    self.metrics.went_out("capture")
                    self._count("captures")
        finally:
            try:
                ray.get(actor.close.remote(), timeout=30)
            except Exception:
                pass

    def _record_capture(self, ev_id: int, shot: Any, archive: Any) -> None:
        self.store.update_evidence_capture(
            ev_id, screenshot_sha256=shot.screenshot_sha256, html_sha256=shot.html_sha256, captured_at=shot.captured_at
        )
        details: dict[str, Any] = {"screenshot_sha256": shot.screenshot_sha256, "html_sha256": shot.html_sha256,
                                   "http_status": shot.status, "final_url": shot.final_url}
        if archive is not None:
            self.store.update_evidence(
                ev_id, wacz_sha256=archive.wacz_sha256, capture_ip=archive.page_ip, capture_headers=archive.page_headers,
                capture_tool=archive.capture_tool, capture_operator=archive.operator,
            )
            details.update(wacz_sha256=archive.wacz_sha256, page_ip=archive.page_ip, capture_tool=archive.capture_tool,
                           media=[list(m) for m in archive.media])
        self.store.call(append_event, self.store.store, ev_id, "captured", self.spec.operator(), details,
                        request_id=self._request(ev_id, "captured"))

    # -- report --------------------------------------------------------------------------------
    def _report(self, started: datetime, seconds: float, cluster: dict, detectors: list[dict]) -> dict[str, Any]:
        from storage.queries import campaign_media_urls, campaign_media_verdicts, campaign_verdict_counts

        c = self.counts
        report: dict[str, Any] = {
            "campaign": self.spec.name,
            "started_at": started.isoformat(),
            "seconds": round(seconds, 2),
            "cluster": cluster,
            "window": {
                "start": self.spec.window.start.isoformat() if self.spec.window.start else None,
                "end": self.spec.window.end.isoformat() if self.spec.window.end else None,
                "timezone": self.spec.window.timezone,
            },
            "detectors": detectors,
            "counts": {
                "polls": c["polls"],
                "pages": c["pages"],
                "crawl_retries": c["crawl_retries"],
                "posts": c["posts_seen"],
                "posts_new": c["posts_new"],
                "media_refs": c["media_refs"],
                "fetches_resumed": c["fetches_resumed"],
                "media_fetched": c["media_fetched"],
                "unique": c["unique"],
                "duplicates_exact": c["duplicates_exact"],
                "duplicates_near": c["duplicates_near"],
                "analysed": c["analysed"],
                "provenance_checked": c["provenance_checked"],
                "bank_matches": c["bank_matches"],
                "banked": c["banked"],
                "evidence_written": c["evidence_written"],
                "evidence_resumed": c["evidence_resumed"],
                "captures": c["captures"],
                "sealed": c["sealed"],
                "dropped": c["dropped"],
            },
            "drops": {stage: dict(reasons) for stage, reasons in sorted(self.drops.items())},
            **self.metrics.snapshot(),  # "stages" (in, out, dropped by reason, retries, latency) and "queues"
        }
        bands = Counter(self.store.call(campaign_verdict_counts, self.store.store, self.campaign_id))
        report["counts"]["flagged"] = sum(bands[b] for b in FLAGGED)
        report["counts"]["needs_review"] = bands["needs_review"]
        report["verdicts"] = dict(bands)
        if self.platform is not None:
            # Judged over everything the campaign has seen so far, not only this run's fetches.
            # The in-process demo world is small: its truth is scored against every item at once.
            verdicts = self.store.call(campaign_media_verdicts, self.store.store, self.campaign_id)
            urls = self.store.call(campaign_media_urls, self.store.store, self.campaign_id)
            report["ground_truth"] = ground_truth_scores(self.platform.world, urls, verdicts)
        return report


def ground_truth_scores(world: Any, url_sha: dict[str, str], verdicts: dict[str, str | None]) -> dict[str, Any]:
    """Precision and recall of flagged media against the demo world's planted truth.

    Every planted media item counts, crawled or not: a fake the crawl never reached is missed.
    """
    by_kind: dict[str, Counter] = defaultdict(Counter)
    tp = fp = fn = tn = 0
    path_to_url = {urlsplit(u).path: u for u in url_sha}
    for path, truth in world.truth.items():
        if truth.label == "broken":
            continue
        url = path_to_url.get(path)
        band = verdicts.get(url_sha[url]) if url else None
        flagged = band in FLAGGED
        if truth.label == "fake":
            by_kind[truth.fake_kind]["planted"] += 1
            by_kind[truth.fake_kind]["flagged"] += int(flagged)
            tp, fn = tp + int(flagged), fn + int(not flagged)
        else:
            fp, tn = fp + int(flagged), tn + int(not flagged)
    return {
        "planted_fakes": tp + fn,
        "planted_real": fp + tn,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "real_flagged_rate": round(fp / (fp + tn), 4) if fp + tn else None,
        "recall_by_kind": {k: round(v["flagged"] / v["planted"], 4) for k, v in sorted(by_kind.items())},
    }


def _unsealed_evidence(store: Store, campaign_id: int) -> dict[int, tuple[bool, bool]]:
    """Evidence records of the campaign that have no seal yet (an interrupted run's), each with
    (has its "analysed" custody event, has its "captured" event): what is left to do for it.
    The events are each step's last write, so an event present means that step is complete."""
    from sqlmodel import select

    from storage import models as m

    with store.session() as s:
        sealed = select(m.Seal.evidence_id)
        ids = list(s.exec(select(m.Evidence.id).where(
            m.Evidence.campaign_id == campaign_id, m.Evidence.id.not_in(sealed))).all())  # type: ignore[union-attr]
        if not ids:
            return {}
        done = set(s.exec(select(m.CustodyEvent.evidence_id, m.CustodyEvent.action).where(
            m.CustodyEvent.evidence_id.in_(ids), m.CustodyEvent.action.in_(("analysed", "captured")))).all())  # type: ignore[union-attr]
    return {ev_id: ((ev_id, "analysed") in done, (ev_id, "captured") in done) for ev_id in ids}


def _utc_in(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


def _with_source(post: PostRecord, source: str) -> PostRecord:
    return post if post.source == source else replace(post, source=source)


def _root_cause(exc: BaseException) -> str:
    """Ray wraps a stage's exception; investigators want the innermost message."""
    cause = getattr(exc, "cause", None) or exc.__cause__
    while cause is not None and (getattr(cause, "cause", None) or cause.__cause__) is not None:
        cause = getattr(cause, "cause", None) or cause.__cause__
    text = str(cause or exc).strip().splitlines()
    return text[-1][:300] if text else type(exc).__name__
