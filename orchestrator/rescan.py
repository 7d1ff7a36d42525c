"""Re-analysis at scale: one (new) classifier over every stored image, resumable.

`deepwatch rescan --model DIR` lists the image media in the database, skips those that already
have a detection from these weights (detector "hf-classifier" with the same weights digest,
whatever path the model was loaded from: a campaign's earlier run counts), and streams the rest
through the detector pool
(`orchestrator.detect_pool`: Ray actors on GPU shares where the cluster has GPUs, reading
blobs by sha256). Results are written as they come back, a few dozen rows per transaction, so
a rescan that is killed resumes where its last commit ended, and a rerun adds nothing twice
(rows are keyed like `Store.save_analysis` keys them: media, detector, model id + digest).

What is written: one Detection row per image (outcome fake / real, or error with the reason
for a file the model cannot read: a property of the file, so it is not retried). Items the
pool could not run (a blob missing from the store, an actor that died too often) are counted
as failed and not written, so the next run tries them again. A rescan does not change the
media's fused verdicts: campaigns judge, a rescan adds a second opinion alongside.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from detectors.base import Detection

DETECTOR = "hf-classifier"  # HFImageClassifier.name, without importing torch here
_WRITE_EVERY = 64  # rows per transaction: a killed rescan redoes at most this many


@dataclass
class RescanReport:
    model_id: str
    model_revision: str
    weights_digest: str
    threshold: float
    threshold_source: str
    calibrated_fpr: float | None
    images: int = 0  # image media in the database
    already_done: int = 0  # had a detection from this model before the run
    scored: int = 0  # new rows with outcome fake or real
    fake: int = 0
    errors: int = 0  # new rows with outcome error (files the model cannot read)
    failed: int = 0  # not written: retried on the next run
    failures: dict[str, int] = field(default_factory=dict)  # reason -> count, for failed items
    seconds: float = 0.0
    pool: dict[str, Any] = field(default_factory=dict)

    @property
    def written(self) -> int:
        return self.scored + self.errors

    def to_dict(self) -> dict[str, Any]:
        rate = self.written / self.seconds if self.seconds > 0 else None
        return {
            "model_id": self.model_id, "model_revision": self.model_revision, "weights_digest": self.weights_digest,
            "threshold": self.threshold, "threshold_source": self.threshold_source, "calibrated_fpr": self.calibrated_fpr,
            "images": self.images, "already_done": self.already_done, "scored": self.scored, "fake": self.fake,
            "real": self.scored - self.fake, "errors": self.errors, "failed": self.failed, "failures": self.failures,
            "seconds": round(self.seconds, 3), "images_per_s": round(rate, 2) if rate else None, "pool": self.pool,
        }


def model_key(model_id: str, weights_digest: str) -> str:
    """The Detection.model_key `Store.save_analysis` gives a learned detector's rows."""
    return f"{model_id}@{weights_digest}"


def check_model(model: str) -> str:
    """The model as given, once a local folder is known to exist (a misspelt path must not
    fall through to a hub lookup). It is kept as given, like a campaign keeps its spec's
    string, so the rows of both share a model_key."""
    from detectors.classifier import _looks_like_path

    path = Path(model).expanduser()
    if path.is_dir():
        return model
    if path.exists():
        raise ValueError(f"model path {model!r} is a file; give the checkpoint folder")
    if _looks_like_path(model):
        raise ValueError(f"model folder {model!r} does not exist")
    return model


def image_shas(store: Any) -> list[str]:
    from sqlmodel import select

    from storage import models as m

    with store.session() as s:
        return list(s.exec(select(m.Media.sha256).where(m.Media.kind == "image").order_by(m.Media.sha256)).all())


def done_shas(store: Any, weights_digest: str) -> set[str]:
    """Media already scored by these weights, under any model id: the same weights from another
    path (a campaign's relative one, a copy) give the same scores, so they are not redone."""
    from sqlmodel import select

    from storage import models as m

    with store.session() as s:
        rows = s.exec(select(m.Detection.media_sha256).where(
            m.Detection.detector == DETECTOR, m.Detection.weights_digest == weights_digest))
        return set(rows.all())


