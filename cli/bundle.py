"""`fusion bundle build|inspect|verify`: one deployable file per student version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cli.errors import reports_errors
from cli.registry import DEFAULT_REGISTRY, JsonOption, RegistryOption

app = typer.Typer(
    help="Deployable bundles: one zip with manifest, student, C source, .tflite and checksums.",
    no_args_is_help=True,
)
console = Console()


def _echo_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2, default=str))


@app.command("build")
@reports_errors
def build_cmd(
    out: Annotated[Path, typer.Option(help="The bundle file to write (.zip).")],
    ref: Annotated[
        str | None, typer.Option(help="A registered version: NAME:VERSION or NAME@ALIAS.")
    ] = None,
    student: Annotated[
        Path | None, typer.Option(help="A student directory instead of a registered version.")
    ] = None,
    tflite: Annotated[
        bool | None,
        typer.Option(
            "--tflite/--no-tflite",
            help="Require (or leave out) the .tflite; default: include it when the optional "
            "exporter is installed.",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="Labelled data to calibrate the .tflite on (default: the student's)."),
    ] = None,
    min_confidence: Annotated[
        float, typer.Option(help="Post-processing threshold on the top class probability.")
    ] = 0.0,
    name: Annotated[str, typer.Option(help="Base name of the C and .tflite files.")] = (
        "fusion_student"
    ),
    registry: RegistryOption = DEFAULT_REGISTRY,
    as_json: JsonOption = False,
) -> None:
    """Build a deployable bundle from a registered version (or a student directory)."""
    from fusion.deploy.student_io import load_student
    from fusion.registry import Registry, RegistryError
    from fusion.registry.bundle import build_bundle
    from fusion.registry.students import load_registered

    if (ref is None) == (student is None):
        raise typer.BadParameter("give exactly one of --ref and --student")
    if not 0.0 <= min_confidence <= 1.0:
        raise typer.BadParameter("--min-confidence must be in [0, 1]")
    model = None
    if ref is not None:
        mv, bundle = load_registered(Registry(registry), ref)
        model = {k: v for k, v in mv.to_dict().items() if k not in ("files", "budget")}
    else:
        assert student is not None
        if not student.is_dir():
            raise RegistryError(f"{student} is not a student directory")
        bundle = load_student(student)
    manifest = build_bundle(
        bundle,
        out,
        model=model,
        name=name,
        thresholds={"min_confidence": min_confidence},
        tflite=tflite,
        data=data,
    )
    if as_json:
        _echo_json({"out": str(out), "manifest": manifest})
        return
    tfl = manifest["tflite"]
    console.print(f"bundle {out} ({out.stat().st_size:,} B)", highlight=False)
    console.print(f"  model: {(model or {}).get('ref', str(student))}", highlight=False)
    console.print(f"  members: {', '.join(manifest['members'])}", highlight=False)
    console.print(
        f"  .tflite: {'included' if tfl['included'] else 'absent: ' + tfl['reason']}",
        highlight=False,
    )


@app.command("inspect")
@reports_errors
def inspect_cmd(
    bundle: Annotated[Path, typer.Argument(help="A bundle file.")],
    as_json: JsonOption = False,
) -> None:
    """The manifest of a bundle: model and lineage, sensors, pre- and post-processing, members,
    and whether every checksum holds."""
    from fusion.registry.bundle import inspect_bundle

    info = inspect_bundle(bundle)
    if as_json:
        _echo_json(info)
        return
    m = info["manifest"]
    model = m.get("model") or {}
    console.print(f"[bold]{bundle}[/] ({info['bytes']:,} B)", highlight=False)
    console.print(
        f"  model: {model.get('ref', '-')} parent {model.get('parent') or '-'}; toolkit "
        f"{m['toolkit_version']}",
        highlight=False,
    )
    for key, pre in m["preprocessing"]["streams"].items():
        console.print(
            f"  stream {key} ({pre['sensor']}): bands {'/'.join(pre['bands'])}, shape "
            f"{tuple(pre['input_shape'])}",
            highlight=False,
        )
    post = m["postprocessing"]
    labels = ", ".join((post["label_map"] or {}).values()) or "-"
    console.print(
        f"  post-processing: {post['task']}; labels {labels}; thresholds {post['thresholds']}",
        highlight=False,
    )
    tfl = m["tflite"]
    console.print(
        f"  .tflite: {'included' if tfl['included'] else 'absent: ' + tfl['reason']}",
        highlight=False,
    )
    for name, size in info["sizes"].items():
        console.print(f"  {name}: {size:,} B", highlight=False)
    console.print(f"  checksums: {info['checksums']}", highlight=False)


@app.command("verify")
@reports_errors
def verify_cmd(
    bundle: Annotated[Path, typer.Argument(help="A bundle file.")],
    sensors: Annotated[
        str | None,
        typer.Option(help="Comma-separated sensors the device has; refused if they differ."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check every member's sha256 and load the student; exits 2 saying what differs."""
    from fusion.registry.bundle import load_bundle, verify_bundle

    report = verify_bundle(bundle)
    expect = [s.strip() for s in sensors.split(",") if s.strip()] if sensors else None
    loaded = load_bundle(bundle, expect=expect)
    report["model"] = loaded.model
    report["sensors"] = loaded.sensors
    if as_json:
        _echo_json(report)
        return
    console.print(
        f"{bundle}: {report['members']} members, checksums ok; model {loaded.model}; sensors "
        f"{', '.join(loaded.sensors)}",
        highlight=False,
    )
