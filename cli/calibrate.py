"""`fusion calibrate`: adapt a registered student to one site's data and register the result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cli.errors import reports_errors
from cli.registry import DEFAULT_REGISTRY, JsonOption, RegistryOption

console = Console()


@reports_errors
def calibrate_cmd(
    base: Annotated[str, typer.Option(help="The registered student: NAME:VERSION or NAME@ALIAS.")],
    site: Annotated[str, typer.Option(help="Site name; the new version is tagged site:SITE.")],
    data: Annotated[
        Path,
        typer.Option(
            help="The site's labelled data (e.g. a *_TRAIN.ts with its _TEST sibling); its test "
            "split is held out for the report."
        ),
    ],
    adapt: Annotated[
        list[str] | None,
        typer.Option(help="Parts to adapt (repeatable): stats, bn, last-block, head."),
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="Version to register (default: the next minor one).")
    ] = None,
    head_steps: Annotated[int, typer.Option(help="Steps of the head refit.")] = 300,
    seed: Annotated[int, typer.Option(help="Seed of subset draws and batches.")] = 0,
    target: Annotated[str, typer.Option(help="MCU target of the recorded budget fit.")] = (
        "m4-256k"
    ),
    registry: RegistryOption = DEFAULT_REGISTRY,
    as_json: JsonOption = False,
) -> None:
    """Adapt a registered student to one site (normalisation statistics and task head by
    default), report the held-out site accuracy of the general and the calibrated model, and
    register the calibrated one with its parent, data fingerprint and a site:SITE tag."""
    from fusion.registry import Registry
    from fusion.registry.calibrate import CalibrationConfig, calibrate, load_site_data
    from fusion.registry.students import load_registered, register_student

    reg = Registry(registry)
    config = CalibrationConfig(
        adapt=tuple(adapt) if adapt else CalibrationConfig.adapt,
        head_steps=head_steps,
        seed=seed,
    )
    parent, student = load_registered(reg, base)
    site_data = load_site_data(data, site)
    result = calibrate(student, site_data, config)
    mv = register_student(
        reg,
        parent.name,
        result.bundle,
        version=version,
        parent=parent.ref,
        data=data,
        metrics={"calibration": result.report},
        target=target,
        description=f"{parent.ref} calibrated for site {site} ({', '.join(config.adapt)})",
        tags={"site": site},
    )
    if as_json:
        typer.echo(json.dumps({"registered": mv.ref, **result.report}, indent=2, default=str))
        return
    for line in result.lines():
        console.print(line, highlight=False)
    console.print(f"registered {mv.ref} (parent {parent.ref}, tag site:{site})", highlight=False)
