"""On-device online learning (TinyOL) through injected drift, on BasicMotions and the synthetic
default.

Per data set:

1. a student: ``--student-imu`` / ``--student-synthetic`` directories, or distilled here
   (:func:`fusion.deploy.distill.distill_checkpoint`, ``--steps``, no baseline) from a teacher
   (``--teacher-*`` checkpoints, or a short pretraining run, ``--pretrain-steps``);
2. streams replayed through the frozen int8 student (:mod:`fusion.deploy.replay`): a frozen head
   and an online head (float32 SGD in RAM, running input normalisation), both warm-started on the
   student's training split; half of the stream's recordings (per class) are held out and only
   score the heads. BasicMotions: the 40 ``_TEST`` recordings. Synthetic: the 63 test chips of the
   default places (``synthetic``) and, as a larger pool, the 542 chips of places generated with
   seed 1 (``synthetic:1``; places the student never saw);
3. scenarios, each over ``--seeds`` seeds (stream order and held-out split), ``--length`` samples:
   gain drifts at sample 100 (recovery on the held-out recordings 200 samples later), a class held
   out of the warm start that appears at sample 200 (forgetting of the original classes at the
   end of the stream), and the autoencoder head scoring that class as an anomaly (AUC);
4. the cost of one update: RAM of the head (weights, snapshot, gradients, statistics, bytes),
   MACs, host µs in Python (median) and in the generated C runtime compiled with the host gcc.

Targets (issue 6): recover ≥ 80 % of the accuracy lost to a gain drift within 200 samples on
BasicMotions and on the synthetic default; head RAM ≤ 8 KB; forgetting ≤ 5 points after a new
class.

    python -m benchmarks.online_drift --student-imu runs/deploy_report/student_imu \\
        --student-synthetic runs/deploy_report/student_synthetic
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.report import command_line, machine, write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
KB = 1024

#: Per data set: pretraining config, streams, gain-drift scenarios and the class held out.
DATASETS: dict[str, dict[str, Any]] = {
    "imu": {
        "pretrain": ROOT / "configs" / "pretrain_imu.yaml",
        "streams": {"BasicMotions_TEST": "imu/BasicMotions_TEST.ts"},
        "gain": [
            "gain:accelerometer=0.5@100",
            "gain:accelerometer=0.5@100,gain:gyroscope=0.5@100",
            "gain:accelerometer=0.2@100",
        ],
        "newclass": "newclass:Badminton@200",
    },
    "synthetic": {
        "pretrain": None,
        "streams": {"synthetic": "synthetic", "synthetic:1": "synthetic:1"},
        "gain": [
            "gain:syn_optical=0.5@100",
            "gain:syn_optical=0.5@100,gain:syn_sar=0.5@100,gain:syn_thermal=0.5@100",
        ],
        "newclass": "newclass:water@200",
    },
}


def _student(name: str, args: argparse.Namespace, work: Path) -> Path:
    given = getattr(args, f"student_{name}")
    if given:
        return Path(given)
    teacher = getattr(args, f"teacher_{name}")
    if not teacher:
        from fusion.pretrain import PretrainConfig, pretrain

        cfg_path = DATASETS[name]["pretrain"]
        overrides = {"out": str(work), "name": f"teacher_{name}", "max_steps": args.pretrain_steps}
        pcfg = (
            PretrainConfig.from_yaml(cfg_path, overrides)
            if cfg_path
            else PretrainConfig.from_dict({}, overrides=overrides)
        )
        teacher = pretrain(pcfg, progress=False)["checkpoint"]
    from fusion.deploy.distill import DistillConfig, distill_checkpoint
    from fusion.deploy.student_io import save_student

    cfg = DistillConfig(steps=args.steps, baseline=False)
    bundle = distill_checkpoint(teacher, None, cfg, log=lambda s: print(f"[{name}] {s}"))
    return save_student(bundle, work / f"student_{name}")


def _mean(values: Sequence[float | None]) -> float:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def _gain(reports: Sequence[Any]) -> dict[str, Any]:
    """Recovery of the first drift group over seeds: means, the recovered share of the mean
    accuracies (pooled) and the per-seed shares."""
    recs = [r.recovery[0] for r in reports]
    before = _mean([r["frozen_before"] for r in recs])
    after = _mean([r["frozen_after"] for r in recs])
    online = _mean([r["online_at_horizon"] for r in recs])
    lost = before - after
    pooled = (online - after) / lost if 100 * lost >= 5.0 else None
    to80 = [r["samples_to_80pct"] for r in recs if r["samples_to_80pct"] is not None]
    return {
        "drift": recs[0]["drift"],
        "horizon": recs[0]["horizon"],
        "frozen_before": before,
        "frozen_after": after,
        "online_at_horizon": online,
        "lost_points": 100 * lost,
        "recovered": pooled,
        "recovered_per_seed": [r["recovered"] for r in recs],
        "samples_to_80pct_median": float(np.median(to80)) if to80 else None,
        "pass": None if pooled is None else bool(pooled >= 0.8),
        "note": "" if pooled is not None else "the drift cost under 5 points: nothing to recover",
    }


def _newclass(reports: Sequence[Any]) -> dict[str, Any]:
    f = [r.forgetting for r in reports if r.forgetting is not None]
    pts = [x["points"] for x in f]
    return {
        "drift": f[0]["drift"],
        "original_before": _mean([x["before"] for x in f]),
        "original_after": _mean([x["after"] for x in f]),
        "forgetting_points_mean": _mean(pts),
        "forgetting_points_max": float(np.max(pts)),
        "new_class_accuracy": _mean([x["new_class_accuracy"] for x in f]),
        "pass": bool(_mean(pts) <= 5.0),
    }


def _auc(reports: Sequence[Any]) -> dict[str, Any]:
    last = [(r.heldout["frozen"][-1], r.heldout["online"][-1]) for r in reports]
    return {
        "heldout_auc_frozen_end": _mean([a for a, _ in last]),
        "heldout_auc_online_end": _mean([b for _, b in last]),
        "stream_auc_online_windows": [
            _mean([r.windows["online"][i] for r in reports])
            for i in range(len(reports[0].windows["online"]))
        ],
    }


def _curve(reports: Sequence[Any]) -> dict[str, list[float]]:
    return {
        "t": reports[0].heldout["t"],
        "frozen": list(np.nanmean([r.heldout["frozen"] for r in reports], axis=0)),
        "online": list(np.nanmean([r.heldout["online"] for r in reports], axis=0)),
    }


def c_update_us(head: Any, qp: Any, n: int = 20000) -> dict[str, float] | None:
    """Host µs per update and per prediction of the generated C runtime (gcc -O2), or ``None``
    without a compiler."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    from fusion.deploy.online import OnlineClassifier
    from fusion.deploy.online_c import export_online_c

    with tempfile.TemporaryDirectory() as tmp:
        export = export_online_c(head, qp, tmp, "bench")
        k = head.n_classes if isinstance(head, OnlineClassifier) else 1
        update = "bench_online_update(e, (int32_t)(i % K))" if k > 1 else "bench_online_update(e)"
        predict = "bench_online_predict(e, 0)" if k > 1 else "bench_online_score(e)"
        driver = Path(tmp) / "time.c"
        driver.write_text(
            f"""#include <stdio.h>
#include <stdint.h>
#include <time.h>
#include "bench_online.h"
#define K {k}
static int8_t emb[64][BENCH_ONLINE_FEATURES];
int main(void)
{{
    int32_t i, j;
    clock_t t0, t1, t2;
    volatile float sink = 0.0f;
    uint32_t x = 1u;
    for (i = 0; i < 64; ++i) {{
        for (j = 0; j < BENCH_ONLINE_FEATURES; ++j) {{
            x = x * 1103515245u + 12345u;
            emb[i][j] = (int8_t)((x >> 16) & 0x7f);
        }}
    }}
    bench_online_init();
    t0 = clock();
    for (i = 0; i < {n}; ++i) {{
        const int8_t *e = emb[i % 64];
        sink += (float){update};
    }}
    t1 = clock();
    for (i = 0; i < {n}; ++i) {{
        const int8_t *e = emb[i % 64];
        sink += (float){predict};
    }}
    t2 = clock();
    printf("%f %f\\n", 1e6 * (double)(t1 - t0) / CLOCKS_PER_SEC / {n},
           1e6 * (double)(t2 - t1) / CLOCKS_PER_SEC / {n});
    return 0;
}}
"""
        )
        binary = Path(tmp) / "time"
        subprocess.run(
            [gcc, "-std=c99", "-O2", "-o", str(binary), str(export.source), str(driver), "-lm"],
            check=True,
            capture_output=True,
        )
        out = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
        upd, pred = (float(v) for v in out.split())
        return {"update_us": upd, "predict_us": pred}


