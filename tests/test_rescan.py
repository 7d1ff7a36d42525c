"""`deepwatch rescan`: a model over every stored image, on real Ray actors, resumable and idempotent."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("transformers")

from detectors.base import Detection  # noqa: E402
from orchestrator.rescan import check_model, done_shas, write_detections  # noqa: E402
from storage.blobs import BlobStore  # noqa: E402
from storage.db import Store  # noqa: E402
from tests.test_classifier import make_tiny_vit  # noqa: E402


def jpeg(seed: int, size: tuple[int, int] = (96, 72)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def add_media(store: Store, blobs: BlobStore | None, data: bytes, kind: str = "image") -> str:
    import hashlib

    sha = blobs.put(data) if blobs is not None else hashlib.sha256(data).hexdigest()
    store.upsert_media(sha256=sha, kind=kind, mime="image/jpeg" if kind == "image" else "video/mp4", size=len(data))
    return sha


def test_writes_are_idempotent_by_natural_key(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    sha = add_media(store, None, b"x" * 10)
    det = Detection(detector="hf-classifier", version="1", outcome="fake", score=0.9, threshold=0.5,
                    model_id="/m", weights_digest="ab" * 32, details={"threshold": np.float32(0.5)})
    assert write_detections(store, [(sha, det)]) == 1
    assert write_detections(store, [(sha, det)]) == 0  # the same key again: nothing new
    assert done_shas(store, "ab" * 32) == {sha}
    assert done_shas(store, "cd" * 32) == set()  # other weights: not done
    assert store.get_media(sha).verdict is None  # a rescan never touches the fused verdict
    with pytest.raises(ValueError, match="does not exist"):
        check_model(str(tmp_path / "missing-model"))
    assert check_model(str(tmp_path)) == str(tmp_path)
    assert check_model("org/hub-model") == "org/hub-model"  # a hub id is the loader's business
    store.close()


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    from orchestrator import wiring

    wiring.shutdown_ray()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_rescan_scores_every_image_once_and_resumes(local_ray, tmp_path, monkeypatch):
    from sqlmodel import select
    from typer.testing import CliRunner

    from orchestrator import cli_rescan  # noqa: F401  (registers `rescan` on the app)
    from detectors.classifier import weights_digest
    from orchestrator.cli import app
    from orchestrator.rescan import rescan
    from storage import models as m

    model = str(make_tiny_vit(tmp_path / "vit"))
    (tmp_path / "vit" / "calibration.json").write_text(json.dumps({
        "threshold": 0.42, "target_fpr": 0.02, "fpr_at_threshold": 0.019, "tpr_at_threshold": 0.8,
        "eval_set": "test", "created": "2026-11-28T00:00:00+00:00"}))
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store, blobs = Store(db), BlobStore(tmp_path / "blobs")
    good = [add_media(store, blobs, jpeg(i)) for i in range(6)]
    corrupt = add_media(store, blobs, jpeg(99)[:200])  # stored, but cut short
    add_media(store, blobs, b"\x00\x00\x00\x18ftypmp42 not really", kind="video")  # not an image: not rescanned
    lost = add_media(store, None, jpeg(50))  # a media row whose blob is gone
    kwargs = dict(model=model, batch_size=4, device="cpu", num_cpus=1)
    # A campaign scored one item with the same weights loaded from another path: that counts.
    digest = weights_digest(tmp_path / "vit")
    write_detections(store, [(good[0], Detection(detector="hf-classifier", version="1", outcome="real", score=0.1,
                                                 threshold=0.5, model_id="models/vit", weights_digest=digest))])

    first = rescan(store, str(tmp_path / "blobs"), limit=3, **kwargs)  # a run cut short
    assert first.images == 8 and first.already_done == 1 and first.weights_digest == digest
    assert first.written + first.failed == 3

    second = rescan(store, str(tmp_path / "blobs"), **kwargs)
    assert second.already_done == 1 + first.written
    assert second.failed == 1 and next(iter(second.failures)).startswith(f"blob {lost} unreadable")
    assert first.written + second.written == 6 and first.errors + second.errors == 1

    key = f"{model}@{digest}"
    with store.session() as s:
        rows = s.exec(select(m.Detection)).all()
    assert sorted(r.media_sha256 for r in rows) == sorted(good + [corrupt])  # once each
    assert {r.model_key for r in rows} == {key, f"models/vit@{digest}"}
    by_sha = {r.media_sha256: r for r in rows}
    assert by_sha[corrupt].outcome == "error" and by_sha[corrupt].reasons == ["corrupt image: truncated"]
    for sha in good[1:]:
        row = by_sha[sha]
        assert row.outcome in ("fake", "real") and row.threshold == 0.42
        assert row.details["threshold_source"] == "calibration" and row.details["calibrated_fpr"] == 0.02
    assert all(store.get_media(sha).verdict is None for sha in good)

    blobs.put(jpeg(50))  # the lost blob is back: the next run does just that one
    runner = CliRunner()
    result = runner.invoke(app, ["rescan", "--model", model, "--db", db, "--blobs", str(tmp_path / "blobs"),
                                 "--batch-size", "4", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["already_done"], report["scored"] + report["errors"], report["failed"]) == (7, 1, 0)
    assert report["threshold"] == 0.42 and report["threshold_source"] == "calibration"

    assert report["references"]["media"] == 0  # an empty reference library: nothing read

    # An original registered later: the next rescan compares the stored items with it.
    from storage.references import ReferenceLibrary

    ReferenceLibrary(store, blobs).add(jpeg(50), owner="NEC press office", source_url="https://nec.example/p/50")
    again = runner.invoke(app, ["rescan", "--model", model, "--db", db, "--blobs", str(tmp_path / "blobs"), "--json"])
    assert again.exit_code == 0 and json.loads(again.output)["already_done"] == 8
    refs = json.loads(again.output)["references"]
    assert refs["matched"] >= 1 and refs["authentic"] >= 1 and refs["altered"] == 0, refs
    missing = runner.invoke(app, ["rescan", "--model", str(tmp_path / "nope"), "--db", db])
    assert missing.exit_code == 1 and "does not exist" in " ".join(missing.output.split())
    store.close()
