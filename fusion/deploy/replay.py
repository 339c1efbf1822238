"""Stream replay: a frozen deployed head against the same head learning on the device, sample by
sample, through injected drift (see :mod:`fusion.deploy.stream` for the drift language).

Protocol:

1. The pool of distinct stream samples is split, stratified by class, into *stream* rows (replayed
   in a seeded random order, with repetition, ``length`` samples) and *held-out* rows (never
   learned from; they measure what the head knows at any time without memorising).
2. The head is warm-started offline on the student's training split (or, when the student names
   no data, on the stream rows without drift), minus any ``newclass`` class; a copy stays
   frozen.
3. Per stream sample (test, then train): both heads predict, the online head then learns
   (:meth:`~fusion.deploy.online.OnlineClassifier.partial_fit`), timed.
4. Accuracy (classifier) or anomaly AUC (autoencoder: the held-out class, or label 1, is the
   anomaly) per window of the stream (prequential) and on the held-out rows under the drift in
   force, every ``eval_every`` samples.

Recovery of a value drift at sample ``a`` (gain, offset, sensor off), on the held-out rows:
``(online(a + horizon) − frozen_after) / (frozen_before − frozen_after)``, where ``frozen_before``
and ``frozen_after`` are the frozen head's accuracy without and with the drift. Forgetting after
a new class at ``a``: the online head's held-out accuracy on the original classes just before
``a`` minus at the end of the stream, in points.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from fusion.deploy.distill import TensorData
from fusion.deploy.drift import Drift, apply_drift
from fusion.deploy.errors import DriftSpecError, StreamError
from fusion.deploy.online import OnlineAutoencoder, OnlineClassifier, OnlineHead
from fusion.deploy.replay_report import ReplayReport
from fusion.deploy.stream import FrozenExtractor, StreamPool
from fusion.deploy.student_io import StudentBundle

__all__ = ["ReplayConfig", "ReplayReport", "replay"]

HeadKind = Literal["classifier", "autoencoder"]
Log = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass
class ReplayConfig:
    """Replay settings.

    Args:
        length: stream samples replayed.
        window: samples per prequential window.
        horizon: samples after a drift at which recovery is measured.
        eval_every: samples between held-out evaluations.
        heldout: share of the pool (per class) held out of the stream.
        head: ``classifier`` or ``autoencoder``.
        lr: SGD learning rate of the online head.
        norm_window: time constant of the running feature statistics, in samples.
        warm_epochs: passes of the offline warm start.
        hidden: autoencoder bottleneck.
        max_classes: classifier rows reserved on the device.
        min_loss_points: a drift costing fewer accuracy points gets no recovery share.
        seed: stream order, held-out split and initial weights.
    """

    length: int = 400
    window: int = 50
    horizon: int = 200
    eval_every: int = 10
    heldout: float = 0.5
    head: HeadKind = "classifier"
    lr: float = 0.05
    norm_window: int = 100
    warm_epochs: int = 5
    hidden: int = 8
    max_classes: int = 8
    min_loss_points: float = 5.0
    seed: int = 0

    def check(self) -> None:
        if self.length < 1 or self.window < 1 or self.horizon < 1 or self.eval_every < 1:
            raise StreamError("length, window, horizon and eval_every must be ≥ 1")
        if not 0 < self.heldout < 1:
            raise StreamError(f"heldout must be in (0, 1), got {self.heldout}")
        if self.head not in ("classifier", "autoencoder"):
            raise StreamError(f"unknown head {self.head!r}; expected classifier or autoencoder")


# --- building blocks ---------------------------------------------------------------------------


def _make_head(cfg: ReplayConfig, dim: int, eps: float) -> OnlineHead:
    common: dict[str, Any] = {
        "lr": cfg.lr,
        "norm_window": cfg.norm_window,
        "eps": eps,
        "seed": cfg.seed,
    }
    if cfg.head == "classifier":
        return OnlineClassifier(dim, max_classes=cfg.max_classes, **common)
    return OnlineAutoencoder(dim, hidden=cfg.hidden, **common)


def _split(labels: Sequence[str], share: float, rng: np.random.Generator) -> np.ndarray:
    """Bool mask of held-out rows: ``share`` of each class (at least one row stays in the
    stream and, when the class has two rows or more, one is held out)."""
    out = np.zeros(len(labels), dtype=bool)
    arr = np.asarray(labels, dtype=object)
    for name in sorted(set(labels)):
        idx = rng.permutation(np.flatnonzero(arr == name))
        k = min(max(1, round(share * len(idx))), len(idx) - 1)
        out[idx[:k]] = True
    return out


def _order(
    rows: np.ndarray,
    labels: Sequence[str],
    held: str | None,
    at: int,
    length: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Pool row of each stream sample: shuffled passes over the stream rows (those of the held
    class only from sample ``at`` on)."""
    old = np.asarray([r for r in rows if labels[r] != held])
    if len(old) == 0:
        raise StreamError("no stream sample outside the new class to replay before it appears")
    out = np.empty(length, dtype=np.int64)
    pools = {False: old, True: rows}
    queues: dict[bool, list[int]] = {False: [], True: []}
    for t in range(length):
        key = held is not None and t >= at
        if not queues[key]:
            queues[key] = list(rng.permutation(pools[key]))
        out[t] = queues[key].pop()
    return out


