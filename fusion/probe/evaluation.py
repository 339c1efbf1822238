"""Evaluating representations: one embedder on one subset, and the missing-sensor matrix.

The matrix holds the metric of every (subset, representation) pair: rows are every non-empty
combination of sensors plus named band subsets (RGB, RGB+NIR), columns the representations
(pretrained, random initialisation, ImageNet, band statistics, …). Every cell is computed the
same way: embed train and test with that subset, fit the probe on train, score on test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusion.data.errors import FusionDataError, IncompatibleDataError
from fusion.data.sample import Sample
from fusion.files import save_figure
from fusion.probe.embedders import Embedder
from fusion.probe.embedding import Samples, embed_dataset
from fusion.probe.errors import LabelError, ProbeError
from fusion.probe.metrics import LOWER_IS_BETTER, METRICS, Task, check_labels, check_split
from fusion.probe.probes import make_probe
from fusion.probe.subsets import Subset

__all__ = ["Cell", "Matrix", "evaluate", "missing_matrix"]


@dataclass
class Cell:
    """The scores of one representation on one subset.

    Args:
        scores: probe name → metric name → value.
        n_train: training samples that carried the subset.
        n_test: test samples that carried the subset.
        error: why the cell could not be computed (e.g. an RGB model on SAR only).
    """

    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    n_train: int = 0
    n_test: int = 0
    error: str | None = None

    def value(self, probe: str, metric: str) -> float:
        return self.scores.get(probe, {}).get(metric, math.nan)


def evaluate(
    embedder: Embedder,
    train: Samples,
    test: Samples,
    *,
    task: Task,
    subset: Subset | None = None,
    probes: Sequence[str] = ("knn", "linear"),
    class_names: Sequence[str] | None = None,
    batch_size: int = 64,
    progress: bool = False,
    probe_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
) -> Cell:
    """Embed both splits once, fit every probe on train and score it on test.

    Raises:
        LabelError, EmptyClassError: the labels do not fit the task or a class has no training
            sample.
        EmptySubsetError: no sample carries the subset.
    """
    kw = dict(batch_size=batch_size, progress=progress, subset=subset)
    tr = embed_dataset(embedder, train, **kw)  # type: ignore[arg-type]
    te = embed_dataset(embedder, test, **kw)  # type: ignore[arg-type]
    ytr = check_labels(task, tr.y, where="train split")
    yte = check_labels(task, te.y, where="test split")
    check_split(task, ytr, yte, class_names)
    cell = Cell(n_train=len(tr.index), n_test=len(te.index))
    for name in probes:
        probe = make_probe(name, task, **dict((probe_kwargs or {}).get(name, {})))
        cell.scores[name] = probe.fit(tr.x, ytr).score(te.x, yte)
    return cell


@dataclass
class Matrix:
    """Scores of several representations on several subsets.

    Args:
        task: the task.
        rows: subset names.
        columns: representation names.
        cells: ``(row, column)`` → :class:`Cell`.
        probes: probe names every cell was scored with.
    """

    task: Task
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    probes: list[str]

    @property
    def headline(self) -> str:
        return METRICS[self.task][0]

    def values(self, probe: str, metric: str | None = None) -> np.ndarray:
        """``(rows, columns)`` array of one probe's metric (NaN where not computed)."""
        metric = metric or self.headline
        return np.array(
            [[self.cells[(r, c)].value(probe, metric) for c in self.columns] for r in self.rows]
        )

    def markdown(self, probe: str | None = None, metric: str | None = None) -> str:
        """A markdown table: rows × representations of one probe's metric (with n test)."""
        probe = probe or self.probes[-1]
        metric = metric or self.headline
        head = f"| subset ({probe}, {metric}) | " + " | ".join(self.columns) + " | n test |"
        lines = [head, "|" + "---|" * (len(self.columns) + 2)]
        for r in self.rows:
            vals = []
            for c in self.columns:
                v = self.cells[(r, c)].value(probe, metric)
                vals.append("n/a" if math.isnan(v) else f"{v:.3f}")
            n = max(self.cells[(r, c)].n_test for c in self.columns)
            lines.append(f"| {r} | " + " | ".join(vals) + f" | {n} |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "headline_metric": self.headline,
            "probes": self.probes,
            "rows": self.rows,
            "columns": self.columns,
            "cells": [
                {
                    "subset": r,
                    "representation": c,
                    "n_train": cell.n_train,
                    "n_test": cell.n_test,
                    "scores": cell.scores,
                    **({"error": cell.error} if cell.error else {}),
                }
                for (r, c), cell in self.cells.items()
            ],
        }

    def plot(self, path: str | Path, probe: str | None = None, metric: str | None = None) -> Path:
        """A heat-map PNG of one probe's metric (greener is better; n/a cells grey)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        probe = probe or self.probes[-1]
        metric = metric or self.headline
        vals = self.values(probe, metric)
        cmap = plt.get_cmap("RdYlGn_r" if metric in LOWER_IS_BETTER else "RdYlGn")
        cmap = cmap.with_extremes(bad="lightgrey")
        fig, ax = plt.subplots(
            figsize=(1.6 + 1.4 * len(self.columns), 0.9 + 0.45 * len(self.rows)), squeeze=True
        )
        im = ax.imshow(np.ma.masked_invalid(vals), cmap=cmap, aspect="auto")
        ax.set_xticks(range(len(self.columns)), self.columns, rotation=20, ha="right")
        ax.set_yticks(range(len(self.rows)), self.rows)
        for i in range(len(self.rows)):
            for j in range(len(self.columns)):
                v = vals[i, j]
                ax.text(
                    j,
                    i,
                    "n/a" if math.isnan(v) else f"{v:.3f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                )
        fig.colorbar(im, ax=ax, label=metric)
        ax.set_title(f"{probe} probe, {metric} per sensor subset")
        fig.tight_layout()
        return save_figure(fig, path)


def _in_memory(dataset: Samples) -> list[Sample]:
    return [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]


def missing_matrix(
    embedders: Sequence[Embedder],
    train: Samples,
    test: Samples,
    *,
    task: Task,
    subsets: Sequence[Subset],
    probes: Sequence[str] = ("knn", "linear"),
    class_names: Sequence[str] | None = None,
    batch_size: int = 64,
    progress: bool = False,
    probe_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
) -> Matrix:
    """The metric of every representation on every subset.

    A cell that cannot be computed (an RGB model asked for SAR only, a subset no sample carries,
    a class without training samples that carry the subset) holds the reason instead of scores;
    labels that do not fit the task and data the checkpoint does not know are raised, since
    they would fail every cell alike.
    """
    # Every cell reads every sample: read them once (and keep them in memory) rather than once
    # per cell, which for rasters means a windowed read per chip per cell.
    train, test = _in_memory(train), _in_memory(test)
    cells: dict[tuple[str, str], Cell] = {}
    for subset in subsets:
        for emb in embedders:
            try:
                cell = evaluate(
                    emb,
                    train,
                    test,
                    task=task,
                    subset=subset,
                    probes=probes,
                    class_names=class_names,
                    batch_size=batch_size,
                    progress=progress,
                    probe_kwargs=probe_kwargs,
                )
            except (LabelError, IncompatibleDataError):
                raise
            except (ProbeError, FusionDataError) as err:
                cell = Cell(error=str(err))
            cells[(subset.name, emb.name)] = cell
    return Matrix(task, [s.name for s in subsets], [e.name for e in embedders], cells, list(probes))
