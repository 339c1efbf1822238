"""`fusion demo`: the toolkit at work on the embedded synthetic default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.config import load_options
from cli.data import print_report
from cli.errors import reports_errors
from fusion.data.demo import run_demo

console = Console()


@reports_errors
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the generated scene and plots.")] = Path(
        "runs/demo"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the synthetic scene.")] = 0,
    chip_m: Annotated[float, typer.Option(help="Chip size in metres.")] = 640.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    config: Annotated[
        Path | None, typer.Option(help="YAML file of these options (configs/demo.yaml).")
    ] = None,
) -> None:
    """Generate a synthetic multi-sensor scene, inspect it, align it, cut chips and batch them."""
    if config is not None:
        opts = load_options(config, {"out", "seed", "chip_m"})
        out = Path(opts.get("out", out))
        seed = int(opts.get("seed", seed))
        chip_m = float(opts.get("chip_m", chip_m))
    with console.status("generating, aligning and chipping the synthetic scene…"):
        summary = run_demo(out, seed=seed, chip_m=chip_m)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    console.rule("1. generate + inspect (files written, then read back)")
    console.print(f"scene generated in {summary['generate_s']} s → {out / 'scene'}")
    print_report(summary["inspect"])
    console.rule("2. align + chip + split")
    console.print(
        f"{chip_m:g} m chips, spatial-block split {summary['splits']} "
        f"({summary['dropped_straddling_chips']} chips straddling two splits dropped); "
        f"{summary['chips_per_s']} chips/s while computing normalisation stats"
    )
    for split, counts in summary["class_counts"].items():
        console.print(f"  {split}: {counts}")
    console.rule("3. a normalised batch (native resolution per stream)")
    table = Table()
    for col in ("stream", "shape (B, C, H, W)", "present", "valid"):
        table.add_column(col)
    for key, b in summary["batch"].items():
        table.add_row(
            key,
            str(tuple(b["shape"])),
            f"{b['present']}/{b['shape'][0]}",
            f"{b['valid_fraction']:.0%}",
        )
    console.print(table)
    console.print(f"plot of one chip: {summary['plot']}")
    if summary["real"]:
        r = summary["real"]
        console.rule("4. real data: a BigEarthNet S1+S2 pair, 1200 m chip")
        console.print(
            f"{r['crs']}: " + ", ".join(f"{k} {tuple(v)}" for k, v in r["shapes"].items())
        )