def _auc(score: np.ndarray, anomaly: np.ndarray) -> float:
    if anomaly.all() or not anomaly.any():
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(anomaly, score))


def _anomalies(names: Sequence[str] | None, held: str | None, n: int) -> np.ndarray | None:
    if names is None:
        return None
    if held is not None:
        return np.asarray([v == held for v in names])
    if set(names) <= {"0", "1", "0.0", "1.0"}:
        return np.asarray([v in ("1", "1.0") for v in names])
    return None


class _Scorer:
    """Accuracy or anomaly AUC of a head on a set of rows."""

    def __init__(self, kind: HeadKind, names: list[str] | None, anomaly: np.ndarray | None):
        self.kind, self.names, self.anomaly = kind, names, anomaly

    def __call__(self, head: OnlineHead, x: np.ndarray, rows: np.ndarray) -> float:
        ok = rows[np.isfinite(x[rows]).all(axis=1)]
        if len(ok) == 0:
            return float("nan")
        if isinstance(head, OnlineClassifier):
            assert self.names is not None
            pred = head.predict(x[ok])
            return float(np.mean([p == self.names[r] for p, r in zip(pred, ok, strict=True)]))
        assert isinstance(head, OnlineAutoencoder)
        if self.anomaly is None:
            return float("nan")
        return _auc(head.reconstruction_error(x[ok]), self.anomaly[ok])


# --- the replay --------------------------------------------------------------------------------


@dataclass
class ReplayInputs:
    """The frozen part of a replay, computed once: the stream's embeddings under every drift
    regime and the warm-start embeddings (seeds and head settings can then vary cheaply).

    Args:
        pool: the stream's distinct samples.
        drifts: every drift, by onset.
        groups: the value drifts (gain, offset, off) grouped by onset.
        regimes: float32 ``(N, D)`` embeddings of the pool with the first ``k`` groups applied
            (``regimes[0]``: no drift); NaN rows are invalid samples.
        warm: warm-start embeddings ``(M, D)``, their class names and a description, or
            ``None`` (warm start on the stream rows).
        extractor: the frozen int8 student.
        sensors: the student's sensors and stream keys.
    """

    pool: StreamPool
    drifts: list[Drift]
    groups: list[list[Drift]]
    regimes: list[np.ndarray]
    warm: tuple[np.ndarray, list[str], str] | None
    extractor: FrozenExtractor
    sensors: dict[str, tuple[str, ...]]