def write_detections(store: Any, rows: list[tuple[str, Detection]]) -> int:
    """Insert one Detection row per (sha256, result) unless the natural key exists; returns
    how many were new. The columns are the ones `Store.save_analysis` fills, but the media's
    fused verdict is left alone."""
    from sqlalchemy.exc import IntegrityError

    from storage import models as m
    from storage.db import _jsonable

    def row(sha: str, d: Detection) -> Any:
        return m.Detection(
            media_sha256=sha, detector=d.detector, version=d.version,
            model_key=model_key(d.model_id or "", d.weights_digest or "") if d.model_id else "",
            model_id=d.model_id, model_revision=d.model_revision, weights_digest=d.weights_digest,
            outcome=d.outcome, score=d.score, threshold=d.threshold, reasons=list(d.reasons),
            details=_jsonable(d.details),
        )

    with store.session() as s:
        s.add_all([row(sha, d) for sha, d in rows])
        try:
            s.commit()
            return len(rows)
        except IntegrityError:  # another rescan wrote some of them meanwhile: one by one
            s.rollback()
    created = 0
    for sha, d in rows:
        with store.session() as s:
            s.add(row(sha, d))
            try:
                s.commit()
                created += 1
            except IntegrityError:
                s.rollback()
    return created


def rescan(
    store: Any,
    blobs_root: str,
    *,
    model: str,
    fake_label: str = "fake",
    threshold: float | None = None,
    batch_size: int = 32,
    actors: int = 1,
    device: str = "auto",
    dtype: str = "auto",
    gpus_per_actor: float | None = None,
    num_cpus: float = 1.0,
    limit: int | None = None,
    progress: Callable[[RescanReport], None] | None = None,
) -> RescanReport:
    """Run `model` over every stored image that has no detection from it yet (Ray must be up).

    `limit` stops after that many new items (a trial run; the rest is done by the next run).
    """
    from orchestrator.detect_pool import DetectPool, PoolItem

    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    started = time.monotonic()
    worker = {"model": check_model(model), "fake_label": fake_label, "threshold": threshold, "device": device,
              "dtype": dtype, "max_batch": batch_size, "blobs_root": str(blobs_root)}
    pool = DetectPool(worker, actors=actors, gpus_per_actor=gpus_per_actor, num_cpus=num_cpus,
                      max_inflight=max(4 * batch_size * actors, 64))
    try:
        info = pool.describe()
        report = RescanReport(
            model_id=info["model_id"], model_revision=info["model_revision"], weights_digest=info["weights_digest"],
            threshold=info["threshold"], threshold_source=info["threshold_source"],
            calibrated_fpr=info["calibrated_fpr"], pool={k: info[k] for k in ("actors", "device", "dtype", "decode")},
        )
        shas = image_shas(store)
        done = done_shas(store, report.weights_digest)
        report.images = len(shas)
        report.already_done = sum(1 for sha in shas if sha in done)
        todo: Iterator[str] = (sha for sha in shas if sha not in done)
        if limit is not None:
            todo = (sha for _, sha in zip(range(limit), todo))
        failures: Counter[str] = Counter()
        batch: list[tuple[str, Detection]] = []
        for result in pool.map(PoolItem(sha, sha256=sha) for sha in todo):
            if result.detection is None:
                report.failed += 1
                failures[result.error or "unknown"] += 1
                continue
            batch.append((result.key, result.detection))
            if len(batch) >= _WRITE_EVERY:
                _flush(store, batch, report, progress)
        _flush(store, batch, report, progress)
        report.failures = dict(failures.most_common(20))
    finally:
        pool.close()
    report.seconds = time.monotonic() - started
    return report


def _flush(store: Any, batch: list[tuple[str, Detection]], report: RescanReport,
           progress: Callable[[RescanReport], None] | None) -> None:
    if not batch:
        return
    write_detections(store, batch)
    for _, d in batch:
        if d.outcome == "error":
            report.errors += 1
        else:
            report.scored += 1
            report.fake += d.outcome == "fake"
    batch.clear()
    if progress is not None:
        progress(report)
