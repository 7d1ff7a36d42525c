"""A pool of model-serving workers: Ray actors that each hold one classifier (on a GPU share
when the cluster has GPUs), merge concurrent requests into model batches, and never lose work.

Two halves:

- `DetectWorker` (no Ray): one loaded `HFImageClassifier`, warmed up at start (the first CUDA
  batch pays for kernel selection and memory pools), and an asyncio batcher. Each call hands
  in a few items; the batcher gathers items from all concurrent calls into batches of up to
  `max_batch`, waiting at most `max_wait_ms` after the first item for more, decodes the next
  batch while the model runs the current one, and answers each call with its own results.
  Its queue is bounded (`max_queued` items), so a caller that outruns the model waits.
  bench/detect.py drives this class directly, in process, on machines without Ray.
- `DetectPool` (the Ray half, imported lazily): N `DetectWorker` actors, each asking for
  `gpus_per_actor` of a GPU when one exists (fractions let several share one). `map()` keeps
  at most `max_inflight` items outstanding across the pool and reads its input only as results
  come back: that is the backpressure that keeps fast producers (crawlers, a rescan over
  millions of rows) from filling memory. A call whose actor dies is sent again (to whichever
  actor is least loaded; Ray restarts the dead one) up to `max_attempts` times; every item
  gets exactly one `PoolResult`.

Items carry bytes or a sha256 that the actor reads from the blob store (on a cluster the blob
store is shared and bytes need not travel through Ray).
"""
from __future__ import annotations

import asyncio
import io
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from detectors.base import Detection, MediaInput

DEFAULT_MAX_BATCH = 32
DEFAULT_MAX_WAIT_MS = 5.0
_UNAVAILABLE_PAUSE_S = 0.25  # how long an actor that answered "restarting" is left alone
_MAX_UNAVAILABLE = 2400  # 10 minutes of "restarting" answers at that pace: a model load is slow


@dataclass(frozen=True)
class PoolItem:
    """One image to score: its bytes, or the sha256 of a blob in the pool's blob store."""

    key: str  # the caller's name for it (a sha256, a path); results carry it back
    data: bytes | None = None
    sha256: str | None = None
    kind: str = "image"


@dataclass
class PoolResult:
    """The answer for one item: a Detection (outcome "error" when the detector could not read
    the item: a property of the item), or `error` when the pool could not run it at all (blob
    missing, actor died too often, model crashed): a property of the run, worth retrying.
    `attempts`: how many times its call was sent (more than 1 after an actor died or restarted)."""

    key: str
    detection: Detection | None = None
    error: str | None = None
    attempts: int = 1


@dataclass
class _Waiting:
    item: PoolItem
    future: asyncio.Future


@dataclass
class WorkerStats:
    batches: int = 0
    items: int = 0  # items that went through a batch
    accepted: int = 0  # items handed in by calls (accepted - items: waiting in the worker now)
    largest_batch: int = 0
    in_model: int = 0  # items in the batch the model is running now
    warmup_s: float = 0.0
    batch_sizes: Counter = field(default_factory=Counter)


def warmup_jpegs(n: int, size: tuple[int, int] = (640, 480)) -> list[bytes]:
    """Synthetic photos-sized JPEGs for warming a model up (no data needed)."""
    import numpy as np
    from PIL import Image

    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        rgb = np.stack([(x + 7 * i) % 256, (y + 13 * i) % 256, (x ^ y) % 256], axis=-1).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