def embed_stream(
    bundle: StudentBundle,
    pool: StreamPool,
    drifts: Sequence[Drift] = (),
    *,
    warm: tuple[TensorData, Sequence[str]] | None = None,
    log: Log = _quiet,
) -> ReplayInputs:
    """Embed the stream pool under each drift regime and the warm-start data with the frozen
    int8 student (golden model).

    Args:
        bundle: the student.
        pool: the stream's samples (:func:`~fusion.deploy.stream.load_stream`).
        drifts: parsed drifts (:func:`~fusion.deploy.stream.parse_drift`).
        warm: labelled warm-start data and its class names (the student's training split).
        log: progress lines.
    """
    ext = FrozenExtractor(bundle.quantized)
    ordered = sorted(drifts, key=lambda d: d.at)
    onsets = sorted({d.at for d in ordered if d.transforms})
    groups = [[d for d in ordered if d.transforms and d.at == a] for a in onsets]
    log(f"embedding {len(pool.data)} stream samples under {len(groups) + 1} drift regime(s)")
    regimes = []
    for k in range(len(groups) + 1):
        applied = [d for g in groups[:k] for d in g]
        x, p = apply_drift(bundle, pool.data.inputs, pool.data.present, applied)
        regimes.append(ext.embed(x, p))
    warm_out = None
    if warm is not None:
        wdata, wnames = warm
        if wdata.labels is None:
            raise StreamError("the warm-start data carries no labels")
        log(f"embedding {len(wdata)} warm-start samples")
        wy = [str(wnames[int(i)]) for i in wdata.labels]
        desc = f"the student's training split ({len(wdata)} samples)"
        warm_out = (ext.embed(wdata.inputs, wdata.present), wy, desc)
    return ReplayInputs(pool, ordered, groups, regimes, warm_out, ext, bundle.sensors)


def replay(
    bundle: StudentBundle,
    pool: StreamPool,
    drifts: Sequence[Drift] = (),
    config: ReplayConfig | None = None,
    *,
    warm: tuple[TensorData, Sequence[str]] | None = None,
    log: Log = _quiet,
) -> ReplayReport:
    """Replay ``pool`` through the frozen student with a frozen and an online head
    (:func:`embed_stream`, then :func:`run_replay`)."""
    return run_replay(embed_stream(bundle, pool, drifts, warm=warm, log=log), config)


@dataclass
class _Split:
    """Rows of the pool: replayed (``stream``), held out (``heldout``), held out without the
    ``newclass`` class (``heldout_old``: accuracy before a new class and recovery count only the
    original classes), their labels (``"?"`` when unlabelled) and anomaly flags."""

    names: list[str] | None
    labels: list[str]
    stream: np.ndarray
    heldout: np.ndarray
    heldout_old: np.ndarray
    anomaly: np.ndarray | None


@dataclass
class _Trace:
    """What the stream loop records."""

    frozen_val: np.ndarray  # per sample: correct (0/1) or reconstruction error; NaN if skipped
    online_val: np.ndarray
    update_us: list[float]  # per update that was not skipped
    heldout: dict[str, list[float]]  # t, frozen, online every eval_every samples
    at_horizon: dict[int, float]  # online held-out score `horizon` after each value drift
    before_new: OnlineHead | None  # the online head just before a new class appears
    rollback_at: list[int]
    grew_at: list[int]


def _check(inputs: ReplayInputs, cfg: ReplayConfig) -> Drift | None:
    """Refuse what cannot be replayed; the ``newclass`` drift, if any."""
    pool = inputs.pool
    names = pool.label_names()
    if cfg.head == "classifier" and names is None:
        raise StreamError(
            f"stream {pool.source} carries no labels; the classifier head needs them "
            "(use the autoencoder head)"
        )
    newclass = next((d for d in inputs.drifts if d.kind == "newclass"), None)
    held = newclass.target if newclass is not None else None
    if held is not None and (names is None or held not in names):
        raise DriftSpecError(f"newclass: class {held!r} does not occur in stream {pool.source}")
    if len(pool.data) < 2:
        raise StreamError(
            f"stream {pool.source} holds {len(pool.data)} sample(s); a replay needs ≥ 2"
        )
    return newclass


