"""On-device online learning heads (TinyOL): :class:`OnlineClassifier`, a softmax head that can
grow a class at run time, and :class:`OnlineAutoencoder`, whose reconstruction error scores
anomalies. Both learn one sample at a time in float32 on the frozen int8 student's embedding, with
running input normalisation and a divergence guard (:mod:`fusion.deploy.online_base`), and follow
scikit-learn's estimator interface (``fit``, ``partial_fit``, ``predict``, ``score_samples``,
learned state with a trailing underscore).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np

from fusion.deploy.errors import OnlineConfigError
from fusion.deploy.online_base import F32, OnlineHead, OnlineNormaliser

__all__ = ["OnlineAutoencoder", "OnlineClassifier", "OnlineHead", "OnlineNormaliser"]


class OnlineClassifier(OnlineHead):
    """A softmax head on the standardised embedding that learns per sample and can grow a class.

    Learned state: ``coef_`` ``(K, D)`` and ``intercept_`` ``(K,)`` float32, ``classes_`` (the K
    labels, in row order), ``norm_`` (the running statistics) and the counters of
    :class:`OnlineHead`. A label not seen before adds a zero row (:meth:`add_class`) up to
    ``max_classes``, the capacity the device reserves.

    Args:
        n_features: D.
        classes: initial class labels (rows), if known before the first sample.
        max_classes: rows reserved in RAM.
        **kwargs: see :class:`OnlineHead`.
    """

    _weights = ("coef_", "intercept_")

    def __init__(
        self,
        n_features: int,
        *,
        classes: Iterable[Hashable] = (),
        max_classes: int = 8,
        **kwargs: Any,
    ) -> None:
        self.initial_classes = tuple(classes)
        self.max_classes = max_classes
        if max_classes < max(2, len(self.initial_classes)):
            raise OnlineConfigError(
                f"max_classes {max_classes} must be ≥ 2 and ≥ the {len(self.initial_classes)} "
                "initial classes"
            )
        super().__init__(n_features, **kwargs)

    def _init_weights(self) -> None:
        self.classes_: list[Hashable] = list(self.initial_classes)
        self.coef_ = np.zeros((len(self.classes_), self.n_features), dtype=F32)
        self.intercept_ = np.zeros(len(self.classes_), dtype=F32)

    @property
    def n_classes(self) -> int:
        return len(self.classes_)

    def add_class(self, label: Hashable) -> int:
        """Grow a zero row for ``label`` (in the snapshot too, so a rollback keeps the class);
        returns its row.

        Raises:
            OnlineConfigError: ``label`` exists already or the head is full.
        """
        if label in self.classes_:
            raise OnlineConfigError(f"class {label!r} exists already (row {self.index(label)})")
        if self.n_classes >= self.max_classes:
            raise OnlineConfigError(
                f"cannot add class {label!r}: the head holds max_classes={self.max_classes} "
                f"rows, all used by {self.classes_}"
            )
        self.classes_.append(label)
        row = np.zeros((1, self.n_features), dtype=F32)
        # The new row starts at zero in the weights and in the snapshot alike (a rollback keeps
        # the class; the other rows of the snapshot stay the last good ones).
        self.coef_ = np.vstack([self.coef_, row])
        self.intercept_ = np.append(self.intercept_, F32(0.0)).astype(F32)
        snap = self.snapshot_
        snap["coef_"] = np.vstack([snap["coef_"], row])
        snap["intercept_"] = np.append(snap["intercept_"], F32(0.0)).astype(F32)
        return self.n_classes - 1

    def index(self, label: Hashable) -> int:
        return self.classes_.index(label)

    # --- learning ------------------------------------------------------------------------------
    def partial_fit(self, x: np.ndarray, y: Any = None) -> OnlineClassifier:
        """Learn from samples in order: ``x`` ``(N, D)`` with labels ``y`` ``(N,)``, or one
        sample ``(D,)`` with its label. An unknown label grows the head; a sample with a
        non-finite feature is skipped and counted.

        Raises:
            OnlineConfigError: no labels, as many labels as samples, or a head already full.
        """
        if y is None:
            raise OnlineConfigError("the classifier learns from labelled samples; give y")
        rows = np.atleast_2d(np.asarray(x, dtype=F32))
        labels = [y] if np.ndim(x) == 1 else list(y)
        if len(labels) != len(rows):
            raise OnlineConfigError(f"{len(rows)} samples but {len(labels)} labels")
        for row, label in zip(rows, labels, strict=True):
            if not np.isfinite(row).all():
                self.n_skipped_ += 1
                continue
            if label not in self.classes_:
                self.add_class(label)
            self._step(row, self.index(label))
        return self

    def fit(
        self, x: np.ndarray, y: Any = None, *, epochs: int = 5, shuffle: bool = True
    ) -> OnlineClassifier:
        """Offline warm start (before deployment): reset, exact statistics of ``x`` ``(N, D)``,
        then ``epochs`` passes of the same per-sample SGD on labels ``y`` ``(N,)``. Classes are
        ordered by first appearance after the initial ones."""
        if y is None or len(y) != len(x):
            raise OnlineConfigError("fit needs one label per sample")
        self._reset()
        for label in y:
            if label not in self.classes_:
                self.add_class(label)
        self._warm(np.asarray(x, dtype=F32), [self.index(v) for v in y], epochs, shuffle)
        return self

    def _loss(self, z: np.ndarray, target: int) -> np.float32:
        if self.n_classes == 0:
            raise OnlineConfigError("the classifier has no class yet; give a label")
        logits = self.coef_ @ z + self.intercept_
        m = logits.max()
        e = np.exp(logits - m)
        s = e.sum(dtype=F32)
        self._probs = e / s
        self._last_loss = F32(np.log(s) - (logits[target] - m))
        return self._last_loss

    def _update(self, z: np.ndarray, target: int) -> None:
        g = self._probs.copy()
        g[target] -= F32(1.0)
        lr, l2 = self.lr_, F32(self.l2)
        self.coef_ = self.coef_ - lr * (np.outer(g, z) + l2 * self.coef_)
        self.intercept_ = self.intercept_ - lr * g

    # --- inference ---------------------------------------------------------------------------
    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """Logits ``(N, K)`` of features ``(N, D)`` with the current statistics."""
        z = self.norm_.transform(np.atleast_2d(x))
        out: np.ndarray = z @ self.coef_.T + self.intercept_
        return out

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        logits = self.decision_function(x)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        out: np.ndarray = e / e.sum(axis=1, keepdims=True)
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Labels ``(N,)`` (an object array when labels are not numbers)."""
        idx = self.decision_function(x).argmax(axis=1)
        return np.asarray([self.classes_[i] for i in idx])

    # --- accounting --------------------------------------------------------------------------
    def ram_layout(self) -> dict[str, tuple[str, int]]:
        k, d = self.max_classes, self.n_features
        return {
            "w": ("weights", k * d),
            "b": ("weights", k),
            "w_snap": ("snapshot", k * d),
            "b_snap": ("snapshot", k),
            "g": ("gradients", k),
            "z": ("workspace", d),
            "mean": ("statistics", d),
            "var": ("statistics", d),
            **self._scalars(),
            "n_classes": ("scalars", 1),
        }

    def macs_per_update(self) -> int:
        k, d = max(self.n_classes, 1), self.n_features
        # logits K·D; weight update K·D (g·z) + K·D (decay); softmax K
        return 4 * d + 3 * k * d + k


