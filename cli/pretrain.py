"""`fusion pretrain`: contrastive sensor-fusion pretraining without labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from cli.errors import reports_errors

console = Console()


def parse_sensor_map(pairs: list[str] | None) -> dict[str, str] | None:
    """``["s2_l2a=s2_l1c"]`` → ``{"s2_l2a": "s2_l1c"}`` (``None`` when not given)."""
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise typer.BadParameter(f"expected FROM=TO, got {pair!r}", param_hint="--sensor-map")
        out[source.strip()] = target.strip()
    return out


@reports_errors
def pretrain_cmd(
    config: Annotated[
        Path | None, typer.Option(help="YAML config (see configs/pretrain_*.yaml).")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="'synthetic', band-GeoTIFF folder, *_TRAIN.ts file or Presto folder."),
    ] = None,
    extra_data: Annotated[
        list[str] | None,
        typer.Option(
            help="Further unlabelled source whose chips join the training split, normalised "
            "with its own statistics (repeatable; replaces the config's list)."
        ),
    ] = None,
    sensor_map: Annotated[
        list[str] | None,
        typer.Option(
            help="FROM=TO: train an extra source's sensor FROM as the primary sensor TO, bands "
            "matched by name (repeatable), e.g. s2_l2a=s2_l1c."
        ),
    ] = None,
    guide: Annotated[
        str | None,
        typer.Option(
            help="Frozen model whose features of each training chip the views also predict: "
            "imagenet-rgb (needs B02/B03/B04) or band-stats; 'none' turns a config's guide off."
        ),
    ] = None,
    guide_weight: Annotated[
        float | None, typer.Option(help="Weight of the guide's term beside NT-Xent.")
    ] = None,
    out: Annotated[str | None, typer.Option(help="Folder for runs (default runs/).")] = None,
    name: Annotated[str | None, typer.Option(help="Run name: writes OUT/NAME/.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimiser steps.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Footprints per step.")] = None,
    devices: Annotated[
        int | None, typer.Option(help="Devices per node (GPUs or CPU procs).")
    ] = None,
    num_nodes: Annotated[int | None, typer.Option(help="Nodes (DDP across machines).")] = None,
    accelerator: Annotated[str | None, typer.Option(help="auto, cpu or gpu.")] = None,
    strategy: Annotated[str | None, typer.Option(help="Lightning strategy: auto, ddp...")] = None,
    resume: Annotated[str | None, typer.Option(help="Checkpoint to resume from.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of splits, views and weights.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Pretrain a fusion encoder; with no options, on the synthetic default in a few minutes."""
    # Imported here: torch, lightning and lightly take seconds to import, other commands need none.
    from fusion.pretrain import NonFiniteLossError, PretrainConfig, pretrain

    overrides = {
        "data": data,
        "extra_data": extra_data,
        "sensor_map": parse_sensor_map(sensor_map),
        "guide_weight": guide_weight,
        "out": out,
        "name": name,
        "max_steps": max_steps,
        "batch_size": batch_size,
        "devices": devices,
        "num_nodes": num_nodes,
        "accelerator": accelerator,
        "strategy": strategy,
        "resume": resume,
        "seed": seed,
    }
    cfg = (
        PretrainConfig.from_yaml(config, overrides)
        if config
        else PretrainConfig.from_dict({}, overrides=overrides)
    )
    if guide is not None:
        cfg.guide = None if guide.lower() == "none" else guide
    try:
        summary = pretrain(cfg, progress=progress and not as_json)
    except NonFiniteLossError as err:
        console.print(
            f"[bold red]error[/] (NonFiniteLossError): {escape(str(err))}", highlight=False
        )
        raise typer.Exit(code=3) from None
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    m = summary["metrics"]
    nan = float("nan")
    console.print(
        f"pretrained {summary['steps']} steps in {summary['seconds']} s "
        f"({summary['samples_per_s']} samples/s); train loss {m.get('train/loss', nan):.3f}, "
        f"val loss {m.get('val/loss', nan):.3f}"
    )
    console.print(f"checkpoint: {summary['checkpoint']}")