def _split_pool(
    inputs: ReplayInputs, cfg: ReplayConfig, held: str | None, rng: np.random.Generator
) -> _Split:
    names = inputs.pool.label_names()
    n = len(inputs.pool.data)
    labels = names if names is not None else ["?"] * n
    is_held = _split(labels, cfg.heldout, rng)
    heldout = np.flatnonzero(is_held)
    old = heldout
    if cfg.head == "classifier" and held is not None:
        old = np.asarray([r for r in heldout if labels[r] != held], dtype=np.int64)
    return _Split(names, labels, np.flatnonzero(~is_held), heldout, old, _anomalies(names, held, n))


def _warm_start(
    inputs: ReplayInputs, cfg: ReplayConfig, split: _Split, held: str | None
) -> tuple[OnlineHead, str]:
    """A head fitted offline on the warm-start rows (minus the new class and, for the
    autoencoder, anomalies) and a description of those rows."""
    if inputs.warm is not None:
        wx, wy, source = inputs.warm
    else:
        wx = inputs.regimes[0][split.stream]
        wy = [split.labels[r] for r in split.stream]
        source = f"the stream rows without drift ({len(split.stream)} samples)"
    keep = np.asarray([y != held for y in wy]) & np.isfinite(wx).all(axis=1)
    w_anom = _anomalies(wy, held, len(wy)) if cfg.head == "autoencoder" else None
    if w_anom is not None:
        keep &= ~w_anom
    if not keep.any():
        raise StreamError("no finite warm-start sample")
    head = _make_head(cfg, inputs.extractor.dim, float(inputs.extractor.scale) ** 2)
    head.fit(wx[keep], [wy[i] for i in np.flatnonzero(keep)], epochs=cfg.warm_epochs)
    return head, source


def _run_stream(
    inputs: ReplayInputs,
    cfg: ReplayConfig,
    split: _Split,
    heads: tuple[OnlineHead, OnlineHead],
    score: _Scorer,
    order: np.ndarray,
    newclass: Drift | None,
    rng: np.random.Generator,
) -> _Trace:
    """Test, then train, sample by sample; held-out scores every ``eval_every`` samples."""
    online, frozen = heads
    regimes, labels = inputs.regimes, split.labels
    onsets = [g[0].at for g in inputs.groups]
    regime_of = np.searchsorted(onsets, np.arange(cfg.length), side="right")
    nan_drifts = [d for d in inputs.drifts if d.kind == "nan"]
    trace = _Trace(
        frozen_val=np.full(cfg.length, np.nan),
        online_val=np.full(cfg.length, np.nan),
        update_us=[],
        heldout={"t": [], "frozen": [], "online": []},
        at_horizon={},
        before_new=None,
        rollback_at=[],
        grew_at=[],
    )
    for t in range(cfg.length):
        r, row = int(regime_of[t]), int(order[t])
        x = regimes[r][row]
        if any(t >= d.at and rng.random() < float(d.value or 0) for d in nan_drifts):
            x = np.full_like(x, np.nan)
        if newclass is not None and t == newclass.at:
            trace.before_new = online.copy()
        if np.isfinite(x).all():
            if isinstance(online, OnlineClassifier):
                assert isinstance(frozen, OnlineClassifier)
                trace.frozen_val[t] = frozen.predict(x)[0] == labels[row]
                trace.online_val[t] = online.predict(x)[0] == labels[row]
            else:
                assert isinstance(online, OnlineAutoencoder)
                assert isinstance(frozen, OnlineAutoencoder)
                trace.frozen_val[t] = frozen.reconstruction_error(x)[0]
                trace.online_val[t] = online.reconstruction_error(x)[0]
        n_roll, n_cls = online.n_rollbacks_, getattr(online, "n_classes", 0)
        skipped = online.n_skipped_
        t0 = time.perf_counter_ns()
        online.partial_fit(x[None], [labels[row]])
        if online.n_skipped_ == skipped:
            trace.update_us.append((time.perf_counter_ns() - t0) / 1e3)
        if online.n_rollbacks_ != n_roll:
            trace.rollback_at.append(t)
        if getattr(online, "n_classes", 0) != n_cls:
            trace.grew_at.append(t)
        if (t + 1) % cfg.eval_every == 0 or t + 1 == cfg.length:
            rows = split.heldout if newclass is None or t >= newclass.at else split.heldout_old
            trace.heldout["t"].append(float(t + 1))
            trace.heldout["frozen"].append(score(frozen, regimes[r], rows))
            trace.heldout["online"].append(score(online, regimes[r], rows))
        for k, a in enumerate(onsets):
            if t + 1 == a + cfg.horizon:
                trace.at_horizon[k] = score(online, regimes[k + 1], split.heldout_old)
    return trace


