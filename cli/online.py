"""`fusion online`: replay a recorded stream through an int8 student with a head that keeps
learning on the device (TinyOL), against the same head frozen, through injected drift."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cli.errors import reports_errors

console = Console()


class HeadChoice(StrEnum):
    classifier = "classifier"
    autoencoder = "autoencoder"


def _warm_data(bundle: Any, use: bool) -> Any:
    """The student's labelled training split (the warm start before deployment), or ``None``
    when the student names no labelled data."""
    if not use or not bundle.meta.get("data") or not bundle.class_names:
        return None
    from fusion.deploy.degradation import load_eval_data

    data, _ = load_eval_data(bundle, split="train")
    return (data, bundle.class_names) if data.labels is not None else None


@reports_errors
def online_cmd(
    student: Annotated[Path, typer.Option(help="A student directory (`fusion distill`).")],
    stream: Annotated[
        str,
        typer.Option(
            help="A .ts or .csv recording, 'synthetic' (the default scenes' test chips) or "
            "'synthetic:SEED' (places made with another seed)."
        ),
    ] = "synthetic",
    drift: Annotated[
        list[str] | None,
        typer.Option(
            help="Drift to inject, repeatable or comma-separated: gain:SENSOR=F@T, "
            "offset:SENSOR=V@T, off:SENSOR@T, nan:SENSOR=P@T, newclass:LABEL@T "
            "(T: stream sample; SENSOR/BAND for one band)."
        ),
    ] = None,
    lr: Annotated[float, typer.Option(help="SGD learning rate of the online head.")] = 0.02,
    head: Annotated[
        HeadChoice, typer.Option(help="classifier (accuracy) or autoencoder (anomaly AUC).")
    ] = HeadChoice.classifier,
    length: Annotated[int, typer.Option(help="Stream samples to replay.")] = 400,
    window: Annotated[int, typer.Option(help="Samples per reported window.")] = 50,
    horizon: Annotated[
        int, typer.Option(help="Samples after a drift at which recovery is measured.")
    ] = 200,
    heldout: Annotated[
        float, typer.Option(help="Share of the stream's samples held out to score the heads.")
    ] = 0.5,
    warm_on_student_data: Annotated[
        bool,
        typer.Option(
            help="Warm-start the head on the student's training split (else on the stream)."
        ),
    ] = True,
    label_column: Annotated[
        str | None, typer.Option(help="CSV label column (default: label, class, is_anomaly).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Stream order, held-out split, initial weights.")] = 0,
    export_c: Annotated[
        Path | None,
        typer.Option(
            "--export-c",
            help="Write the C runtime (headless student + the online head's final state).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Write the accuracy-over-time PNG.")] = None,
) -> None:
    """Replay a stream sample by sample: a frozen head and an online head (SGD in RAM on the
    frozen int8 embedding) predict, then the online head learns; reports accuracy (or anomaly
    AUC) over time, recovery after drift, forgetting after a new class, RAM, MACs and µs per
    update."""
    from fusion.deploy.drift import parse_drift
    from fusion.deploy.replay import ReplayConfig, replay
    from fusion.deploy.stream import load_stream
    from fusion.deploy.student_io import load_student

    bundle = load_student(student)
    pool = load_stream(bundle, stream, label_column=label_column)
    drifts = parse_drift(drift or [], bundle, pool.class_names)
    cfg = ReplayConfig(
        length=length,
        window=window,
        horizon=horizon,
        heldout=heldout,
        head=head.value,
        lr=lr,
        seed=seed,
    )
    report = replay(bundle, pool, drifts, cfg, warm=_warm_data(bundle, warm_on_student_data))
    out = report.to_dict()
    out["info"]["student"] = str(student)
    if plot:
        report.plot(plot, title=f"{pool.description}; {', '.join(map(str, drifts)) or 'no drift'}")
        out["plot"] = str(plot)
    if export_c is not None:
        from fusion.deploy.online_c import export_online_c

        assert report.head is not None
        written = export_online_c(report.head, bundle.quantized, export_c)
        out["export_c"] = [str(f) for f in written.files]
    if as_json:
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    for line in report.lines():
        console.print(line, highlight=False, soft_wrap=True)
    if plot:
        console.print(f"plot: {plot}", highlight=False, soft_wrap=True)
    for f in out.get("export_c", []):
        console.print(f"  {f}", highlight=False, soft_wrap=True)
