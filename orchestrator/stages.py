"""The pipeline's stages as plain classes: each can be unit-tested on one batch without Ray.

Ray turns them into actors in `orchestrator/wiring.py`; nothing here imports Ray. Stages talk
through the blob store (a shared path or an S3 bucket every worker can reach, see
`storage.blobs.open_blobs`) and small picklable records, so media bytes never travel through
the Ray object store.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.base import Drop, MediaRef, Page
from storage.blobs import open_blobs


@dataclass(frozen=True)
class FetchPolicySpec:
    """What a worker needs to build its Fetcher (kept plain so it pickles across Ray)."""

    allow_networks: tuple[str, ...] = ()
    contact_url: str = ""
    timeout_s: float = 30.0
    max_bytes: int = 200_000_000
    respect_robots: bool = True
    per_host_concurrency: int | None = 2
    per_host_rps: float | None = None  # this worker's share of the campaign's rate

    def build(self) -> Any:
        from agents.fetch import FetchPolicy, Fetcher, default_user_agent

        kwargs: dict[str, Any] = dict(
            allow_networks=self.allow_networks, timeout_s=self.timeout_s, max_bytes=self.max_bytes,
            respect_robots=self.respect_robots, per_host_concurrency=self.per_host_concurrency or None,
            per_host_rps=self.per_host_rps or None,
        )
        if self.contact_url:
            kwargs["user_agent"] = default_user_agent(self.contact_url)
        return Fetcher(FetchPolicy(**kwargs))


@dataclass(frozen=True)
class MediaRecord:
    """A fetched, probed media item: what the dedup stage and the database need."""

    url: str
    sha256: str
    kind: str
    mime: str
    size: int
    width: int | None
    height: int | None
    duration_s: float | None
    phash: str | None
    frame_hashes: tuple[str, ...]
    pdq: str | None = None
    pdq_quality: int | None = None
    vpdq: tuple[tuple, ...] = ()  # videos: (t_s, quality, PDQ hex[, 1 if bar-cropped]) per frame (detectors.vpdq.frames_to_rows)
    region: Any = None  # images: detectors.regions.RegionHashes of the picture inside, or None


@dataclass
class PageResult:
    source: str
    term: str
    page: Page | None
    drops: list[Drop] = field(default_factory=list)
    error: str | None = None  # the source failed; the campaign goes on with the others


class CrawlStage:
    """One source: its agent, asked page by page."""

    def __init__(self, source_name: str, agent_type: str, params: dict[str, Any], policy: FetchPolicySpec, blobs_root: str):
        from agents.registry import build_agent

        self.source_name = source_name
        self.fetcher = policy.build()
        self.agent = build_agent(agent_type, params, fetcher=self.fetcher, blobs=open_blobs(blobs_root))

    def page(self, term: str, cursor: str | None) -> PageResult:
        from agents.errors import SourceError

        try:
            page = self.agent.fetch_page(term, cursor)
        except SourceError as exc:
            return PageResult(self.source_name, term, None, error=str(exc))
        drops = list(getattr(getattr(self.agent, "stats", None), "drops", []) or [])
        if drops:
            self.agent.stats.drops.clear()
        return PageResult(self.source_name, term, page, drops=drops)

    def close(self) -> None:
        self.agent.close()
        self.fetcher.close()


class FetchStage:
    """Fetch media bytes into the blob store and probe them (type, size, perceptual hashes)."""

    def __init__(self, policy: FetchPolicySpec, blobs_root: str):
        self.fetcher = policy.build()
        self.blobs = open_blobs(blobs_root)

    def run(self, refs: list[MediaRef]) -> list[MediaRecord | Drop]:
        from detectors.hashing import MediaDecodeError, probe_media

        out: list[MediaRecord | Drop] = []
        for ref in refs:
            if ref.resolver is not None:
                resolved = self._resolve(ref)
                if isinstance(resolved, Drop):
                    out.append(resolved)
                    continue
                # The direct media URL is fetched under the same policy; the record keeps the
                # page URL the post pointed at, which is what its sighting is about.
                result = self.fetcher.fetch_media(resolved)
                if isinstance(result, Drop):
                    result = Drop(result.stage, result.reason, ref.url, f"{result.detail} (media at {resolved.url})")
            else:
                result = self.fetcher.fetch_media(ref)
            if isinstance(result, Drop):
                out.append(result)
                continue
            data, declared_mime, _final_url = result
            try:
                info = probe_media(data, declared_mime)
            except MediaDecodeError as exc:
                out.append(Drop("probe", exc.reason, ref.url, f"{exc}; declared {declared_mime}"))
                continue
            pdq, pdq_quality, region = _image_hashes(data) if info.kind == "image" else (None, None, None)
            vpdq = _vpdq_or_empty(data) if info.kind == "video" else ()
            sha = self.blobs.put(data)
            out.append(
                MediaRecord(
                    url=ref.url,
                    sha256=sha,
                    kind=info.kind,
                    mime=info.mime,
                    size=len(data),
                    width=info.width,
                    height=info.height,
                    duration_s=info.duration_s,
                    phash=info.phash,
                    frame_hashes=tuple(info.frame_hashes),
                    pdq=pdq,
                    pdq_quality=pdq_quality,
                    vpdq=vpdq,
                    region=region,
                )
            )
        return out

    def _resolve(self, ref: MediaRef) -> MediaRef | Drop:
        if ref.resolver == "ytdlp":
            from agents.ytdlp import resolve_media

            return resolve_media(ref, self.fetcher)
        return Drop("fetch", "unknown resolver", ref.url, f"resolver {ref.resolver!r}")

    def close(self) -> None:
        self.fetcher.close()


def _image_hashes(data: bytes) -> tuple[str | None, int | None, Any]:
    """PDQ (for the bank and hash exchange) and the content region's hashes, from one decode; an
    image pHash could read but PDQ cannot stays unhashed."""
    from detectors.hashing import MediaDecodeError
    from detectors.pdq import decode_for_pdq, pdq_from_image
    from detectors.regions import region_hashes

    try:
        img = decode_for_pdq(data)
    except MediaDecodeError:
        return None, None, None
    pdq, quality = pdq_from_image(img)
    return pdq, quality, region_hashes(img)


def _vpdq_or_empty(data: bytes) -> tuple[tuple[float, int, str], ...]:
    """vPDQ of every frame at 64x64 (detectors.vpdq_sampling: re-timed and trimmed copies
    still share frames with the original, and hashing costs less than full-size samples did)."""
    from detectors.hashing import MediaDecodeError
    from detectors.vpdq import frames_to_rows
    from detectors.vpdq_sampling import dense_vpdq

    try:
        return tuple(tuple(row) for row in frames_to_rows(dense_vpdq(data)))
    except MediaDecodeError:
        return ()


class DetectStage:
    """The detector fleet's unit: a loaded DetectionPipeline reading media from the blob store."""

    def __init__(self, pipeline_kwargs: dict[str, Any], blobs_root: str):
        from detectors.pipeline import DetectionPipeline

        self.pipeline = DetectionPipeline(**pipeline_kwargs)
        self.blobs = open_blobs(blobs_root)

    def describe(self) -> list[dict[str, Any]]:
        return self.pipeline.describe()

    def run(self, items: list[tuple[str, str, str]], provenance_only: bool = False) -> list[Any]:
        """items: (sha256, kind, mime). Returns one Analysis per item, in order."""
        from detectors.base import MediaInput

        inputs = [MediaInput(sha256=sha, kind=kind, data=self.blobs.get(sha), mime=mime) for sha, kind, mime in items]  # type: ignore[arg-type]
        return self.pipeline.analyse(inputs, provenance_only=provenance_only)


