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


def run_replay(inputs: ReplayInputs, config: ReplayConfig | None = None) -> ReplayReport:
    """Warm-start a head, then replay the stream sample by sample (module docstring).

    Raises:
        StreamError: a classifier on an unlabelled stream, or too few samples.
        DriftSpecError: a ``newclass`` label absent from the stream.
        DivergenceError: the online head kept diverging down to its smallest learning rate.
    """
    cfg = config or ReplayConfig()
    cfg.check()
    pool, regimes, groups = inputs.pool, inputs.regimes, inputs.groups
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
    n_pool = len(pool.data)
    if n_pool < 2:
        raise StreamError(f"stream {pool.source} holds {n_pool} sample(s); a replay needs ≥ 2")
    rng = np.random.default_rng(cfg.seed)
    labels = names if names is not None else ["?"] * n_pool
    is_held = _split(labels, cfg.heldout, rng)
    stream_rows, eval_rows = np.flatnonzero(~is_held), np.flatnonzero(is_held)
    anomaly = _anomalies(names, held, n_pool)
    # Classifier scores before a new class appears (and recovery) count the original classes.
    eval_old = eval_rows
    if cfg.head == "classifier" and held is not None:
        eval_old = np.asarray([r for r in eval_rows if labels[r] != held], dtype=np.int64)

    # warm start, then a frozen twin
    if inputs.warm is not None:
        wx, wy, source = inputs.warm
    else:
        wx, wy = regimes[0][stream_rows], [labels[r] for r in stream_rows]
        source = f"the stream rows without drift ({len(stream_rows)} samples)"
    keep = np.asarray([y != held for y in wy]) & np.isfinite(wx).all(axis=1)
    w_anom = _anomalies(wy, held, len(wy)) if cfg.head == "autoencoder" else None
    if w_anom is not None:
        keep &= ~w_anom
    if not keep.any():
        raise StreamError("no finite warm-start sample")
    ext = inputs.extractor
    online = _make_head(cfg, ext.dim, float(ext.scale) ** 2)
    online.fit(wx[keep], [wy[i] for i in np.flatnonzero(keep)], epochs=cfg.warm_epochs)
    frozen = online.copy()
    score = _Scorer(cfg.head, names, anomaly)

    # the stream: test, then train
    order = _order(stream_rows, labels, held, newclass.at if newclass else 0, cfg.length, rng)
    onsets = [g[0].at for g in groups]
    regime_of = np.searchsorted(onsets, np.arange(cfg.length), side="right")
    nan_drifts = [d for d in inputs.drifts if d.kind == "nan"]
    f_val = np.full(cfg.length, np.nan)  # correct (0/1) or reconstruction error, per sample
    o_val = np.full(cfg.length, np.nan)
    times: list[float] = []
    held_t: list[float] = []
    held_f: list[float] = []
    held_o: list[float] = []
    at_horizon: dict[int, float] = {}
    before_new: OnlineHead | None = None
    rollback_at: list[int] = []
    grew_at: list[int] = []
    for t in range(cfg.length):
        r, row = int(regime_of[t]), int(order[t])
        x = regimes[r][row]
        if any(t >= d.at and rng.random() < float(d.value or 0) for d in nan_drifts):
            x = np.full_like(x, np.nan)
        if newclass is not None and t == newclass.at:
            before_new = online.copy()
        if np.isfinite(x).all():
            if isinstance(online, OnlineClassifier):
                f_val[t] = frozen.predict(x)[0] == labels[row]
                o_val[t] = online.predict(x)[0] == labels[row]
            else:
                assert isinstance(online, OnlineAutoencoder)
                assert isinstance(frozen, OnlineAutoencoder)
                f_val[t] = frozen.reconstruction_error(x)[0]
                o_val[t] = online.reconstruction_error(x)[0]
        n_roll, n_cls = online.n_rollbacks_, getattr(online, "n_classes", 0)
        skipped = online.n_skipped_
        t0 = time.perf_counter_ns()
        online.partial_fit(x[None], [labels[row]])
        if online.n_skipped_ == skipped:
            times.append((time.perf_counter_ns() - t0) / 1e3)
        if online.n_rollbacks_ != n_roll:
            rollback_at.append(t)
        if getattr(online, "n_classes", 0) != n_cls:
            grew_at.append(t)
        if (t + 1) % cfg.eval_every == 0 or t + 1 == cfg.length:
            rows = eval_rows if newclass is None or t >= newclass.at else eval_old
            held_t.append(float(t + 1))
            held_f.append(score(frozen, regimes[r], rows))
            held_o.append(score(online, regimes[r], rows))
        for k, a in enumerate(onsets):
            if t + 1 == a + cfg.horizon:
                at_horizon[k] = score(online, regimes[k + 1], eval_old)

    metric = "accuracy" if cfg.head == "classifier" else "auc"
    windows = _windows(f_val, o_val, order, anomaly, cfg, metric)
    recovery = []
    for k, group in enumerate(groups):
        recovery.append(
            _recovery(
                group,
                score(frozen, regimes[k], eval_old),
                score(frozen, regimes[k + 1], eval_old),
                at_horizon.get(k),
                list(zip(held_t, held_o, strict=True)),
                cfg,
            )
        )
    forgetting = None
    if newclass is not None and isinstance(online, OnlineClassifier) and before_new is not None:
        x_new = regimes[int(regime_of[newclass.at])]
        new_eval = np.asarray([r for r in eval_rows if labels[r] == held], dtype=np.int64)
        acc_b, acc_a = score(before_new, x_new, eval_old), score(online, x_new, eval_old)
        forgetting = {
            "drift": str(newclass),
            "before": acc_b,
            "after": acc_a,
            "points": 100 * (acc_b - acc_a),
            "frozen_original_classes": score(frozen, x_new, eval_old),
            "new_class_accuracy": score(online, x_new, new_eval),
            "new_class_grown_at": grew_at[0] if grew_at else None,
        }
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
        "rollback_at": rollback_at,
        "lr_final": float(online.lr_),
        "classes": [str(c) for c in getattr(online, "classes_", [])],
        "grew_at": grew_at,
    }
    info = {
        "student_sensors": {k: list(v) for k, v in inputs.sensors.items()},
        "stream": pool.description,
        "head": cfg.head,
        "warm_start": source,
        "pool": n_pool,
        "stream_rows": len(stream_rows),
        "heldout_rows": len(eval_rows),
        "config": asdict(cfg),
    }
    return ReplayReport(
        info=info,
        drifts=list(inputs.drifts),
        metric=metric,
        windows=windows,
        heldout={"t": held_t, "frozen": held_f, "online": held_o},
        recovery=recovery,
        forgetting=forgetting,
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