class DetectWorker:
    """One classifier behind a dynamic batcher. All public methods are coroutines, so that Ray
    runs it as an async actor: calls arrive concurrently and wait on the batcher, not in line."""

    def __init__(
        self,
        model: str,
        *,
        fake_label: str = "fake",
        threshold: float | None = None,
        device: str = "auto",
        dtype: str = "auto",
        decode: str = "auto",
        revision: str | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        max_queued: int | None = None,
        blobs_root: str | None = None,
        warmup: bool = True,
    ):
        from detectors.classifier import HFImageClassifier

        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.classifier = HFImageClassifier(
            model, fake_label=fake_label, threshold=threshold, batch_size=max_batch, device=device,
            revision=revision, dtype=dtype, decode=decode,
        )
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queued = max_queued or 4 * max_batch
        self.blobs = None
        if blobs_root is not None:
            from storage.blobs import open_blobs

            self.blobs = open_blobs(blobs_root)
        self.stats = WorkerStats()
        # One thread runs the model (CUDA work from one thread keeps kernel order plain), one
        # decodes the next batch meanwhile; the event loop only moves items between them.
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._prepare_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")
        self._queue: asyncio.Queue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        if warmup:
            started = time.perf_counter()
            # On a GPU the first batches pay for kernel choice, cuDNN/cuBLAS workspaces and the
            # caching allocator: two full-ish batches. On a CPU one small batch loads the code.
            cuda = self.classifier.device.type == "cuda"
            items = [MediaInput(str(i), "image", b) for i, b in enumerate(warmup_jpegs(min(max_batch, 8 if cuda else 2)))]
            for _ in range(2 if cuda else 1):
                self.classifier.detect_batch(items)
            self.stats.warmup_s = time.perf_counter() - started

    # -- calls --------------------------------------------------------------------------------

    async def ready(self) -> dict[str, Any]:
        """The loaded model's identity (answers once the constructor, warm-up included, is done)."""
        return {**self.classifier.describe(), "warmup_s": round(self.stats.warmup_s, 3),
                "max_batch": self.max_batch, "max_wait_ms": self.max_wait_s * 1000}

    async def detect(self, items: list[PoolItem]) -> list[PoolResult]:
        """One PoolResult per item, in order, once the batches holding them have run."""
        self._start()
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        waiting = [_Waiting(item, loop.create_future()) for item in items]
        self.stats.accepted += len(items)
        for w in waiting:
            await self._queue.put(w)  # waits when max_queued items are already queued
        return list(await asyncio.gather(*(w.future for w in waiting)))

    async def get_stats(self) -> dict[str, Any]:
        s = self.stats
        return {"batches": s.batches, "items": s.items, "accepted": s.accepted, "largest_batch": s.largest_batch,
                "in_model": s.in_model, "warmup_s": s.warmup_s, "batch_sizes": dict(s.batch_sizes)}

    # -- the batcher ----------------------------------------------------------------------------

    def _start(self) -> None:
        # One batcher per event loop: Ray's actor loop lives as long as the actor; in-process
        # callers (bench/detect.py) may run several loops one after another.
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._loop = loop
        self._queue = asyncio.Queue(maxsize=self.max_queued)
        prepared: asyncio.Queue = asyncio.Queue(maxsize=1)  # one batch decoded ahead, no more
        self._tasks = [asyncio.create_task(self._gather_and_prepare(prepared)),
                       asyncio.create_task(self._run_model(prepared))]

    async def _next_batch(self) -> list[_Waiting]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # Not asyncio.wait_for(queue.get()): on Python 3.11 an item that arrives as the
            # timeout fires can be lost with the cancelled get.
            getter = asyncio.ensure_future(self._queue.get())
            await asyncio.wait({getter}, timeout=left)
            if not getter.done():
                getter.cancel()
            try:
                batch.append(await getter)
            except asyncio.CancelledError:
                break
        return batch

    async def _gather_and_prepare(self, prepared: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            try:
                inputs, missing = await loop.run_in_executor(self._prepare_thread, self._inputs, batch)
                decoded = await loop.run_in_executor(self._prepare_thread, self.classifier.prepare, inputs)
            except Exception as exc:  # the decoder itself broke (not a bad item): fail this batch only
                self._fail(batch, f"decoding failed: {type(exc).__name__}: {exc}")
                continue
            await prepared.put((batch, missing, decoded))

    async def _run_model(self, prepared: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch, missing, decoded = await prepared.get()
            self.stats.in_model = len(batch)
            failure = None
            try:
                detections = await loop.run_in_executor(self._model_thread, self.classifier.score_prepared, decoded)
            except Exception as exc:  # CUDA out of memory and the like: these items, not the worker
                detections, failure = [], f"model failed: {type(exc).__name__}: {exc}"
            finally:
                self.stats.in_model = 0
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            self.stats.batch_sizes[len(batch)] += 1
            found = iter(detections)  # one per item that had bytes, in batch order
            for i, w in enumerate(batch):
                if i in missing:
                    result = PoolResult(w.item.key, error=missing[i])
                elif failure is not None:
                    result = PoolResult(w.item.key, error=failure)
                else:
                    result = PoolResult(w.item.key, next(found))
                if not w.future.done():  # a caller that gave up has a cancelled future
                    w.future.set_result(result)

    def _inputs(self, batch: list[_Waiting]) -> tuple[list[MediaInput], dict[int, str]]:
        """MediaInputs for the items whose bytes are at hand; reasons for the others."""
        inputs: list[MediaInput] = []
        missing: dict[int, str] = {}
        for i, w in enumerate(batch):
            item = w.item
            data = item.data
            if data is None:
                if item.sha256 is None or self.blobs is None:
                    missing[i] = "item has neither bytes nor a sha256 in a blob store the pool can read"
                    continue
                try:
                    data = self.blobs.get(item.sha256)
                except Exception as exc:  # FileNotFoundError, an S3 error...
                    missing[i] = f"blob {item.sha256} unreadable: {type(exc).__name__}: {exc}"
                    continue
            inputs.append(MediaInput(item.sha256 or item.key, item.kind, data))  # type: ignore[arg-type]
        return inputs, missing

    @staticmethod
    def _fail(batch: list[_Waiting], reason: str) -> None:
        for w in batch:
            if not w.future.done():
                w.future.set_result(PoolResult(w.item.key, error=reason))


# ------------------------------------------------------------------------------- the Ray pool


@dataclass
class _Call:
    """One chunk of items on its way through the pool, and what happened to it so far."""

    items: list[PoolItem]
    sends: int = 0
    deaths: int = 0  # actor deaths while it was in flight
    unavailable: int = 0  # "actor restarting" answers


class PoolError(RuntimeError):
    """The pool could not start (the model did not load on an actor, no resources...)."""


def gpu_share(detector_gpu: bool, requested: float | None, actors: int, cluster_gpus: float) -> float:
    """The GPU fraction each actor asks for: none when detectors get no GPU (the same code then
    runs on CPUs); else what was asked; else the cluster's GPUs spread over the actors, at most
    one each (fractions put several actors on one GPU: a small model rarely fills an H200); a
    whole one when no GPU node is up yet (an autoscaling cluster starts one for the request)."""
    if not detector_gpu:
        return 0.0
    if requested is not None:
        if not 0.0 < requested <= 1.0:
            raise ValueError(f"gpus_per_actor must be in (0, 1], got {requested}")
        return requested
    if cluster_gpus <= 0:
        return 1.0
    return min(1.0, cluster_gpus / actors)


class DetectPool:
    """`actors` DetectWorker actors and the bounded, retrying dispatch in front of them."""

    def __init__(
        self,
        worker_kwargs: dict[str, Any],
        *,
        actors: int = 1,
        gpus_per_actor: float | None = None,
        num_cpus: float = 1.0,
        max_inflight: int = 256,
        chunk: int | None = None,
        max_attempts: int = 3,
        max_restarts: int = 3,
        start_timeout_s: float = 600.0,
    ):
        import ray

        from orchestrator import wiring

        if actors < 1:
            raise ValueError(f"actors must be at least 1, got {actors}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        max_batch = int(worker_kwargs.get("max_batch", DEFAULT_MAX_BATCH))
        # Calls of a quarter batch: few enough Ray calls per image, and several callers'
        # calls still fill one model batch.
        self.chunk = chunk or max(1, max_batch // 4)
        self.max_inflight = max(max_inflight, self.chunk)
        self.max_attempts = max_attempts
        self.retries = 0  # calls sent again after their actor died
        placement = wiring.current_placement()
        share = gpu_share(placement.detector_gpu, gpus_per_actor, actors, ray.cluster_resources().get("GPU", 0))
        options: dict[str, Any] = {"num_cpus": num_cpus, "max_restarts": max_restarts, "max_task_retries": 0}
        if share > 0:
            options["num_gpus"] = share
        if placement.detector_nodes:
            options["resources"] = {wiring.DETECTOR_RESOURCE: share or 1.0}
        self.options = options
        remote_cls = ray.remote(DetectWorker).options(**options)
        self.actors = [remote_cls.remote(**worker_kwargs) for _ in range(actors)]
        try:
            self.described = ray.get([a.ready.remote() for a in self.actors], timeout=start_timeout_s)
        except Exception as exc:
            self.close()
            raise PoolError(f"the detector pool could not start: {_root_cause(exc)}") from None
        self._load: Counter[int] = Counter()  # items in flight per actor
        self._cooling: dict[int, float] = {}  # actor -> monotonic time before which it is restarting

    def describe(self) -> dict[str, Any]:
        return {**self.described[0], "actors": len(self.actors), "options": self.options}

    def stats(self) -> list[dict[str, Any]]:
        import ray

        return ray.get([a.get_stats.remote() for a in self.actors])

    def _send(self, call: "_Call", pending: dict) -> None:
        if not self.actors:
            raise PoolError("the detector pool is closed")
        now = time.monotonic()
        ready = [k for k in range(len(self.actors)) if self._cooling.get(k, 0) <= now]
        if not ready:  # every actor is restarting: wait for the first to be back
            time.sleep(max(0.0, min(self._cooling.values()) - now))
            ready = list(range(len(self.actors)))
        i = min(ready, key=lambda k: self._load[k])
        self._load[i] += len(call.items)
        call.sends += 1
        pending[self.actors[i].detect.remote(call.items)] = (i, call)

    def map(self, items: Iterable[PoolItem]) -> Iterator[PoolResult]:
        """PoolResults as they finish (not in input order), one per item, never more than
        `max_inflight` items outstanding: `items` is read only as fast as results drain."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

        source = iter(items)
        pending: dict[Any, tuple[int, _Call]] = {}
        in_flight = 0
        exhausted = False
        while True:
            while not exhausted and in_flight + self.chunk <= self.max_inflight:
                chunk = [item for _, item in zip(range(self.chunk), source)]
                if not chunk:
                    exhausted = True
                    break
                self._send(_Call(chunk), pending)
                in_flight += len(chunk)
            if not pending:
                return
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            actor, call = pending.pop(ref)
            self._load[actor] -= len(call.items)
            try:
                results = ray.get(ref)
            except ActorUnavailableError as exc:
                # The actor is restarting or briefly unreachable: a call in flight when it went
                # down, or one sent while it restarts. Send it again, to another actor if one is
                # up; a restart that never succeeds ends as ActorDiedError below.
                self._cooling[actor] = time.monotonic() + _UNAVAILABLE_PAUSE_S
                call.unavailable += 1
                if call.unavailable <= _MAX_UNAVAILABLE:
                    self.retries += 1
                    self._send(call, pending)
                    continue
                results = [PoolResult(it.key, error=f"detector actor unavailable: {_root_cause(exc)}") for it in call.items]
            except RayActorError as exc:
                # The actor died with these items (killed, node lost, out of memory); Ray
                # restarts it, and the items go to whichever actor is free first. An item
                # that kills every actor it meets stops after max_attempts deaths.
                call.deaths += 1
                if call.deaths < self.max_attempts:
                    self.retries += 1
                    self._send(call, pending)
                    continue
                results = [PoolResult(it.key, error=f"detector actor died {call.deaths} times: {_root_cause(exc)}")
                           for it in call.items]
            except RayTaskError as exc:  # a bug in the worker: the same call would fail again
                results = [PoolResult(it.key, error=f"detector failed: {_root_cause(exc)}") for it in call.items]
            in_flight -= len(call.items)
            for result in results:
                result.attempts = call.sends
                yield result

    def run(self, items: list[PoolItem]) -> list[PoolResult]:
        """One PoolResult per item, in input order (keys must be unique)."""
        keys = [item.key for item in items]
        if len(set(keys)) != len(keys):
            raise ValueError("item keys must be unique within one run() call")
        by_key = {r.key: r for r in self.map(items)}
        return [by_key[k] for k in keys]

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []


def _root_cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"