def _forgetting(
    inputs: ReplayInputs,
    split: _Split,
    heads: tuple[OnlineHead, OnlineHead],
    score: _Scorer,
    trace: _Trace,
    newclass: Drift | None,
) -> dict[str, Any] | None:
    """Original-class accuracy before and after a new class appeared, and the new class's."""
    online, frozen = heads
    if newclass is None or not isinstance(online, OnlineClassifier) or trace.before_new is None:
        return None
    onsets = [g[0].at for g in inputs.groups]
    x_new = inputs.regimes[int(np.searchsorted(onsets, newclass.at, side="right"))]
    old = split.heldout_old
    new_rows = np.asarray(
        [r for r in split.heldout if split.labels[r] == newclass.target], dtype=np.int64
    )
    acc_b, acc_a = score(trace.before_new, x_new, old), score(online, x_new, old)
    return {
        "drift": str(newclass),
        "before": acc_b,
        "after": acc_a,
        "points": 100 * (acc_b - acc_a),
        "frozen_original_classes": score(frozen, x_new, old),
        "new_class_accuracy": score(online, x_new, new_rows),
        "new_class_grown_at": trace.grew_at[0] if trace.grew_at else None,
    }


def run_replay(inputs: ReplayInputs, config: ReplayConfig | None = None) -> ReplayReport:
    """Warm-start a head, then replay the stream sample by sample (module docstring).

    Raises:
        StreamError: a classifier on an unlabelled stream, or too few samples.
        DriftSpecError: a ``newclass`` label absent from the stream.
        DivergenceError: the online head kept diverging down to its smallest learning rate.
    """
    cfg = config or ReplayConfig()
    cfg.check()
    newclass = _check(inputs, cfg)
    held = newclass.target if newclass is not None else None
    rng = np.random.default_rng(cfg.seed)
    split = _split_pool(inputs, cfg, held, rng)
    online, source = _warm_start(inputs, cfg, split, held)
    heads = (online, online.copy())  # the online head and its frozen twin
    order = _order(
        split.stream, split.labels, held, newclass.at if newclass else 0, cfg.length, rng
    )
    score = _Scorer(cfg.head, split.names, split.anomaly)
    trace = _run_stream(inputs, cfg, split, heads, score, order, newclass, rng)

    metric = "accuracy" if cfg.head == "classifier" else "auc"
    curve = list(zip(trace.heldout["t"], trace.heldout["online"], strict=True))
    recovery = [
        _recovery(
            group,
            score(heads[1], inputs.regimes[k], split.heldout_old),
            score(heads[1], inputs.regimes[k + 1], split.heldout_old),
            trace.at_horizon.get(k),
            curve,
            cfg,
        )
        for k, group in enumerate(inputs.groups)
    ]
    ext, pool, times = inputs.extractor, inputs.pool, trace.update_us
    costs = {
        "ram_bytes": online.ram_bytes(),
        "ram_breakdown": online.ram_breakdown(),
        "macs_per_update": online.macs_per_update(),
        "extractor_macs": ext.macs([k for k in ext.q.keys if k in pool.data.inputs]),
        "us_per_update_median": float(np.median(times)) if times else float("nan"),
        "us_per_update_p90": float(np.percentile(times, 90)) if times else float("nan"),
    }
    counters = {
        "updates": online.n_updates_,
        "skipped_nan": online.n_skipped_,
        "rollbacks": online.n_rollbacks_,
        "rollback_at": trace.rollback_at,
        "lr_final": float(online.lr_),
        "classes": [str(c) for c in getattr(online, "classes_", [])],
        "grew_at": trace.grew_at,
    }
    info = {
        "student_sensors": {k: list(v) for k, v in inputs.sensors.items()},
        "stream": pool.description,
        "head": cfg.head,
        "warm_start": source,
        "pool": len(pool.data),
        "stream_rows": len(split.stream),
        "heldout_rows": len(split.heldout),
        "config": asdict(cfg),
    }
    return ReplayReport(
        info=info,
        drifts=list(inputs.drifts),
        metric=metric,
        windows=_windows(trace.frozen_val, trace.online_val, order, split.anomaly, cfg, metric),
        heldout=trace.heldout,
        recovery=recovery,
        forgetting=_forgetting(inputs, split, heads, score, trace, newclass),
        costs=costs,
        counters=counters,
        head=online,
    )


