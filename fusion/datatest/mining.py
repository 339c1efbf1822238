"""Failure mining: what in the training data a failing slice resembles, confuses and was pushed by.

For the samples a slice gets wrong this finds

- their nearest training samples in embedding space (cosine similarity): what to look at first;
- the most confused class pairs (true → predicted): what to relabel or add;
- the training samples with the most influence on them, by TracIn (Pruthi et al., 2020) on the
  last layer: a linear head on the embeddings, trained by gradient descent with a few
  checkpoints, where the influence of a training sample ``z`` on a test sample ``z'`` is
  ``Σ_c η ∇ℓ(w_c, z) · ∇ℓ(w_c, z')``. Negative influence means training on ``z`` raised the
  loss on ``z'``: the most *harmful* samples are the candidates to relabel or remove (a
  mislabelled neighbour ranks first), the most *helpful* ones are what more data should
  resemble.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusion.probe.metrics import Task

__all__ = [
    "ConfusedPair",
    "Mining",
    "TracInHead",
    "confused_pairs",
    "cosine_neighbours",
    "failures",
    "mine_failures",
]


def cosine_neighbours(
    query: np.ndarray, reference: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``reference`` most similar (cosine) to each row of ``query``.

    Returns:
        ``(M, k)`` row indices into ``reference``, most similar first, and their similarities.
    """

    def unit(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        out: np.ndarray = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        return out

    sim = unit(query) @ unit(reference).T
    k = min(k, reference.shape[0])
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(sim, idx, axis=1)


@dataclass(frozen=True)
class ConfusedPair:
    """``count`` samples of class ``true`` predicted as ``predicted`` (multi-label: a missed
    ``true`` label alongside a spurious ``predicted`` one)."""

    true: str
    predicted: str
    count: int


def _name(i: int, class_names: Sequence[str] | None) -> str:
    return class_names[i] if class_names and 0 <= i < len(class_names) else str(i)


def confused_pairs(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    top: int = 5,
) -> list[ConfusedPair]:
    """The most frequent (true, predicted) pairs among wrong predictions, most frequent first.

    Args:
        y_true: ``(N,)`` class indices or ``(N, K)`` multi-hot.
        y_pred: the predictions, same shape.
        class_names: index → name.
        top: pairs to keep.
    """
    counts: Counter[tuple[int, int]] = Counter()
    if y_true.ndim == 1:
        for t, p in zip(y_true.tolist(), y_pred.tolist(), strict=True):
            if t != p:
                counts[(int(t), int(p))] += 1
    else:
        for t, p in zip(y_true, y_pred, strict=True):
            missed = np.flatnonzero((t > 0.5) & (p < 0.5))
            spurious = np.flatnonzero((t < 0.5) & (p > 0.5))
            counts.update((int(m), int(s)) for m in missed for s in spurious)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [ConfusedPair(_name(t, class_names), _name(p, class_names), n) for (t, p), n in ranked]


class TracInHead:
    """A linear head on embeddings, trained with checkpoints, for TracIn influence estimates.

    The head is softmax regression (classification), per-label logistic regression
    (multi-label) or least squares on standardised targets (regression), on standardised
    features with a bias, trained by full-batch gradient descent with step ``1 / L`` (``L``
    bounds the loss's curvature, so the descent is stable without tuning). The per-sample loss
    gradient of a linear head factorises as ``x̃ ⊗ r`` (features with bias times the residual
    ``p - y``), so influence needs no per-sample gradient vectors: ``∇ℓ_i · ∇ℓ_j =
    (x̃_i · x̃_j)(r_i · r_j)``.

    Args:
        task: ``"classification"``, ``"multilabel"`` or ``"regression"``.
        steps: gradient steps.
        checkpoints: weights kept, evenly spaced over the steps (TracIn-CP sums over them).
        l2: weight decay.
        n_outputs: classes (classification; default: the largest label + 1).
    """

    def __init__(
        self,
        task: Task = "classification",
        *,
        steps: int = 300,
        checkpoints: int = 5,
        l2: float = 1e-4,
        n_outputs: int | None = None,
    ) -> None:
        self.task: Task = task
        self.steps = steps
        self.checkpoints = checkpoints
        self.l2 = l2
        self.n_outputs = n_outputs

    def _features(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, dtype=np.float64) - self.mean_) / self.scale_
        return np.concatenate([z, np.ones((len(z), 1))], axis=1)

    def _targets(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y)
        if self.task == "classification":
            return np.eye(self.k_)[y.astype(np.int64)]
        if self.task == "multilabel":
            return y.astype(np.float64)
        return ((y.astype(np.float64) - self.y_mean_) / self.y_scale_)[:, None]

    def _outputs(self, xt: np.ndarray, w: np.ndarray) -> np.ndarray:
        z: np.ndarray = xt @ w
        if self.task == "classification":
            e = np.exp(z - z.max(axis=1, keepdims=True))
            z = e / e.sum(axis=1, keepdims=True)
        elif self.task == "multilabel":
            z = 1.0 / (1.0 + np.exp(-z))
        return z

    def fit(self, x: np.ndarray, y: np.ndarray) -> TracInHead:
        """Train on embeddings ``x`` ``(N, D)`` and labels ``y``, keeping checkpoints."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y)
        self.mean_ = x.mean(axis=0)
        self.scale_ = np.maximum(x.std(axis=0), 1e-6)
        if self.task == "classification":
            self.k_ = int(self.n_outputs or int(y.max()) + 1)
        elif self.task == "multilabel":
            self.k_ = int(y.shape[1])
        else:
            self.k_ = 1
            self.y_mean_ = float(y.mean())
            self.y_scale_ = max(float(y.std()), 1e-6)
        xt, target = self._features(x), self._targets(y)
        n = len(xt)
        # Curvature of the loss in the logits: ≤ 1/2 (softmax), 1/4 (sigmoid), 1 (squares).
        curvature = {"classification": 0.5, "multilabel": 0.25, "regression": 1.0}[self.task]
        top = float(np.linalg.eigvalsh(xt.T @ xt / n)[-1])
        self.lr_ = 1.0 / (curvature * top + self.l2)
        w = np.zeros((xt.shape[1], self.k_))
        keep = set(np.linspace(0, self.steps, self.checkpoints + 1, dtype=int)[1:].tolist())
        self.checkpoints_: list[np.ndarray] = []
        for step in range(1, self.steps + 1):
            grad = xt.T @ (self._outputs(xt, w) - target) / n + self.l2 * w
            w = w - self.lr_ * grad
            if step in keep:
                self.checkpoints_.append(w.copy())
        return self

    @property
    def weights_(self) -> np.ndarray:
        """The final weights ``(D + 1, K)`` (bias last)."""
        return self.checkpoints_[-1]

    def loss(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-sample loss ``(N,)`` at the final weights."""
        xt, target = self._features(x), self._targets(y)
        p = np.clip(self._outputs(xt, self.weights_), 1e-12, 1 - 1e-12)
        out: np.ndarray
        if self.task == "classification":
            out = -np.log((p * target).sum(axis=1))
        elif self.task == "multilabel":
            out = -(target * np.log(p) + (1 - target) * np.log(1 - p)).sum(axis=1)
        else:
            out = 0.5 * ((p - target) ** 2).sum(axis=1)
        return out

    def influence(
        self, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
    ) -> np.ndarray:
        """TracIn-CP influence ``(N_train, N_test)`` of each training sample on each test
        sample (negative: training on it raised that test sample's loss)."""
        a, ya = self._features(x_train), self._targets(y_train)
        b, yb = self._features(x_test), self._targets(y_test)
        gram = a @ b.T
        out = np.zeros((len(a), len(b)))
        for w in self.checkpoints_:
            ra, rb = self._outputs(a, w) - ya, self._outputs(b, w) - yb
            out += self.lr_ * gram * (ra @ rb.T)
        return out

    def self_influence(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """TracIn self-influence ``(N,)``: high for samples the head struggles to fit, such as
        mislabelled ones."""
        xt, target = self._features(x), self._targets(y)
        sq = (xt**2).sum(axis=1)
        out = np.zeros(len(xt))
        for w in self.checkpoints_:
            out += self.lr_ * sq * ((self._outputs(xt, w) - target) ** 2).sum(axis=1)
        return out


def failures(task: Task, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Bool ``(N,)``: the predictions that count as failures — wrong classes (any wrong label,
    multi-label), or the quarter with the largest errors (regression, at least one)."""
    if task == "regression":
        err = np.abs(np.asarray(y_pred, dtype=np.float64) - y_true)
        out = np.zeros(len(err), dtype=bool)
        out[np.argsort(-err, kind="stable")[: max(1, len(err) // 4)]] = True
        return out
    wrong = np.asarray(np.asarray(y_true) != np.asarray(y_pred))
    return wrong if wrong.ndim == 1 else np.asarray(wrong.any(axis=1))


@dataclass
class Mining:
    """What failure mining found for one failing slice. Positions index the dataset splits.

    Args:
        worst: test positions of the worst cases, worst first.
        neighbours: ``(W, k)`` training positions nearest to each worst case.
        similarity: ``(W, k)`` their cosine similarities.
        confused: the most confused class pairs.
        harmful: ``(training position, influence)`` most negative influence on the failures.
        helpful: ``(training position, influence)`` most positive influence.
        n_failures: samples of the slice counted as failures.
        sheet: the contact-sheet PNG, once written.
    """

    worst: np.ndarray
    neighbours: np.ndarray
    similarity: np.ndarray
    confused: list[ConfusedPair]
    harmful: list[tuple[int, float]]
    helpful: list[tuple[int, float]]
    n_failures: int
    sheet: Path | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_failures": self.n_failures,
            "worst": [
                {
                    "test_index": int(t),
                    "neighbours": [
                        {"train_index": int(i), "similarity": round(float(s), 4)}
                        for i, s in zip(nb, sim, strict=True)
                    ],
                }
                for t, nb, sim in zip(self.worst, self.neighbours, self.similarity, strict=True)
            ],
            "confused": [vars(p) for p in self.confused],
            "harmful": [{"train_index": i, "influence": v} for i, v in self.harmful],
            "helpful": [{"train_index": i, "influence": v} for i, v in self.helpful],
            "contact_sheet": str(self.sheet) if self.sheet else None,
        }


def mine_failures(
    head: TracInHead,
    *,
    x_train: np.ndarray,
    y_train: np.ndarray,
    train_index: np.ndarray,
    x_slice: np.ndarray,
    y_slice: np.ndarray,
    y_pred: np.ndarray,
    slice_index: np.ndarray,
    class_names: Sequence[str] | None = None,
    worst: int = 6,
    neighbours: int = 4,
    top: int = 10,
) -> Mining:
    """Neighbours, confusions and influence for the failures of one slice.

    Args:
        head: a :class:`TracInHead` fitted on ``x_train``, ``y_train``.
        x_train: ``(N, D)`` training embeddings; ``y_train`` their labels.
        train_index: ``(N,)`` dataset positions of those training rows.
        x_slice: ``(M, D)`` embeddings of the slice; ``y_slice`` its labels.
        y_pred: the probe's predictions on the slice.
        slice_index: ``(M,)`` test positions of the slice rows.
        class_names: index → name.
        worst: worst cases kept (wrong ones first, then by the head's loss).
        neighbours: nearest training samples per worst case.
        top: harmful and helpful training samples kept.
    """
    failed = failures(head.task, y_slice, y_pred)
    loss = head.loss(x_slice, y_slice)
    order = np.lexsort((-loss, ~failed))[:worst]  # failures first, then the highest loss
    nb, sim = cosine_neighbours(x_slice[order], x_train, neighbours)
    rows = np.flatnonzero(failed) if failed.any() else order
    total = head.influence(x_train, y_train, x_slice[rows], y_slice[rows]).sum(axis=1)
    ranked = np.argsort(total, kind="stable")
    harmful = [(int(train_index[i]), float(total[i])) for i in ranked[:top] if total[i] < 0]
    helpful = [(int(train_index[i]), float(total[i])) for i in ranked[::-1][:top] if total[i] > 0]
    confused = confused_pairs(y_slice, y_pred, class_names) if head.task != "regression" else []
    return Mining(
        worst=slice_index[order],
        neighbours=train_index[nb],
        similarity=sim,
        confused=confused,
        harmful=harmful,
        helpful=helpful,
        n_failures=int(failed.sum()),
    )
