"""`fusion probe`: how good a pretrained representation is on labelled data, and without which
sensors it still works."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.errors import reports_errors

if TYPE_CHECKING:
    from fusion.data.labelled import LabelledData
    from fusion.probe import Embedder, FusionEmbedder, Subset

console = Console()


class TaskChoice(StrEnum):
    classification = "classification"
    multilabel = "multilabel"
    regression = "regression"


class ProbeChoice(StrEnum):
    knn = "knn"
    linear = "linear"
    forest = "forest"
    finetune = "finetune"


class BaselineChoice(StrEnum):
    random = "random"
    imagenet = "imagenet"
    bandstats = "bandstats"


def _check_task(data: LabelledData, task: str | None) -> str:
    from fusion.probe import LabelError

    if task is None or task == data.task:
        return data.task
    classes = f" (classes {list(data.class_names)})" if data.class_names else ""
    raise LabelError(
        f"{data.description} has {data.task} labels{classes}; --task {task} does not fit them"
    )


def _representations(
    fusion: FusionEmbedder, data: LabelledData, baselines: list[BaselineChoice], seed: int
) -> list[Embedder]:
    out: list[Embedder] = [fusion]
    for name in baselines:
        if name is BaselineChoice.random:
            out.append(fusion.random_init(seed=seed))
        elif name is BaselineChoice.imagenet:
            from fusion.probe.baselines import ImageNetRGB

            out.append(ImageNetRGB())
        else:
            from fusion.probe.baselines import BandStatistics

            out.append(BandStatistics(data.specs))
    return out


def _single(
    reps: list[Embedder],
    data: LabelledData,
    task: str,
    subset: Subset | None,
    probes: list[ProbeChoice],
    *,
    epochs: int,
    batch_size: int,
    progress: bool,
    seed: int,
) -> list[dict[str, Any]]:
    """One row per (representation, probe) on one subset."""
    from fusion.probe import FineTuneProbe, FusionEmbedder, evaluate

    frozen = [p.value for p in probes if p is not ProbeChoice.finetune]
    rows: list[dict[str, Any]] = []
    for rep in reps:
        if frozen:
            cell = evaluate(
                rep,
                data.train,
                data.test,
                task=task,  # type: ignore[arg-type]
                subset=subset,
                probes=frozen,
                class_names=data.class_names,
                batch_size=batch_size,
                progress=progress,
            )
            for name, scores in cell.scores.items():
                rows.append(
                    {
                        "representation": rep.name,
                        "probe": name,
                        "n_train": cell.n_train,
                        "n_test": cell.n_test,
                        "metrics": scores,
                    }
                )
        if ProbeChoice.finetune in probes and isinstance(rep, FusionEmbedder):
            ft = FineTuneProbe(
                task,  # type: ignore[arg-type]
                epochs=epochs,
                batch_size=min(batch_size, 32),
                seed=seed,
                progress=progress,
            ).fit(rep, data.train, subset)
            rows.append(
                {"representation": rep.name, "probe": "finetune", "metrics": ft.score(data.test)}
            )
    return rows


def _print_rows(rows: list[dict[str, Any]], title: str) -> None:
    metrics = list(dict.fromkeys(m for r in rows for m in r["metrics"]))
    table = Table(title=title)
    for col in ("representation", "probe", *metrics, "n train", "n test"):
        table.add_column(col, justify="left" if col in ("representation", "probe") else "right")
    for r in rows:
        table.add_row(
            r["representation"],
            r["probe"],
            *(f"{r['metrics'][m]:.4f}" if m in r["metrics"] else "" for m in metrics),
            str(r.get("n_train", "")),
            str(r.get("n_test", "")),
        )
    console.print(table)


def _plot_rows(rows: list[dict[str, Any]], metric: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fusion.files import save_figure

    labels = [f"{r['representation']}\n{r['probe']}" for r in rows]
    values = [r["metrics"].get(metric, float("nan")) for r in rows]
    fig, ax = plt.subplots(figsize=(1.5 + 1.1 * len(rows), 3.6))
    bars = ax.bar(range(len(rows)), values, color="tab:blue")
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


@reports_errors
def probe_cmd(
    checkpoint: Annotated[Path, typer.Option(help="A `fusion pretrain` checkpoint (.ckpt).")],
    data: Annotated[
        str,
        typer.Option(
            help="Labelled data: 'synthetic', a EuroSAT-MS root, BigEarthNet-MM pairs, band "
            "GeoTIFFs with a label raster, the Presto folder or a *_TRAIN.ts file."
        ),
    ] = "synthetic",
    task: Annotated[
        TaskChoice | None, typer.Option(help="Task (default: what the data's labels are).")
    ] = None,
    probe: Annotated[
        list[ProbeChoice] | None,
        typer.Option(help="Probe(s), repeatable: knn (10-NN, cosine), linear, forest, finetune."),
    ] = None,
    sensors: Annotated[
        str | None,
        typer.Option(
            help="Sensor subset, e.g. 's1_grd,s2_l2a', 's2_l2a:RGB', 's2_l2a:B04/B03/B02' "
            "(default: every sensor)."
        ),
    ] = None,
    missing_matrix: Annotated[
        bool,
        typer.Option(
            "--missing-matrix",
            help="Score every non-empty sensor subset and named band subset (RGB, RGB+NIR).",
        ),
    ] = False,
    baseline: Annotated[
        list[BaselineChoice] | None,
        typer.Option(
            help="Baselines run the same way, repeatable: random (our encoder at random init), "
            "imagenet (EfficientNet-Lite0 on RGB), bandstats (raw band statistics)."
        ),
    ] = None,
    chip_m: Annotated[float, typer.Option(help="Chip side (m) for chipped layouts.")] = 640.0,
    test_fraction: Annotated[
        float, typer.Option(help="Held-out share where the data has no official split.")
    ] = 0.2,
    min_purity: Annotated[
        float, typer.Option(help="Label rasters: minimum majority-class share of a chip.")
    ] = 0.5,
    label_raster: Annotated[
        Path | None, typer.Option(help="Label raster to use with band-GeoTIFF folders.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Split, baseline and fine-tuning seed.")] = 0,
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Samples per embedding batch.")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    plot: Annotated[
        Path | None,
        typer.Option(help="Write a PNG: the heat-map with --missing-matrix, else a bar chart."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Probe a pretrained encoder on labelled data (k-NN, linear, forest, fine-tuning), optionally
    against baselines and for every sensor subset.

    Every representation sees the same samples and split, each with its own preprocessing (the
    checkpoint's normalisation, ImageNet's 8-bit RGB). Scores are on the held-out split.
    """
    # Imported here: torch and scikit-learn take seconds to import; other commands need neither.
    from fusion.data.labelled import load_labelled
    from fusion.probe import (
        FusionEmbedder,
        band_subsets,
        parse_subset,
        sensor_subsets,
    )
    from fusion.probe import (
        missing_matrix as build_matrix,
    )

    probes = probe or [ProbeChoice.knn, ProbeChoice.linear]
    show = progress and not as_json
    fusion = FusionEmbedder.from_checkpoint(checkpoint)
    labelled = load_labelled(
        data,
        chip_m=chip_m,
        seed=seed,
        test_fraction=test_fraction,
        min_purity=min_purity,
        label_raster=label_raster,
    )
    the_task = _check_task(labelled, task.value if task else None)
    subset = parse_subset(sensors, labelled.specs) if sensors else None
    used = {k: v for k, v in labelled.specs.items() if subset is None or k in subset.bands}
    fusion.check_sensors(used)
    reps = _representations(fusion, labelled, baseline or [], seed)
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "data": labelled.description,
        "task": the_task,
        "class_names": list(labelled.class_names) if labelled.class_names else None,
        "subset": subset.name if subset else "all sensors",
    }
    if missing_matrix:
        if ProbeChoice.finetune in probes:
            raise typer.BadParameter("--missing-matrix scores frozen probes; drop finetune")
        specs = {k: labelled.specs[k] for k in used}
        subsets = sensor_subsets(specs) + band_subsets(specs)
        matrix = build_matrix(
            reps,
            labelled.train,
            labelled.test,
            task=the_task,  # type: ignore[arg-type]
            subsets=subsets,
            probes=[p.value for p in probes],
            class_names=labelled.class_names,
            batch_size=batch_size,
            progress=show,
        )
        report["matrix"] = matrix.to_dict()
        if plot:
            matrix.plot(plot)
        if as_json:
            typer.echo(json.dumps(report, indent=2, default=str))
            return
        console.print(f"[bold]{labelled.description}[/] — {the_task}, held-out split")
        for p in probes:
            console.print(matrix.markdown(p.value), highlight=False)
        for (row, col), cell in matrix.cells.items():
            if cell.error:
                console.print(f"[yellow]n/a[/] {row} / {col}: {cell.error}", highlight=False)
    else:
        rows = _single(
            reps,
            labelled,
            the_task,
            subset,
            probes,
            epochs=epochs,
            batch_size=batch_size,
            progress=show,
            seed=seed,
        )
        report["results"] = rows
        title = f"{labelled.description} — {the_task}, {report['subset']}"
        if plot:
            from fusion.probe import METRICS

            _plot_rows(rows, METRICS[the_task][0], plot, title)  # type: ignore[index]
        if as_json:
            typer.echo(json.dumps(report, indent=2, default=str))
            return
        _print_rows(rows, title)
    if plot:
        console.print(f"plot: {plot}")
