"""Probes on frozen features, in the style of scikit-learn: ``fit(x, y)``, ``predict``, ``score``.

Each probe is a thin, named wrapper around a scikit-learn estimator chosen per task, so that every
representation in a comparison is read out the same way:

- :class:`KNNProbe`: k nearest neighbours by cosine distance (CSF reported 10-NN accuracy).
- :class:`LinearProbe`: standardised features → logistic regression (classification, one per
  label for multi-label) or ridge regression with the penalty chosen by cross-validation.
- :class:`ForestProbe`: a random forest (the classic baseline on band statistics, and the
  "Presto + random forest" reading of embeddings).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import is_classifier
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fusion.probe.metrics import Task, check_labels, score

__all__ = ["PROBES", "ForestProbe", "KNNProbe", "LinearProbe", "Probe", "make_probe"]


class Probe:
    """Base: task checking, prediction and scoring around one scikit-learn estimator.

    Args:
        task: ``"classification"``, ``"multilabel"`` or ``"regression"``.
    """

    name = "probe"

    def __init__(self, task: Task = "classification") -> None:
        check_labels(task, np.zeros(1 if task != "multilabel" else (1, 1)))  # validates task
        self.task: Task = task
        self.model: Any = None

    def _estimator(self, n_train: int) -> Any:
        raise NotImplementedError

    def fit(self, x: np.ndarray, y: np.ndarray) -> Probe:
        y = check_labels(self.task, y, where=f"{self.name} probe (train)")
        self.model = self._estimator(len(x)).fit(np.asarray(x, dtype=np.float64), y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        pred = np.asarray(self.model.predict(np.asarray(x, dtype=np.float64)))
        if self.task == "multilabel" and pred.dtype.kind == "f":
            return (pred >= 0.5).astype(np.int64)
        return pred

    def decision(self, x: np.ndarray) -> np.ndarray | None:
        """Per-label scores for multi-label mAP (``None`` for other tasks)."""
        if self.task != "multilabel":
            return None
        x = np.asarray(x, dtype=np.float64)
        if not is_classifier(self.model):  # k-NN: the neighbours' mean label is the score
            return np.asarray(self.model.predict(x), dtype=np.float64)
        proba = self.model.predict_proba(x)
        if isinstance(proba, list):  # forests: one (N, classes seen) array per label
            cols = []
            for p, classes in zip(proba, self.model.classes_, strict=True):
                hit = np.flatnonzero(np.asarray(classes) == 1)
                cols.append(p[:, hit[0]] if hit.size else np.zeros(len(p)))
            return np.stack(cols, axis=1)
        return np.asarray(proba)

    def score(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Every metric of the task (:data:`fusion.probe.metrics.METRICS`)."""
        y = check_labels(self.task, y, where=f"{self.name} probe (test)")
        return score(self.task, y, self.predict(x), self.decision(x))


class KNNProbe(Probe):
    """k nearest neighbours by cosine distance; multi-label scores are neighbour label means.

    Args:
        task: the task.
        k: neighbours (capped at the training size).
    """

    name = "knn"

    def __init__(self, task: Task = "classification", *, k: int = 10) -> None:
        super().__init__(task)
        self.k = k

    def _estimator(self, n_train: int) -> Any:
        k = max(1, min(self.k, n_train))
        if self.task == "classification":
            return KNeighborsClassifier(n_neighbors=k, metric="cosine")
        return KNeighborsRegressor(n_neighbors=k, metric="cosine")


class LinearProbe(Probe):
    """Standardised features → logistic regression (one-vs-rest for multi-label) or ridge.

    Args:
        task: the task.
        c: inverse L2 penalty of the logistic regression.
        max_iter: solver iterations.
    """

    name = "linear"

    def __init__(
        self, task: Task = "classification", *, c: float = 1.0, max_iter: int = 3000
    ) -> None:
        super().__init__(task)
        self.c = c
        self.max_iter = max_iter

    def _estimator(self, n_train: int) -> Any:
        if self.task == "regression":
            return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 15)))
        clf = LogisticRegression(C=self.c, max_iter=self.max_iter)
        if self.task == "multilabel":
            return make_pipeline(StandardScaler(), OneVsRestClassifier(clf))
        return make_pipeline(StandardScaler(), clf)


class ForestProbe(Probe):
    """A random forest (classifier, multi-label classifier or regressor).

    Args:
        task: the task.
        trees: number of trees.
        seed: random state.
    """

    name = "forest"

    def __init__(self, task: Task = "classification", *, trees: int = 300, seed: int = 0) -> None:
        super().__init__(task)
        self.trees = trees
        self.seed = seed

    def _estimator(self, n_train: int) -> Any:
        kw: dict[str, Any] = {"n_estimators": self.trees, "random_state": self.seed, "n_jobs": -1}
        if self.task == "regression":
            return RandomForestRegressor(**kw)
        return RandomForestClassifier(**kw)


PROBES: dict[str, type[Probe]] = {"knn": KNNProbe, "linear": LinearProbe, "forest": ForestProbe}


def make_probe(name: str, task: Task, **kwargs: Any) -> Probe:
    """A probe by name (``knn``, ``linear``, ``forest``)."""
    if name not in PROBES:
        raise ValueError(f"unknown probe {name!r}; expected one of {sorted(PROBES)}")
    return PROBES[name](task, **kwargs)
