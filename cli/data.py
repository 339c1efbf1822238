"""`fusion data …`: look at sensor data before training on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.errors import reports_errors
from fusion.data.inspect import inspect_paths

app = typer.Typer(help="Read, align and inspect multi-sensor data.", no_args_is_help=True)
console = Console()


@app.command("inspect")
@reports_errors
def inspect_cmd(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Folders of band GeoTIFFs, multi-band .tif, .nc/.zarr, .ts, .csv, .npy"
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Fail on the first unreadable file instead of skipping."),
    ] = False,
    sensor: Annotated[
        str | None,
        typer.Option(help="Sensor spec for files that do not say (netCDF/zarr, odd names)."),
    ] = None,
) -> None:
    """Each sensor found: bands, grid shape, resolution, CRS, footprint overlap, nodata fraction."""
    report = inspect_paths(paths, strict=strict, sensor=sensor)
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    print_report(report)


def _band_list(names: list[str]) -> str:
    if len(names) <= 4:
        return " ".join(names)
    return f"{names[0]} {names[1]} … {names[-1]} ({len(names)})"


def print_report(report: dict[str, Any]) -> None:
    table = Table(title="Sensors", show_lines=False)
    for col in ("scene", "sensor", "crs", "time", "bands", "grids", "nodata"):
        table.add_column(col)
    for s in report["sensors"]:
        grids = []
        for b in sorted(
            s["bands"], key=lambda b: b.get("resolution_m") or -(b.get("rate_hz") or 0)
        ):
            g = (
                f"{b['shape'][1]}×{b['shape'][0]}@{b['resolution_m']:g}m"
                if b.get("resolution_m") and b.get("shape")
                else f"{b.get('rate_hz') or 0:.3g}Hz"
            )
            if g not in grids:
                grids.append(g)
        table.add_row(
            str(s.get("scene", "-")),
            s["name"],
            str(s.get("crs")),
            (s.get("time") or "")[:10],
            _band_list([b["name"] for b in s["bands"]]),
            ", ".join(grids),
            f"{s.get('nodata_fraction', 0):.1%}",
        )
    console.print(table)
    for i, scene in enumerate(report["scenes"]):
        if "error" in scene:
            console.print(f"scene {i}: [red]{escape(str(scene['error']))}[/]")
            continue
        shapes = ", ".join(
            f"{k} {v['shape'][1]}×{v['shape'][0]}" for k, v in scene["streams"].items()
        )
        overlaps = ", ".join(f"{o['a']}∩{o['b']} {o['fraction']:.0%}" for o in scene["overlap"])
        w, h = scene["size_m"]
        console.print(
            f"scene {i}: {scene['crs']}, footprint {w:g} × {h:g} m, lattice "
            f"{scene['lattice_m']:g} m; {shapes}" + (f"; overlap {overlaps}" if overlaps else "")
        )
    if report["n_skipped"]:
        console.print(f"[yellow]skipped {report['n_skipped']} unreadable file(s):[/]")
        for s in report["skipped"]:
            console.print(
                f"  {escape(str(s['path']))}: {escape(str(s['reason']))}", highlight=False
            )
