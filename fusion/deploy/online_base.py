"""What every on-device learning head shares (TinyOL, Ren et al. 2021): the running input
normalisation and per-sample SGD with a divergence guard, on the frozen int8 student's embedding.

The student stays in flash; only the head below learns. Per sample ``x`` (the dequantised
``(D,)`` embedding, see :class:`~fusion.deploy.stream.FrozenExtractor`):

1. a sample with a non-finite feature is skipped and counted (``n_skipped_``), never learned from;
2. :class:`OnlineNormaliser` updates the running mean and variance of every feature and
   standardises ``x`` into ``z``;
3. the head computes its loss on ``z`` (cross-entropy for :class:`OnlineClassifier`,
   reconstruction error for :class:`OnlineAutoencoder`) and takes one SGD step;
4. a divergence guard on the running loss (an exponential mean with weight ``loss_momentum``):
   a non-finite loss, or a running loss above ``explode_factor · max(loss_ref, loss_floor)``,
   restores the last good snapshot of the weights, skips the sample and multiplies the learning
   rate by ``lr_drop`` (``n_rollbacks_``). A snapshot (and a new ``loss_ref``) is taken every
   ``snapshot_every`` updates while the running loss is healthy (at most twice
   ``max(loss_ref, loss_floor)``, so a slowly degrading head is never saved); a new class adds a
   zero row to the weights and to the snapshot. The running loss, not single losses, decides:
   one hard but legitimate sample (a new class, an outlier) moves it by ``loss_momentum`` of its
   loss only.

All state and arithmetic are float32 and ordered as in the C runtime that
:func:`~fusion.deploy.online_c.export_online_c` generates, so both agree to rounding (the dot
products and sums are accumulated in a different order).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from fusion.deploy.errors import DivergenceError, OnlineConfigError

__all__ = ["F32", "WORD", "OnlineHead", "OnlineNormaliser"]

F32 = np.float32
#: Bytes of one float32 or int32 word of the on-device state.
WORD = 4


class OnlineNormaliser:
    """Running per-feature mean and variance, updated sample by sample.

    Welford's update written in exponential form: with ``a = 1 / min(n, window)``,
    ``d = x − mean``, ``mean += a·d`` and ``var = (1 − a)·(var + a·d²)``. For ``n ≤ window`` this
    is exactly the running (population) mean and variance; beyond, it forgets with a time
    constant of ``window`` samples, so the normalisation follows a drifting sensor.

    Args:
        n_features: D.
        window: samples after which old statistics start to fade (≥ 1).
        eps: added to the variance before the square root, in squared feature units.
    """

    def __init__(self, n_features: int, *, window: int = 100, eps: float = 1e-4) -> None:
        if n_features < 1 or window < 1 or not eps > 0:
            raise OnlineConfigError(
                f"OnlineNormaliser needs n_features ≥ 1, window ≥ 1 and eps > 0; got "
                f"{n_features}, {window}, {eps}"
            )
        self.n_features = n_features
        self.window = window
        self.eps = F32(eps)
        self.count_ = 0
        self.mean_ = np.zeros(n_features, dtype=F32)
        self.var_ = np.zeros(n_features, dtype=F32)

    def update(self, x: np.ndarray) -> None:
        """Add one finite float32 ``(D,)`` sample."""
        self.count_ += 1
        a = F32(1.0) / F32(min(self.count_, self.window))
        d = x - self.mean_
        self.mean_ = self.mean_ + a * d
        self.var_ = (F32(1.0) - a) * (self.var_ + a * d * d)

    def fit(self, x: np.ndarray) -> OnlineNormaliser:
        """Exact statistics of a batch ``(N, D)`` (finite rows only); the count is ``N``."""
        rows = x[np.isfinite(x).all(axis=1)].astype(np.float64)
        if len(rows) == 0:
            raise OnlineConfigError("no finite sample to compute the feature statistics from")
        self.count_ = len(rows)
        self.mean_ = rows.mean(axis=0).astype(F32)
        self.var_ = rows.var(axis=0).astype(F32)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Standardise ``(D,)`` or ``(N, D)`` features with the current statistics (float32)."""
        out: np.ndarray = (np.asarray(x, dtype=F32) - self.mean_) / np.sqrt(self.var_ + self.eps)
        return out


