"""Degradation report: task accuracy of a student for every non-empty sensor subset.

For each subset the accuracy is measured twice: with the **float** student (PyTorch) and with
the **int8** student through the integer golden model (:func:`~fusion.deploy.golden
.golden_forward`, bit-exact with the C export). The distilled student skips switched-off sensors
(their stems are not computed); the baseline student, trained without sensor dropout, sees them
**zero-filled**.

The curve: for ``k`` sensors off (``0 … n−1``) the mean, min and max accuracy over the subsets
with ``k`` off. Its area is the trapezoid over ``k`` divided by ``(n − 1) ·`` the all-sensor
accuracy, so 1.0 means no loss whatever is switched off (and one sensor gives 1.0 by definition).

Targets (from the deploy issue): with any single sensor off, the int8 student's accuracy drop is
at most half the baseline student's drop; the int8 student is within 1 point of the float one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusion.deploy.distill import TensorData, stream_presence
from fusion.deploy.errors import StudentConfigError
from fusion.deploy.golden import golden_forward
from fusion.deploy.int8 import QuantizedStudent
from fusion.deploy.power import PowerModel, PowerPolicy, power_policy
from fusion.deploy.student import Student
from fusion.deploy.student_io import StudentBundle

__all__ = [
    "Curve",
    "DegradationReport",
    "SubsetScore",
    "curve",
    "degradation_report",
    "evaluate_subsets",
    "load_eval_data",
    "single_sensor_drops",
    "subsets_of",
]


def subsets_of(sensors: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset, all sensors first, then by decreasing size."""
    names = list(sensors)
    return [c for r in range(len(names), 0, -1) for c in combinations(names, r)]


@dataclass(frozen=True)
class SubsetScore:
    """Accuracy of one sensor subset (``int8`` is ``None`` when not measured)."""

    sensors: tuple[str, ...]
    off: int
    n: int
    acc_float: float
    acc_int8: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "sensors": list(self.sensors),
            "off": self.off,
            "n": self.n,
            "float": self.acc_float,
            "int8": self.acc_int8,
        }


@dataclass(frozen=True)
class Curve:
    """Accuracy against the number of sensors off."""

    off: list[int]
    mean: list[float]
    min: list[float]
    max: list[float]
    all_sensors: float
    area: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "off": self.off,
            "mean": self.mean,
            "min": self.min,
            "max": self.max,
            "all_sensors": self.all_sensors,
            "normalised_area": self.area,
        }


def curve(table: Mapping[tuple[str, ...], float], sensors: Sequence[str]) -> Curve:
    """The degradation curve of a table (sensor subset → accuracy) over ``sensors``.

    Raises:
        StudentConfigError: the table lacks the all-sensor subset or a number of sensors off.
    """
    names = tuple(sorted(sensors))
    norm = {tuple(sorted(k)): float(v) for k, v in table.items()}
    if names not in norm:
        raise StudentConfigError(f"the table has no entry for every sensor on {list(names)}")
    n = len(names)
    offs, means, mins, maxs = [], [], [], []
    for k in range(n):
        vals = [v for s, v in norm.items() if n - len(s) == k and set(s) <= set(names)]
        if not vals:
            raise StudentConfigError(f"the table has no subset with {k} sensor(s) off")
        offs.append(k)
        means.append(float(np.mean(vals)))
        mins.append(float(np.min(vals)))
        maxs.append(float(np.max(vals)))
    full = norm[names]
    if n == 1:
        area = 1.0
    elif full <= 0:
        area = float("nan")
    else:
        trap = sum((means[i] + means[i + 1]) / 2 for i in range(n - 1))
        area = trap / ((n - 1) * full)
    return Curve(offs, means, mins, maxs, full, float(area))


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float((pred == y).mean()) if len(y) else float("nan")