def run(name: str, student: Path, args: argparse.Namespace) -> dict[str, Any]:
    from fusion.data.shared import shared_data_dir
    from fusion.deploy.degradation import load_eval_data
    from fusion.deploy.drift import parse_drift
    from fusion.deploy.replay import HeadKind, ReplayConfig, embed_stream, run_replay
    from fusion.deploy.stream import load_stream
    from fusion.deploy.student_io import load_student

    spec = DATASETS[name]
    bundle = load_student(student)
    warm_data, _ = load_eval_data(bundle, split="train")
    assert bundle.class_names is not None
    out: dict[str, Any] = {"student": str(student), "streams": {}}
    warm = None
    reports_all: list[Any] = []
    for stream_name, source in spec["streams"].items():
        if args.no_new_places and ":" in source:
            continue
        src = source if source.startswith("synthetic") else str(shared_data_dir() / source)
        t0 = time.perf_counter()
        pool = load_stream(bundle, src)
        res: dict[str, Any] = {"stream": pool.description, "gain": [], "curves": {}}
        scenarios = [*spec["gain"], spec["newclass"]]
        for scenario in scenarios:
            drifts = parse_drift(scenario, bundle, pool.class_names)
            inputs = embed_stream(
                bundle, pool, drifts, warm=None if warm else (warm_data, bundle.class_names)
            )
            warm = warm or inputs.warm
            inputs.warm = warm
            heads: list[HeadKind] = ["classifier"]
            if scenario == spec["newclass"]:
                heads.append("autoencoder")
            for head in heads:
                reports = [
                    run_replay(
                        inputs,
                        ReplayConfig(length=args.length, lr=args.lr, head=head, seed=seed),
                    )
                    for seed in range(args.seeds)
                ]
                reports_all += reports
                if head == "autoencoder":
                    res["anomaly"] = {"drift": scenario, **_auc(reports)}
                elif scenario == spec["newclass"]:
                    res["newclass"] = _newclass(reports)
                    res["curves"][scenario] = _curve(reports)
                else:
                    res["gain"].append(_gain(reports))
                    res["curves"][scenario] = _curve(reports)
            print(f"[{name}] {stream_name} {scenario}: done", flush=True)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        out["streams"][stream_name] = res
    clf = [r for r in reports_all if r.info["head"] == "classifier"]
    ae = [r for r in reports_all if r.info["head"] == "autoencoder"]
    costs: dict[str, Any] = {}
    for kind, reps in (("classifier", clf), ("autoencoder", ae)):
        if not reps:
            continue
        c = reps[0].costs
        costs[kind] = {
            "ram_bytes": c["ram_bytes"],
            "ram_breakdown": c["ram_breakdown"],
            "macs_per_update": c["macs_per_update"],
            "python_us_per_update_median": float(
                np.median([r.costs["us_per_update_median"] for r in reps])
            ),
            "c_host": c_update_us(reps[0].head, bundle.quantized.fused),
        }
    costs["extractor_macs"] = clf[0].costs["extractor_macs"]
    out["costs"] = costs
    out["rollbacks"] = int(sum(r.counters["rollbacks"] for r in reports_all))
    return out


