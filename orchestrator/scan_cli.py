"""The body of `deepwatch scan`: model choice, the optional database, and output."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import typer

from orchestrator.cli import _fail, console, err
from orchestrator.spec import DEFAULT_DATABASE


def _scan_store(db: Optional[str]) -> Any:
    """The database to check, or None: a default SQLite file that does not exist is not created
    (scan is read-only); a database named explicitly must open."""
    from storage.db import StorageError, Store

    url = db or os.environ.get("DEEPWATCH_DB")
    if url is None:
        if not DEFAULT_DATABASE.startswith("sqlite:///") or not Path(DEFAULT_DATABASE[len("sqlite:///"):]).is_file():
            return None
        url = DEFAULT_DATABASE
    try:
        return Store(url)
    except StorageError as exc:
        _fail(str(exc))


def _scan_blobs(blobs: Optional[str]) -> Any:
    """The blob store holding the reference library's originals; None when it does not exist
    (scan never creates one): references are then not compared, and scan says so."""
    from orchestrator.cli import _blobs
    from storage.blobs import BlobStoreError, open_blobs

    location = _blobs(blobs)
    if "://" not in location and not Path(location).is_dir():
        if blobs is not None:
            _fail(f"blob store {location} does not exist")
        return None
    try:
        return open_blobs(location)
    except BlobStoreError as exc:
        _fail(str(exc))


def run_scan(inputs: list[str], *, model: Optional[str], threshold: Optional[float], as_json: bool,
             allow_network: tuple[str, ...], db: Optional[str], blobs: Optional[str],
             c2pa_trust: Any = None, vpdq_dir: Optional[str] = None) -> int:
    """Scan every input; returns how many could not be analysed."""
    from detectors.classifier import ModelLoadError
    from orchestrator.model_choice import ModelChoiceError, choose_model, not_configured_message
    from orchestrator.progress import print_scan
    from orchestrator.scan import scan_inputs

    try:
        choice = choose_model(model)
    except ModelChoiceError as exc:
        _fail(str(exc))
    if choice.model is None:
        err.print(f"[yellow]note:[/] {not_configured_message()}", highlight=False)
    store = _scan_store(db)
    blob_store = _scan_blobs(blobs) if store is not None else None
    failed = 0
    try:
        for result in scan_inputs(inputs, model=choice.model, threshold=threshold, allow_networks=allow_network,
                                  store=store, model_source=choice.source, c2pa_trust=c2pa_trust,
                                  blobs=blob_store, vpdq_dir=vpdq_dir):
            failed += int("error" in result)
            if as_json:
                typer.echo(json.dumps(result, ensure_ascii=False, default=str))
            else:
                print_scan(console, result)
    except ModelLoadError as exc:
        _fail(f"classifier {choice.describe()}: {exc}")
    finally:
        if store is not None:
            store.close()
    return failed
