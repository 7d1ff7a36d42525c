"""`deepwatch rescan`: a new model over every stored image (registered on the main `app`)."""
from __future__ import annotations

import json
from typing import Optional

import typer

from orchestrator.cli import BlobsOpt, DbOpt, _blobs, _fail, _open_store, app, console, err


@app.command("rescan")
def rescan_command(
    model: Optional[str] = typer.Option(None, "--model", help="Checkpoint folder (or hub id) of an image classifier "
                                        "[default: env DEEPWATCH_MODEL, else 'model:' in $XDG_CONFIG_HOME/deepwatch/config.yaml]"),
    fake_label: str = typer.Option("fake", "--fake-label", help="The model's label meaning fake"),
    threshold: Optional[float] = typer.Option(None, "--threshold", min=0.0, max=1.0,
                                              help="Decision threshold [default: the model's calibration.json, else 0.5]"),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per model batch"),
    actors: int = typer.Option(1, "--actors", min=1, help="Model-serving actors (GPU shares when there are GPUs)"),
    gpus_per_actor: Optional[float] = typer.Option(None, "--gpus-per-actor", min=0.0, max=1.0,
                                                   help="GPU fraction per actor [default: the GPUs spread over the actors]"),
    dtype: str = typer.Option("auto", "--dtype", help="auto | float32 | bfloat16 | float16"),
    limit: Optional[int] = typer.Option(None, "--limit", min=0, help="Stop after this many new items (the next run goes on)"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster to join (default: a local Ray)"),
    db: Optional[str] = DbOpt,
    blobs: Optional[str] = BlobsOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON"),
) -> None:
    """Run a model over every stored image that it has not scored yet; resumable, idempotent."""
    from orchestrator import wiring
    from orchestrator.detect_pool import PoolError
    from orchestrator.rescan import check_model, rescan

    import ray

    from orchestrator.model_choice import ModelChoiceError, choose_model, config_path

    try:
        chosen = choose_model(model)
    except ModelChoiceError as exc:
        _fail(str(exc))
    if chosen.model is None:
        _fail(f"no classifier configured: give --model, set DEEPWATCH_MODEL, or put 'model: PATH' in {config_path()}")
    model = chosen.model
    try:
        check_model(model)  # a misspelt folder fails here, before Ray starts
    except ValueError as exc:
        _fail(str(exc), code=1)
    store = _open_store(db)
    ray_was_up = ray.is_initialized()  # called from a program that runs Ray itself: leave it up
    try:
        wiring.init_ray(address)
        try:
            report = rescan(
                store, _blobs(blobs), model=model, fake_label=fake_label, threshold=threshold, batch_size=batch_size,
                actors=actors, gpus_per_actor=gpus_per_actor, dtype=dtype, limit=limit,
                progress=None if as_json else lambda r: err.print(
                    f"  {r.written:,} written ({r.fake:,} fake, {r.errors:,} unreadable), {r.failed:,} failed", highlight=False),
            )
        except (PoolError, ValueError) as exc:
            _fail(str(exc), code=1)
        # The reference library is a second check of every stored item, needing no weights: items
        # stored before their original was registered are compared now (one count query when empty).
        from orchestrator.references_hook import rescan_references
        from storage.blobs import open_blobs

        references = rescan_references(store, open_blobs(_blobs(blobs)))
    finally:
        if not ray_was_up:
            wiring.shutdown_ray()
        store.close()
    out = report.to_dict() | {"references": references}
    if as_json:
        typer.echo(json.dumps(out, indent=2))
    else:
        console.print(
            f"rescan with {out['model_id']} (weights {out['weights_digest'][:12]}, threshold {out['threshold']:.2f} "
            f"from {out['threshold_source']}): {out['images']:,} images, {out['already_done']:,} already done, "
            f"{out['scored']:,} scored ({out['fake']:,} fake), {out['errors']:,} unreadable, {out['failed']:,} failed "
            f"in {out['seconds']:.1f} s", highlight=False,
        )
        if references["matched"] or references["errors"]:
            console.print(f"references: {references['matched']:,} items matched an authentic original "
                          f"({references['altered']:,} altered copies), {references['errors']:,} could not be compared",
                          highlight=False)
        for reason, count in out["failures"].items():
            console.print(f"  failed x{count}: {reason}", highlight=False)
    if report.failed:
        raise typer.Exit(1)  # the next run picks these up; a script should know
