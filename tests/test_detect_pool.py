"""The detector pool: the dynamic batcher in process, then real Ray actors on a local Ray (CPU)."""
from __future__ import annotations

import asyncio
import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("transformers")

from orchestrator.detect_pool import DetectWorker, PoolItem, gpu_share  # noqa: E402
from tests.test_classifier import make_tiny_vit  # noqa: E402


def jpeg(seed: int, size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(buf, "JPEG", quality=85)
    return buf.getvalue()


SIZES = [(64, 48), (640, 480), (33, 90), (120, 120), (300, 200)]
CORRUPT = jpeg(99, (200, 150))[:250]  # a JPEG cut short


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(make_tiny_vit(tmp_path_factory.mktemp("pool") / "vit"))


def reference_scores(model: str, blobs: list[bytes]) -> list[float]:
    from detectors.base import MediaInput
    from detectors.classifier import HFImageClassifier

    clf = HFImageClassifier(model, device="cpu")
    return [d.score for d in clf.detect_batch([MediaInput(str(i), "image", b) for i, b in enumerate(blobs)])]


def test_concurrent_calls_are_merged_into_model_batches(tiny_model):
    worker = DetectWorker(tiny_model, device="cpu", max_batch=8, max_wait_ms=50)
    assert worker.stats.warmup_s > 0
    calls = [[PoolItem(f"{c}-{i}", jpeg(10 * c + i, SIZES[i % len(SIZES)])) for i in range(n)]
             for c, n in enumerate([1, 3, 2, 5, 1])]  # 12 items in calls of mixed sizes
    calls[2][1] = PoolItem("2-1", CORRUPT)

    async def run_all():
        return await asyncio.gather(*(worker.detect(call) for call in calls))

    answers = asyncio.run(run_all())
    for call, answer in zip(calls, answers):
        assert [r.key for r in answer] == [item.key for item in call]  # each call its own, in order
    flat = [r for answer in answers for r in answer]
    broken = next(r for r in flat if r.key == "2-1")
    assert broken.detection.outcome == "error" and broken.detection.reasons == ["corrupt image: truncated"]
    good = [(r, item) for call, answer in zip(calls, answers) for r, item in zip(answer, call) if r.key != "2-1"]
    assert all(r.detection.outcome in ("fake", "real") and r.error is None for r, _ in good)
    np.testing.assert_allclose([r.detection.score for r, _ in good],
                               reference_scores(tiny_model, [item.data for _, item in good]), atol=1e-5)
    # 12 items arriving together, batches of at most 8: two model batches, not five calls' worth.
    assert worker.stats.batches == 2 and worker.stats.largest_batch == 8 and worker.stats.items == 12


def test_items_by_sha256_are_read_from_the_blob_store(tiny_model, tmp_path):
    from storage.blobs import BlobStore

    blobs = BlobStore(tmp_path / "blobs")
    sha = blobs.put(jpeg(1, (80, 60)))
    worker = DetectWorker(tiny_model, device="cpu", max_batch=4, blobs_root=str(tmp_path / "blobs"), warmup=False)
    missing = "0" * 64
    ok, gone, neither = asyncio.run(worker.detect([PoolItem(sha, sha256=sha), PoolItem("gone", sha256=missing),
                                                   PoolItem("neither")]))
    assert ok.detection.outcome in ("fake", "real")
    assert gone.detection is None and gone.error.startswith(f"blob {missing} unreadable")
    assert neither.error == "item has neither bytes nor a sha256 in a blob store the pool can read"


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs an NVIDIA GPU")
def test_worker_on_the_gpu_batches_and_agrees_with_the_cpu(tiny_model):
    worker = DetectWorker(tiny_model, device="cuda", max_batch=16, max_wait_ms=20)  # bf16, nvJPEG
    assert worker.classifier.describe()["decode"] == "gpu"
    blobs = [jpeg(i, SIZES[i % len(SIZES)]) for i in range(40)]
    blobs[7] = CORRUPT

    async def run_all():
        return await asyncio.gather(*(worker.detect([PoolItem(str(i), blobs[i]) for i in range(s, s + 4)])
                                      for s in range(0, 40, 4)))

    results = [r for answer in asyncio.run(run_all()) for r in answer]
    assert [r.key for r in results] == [str(i) for i in range(40)]
    assert results[7].detection.reasons == ["corrupt image: truncated"]
    good = [i for i in range(40) if i != 7]
    np.testing.assert_allclose([results[i].detection.score for i in good],
                               reference_scores(tiny_model, [blobs[i] for i in good]), atol=0.03)
    assert worker.stats.largest_batch > 4  # calls of 4 were merged


def test_gpu_share_per_actor():
    assert gpu_share(False, None, 2, 8) == 0.0  # no GPU for detectors: CPU actors
    assert gpu_share(True, None, 4, 1) == 0.25  # four actors share the one GPU
    assert gpu_share(True, None, 2, 8) == 1.0  # at most a whole GPU each
    assert gpu_share(True, 0.5, 2, 8) == 0.5
    assert gpu_share(True, None, 3, 0) == 1.0  # autoscaling cluster, GPU nodes not up yet
    with pytest.raises(ValueError, match="gpus_per_actor must be in"):
        gpu_share(True, 1.5, 1, 1)


def test_bad_settings_are_refused(tiny_model):
    with pytest.raises(ValueError, match="max_batch must be at least 1"):
        DetectWorker(tiny_model, device="cpu", max_batch=0, warmup=False)
    with pytest.raises(ValueError, match="max_wait_ms must be >= 0"):
        DetectWorker(tiny_model, device="cpu", max_wait_ms=-1, warmup=False)


# ------------------------------------------------------------------------------- on local Ray


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    from orchestrator import wiring

    wiring.shutdown_ray()  # a Ray left connected by another test module would be the wrong one
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_pool_scores_mixed_batches_with_a_corrupt_item_and_bounds_in_flight_work(local_ray, tiny_model):
    from orchestrator.detect_pool import DetectPool

    pool = DetectPool({"model": tiny_model, "device": "cpu", "max_batch": 8, "max_wait_ms": 20},
                      actors=2, num_cpus=1, max_inflight=12, chunk=3)
    try:
        assert pool.describe()["model_id"] == tiny_model and "num_gpus" not in pool.options  # no GPU here
        blobs = [jpeg(i, SIZES[i % len(SIZES)]) for i in range(40)]
        blobs[17] = CORRUPT
        items = [PoolItem(str(i), b) for i, b in enumerate(blobs)]

        pulled = 0
        most_outstanding = 0
        received = 0

        def producer():
            nonlocal pulled
            for item in items:
                pulled += 1
                yield item

        results = []
        for result in pool.map(producer()):
            received += 1
            most_outstanding = max(most_outstanding, pulled - received + 1)
            results.append(result)
        assert most_outstanding <= 12  # backpressure: never more than max_inflight read ahead
        assert sorted(int(r.key) for r in results) == list(range(40))  # exactly one result each
        by_key = {r.key: r for r in results}
        assert by_key["17"].detection.outcome == "error"
        assert by_key["17"].detection.reasons == ["corrupt image: truncated"]
        good = [i for i in range(40) if i != 17]
        np.testing.assert_allclose([by_key[str(i)].detection.score for i in good],
                                   reference_scores(tiny_model, [blobs[i] for i in good]), atol=1e-5)
        ordered = pool.run(items[:5])
        assert [r.key for r in ordered] == ["0", "1", "2", "3", "4"]
        assert sum(s["items"] for s in pool.stats()) == 45
    finally:
        pool.close()


@pytest.mark.slow
def test_an_actor_killed_mid_batch_loses_nothing(local_ray, tiny_model):
    from orchestrator.detect_pool import DetectPool

    ray = local_ray
    # Big PNGs (no draft decoding for them) so that the work takes long enough to be caught.
    blobs = []
    for i in range(48):
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (1200, 1600, 3), dtype=np.uint8)).save(buf, "PNG", compress_level=1)
        blobs.append(buf.getvalue())
    pool = DetectPool({"model": tiny_model, "device": "cpu", "max_batch": 16, "max_wait_ms": 50, "decode": "cpu"},
                      actors=1, num_cpus=1, max_inflight=48, chunk=16)
    try:
        results: list = []
        runner = threading.Thread(target=lambda: results.extend(pool.map(PoolItem(str(i), b) for i, b in enumerate(blobs))))
        runner.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (0 < pool.stats()[0]["items"] < 48):
            time.sleep(0.01)
        stats = pool.stats()[0]
        assert 0 < stats["items"] < stats["accepted"], stats  # some done, more in the worker
        ray.kill(pool.actors[0], no_restart=False)
        runner.join(timeout=240)
        assert not runner.is_alive()
        assert pool.retries >= 1
        assert sorted(int(r.key) for r in results) == list(range(48))  # each item exactly once
        assert all(r.error is None and r.detection.outcome in ("fake", "real") for r in results), {r.error for r in results}
        assert max(r.attempts for r in results) >= 2
    finally:
        pool.close()