def evaluate_subsets(
    student: Student,
    q: QuantizedStudent | None,
    data: TensorData,
    sensors: Mapping[str, Sequence[str]],
    *,
    zero_fill: bool = False,
    batch_size: int = 64,
) -> list[SubsetScore]:
    """Classification accuracy (argmax of the head's logits) of the float student and, when
    ``q`` is given, of the int8 student (golden model) for every non-empty sensor subset.
    Samples that carry none of a subset's sensors are left out of its score (``n`` counts those
    scored).

    Raises:
        StudentConfigError: the student has no task head or the data no labels.
    """
    if student.cfg.head_dim is None:
        raise StudentConfigError(
            "the student has no task head; distil it on labelled data to get a degradation report"
        )
    if data.labels is None:
        raise StudentConfigError("the evaluation data carries no class labels")
    y_all = data.labels.numpy()
    student.eval()
    out = []
    for subset in subsets_of(list(sensors)):
        inputs, present = stream_presence(data, sensors, subset, zero_fill=zero_fill)
        rows = torch.stack(list(present.values())).any(0).numpy()
        f_pred, q_pred = [], []
        idx = np.flatnonzero(rows)
        for s in range(0, len(idx), batch_size):
            sel = torch.as_tensor(idx[s : s + batch_size])
            x = {k: v[sel] for k, v in inputs.items()}
            p = {k: v[sel] for k, v in present.items()}
            with torch.no_grad():
                f_pred.append(student.forward_tensors(x, p).argmax(1).numpy())
            if q is not None:
                qin = q.quantize_inputs(x)
                logits = golden_forward(q, qin, {k: v.numpy() for k, v in p.items()})
                q_pred.append(logits.argmax(1))
        y = y_all[idx]
        fa = _accuracy(np.concatenate(f_pred), y) if f_pred else float("nan")
        qa = (_accuracy(np.concatenate(q_pred), y) if q_pred else float("nan")) if q else None
        out.append(SubsetScore(subset, len(sensors) - len(subset), len(idx), fa, qa))
    return out


def single_sensor_drops(
    student: Sequence[SubsetScore], baseline: Sequence[SubsetScore] | None, which: str = "int8"
) -> list[dict[str, Any]]:
    """Per sensor: the accuracy drop with only that sensor off, for the student and the
    baseline, and whether the student's drop is at most half the baseline's."""

    def table(scores: Sequence[SubsetScore]) -> dict[tuple[str, ...], float]:
        out = {}
        for s in scores:
            v = s.acc_int8 if which == "int8" else s.acc_float
            out[tuple(sorted(s.sensors))] = float("nan") if v is None else v
        return out

    st = table(student)
    bt = table(baseline) if baseline else None
    names = tuple(sorted({n for k in st for n in k}))
    rows = []
    for name in names if len(names) > 1 else ():
        rest = tuple(n for n in names if n != name)
        drop = st[names] - st[rest]
        row: dict[str, Any] = {"sensor_off": name, "student_drop": drop}
        if bt is not None:
            bdrop = bt[names] - bt[rest]
            row["baseline_drop"] = bdrop
            row["pass"] = bool(drop <= 0.5 * max(bdrop, 0.0) + 1e-12)
        rows.append(row)
    return rows