def _windows(
    f_val: np.ndarray,
    o_val: np.ndarray,
    order: np.ndarray,
    anomaly: np.ndarray | None,
    cfg: ReplayConfig,
    metric: str,
) -> dict[str, list[float]]:
    """Prequential accuracy (mean of 0/1) or anomaly AUC per window of the stream."""
    out: dict[str, list[float]] = {"t_end": [], "frozen": [], "online": [], "n": []}
    for lo in range(0, cfg.length, cfg.window):
        hi = min(lo + cfg.window, cfg.length)
        ok = np.isfinite(o_val[lo:hi])
        if metric == "accuracy":
            fa = float(f_val[lo:hi][ok].mean()) if ok.any() else float("nan")
            oa = float(o_val[lo:hi][ok].mean()) if ok.any() else float("nan")
        elif anomaly is not None:
            an = anomaly[order[lo:hi][ok]]
            fa, oa = _auc(f_val[lo:hi][ok], an), _auc(o_val[lo:hi][ok], an)
        else:
            fa = oa = float("nan")
        out["t_end"].append(float(hi))
        out["frozen"].append(fa)
        out["online"].append(oa)
        out["n"].append(float(ok.sum()))
    return out


def _recovery(
    group: Sequence[Drift],
    before: float,
    after: float,
    online_h: float | None,
    curve: Sequence[tuple[float, float]],
    cfg: ReplayConfig,
) -> dict[str, Any]:
    """Share of the held-out accuracy lost to a drift that the online head recovered
    ``cfg.horizon`` samples after it, and the samples it took to recover 80 %."""
    at = group[0].at
    lost = before - after
    share: float | None = None
    note = ""
    if online_h is None:
        note = f"the stream ends before sample {at + cfg.horizon}"
    elif not 100 * lost >= cfg.min_loss_points:
        note = f"the drift cost {100 * lost:.1f} points, below {cfg.min_loss_points:g}"
    else:
        share = (online_h - after) / lost
    to_80 = None
    if share is not None:
        for t, v in curve:
            if t > at and v >= after + 0.8 * lost:
                to_80 = int(t - at)
                break
    return {
        "drift": "+".join(str(d) for d in group),
        "at": at,
        "horizon": cfg.horizon,
        "frozen_before": before,
        "frozen_after": after,
        "online_at_horizon": float("nan") if online_h is None else online_h,
        "lost_points": 100 * lost,
        "recovered": share,
        "samples_to_80pct": to_80,
        "note": note,
    }