def _targets(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, res in results.items():
        default = next(iter(res["streams"].values()))
        scored = [g for g in default["gain"] if g["recovered"] is not None]
        out[f"recover_80pct_{name}"] = {
            "stream": default["stream"],
            "scenarios": [
                {k: g[k] for k in ("drift", "lost_points", "recovered", "pass", "note")}
                for g in default["gain"]
            ],
            "pass": bool(scored) and all(g["pass"] for g in scored),
        }
        f = default["newclass"]
        out[f"forgetting_le_5pts_{name}"] = {
            "points_mean": f["forgetting_points_mean"],
            "points_max": f["forgetting_points_max"],
            "pass": f["pass"],
        }
        ram = res["costs"]["classifier"]["ram_bytes"]
        out[f"head_ram_le_8KB_{name}"] = {"bytes": ram, "pass": ram <= 8 * KB}
    return out


def plot(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fusion.files import save_figure

    panels = [
        (name, stream, scen, curve)
        for name, res in results.items()
        for stream, sres in res["streams"].items()
        for scen, curve in sres["curves"].items()
    ]
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (_, stream, scen, curve) in zip(axes.flat, panels, strict=False):
        ax.plot(curve["t"], curve["frozen"], color="tab:red", label="frozen head")
        ax.plot(curve["t"], curve["online"], color="tab:blue", label="online head")
        for item in scen.split(","):
            ax.axvline(int(item.rsplit("@", 1)[1]), color="0.5", ls="--", lw=0.8)
        ax.set_title(f"{stream}: {scen.replace(',', ', ')}", fontsize=7, wrap=True)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("stream sample", fontsize=7)
        ax.set_ylabel("held-out accuracy", fontsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in DATASETS:
        parser.add_argument(f"--student-{name}", help="student directory (default: distil one)")
        parser.add_argument(f"--teacher-{name}", help="teacher checkpoint (default: pretrain)")
    parser.add_argument("--only", choices=sorted(DATASETS), action="append")
    parser.add_argument("--steps", type=int, default=300, help="distillation steps")
    parser.add_argument("--pretrain-steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=5, help="stream orders / held-out splits")
    parser.add_argument("--length", type=int, default=400, help="stream samples per replay")
    parser.add_argument("--lr", type=float, default=0.02, help="online SGD learning rate")
    parser.add_argument(
        "--no-new-places", action="store_true", help="skip the synthetic:1 stream (542 chips)"
    )
    parser.add_argument("--work", default="runs/online_drift", help="teachers and students")
    parser.add_argument("--json", default=str(RESULTS / "online_drift.json"))
    parser.add_argument("--plot", default=str(RESULTS / "online_drift.png"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    work = Path(args.work)
    results = {}
    for name in args.only or list(DATASETS):
        results[name] = run(name, _student(name, args, work), args)
    report: dict[str, Any] = {
        "command": command_line("benchmarks.online_drift", argv),
        "machine": machine(),
        "settings": {
            "seeds": args.seeds,
            "length": args.length,
            "lr": args.lr,
            "horizon": 200,
            "heldout_share": 0.5,
        },
        "results": results,
        "targets": _targets(results),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    report["summary"] = {k: "PASS" if v["pass"] else "MISS" for k, v in report["targets"].items()}
    write_json(Path(args.json), report)
    plot(results, Path(args.plot))
    for name, res in results.items():
        for stream, sres in res["streams"].items():
            for g in sres["gain"]:
                share = "n/a" if g["recovered"] is None else f"{100 * g['recovered']:.0f} %"
                print(
                    f"{stream}: {g['drift']}: {g['frozen_before']:.3f} → frozen "
                    f"{g['frozen_after']:.3f}, online {g['online_at_horizon']:.3f} "
                    f"after 200: recovered {share}"
                )
            f = sres["newclass"]
            print(
                f"{stream}: {f['drift']}: forgetting {f['forgetting_points_mean']:.1f} points "
                f"(max {f['forgetting_points_max']:.1f}), new class {f['new_class_accuracy']:.3f}"
            )
        print(f"{name} costs: {res['costs']}")
    for k, v in report["summary"].items():
        print(f"{k}: {v}")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