class OnlineAutoencoder(OnlineHead):
    """A tied-weight linear autoencoder on the standardised embedding whose reconstruction error
    scores anomalies; it keeps learning what is normal, sample by sample.

    ``h = W z + b1`` (``H`` hidden units), ``r = Wᵀ h + b2``, error ``‖r − z‖² / D``. Tied
    weights halve the RAM of an untied pair at the same bottleneck.

    Learned state: ``coef_`` ``W (H, D)``, ``hidden_bias_`` ``(H,)``, ``output_bias_`` ``(D,)``,
    ``norm_``, ``offset_`` (``score_samples`` below it is an outlier) and the counters.

    Args:
        n_features: D.
        hidden: H.
        contamination: share of the warm-up samples above the outlier threshold ``offset_``.
        **kwargs: see :class:`OnlineHead`.
    """

    _weights = ("coef_", "hidden_bias_", "output_bias_")

    def __init__(
        self, n_features: int, *, hidden: int = 8, contamination: float = 0.05, **kwargs: Any
    ) -> None:
        if not 1 <= hidden <= n_features or not 0 < contamination < 0.5:
            raise OnlineConfigError(
                f"need 1 ≤ hidden ≤ n_features ({n_features}) and 0 < contamination < 0.5; got "
                f"{hidden}, {contamination}"
            )
        self.hidden = hidden
        self.contamination = contamination
        super().__init__(n_features, **kwargs)

    def _init_weights(self) -> None:
        rng = np.random.default_rng(self.seed)
        scale = 1.0 / np.sqrt(self.n_features)
        self.coef_ = (rng.standard_normal((self.hidden, self.n_features)) * scale).astype(F32)
        self.hidden_bias_ = np.zeros(self.hidden, dtype=F32)
        self.output_bias_ = np.zeros(self.n_features, dtype=F32)
        self.offset_ = F32(-np.inf)

    def partial_fit(self, x: np.ndarray, y: Any = None) -> OnlineAutoencoder:
        """Learn from samples ``(N, D)`` or ``(D,)`` in order (``y`` is ignored); non-finite
        samples are skipped and counted."""
        for row in np.atleast_2d(np.asarray(x, dtype=F32)):
            self._step(row, 0)
        return self

    def fit(
        self, x: np.ndarray, y: Any = None, *, epochs: int = 5, shuffle: bool = True
    ) -> OnlineAutoencoder:
        """Offline warm start on normal samples (see :meth:`OnlineHead._warm`), then the outlier
        threshold ``offset_`` at the ``1 − contamination`` quantile of their errors."""
        self._reset()
        x = np.asarray(x, dtype=F32)
        self._warm(x, [0] * len(x), epochs, shuffle)
        scores = self.score_samples(x[np.isfinite(x).all(axis=1)])
        self.offset_ = F32(np.quantile(scores, self.contamination))
        return self

    def _forward(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = self.coef_ @ z + self.hidden_bias_
        r = self.coef_.T @ h + self.output_bias_
        return h, r

    def _loss(self, z: np.ndarray, target: int) -> np.float32:
        h, r = self._forward(z)
        e = r - z
        self._hidden, self._err = h, e
        self._last_loss = F32((e * e).sum(dtype=F32) / F32(self.n_features))
        return self._last_loss

    def _update(self, z: np.ndarray, target: int) -> None:
        g_r = (F32(2.0) / F32(self.n_features)) * self._err
        g_h = self.coef_ @ g_r
        lr, l2 = self.lr_, F32(self.l2)
        # W appears in the encoder and the decoder: both gradients add.
        grad = np.outer(self._hidden, g_r) + np.outer(g_h, z) + l2 * self.coef_
        self.coef_ = self.coef_ - lr * grad
        self.hidden_bias_ = self.hidden_bias_ - lr * g_h
        self.output_bias_ = self.output_bias_ - lr * g_r

    def reconstruction_error(self, x: np.ndarray) -> np.ndarray:
        """Mean squared reconstruction error ``(N,)`` of the standardised features (higher:
        more anomalous)."""
        z = self.norm_.transform(np.atleast_2d(x))
        h = z @ self.coef_.T + self.hidden_bias_
        r = h @ self.coef_ + self.output_bias_
        out: np.ndarray = ((r - z) ** 2).mean(axis=1)
        return out

    def score_samples(self, x: np.ndarray) -> np.ndarray:
        """``−reconstruction_error`` (scikit-learn's convention: the lower, the more abnormal)."""
        return -self.reconstruction_error(x)

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return self.score_samples(x) - self.offset_

    def predict(self, x: np.ndarray) -> np.ndarray:
        """+1 for inliers, −1 for outliers (below ``offset_``)."""
        return np.where(self.decision_function(x) >= 0, 1, -1)

    def ram_layout(self) -> dict[str, tuple[str, int]]:
        h, d = self.hidden, self.n_features
        return {
            "w": ("weights", h * d),
            "b1": ("weights", h),
            "b2": ("weights", d),
            "w_snap": ("snapshot", h * d),
            "b1_snap": ("snapshot", h),
            "b2_snap": ("snapshot", d),
            "g_r": ("gradients", d),
            "g_h": ("gradients", h),
            "z": ("workspace", d),
            "h": ("workspace", h),
            "mean": ("statistics", d),
            "var": ("statistics", d),
            **self._scalars(),
        }

    def macs_per_update(self) -> int:
        h, d = self.hidden, self.n_features
        # encode H·D, decode H·D, g_h H·D, weight update 3·H·D (two outer products, decay), error D
        return 4 * d + 6 * h * d + d
