"""`fusion datatest`: data unit tests — named slices of the test data, each with a metric and a
threshold — with failure mining, JUnit XML for CI and a non-zero exit when a test fails."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cli.errors import reports_errors

console = Console()


class DataTestProbe(StrEnum):
    knn = "knn"
    linear = "linear"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "test"


@reports_errors
def datatest_cmd(
    suite: Annotated[
        Path, typer.Option(help="Suite YAML (see configs/datatest_*.yaml).", show_default=False)
    ],
    checkpoint: Annotated[
        Path, typer.Option(help="A `fusion pretrain` checkpoint (.ckpt).", show_default=False)
    ],
    data: Annotated[
        str | None,
        typer.Option(
            help="Labelled data: 'synthetic', a *_TRAIN.ts file, … (default: the suite's "
            "'data', else 'synthetic')."
        ),
    ] = None,
    probe: Annotated[
        DataTestProbe | None,
        typer.Option(help="Probe fitted on the training split (default: the suite's, else knn)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    junit: Annotated[Path | None, typer.Option(help="Write JUnit XML here (for CI).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for contact sheets of failing tests.")] = Path(
        "runs/datatest"
    ),
    mine: Annotated[
        bool, typer.Option(help="Mine failing slices: neighbours, confusions, TracIn.")
    ] = True,
    neighbours: Annotated[int, typer.Option(help="Nearest training samples per worst case.")] = 4,
    worst: Annotated[int, typer.Option(help="Worst cases per failing test.")] = 6,
    chip_m: Annotated[float, typer.Option(help="Chip side (m) for chipped layouts.")] = 640.0,
    seed: Annotated[int, typer.Option(help="Split seed where the data has no official one.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Samples per embedding batch.")] = 64,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Run data unit tests: fit a probe on the training split's embeddings and score every
    slice of the test split named in the suite, plus one slice per sensor switched off.

    Prints "Data unit tests passed: N / M" and exits with status 1 when a test fails (an empty
    slice fails unless the test allows it), 2 on bad input.
    """
    # Imported here: torch and scikit-learn take seconds to import; other commands need neither.
    from fusion.data.labelled import load_labelled
    from fusion.datatest import load_suite, print_result, run_suite, write_junit
    from fusion.datatest.sheet import write_contact_sheet
    from fusion.probe import FusionEmbedder

    the_suite = load_suite(suite)
    fusion = FusionEmbedder.from_checkpoint(checkpoint)
    labelled = load_labelled(data or the_suite.data or "synthetic", chip_m=chip_m, seed=seed)
    fusion.check_sensors(labelled.specs)
    result = run_suite(
        the_suite,
        fusion,
        labelled,
        probe=probe.value if probe else None,
        mine=mine,
        neighbours=neighbours,
        worst=worst,
        batch_size=batch_size,
        progress=progress and not as_json,
    )
    for r in result.results:
        if r.mining is not None:
            write_contact_sheet(
                result, r, out / f"{_slug(the_suite.name)}-{_slug(r.test.name)}.png"
            )
    if junit is not None:
        write_junit(result, junit)
    if as_json:
        typer.echo(json.dumps({"checkpoint": str(checkpoint), **result.to_dict()}, indent=2))
    else:
        print_result(result, console)
        if junit is not None:
            console.print(f"JUnit XML: {junit}", highlight=False)
    if not result.ok:
        raise typer.Exit(code=1)