class OnlineHead:
    """What both heads share: the normaliser, per-sample SGD with a divergence guard, the
    counters and the RAM and MAC accounting (see the module docstring).

    Args:
        n_features: D, the student's embedding size.
        lr: SGD learning rate.
        l2: weight decay per update (applied to weights, not biases).
        norm_window: time constant of the running feature statistics, in samples.
        eps: variance floor of the normalisation, in squared embedding units.
        snapshot_every: healthy updates between snapshots of the weights.
        explode_factor: a running loss above ``explode_factor · max(loss_ref, loss_floor)``
            means divergence.
        loss_floor: the smallest reference loss (nats or squared standard deviations).
        lr_drop: learning-rate factor applied at each rollback.
        min_lr: below this learning rate training gives up with :class:`DivergenceError`.
        loss_momentum: weight of the newest loss in the running loss.
        seed: seed of the initial weights (autoencoder).
    """

    #: names of the learned arrays, in C struct order (weights first).
    _weights: tuple[str, ...] = ()
    #: the loss of the last sample seen (before its update)
    _last_loss: np.float32 = F32(0.0)

    def __init__(
        self,
        n_features: int,
        *,
        lr: float = 0.05,
        l2: float = 1e-4,
        norm_window: int = 100,
        eps: float = 1e-4,
        snapshot_every: int = 20,
        explode_factor: float = 20.0,
        loss_floor: float = 1.0,
        lr_drop: float = 0.1,
        min_lr: float = 1e-7,
        loss_momentum: float = 0.05,
        seed: int = 0,
    ) -> None:
        checks = {
            "n_features ≥ 1": n_features >= 1,
            "lr > 0": lr > 0,
            "l2 ≥ 0": l2 >= 0,
            "snapshot_every ≥ 1": snapshot_every >= 1,
            "explode_factor > 1": explode_factor > 1,
            "loss_floor > 0": loss_floor > 0,
            "0 < lr_drop < 1": 0 < lr_drop < 1,
            "0 < min_lr < lr": 0 < min_lr < lr,
            "0 < loss_momentum ≤ 1": 0 < loss_momentum <= 1,
        }
        bad = [k for k, ok in checks.items() if not (ok and np.isfinite(lr))]
        if bad:
            raise OnlineConfigError(f"{type(self).__name__}: need {', '.join(bad)}")
        self.n_features = n_features
        self.lr = lr
        self.l2 = l2
        self.norm_window = norm_window
        self.eps = eps
        self.snapshot_every = snapshot_every
        self.explode_factor = explode_factor
        self.loss_floor = loss_floor
        self.lr_drop = lr_drop
        self.min_lr = min_lr
        self.loss_momentum = loss_momentum
        self.seed = seed
        self._reset()

    # --- state -------------------------------------------------------------------------------
    def _reset(self) -> None:
        self.norm_ = OnlineNormaliser(self.n_features, window=self.norm_window, eps=self.eps)
        self.lr_ = F32(self.lr)
        # A cold head starts its running loss at the floor: the first losses blend into it.
        self.loss_ema_ = F32(self.loss_floor)
        self.loss_ref_ = F32(self.loss_floor)
        self.n_updates_ = 0
        self.n_skipped_ = 0
        self.n_rollbacks_ = 0
        self.since_snapshot_ = 0
        self._init_weights()
        self._snapshot()

    def _init_weights(self) -> None:
        raise NotImplementedError

    def _snapshot(self) -> None:
        self.snapshot_ = {k: getattr(self, k).copy() for k in self._weights}

    def _restore(self) -> None:
        for k, v in self.snapshot_.items():
            setattr(self, k, v.copy())

    def copy(self) -> Any:
        """An independent deep copy (e.g. the frozen twin of a head before a stream)."""
        return copy.deepcopy(self)

    # --- one sample --------------------------------------------------------------------------
    def _step(self, x: np.ndarray, target: int, *, update_stats: bool = True) -> str:
        """Learn from one ``(D,)`` sample: ``"skipped"``, ``"updated"`` or ``"rolled_back"``."""
        x = np.asarray(x, dtype=F32)
        if x.shape != (self.n_features,):
            raise OnlineConfigError(
                f"{type(self).__name__}: a sample has shape {x.shape}, expected "
                f"({self.n_features},) (the student's embedding size)"
            )
        if not np.isfinite(x).all():
            self.n_skipped_ += 1
            return "skipped"
        if update_stats:
            self.norm_.update(x)
        z = self.norm_.transform(x)
        loss = self._loss(z, target)
        beta = F32(self.loss_momentum)
        ema = self.loss_ema_ + beta * (loss - self.loss_ema_)
        ref = max(self.loss_ref_, F32(self.loss_floor))
        if not np.isfinite(loss) or ema > F32(self.explode_factor) * ref:
            self._rollback()
            return "rolled_back"
        self._update(z, target)
        self.loss_ema_ = ema
        self.n_updates_ += 1
        self.since_snapshot_ += 1
        if self.since_snapshot_ >= self.snapshot_every and ema <= F32(2.0) * ref:
            self._snapshot()
            self.loss_ref_ = ema
            self.since_snapshot_ = 0
        return "updated"

    def _rollback(self) -> None:
        self._restore()
        self.lr_ = self.lr_ * F32(self.lr_drop)
        self.n_rollbacks_ += 1
        self.since_snapshot_ = 0
        self.loss_ema_ = self.loss_ref_
        if self.lr_ < F32(self.min_lr):
            raise DivergenceError(
                f"{type(self).__name__}: training diverged {self.n_rollbacks_} times; the "
                f"learning rate fell to {float(self.lr_):.3g} (< min_lr {self.min_lr:g}) starting "
                f"from {self.lr:g}"
            )

    def partial_fit(self, x: np.ndarray, y: Any = None) -> OnlineHead:
        """Learn from samples ``(N, D)`` or ``(D,)`` in order (see the subclasses)."""
        raise NotImplementedError

    def fit(
        self, x: np.ndarray, y: Any = None, *, epochs: int = 5, shuffle: bool = True
    ) -> OnlineHead:
        """Offline warm start (see the subclasses)."""
        raise NotImplementedError

    def _loss(self, z: np.ndarray, target: int) -> np.float32:
        """Forward pass: the loss of ``z``, keeping what :meth:`_update` needs."""
        raise NotImplementedError

    def _update(self, z: np.ndarray, target: int) -> None:
        raise NotImplementedError

    def _warm(self, x: np.ndarray, targets: Sequence[int], epochs: int, shuffle: bool) -> None:
        """Offline warm start: exact feature statistics, then ``epochs`` of per-sample SGD with
        the statistics held, then a snapshot with the last epoch's mean loss as reference."""
        x = np.asarray(x, dtype=F32)
        self.norm_.fit(x)
        rng = np.random.default_rng(self.seed)
        losses: list[float] = []
        for _ in range(epochs):
            order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
            losses = []
            for i in order:
                if self._step(x[i], targets[i], update_stats=False) == "updated":
                    losses.append(float(self._last_loss))
        self._snapshot()
        self.loss_ref_ = F32(np.mean(losses)) if losses else F32(self.loss_floor)
        self.loss_ema_ = self.loss_ref_
        # The counters describe life on the device; the learning rate keeps any drop.
        self.n_updates_ = self.n_rollbacks_ = self.since_snapshot_ = 0
        self.n_skipped_ = 0

    # --- accounting --------------------------------------------------------------------------
    def ram_layout(self) -> dict[str, tuple[str, int]]:
        """The on-device state, in C struct order: field → (part, number of 4-byte words).

        Parts: ``weights``, ``snapshot`` (last good weights), ``gradients`` (output gradients;
        weight gradients are applied in place, never stored), ``workspace`` (the normalised
        features and hidden activations), ``statistics`` (running mean and variance) and
        ``scalars`` (learning rate, losses, counters).
        """
        raise NotImplementedError

    def ram_bytes(self) -> int:
        """Bytes of RAM the update needs on the device (float32/int32): weights, snapshot,
        gradients, workspace, statistics and scalars (:meth:`ram_layout`)."""
        return WORD * sum(n for _, n in self.ram_layout().values())

    def ram_breakdown(self) -> dict[str, int]:
        """:meth:`ram_bytes` per part, in bytes."""
        out: dict[str, int] = {}
        for part, n in self.ram_layout().values():
            out[part] = out.get(part, 0) + WORD * n
        return out

    def macs_per_update(self) -> int:
        """Multiply-accumulates of one update: normalisation (4 per feature: the statistics
        update and the standardisation), the forward pass and the weight update."""
        raise NotImplementedError

    def _scalars(self) -> dict[str, tuple[str, int]]:
        names = ["lr", "loss_ema", "loss_ref", "count", "n_updates", "n_skipped"]
        names += ["n_rollbacks", "since_snapshot", "frozen"]
        return {n: ("scalars", 1) for n in names}

    def state(self) -> dict[str, Any]:
        """Counters and hyper-parameters, as plain data (reports)."""
        return {
            "lr": float(self.lr_),
            "updates": self.n_updates_,
            "skipped_nan": self.n_skipped_,
            "rollbacks": self.n_rollbacks_,
            "loss_ema": float(self.loss_ema_),
            "ram_bytes": self.ram_bytes(),
            "macs_per_update": self.macs_per_update(),
        }
