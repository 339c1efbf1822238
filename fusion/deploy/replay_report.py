"""The result of a stream replay (:func:`fusion.deploy.replay.replay`): windows, held-out curve,
recovery, forgetting, costs; as plain data, text lines and a plot."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusion.deploy.drift import Drift
from fusion.deploy.online import OnlineHead

__all__ = ["ReplayReport"]


@dataclass
class ReplayReport:
    """What a replay measured (see the module docstring); :meth:`to_dict` is the JSON form."""

    info: dict[str, Any]
    drifts: list[Drift]
    metric: str
    windows: dict[str, list[float]]
    heldout: dict[str, list[float]]
    recovery: list[dict[str, Any]]
    forgetting: dict[str, Any] | None
    costs: dict[str, Any]
    counters: dict[str, Any]
    targets: dict[str, Any] = field(default_factory=dict)
    #: the online head at the end of the stream (for export; not part of the JSON form)
    head: OnlineHead | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "info": self.info,
            "drifts": [d.to_dict() for d in self.drifts],
            "metric": self.metric,
            "windows": self.windows,
            "heldout": self.heldout,
            "recovery": self.recovery,
            "forgetting": self.forgetting,
            "costs": self.costs,
            "counters": self.counters,
            "targets": self.targets,
        }

    def lines(self) -> list[str]:
        """A human-readable summary."""
        c, n = self.costs, self.counters
        out = [
            f"stream: {self.info['stream']}",
            f"head: {self.info['head']} ({self.metric}), warm start on {self.info['warm_start']}",
            f"drifts: {', '.join(str(d) for d in self.drifts) or 'none'}",
            f"{'window end':>10} {'frozen':>7} {'online':>7}",
        ]
        for t, fa, oa in zip(
            self.windows["t_end"], self.windows["frozen"], self.windows["online"], strict=True
        ):
            out.append(f"{t:>10.0f} {fa:>7.3f} {oa:>7.3f}")
        for r in self.recovery:
            share = r["recovered"]
            out.append(
                f"{r['drift']}: held-out {self.metric} {r['frozen_before']:.3f} → frozen "
                f"{r['frozen_after']:.3f}, online {r['online_at_horizon']:.3f} after "
                f"{r['horizon']} samples: recovered "
                + ("n/a (" + r["note"] + ")" if share is None else f"{100 * share:.0f} %")
            )
        if self.forgetting is not None:
            f = self.forgetting
            out.append(
                f"{f['drift']}: original classes {f['before']:.3f} → {f['after']:.3f} "
                f"(forgetting {f['points']:.1f} points), new class {f['new_class_accuracy']:.3f}"
            )
        out.append(
            f"update: {c['ram_bytes']} B RAM {c['ram_breakdown']}, {c['macs_per_update']} MACs, "
            f"{c['us_per_update_median']:.1f} µs (host, median); embedding "
            f"{c['extractor_macs']} MACs"
        )
        out.append(
            f"updates {n['updates']}, skipped (NaN) {n['skipped_nan']}, rollbacks "
            f"{n['rollbacks']}, final lr {n['lr_final']:.3g}"
        )
        return out

    def plot(self, path: str | Path, title: str = "") -> Path:
        """PNG: prequential and held-out accuracy (or AUC) over the stream, drifts marked."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from fusion.files import save_figure

        fig, ax = plt.subplots(figsize=(7.5, 4.0))
        w, h = self.windows, self.heldout
        ax.plot(w["t_end"], w["frozen"], "o:", color="tab:red", label="frozen (stream windows)")
        ax.plot(w["t_end"], w["online"], "o:", color="tab:blue", label="online (stream windows)")
        ax.plot(h["t"], h["frozen"], "-", color="tab:red", alpha=0.7, label="frozen (held-out)")
        ax.plot(h["t"], h["online"], "-", color="tab:blue", alpha=0.7, label="online (held-out)")
        for d in self.drifts:
            ax.axvline(d.at, color="0.4", ls="--", lw=0.8)
            ax.annotate(
                str(d),
                (d.at, 0.02),
                fontsize=7,
                rotation=90,
                xytext=(3, 0),
                textcoords="offset points",
            )
        for t in self.counters.get("rollback_at", []):
            ax.axvline(t, color="tab:orange", lw=0.6, alpha=0.6)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("stream sample")
        ax.set_ylabel(self.metric)
        import textwrap

        ax.set_title("\n".join(textwrap.wrap(title or str(self.info["stream"]), 90)), fontsize=8)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return save_figure(fig, path)