@dataclass
class DegradationReport:
    """The degradation of a student (and its baseline) over sensor subsets."""

    sensors: list[str]
    student: list[SubsetScore]
    baseline: list[SubsetScore] | None = None
    policy: PowerPolicy | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def table(self, which: str = "int8", baseline: bool = False) -> dict[tuple[str, ...], float]:
        scores = self.baseline if baseline else self.student
        if scores is None:
            return {}
        out = {}
        for s in scores:
            v = s.acc_int8 if which == "int8" else s.acc_float
            out[s.sensors] = float("nan") if v is None else float(v)
        return out

    def curves(self) -> dict[str, Curve]:
        out = {}
        for name, base in (("student", False), ("baseline", True)):
            for which in ("float", "int8"):
                t = self.table(which, base)
                if t and not any(np.isnan(v) for v in t.values()):
                    out[f"{name}_{which}"] = curve(t, self.sensors)
        return out

    def targets(self) -> dict[str, Any]:
        """The issue's accuracy targets, measured (PASS/MISS)."""
        out: dict[str, Any] = {}
        full = self.student[0]
        if full.acc_int8 is not None:
            gap = abs(full.acc_int8 - full.acc_float)
            worst = max(abs((s.acc_int8 or 0.0) - s.acc_float) for s in self.student)
            out["int8_within_1pt"] = {
                "float": full.acc_float,
                "int8": full.acc_int8,
                "gap_points": 100 * gap,
                "worst_subset_gap_points": 100 * worst,
                "pass": bool(gap <= 0.01 + 1e-12),
            }
        if self.baseline is not None:
            drops = single_sensor_drops(
                self.student, self.baseline, "int8" if full.acc_int8 is not None else "float"
            )
            out["single_sensor_off"] = {
                "rows": drops,
                "pass": bool(all(r["pass"] for r in drops)),
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "sensors": self.sensors,
            "info": self.info,
            "student": [s.to_dict() for s in self.student],
            "baseline": None if self.baseline is None else [s.to_dict() for s in self.baseline],
            "curves": {k: c.to_dict() for k, c in self.curves().items()},
            "targets": self.targets(),
            "power_policy": None if self.policy is None else self.policy.to_dict(),
        }

    def lines(self) -> list[str]:
        """A human-readable table."""
        head = f"{'sensors on':<40} {'off':>3} {'n':>4} {'float':>6} {'int8':>6}"
        if self.baseline is not None:
            head += f" {'base f':>7} {'base q':>7}"
        out = [head]
        base = {s.sensors: s for s in self.baseline or []}
        for s in self.student:
            line = f"{'+'.join(s.sensors):<40} {s.off:>3} {s.n:>4} {s.acc_float:>6.3f} "
            line += f"{s.acc_int8:>6.3f}" if s.acc_int8 is not None else f"{'-':>6}"
            b = base.get(s.sensors)
            if b is not None:
                line += f" {b.acc_float:>7.3f} " + (
                    f"{b.acc_int8:>7.3f}" if b.acc_int8 is not None else "-"
                )
            out.append(line)
        for name, c in self.curves().items():
            out.append(
                f"{name}: mean by sensors off {[round(v, 3) for v in c.mean]}, normalised area "
                f"{c.area:.3f}"
            )
        for name, t in self.targets().items():
            out.append(f"{name}: {'PASS' if t['pass'] else 'MISS'}")
        if self.policy is not None:
            for step in self.policy.order:
                out.append(
                    f"budget ≥ {step['min_budget_mw']:g} mW: keep {'+'.join(step['keep'])} "
                    f"(accuracy {step['accuracy']:.3f})"
                    + (
                        f", switch off {', '.join(step['switch_off'])}"
                        if step["switch_off"]
                        else ""
                    )
                    + (f", switch on {', '.join(step['switch_on'])}" if step["switch_on"] else "")
                )
        return out

    def plot(self, path: str | Path, title: str = "") -> Path:
        """PNG: the accuracy curves (mean with min–max band) against sensors off, and, with a
        power policy, accuracy against power with the Pareto front and switch-off order."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from fusion.files import save_figure

        ncols = 2 if self.policy is not None else 1
        fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.0), squeeze=False)
        ax = axes[0][0]
        styles = {
            "student_int8": ("tab:blue", "-", "student int8"),
            "student_float": ("tab:blue", ":", "student float"),
            "baseline_int8": ("tab:red", "-", "baseline int8 (zero-filled)"),
            "baseline_float": ("tab:red", ":", "baseline float (zero-filled)"),
        }
        for name, c in self.curves().items():
            color, ls, label = styles[name]
            ax.plot(c.off, c.mean, ls, color=color, marker="o", label=f"{label}, area {c.area:.2f}")
            if ls == "-":
                ax.fill_between(c.off, c.min, c.max, color=color, alpha=0.15)
        ax.set_xlabel("sensors switched off")
        ax.set_ylabel("accuracy")
        ax.set_xticks(list(range(len(self.sensors))))
        import textwrap

        ax.set_title("\n".join(textwrap.wrap(title or "degradation", 70)), fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        if self.policy is not None:
            ax2 = axes[0][1]
            ents = self.policy.entries
            ax2.scatter(
                [e.power_mw for e in ents],
                [e.accuracy for e in ents],
                color="0.6",
                s=18,
                label="sensor subsets",
            )
            front = sorted(self.policy.front, key=lambda e: e.power_mw)
            ax2.step(
                [e.power_mw for e in front],
                [e.accuracy for e in front],
                "-o",
                where="post",
                color="tab:green",
                label="Pareto front",
            )
            for i, e in enumerate(self.policy.front):
                ax2.annotate(
                    f"{i + 1}: {'+'.join(e.sensors)}",
                    (e.power_mw, e.accuracy),
                    fontsize=6,
                    xytext=(3, -9),
                    textcoords="offset points",
                )
            ax2.set_xscale("symlog" if min(e.power_mw for e in ents) <= 0 else "log")
            ax2.set_xlabel("power (mW)")
            ax2.set_ylabel("accuracy (int8)")
            ax2.set_title(
                "power policy (band on the left: min–max over subsets);\nkeep 1, then 2, … as "
                "the battery drains",
                fontsize=8,
            )
            ax2.legend(fontsize=7)
            ax2.grid(alpha=0.3)
        fig.tight_layout()
        return save_figure(fig, path)


def degradation_report(
    bundle: StudentBundle,
    data: TensorData,
    *,
    power: PowerModel | None = None,
    int8: bool = True,
    info: Mapping[str, Any] | None = None,
) -> DegradationReport:
    """Score the student (skipping switched-off sensors) and, if the bundle has one, the
    baseline (zero-filled) on every sensor subset of ``data``; with ``power``, the power policy
    of the int8 (else float) student's table.
    """
    sensors = {n: tuple(k for k in keys if k in data.inputs) for n, keys in bundle.sensors.items()}
    sensors = {n: keys for n, keys in sensors.items() if keys}
    student = evaluate_subsets(bundle.student, bundle.quantized if int8 else None, data, sensors)
    baseline = None
    if bundle.baseline is not None:
        baseline = evaluate_subsets(
            bundle.baseline,
            bundle.baseline_quantized if int8 else None,
            data,
            sensors,
            zero_fill=True,
        )
    report = DegradationReport(list(sensors), student, baseline, info=dict(info or {}))
    if power is not None:
        q = bundle.quantized
        table = report.table("int8" if int8 else "float")

        def mask(subset: Sequence[str]) -> int:
            return q.present_mask([k for s in subset for k in sensors[s]])

        report.policy = power_policy(power, table, mask)
    return report


def load_eval_data(
    bundle: StudentBundle, source: str | Path | None = None, split: str = "test"
) -> tuple[TensorData, str]:
    """The labelled ``split`` of ``source`` (default: the data the student was distilled on),
    normalised with the student's statistics.

    Raises:
        StudentSensorError: the data's sensors, streams or bands are not the student's (both
            listed).
    """
    from fusion.data.labelled import load_labelled
    from fusion.data.normalise import Normaliser
    from fusion.deploy.distill import tensor_data

    src = source if source is not None else bundle.meta.get("data")
    if src is None:
        raise StudentConfigError("no --data given and the student does not name its data")
    labelled = load_labelled(src)
    bundle.check_sensors(labelled.specs)
    ds = labelled.test if split == "test" else labelled.train
    samples = [ds[i] for i in range(len(ds))]  # type: ignore[arg-type]
    data, _ = tensor_data(samples, Normaliser(bundle.specs))
    return data, f"{labelled.description} ({split} split, {len(samples)} samples)"
