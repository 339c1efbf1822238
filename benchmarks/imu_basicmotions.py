"""BasicMotions (UEA): probe accuracy of frozen fusion embeddings per IMU sensor subset.

BasicMotions holds 40 training and 40 test smartwatch recordings (accelerometer xyz + gyroscope
xyz, 100 steps at 10 Hz) of four activities (standing, walking, running, badminton).

1. A fusion encoder is pretrained on the training recordings *without labels* (``configs/
   pretrain_imu.yaml``; the ``_TEST`` recordings only give the unlabelled validation loss, which
   selects nothing: the final checkpoint is used), or ``--checkpoint`` reuses one.
2. The missing-sensor matrix (:func:`fusion.probe.missing_matrix` over
   :func:`fusion.probe.sensor_subsets`): accelerometer + gyroscope, accelerometer only, gyroscope
   only; each cell embeds train and test with that subset, fits the probes on train and scores
   test accuracy: logistic regression on standardised features (linear), 10-NN by cosine
   distance, and a random forest.
3. Same harness: the encoder at random initialisation and band statistics
   (:class:`~fusion.probe.baselines.BandStatistics`: mean, std, 10/50/90th percentiles per axis),
   whose random-forest accuracy is the classic baseline.

Published test accuracies, as quoted in issue 4 (UEA multivariate archive results, Ruiz et al.
2021; T-Loss: Franceschi et al. 2019): ROCKET 1.000, InceptionTime 1.000, T-Loss 1.000, DTW_D
0.975 — all sensors, trained on the labels.

    python -m benchmarks.imu_basicmotions --json benchmarks/results/imu_basicmotions.json \\
        --plot benchmarks/results/imu_basicmotions.png
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.presto_fuel_moisture import (
    add_pretraining_args,
    finite,
    obtain_checkpoint,
    parse_sets,
    thin,
)
from benchmarks.report import command_line, machine, publish
from fusion.data.labelled import load_labelled
from fusion.data.shared import shared_data_dir
from fusion.files import save_figure
from fusion.probe import Embedder, FusionEmbedder, Matrix, missing_matrix, sensor_subsets
from fusion.probe.baselines import BandStatistics

__all__ = ["PUBLISHED", "default_data", "main"]

#: Published test accuracy on BasicMotions, all sensors.
PUBLISHED: dict[str, float] = {
    "ROCKET": 1.000,
    "InceptionTime": 1.000,
    "T-Loss": 1.000,
    "DTW_D": 0.975,
}
PROBES = ("linear", "knn", "forest")
PROBE_LABEL = {"linear": "linear", "knn": "10-NN", "forest": "random forest"}
FUSION, RANDOM, STATS = "fusion", "random init", "band stats"
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pretrain_imu.yaml"


def default_data() -> Path:
    """``<shared data>/imu/BasicMotions_TRAIN.ts`` (its ``_TEST`` sibling is the test split)."""
    return shared_data_dir() / "imu" / "BasicMotions_TRAIN.ts"


def flat_rows(matrix: Matrix) -> list[dict[str, Any]]:
    out = []
    for (subset, rep), cell in matrix.cells.items():
        for probe in matrix.probes:
            s = cell.scores.get(probe, {})
            out.append(
                {
                    "representation": rep,
                    "subset": subset,
                    "probe": probe,
                    "accuracy": finite(s.get("accuracy", math.nan)),
                    "macro_f1": finite(s.get("macro_f1", math.nan)),
                    "n_train": cell.n_train,
                    "n_test": cell.n_test,
                    **({"error": cell.error} if cell.error else {}),
                }
            )
    return out


def markdown(report: dict[str, Any]) -> str:
    m = report["matrix"]
    reps, subs = m["columns"], m["rows"]
    by = {(r["representation"], r["subset"], r["probe"]): r for r in report["rows"]}

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    lines = [
        f"## BasicMotions: test accuracy ({report['n_train']} train / {report['n_test']} test "
        "recordings; chance 0.250)\n",
        "| representation | sensors | " + " | ".join(PROBE_LABEL[p] for p in PROBES) + " |",
        "|---|---|" + "---:|" * len(PROBES),
    ]
    for rep in reps:
        for sub in subs:
            vals = [fmt(by[(rep, sub, p)]["accuracy"]) for p in PROBES]
            lines.append(f"| {rep} | {sub} | " + " | ".join(vals) + " |")
    lines += [
        "",
        "| published (all sensors, supervised) | accuracy |",
        "|---|---:|",
        *(f"| {k} | {v:.3f} |" for k, v in PUBLISHED.items()),
    ]
    best = report["headline"]
    lines += [
        "",
        f"Headline: {FUSION} + linear probe, all sensors: **{fmt(best['fusion_linear'])}** "
        f"(random init {fmt(best['random_linear'])}; band stats + random forest "
        f"{fmt(best['stats_forest'])}; best published {max(PUBLISHED.values()):.3f}).",
    ]
    p = report["pretraining"]
    lines.append(
        f"Pretraining: {p.get('steps')} steps"
        + (f" in {p['seconds']:.0f} s" if p.get("seconds") is not None else "")
        + f", seed {report['seed']}, checkpoint {report['checkpoint']}."
    )
    return "\n".join(lines)


def plot(report: dict[str, Any], path: str | Path) -> Path:
    """One accuracy heat-map per probe (rows: sensor subsets; columns: representations)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = report["matrix"]
    reps, subs = m["columns"], m["rows"]
    by = {(r["representation"], r["subset"], r["probe"]): r["accuracy"] for r in report["rows"]}
    fig, axes = plt.subplots(
        1,
        len(PROBES),
        figsize=(2.2 + 3.6 * len(PROBES), 3.8),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    cmap = plt.get_cmap("RdYlGn").with_extremes(bad="lightgrey")
    im = None
    for ax, probe in zip(axes[0], PROBES, strict=True):
        vals = np.array([[by[(r, s, probe)] or np.nan for r in reps] for s in subs], dtype=float)
        im = ax.imshow(np.ma.masked_invalid(vals), cmap=cmap, vmin=0.25, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(reps)), reps, rotation=20, ha="right")
        for i in range(len(subs)):
            for j in range(len(reps)):
                v = vals[i, j]
                ax.text(j, i, "n/a" if math.isnan(v) else f"{v:.3f}", ha="center", va="center")
        ax.set_title(f"{PROBE_LABEL[probe]} probe")
    assert im is not None
    axes[0][0].set_yticks(range(len(subs)), subs)
    for ax in axes[0][1:]:
        ax.tick_params(labelleft=False)
    fig.colorbar(im, ax=axes[0].tolist(), label="test accuracy (chance 0.25)", shrink=0.9)
    refs = ", ".join(f"{k} {v:.3f}" for k, v in PUBLISHED.items())
    fig.suptitle(
        f"BasicMotions test accuracy (pretraining {report['pretraining'].get('steps')} steps); "
        f"published, all sensors: {refs}",
        fontsize=9,
    )
    return save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None, help="a *_TRAIN.ts file (default: shared)")
    add_pretraining_args(p, DEFAULT_CONFIG)
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="at most this many train and test recordings (smoke tests)",
    )
    p.add_argument("--json", type=Path, help="write the report here")
    p.add_argument("--plot", type=Path, help="write a heat-map PNG here")
    args = p.parse_args(argv)  # fmt: skip

    t0, cpu0 = time.perf_counter(), time.process_time()
    data_path = args.data or default_data()
    data = load_labelled(data_path)
    over = {**({"batch_size": args.batch_size} if args.batch_size else {}), **parse_sets(args.set)}
    ckpt, pre = obtain_checkpoint(
        checkpoint=args.checkpoint,
        config=args.config,
        data=data_path,
        max_steps=args.max_steps,
        seed=args.seed,
        out=args.out,
        name=f"imu_basicmotions_s{args.max_steps}",
        overrides=over,
    )
    train, test = thin(data.train, args.limit), thin(data.test, args.limit)
    fusion = FusionEmbedder.from_checkpoint(ckpt, name=FUSION)
    embedders: list[Embedder] = [
        fusion,
        fusion.random_init(seed=args.seed, name=RANDOM),
        BandStatistics(data.specs, name=STATS),
    ]
    t1 = time.perf_counter()
    matrix = missing_matrix(
        embedders,
        train,
        test,
        task="classification",
        subsets=sensor_subsets(data.specs),
        probes=PROBES,
        class_names=data.class_names,
        progress=sys.stderr.isatty(),
        probe_kwargs={"knn": {"k": 10}, "forest": {"trees": args.trees, "seed": args.seed}},
    )
    probe_s = time.perf_counter() - t1
    all_name = matrix.rows[0]

    def acc(rep: str, probe: str) -> float | None:
        return finite(matrix.cells[(all_name, rep)].value(probe, "accuracy"))

    report: dict[str, Any] = {
        "benchmark": "imu_basicmotions",
        "command": command_line("benchmarks.imu_basicmotions", argv),
        "data": {
            "path": str(data_path),
            "description": data.description,
            "sensors": sorted(data.specs),
            "class_names": list(data.class_names or ()),
            "split": "published _TRAIN / _TEST files",
        },
        "limit": args.limit,
        "n_train": len(train),  # type: ignore[arg-type]
        "n_test": len(test),  # type: ignore[arg-type]
        "seed": args.seed,
        "checkpoint": ckpt,
        "pretraining": pre,
        "probes": {
            "linear": "StandardScaler + LogisticRegression(C=1, max_iter=3000)",
            "knn": "KNeighborsClassifier(k=10, cosine)",
            "forest": f"RandomForestClassifier(n_estimators={args.trees}, "
            f"random_state={args.seed})",
        },
        "rows": flat_rows(matrix),
        "headline": {
            "fusion_linear": acc(FUSION, "linear"),
            "fusion_knn": acc(FUSION, "knn"),
            "random_linear": acc(RANDOM, "linear"),
            "stats_forest": acc(STATS, "forest"),
        },
        "published": {
            **PUBLISHED,
            "source": "as quoted in issue 4: ROCKET, InceptionTime and DTW_D from the UEA "
            "multivariate archive results (Ruiz et al. 2021), T-Loss from Franceschi et al. 2019",
        },
        "matrix": matrix.to_dict(),
        "seconds": {
            "probes": round(probe_s, 1),
            "total": round(time.perf_counter() - t0, 1),
            "cpu_total": round(time.process_time() - cpu0, 1),
        },
        "machine": machine(),
    }
    return publish(report, markdown, args.json, args.plot, plot)


if __name__ == "__main__":
    main()