class CaptureStage:
    """Evidence capture: a real browser opens each flagged post and keeps a full-page screenshot
    and the rendered DOM; then the page and its media are archived as WARC records in a signed
    WACZ (the untouched bytes, response headers and the address they came from)."""

    def __init__(self, blobs_root: str, policy: FetchPolicySpec | None = None, *, operator: str = "deepwatch",
                 archive: bool = True, key_dir: str | None = None, nav_timeout_s: float = 20.0):
        from agents.browser import BrowserAgent

        self.blobs = open_blobs(blobs_root)
        # The browser refuses what the fetcher refuses (issue 16): same allow_networks.
        self.allow_networks = tuple((policy or FetchPolicySpec()).allow_networks)
        self.browser = BrowserAgent("", self.blobs, nav_timeout_s=nav_timeout_s, allow_networks=self.allow_networks)
        self.fetcher = (policy or FetchPolicySpec()).build() if archive else None
        self.operator = operator
        self.key_dir = key_dir

    def run(self, posts: list[tuple[str, list[str]]]) -> list[Any]:
        """posts: (post URL, its media URLs). One (Capture, CaptureRecord | Drop | None) or Drop each."""
        from agents.errors import SourceError

        out: list[Any] = []
        from agents.post_urls import post_url_refusal

        for url, media_urls in posts:
            refusal = post_url_refusal(url, self.allow_networks)  # every agent's post URLs (issue 16)
            if refusal:
                out.append(Drop("capture", "blocked post url", url, refusal))
                continue
            try:
                shot = self.browser.capture(url)
            except SourceError as exc:
                out.append(Drop("capture", "capture failed", url, str(exc)))
                continue
            archived = self._archive(url, media_urls, shot) if self.fetcher else None
            if isinstance(archived, Drop) and "blocked address" in archived.reason:
                # The guarded archive step refused the page: keep nothing the browser saw of it.
                out.append(archived)
                continue
            out.append((shot, archived))
        return out

    def _archive(self, url: str, media_urls: list[str], shot: Any) -> Any:
        from agents.errors import FetchError
        from evidence.capture import capture_post
        from evidence.signing import Signer

        try:
            return capture_post(url, media_urls, self.fetcher, self.blobs, screenshot_png=self.blobs.get(shot.screenshot_sha256),
                                operator=self.operator, signer=Signer.load_or_create(self.key_dir),
                                browser_version=shot.browser_version or None)
        except FetchError as exc:
            return Drop("capture", f"archive failed: {exc.reason}", url, exc.detail)

    def close(self) -> None:
        self.browser.close()
        if self.fetcher is not None:
            self.fetcher.close()
