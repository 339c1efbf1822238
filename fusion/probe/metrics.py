"""Metrics per task, the way the field reports them (through scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)

from fusion.probe.errors import EmptyClassError, LabelError

__all__ = ["METRICS", "TASKS", "Task", "check_labels", "check_split", "score"]

Task = Literal["classification", "multilabel", "regression"]
TASKS: tuple[Task, ...] = ("classification", "multilabel", "regression")

#: Metrics each task reports; the first is the headline (higher is better except rmse/mae).
METRICS: dict[Task, tuple[str, ...]] = {
    "classification": ("accuracy", "macro_f1"),
    "multilabel": ("mAP", "micro_f1", "macro_f1"),
    "regression": ("rmse", "mae", "r2"),
}

LOWER_IS_BETTER = frozenset({"rmse", "mae"})


def check_labels(task: str, y: np.ndarray | None, *, where: str = "labels") -> np.ndarray:
    """Labels converted for ``task``, or a :class:`LabelError` saying why they do not fit."""
    if task not in TASKS:
        raise LabelError(f"unknown task {task!r}; expected one of {list(TASKS)}")
    if y is None:
        raise LabelError(f"{where}: the samples carry no labels; a {task} probe needs them")
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise LabelError(
            f"{where}: labels of dtype {y.dtype} (e.g. {y.flat[0]!r}) are not numeric; "
            f"a {task} probe needs {'numeric targets' if task == 'regression' else 'class indices'}"
        )
    if task == "classification":
        if y.ndim != 1 or (y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0)):
            raise LabelError(
                f"{where}: classification needs one integer class index per sample, got "
                f"{'shape ' + str(y.shape) if y.ndim != 1 else 'continuous values'}; use "
                f"{'multilabel' if y.ndim == 2 else 'regression'}"
            )
        return y.astype(np.int64)
    if task == "multilabel":
        if y.ndim != 2 or not np.isin(y, (0, 1)).all():
            raise LabelError(
                f"{where}: multilabel needs a 0/1 matrix (samples × classes), got shape {y.shape}"
            )
        return y.astype(np.int64)
    if y.ndim != 1:
        raise LabelError(f"{where}: regression needs one value per sample, got shape {y.shape}")
    return y.astype(np.float64)


def check_split(
    task: str, y_train: np.ndarray, y_test: np.ndarray, class_names: Sequence[str] | None = None
) -> None:
    """Refuse a split in which a class to be predicted has no training sample.

    Raises:
        EmptyClassError: naming the class(es), with their names when known.
    """

    def named(ids: Sequence[int]) -> list[str]:
        return [class_names[i] if class_names and i < len(class_names) else str(i) for i in ids]

    if task == "classification":
        train = set(np.unique(y_train).tolist())
        if len(train) < 2:
            raise EmptyClassError(
                f"the training split holds only class(es) {named(sorted(train))}; a classifier "
                "needs at least two"
            )
        missing = sorted(set(np.unique(y_test).tolist()) - train)
        if missing:
            raise EmptyClassError(
                f"class(es) {named(missing)} occur in the test split but have no training sample"
            )
    elif task == "multilabel":
        missing = [int(i) for i in np.flatnonzero((y_test.sum(0) > 0) & (y_train.sum(0) == 0))]
        if missing:
            raise EmptyClassError(
                f"label(s) {named(missing)} occur in the test split but never in training"
            )


def score(
    task: Task, y_true: np.ndarray, y_pred: np.ndarray, y_score: np.ndarray | None = None
) -> dict[str, float]:
    """The task's metrics (:data:`METRICS`) of predictions against the truth.

    ``y_score`` (multilabel: per-label scores) is needed for mAP; without it the thresholded
    predictions are used.
    """
    if task == "classification":
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        }
    if task == "multilabel":
        scores = y_pred if y_score is None else y_score
        cols = y_true.sum(0) > 0  # AP is undefined for a label with no positive
        return {
            "mAP": float(
                average_precision_score(y_true[:, cols], scores[:, cols], average="macro")
            ),
            "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        }
    return {
        "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)),
    }
