"""Quality of the pretrained representation on the synthetic default (issue: pretraining, item 6).

Embeds the spatially held-out chips with (a) a pretrained checkpoint and (b) the same encoder at
random initialisation, fits a logistic-regression probe on frozen train-chip embeddings and reports
held-out accuracy: with all sensors, with each sensor removed (probe fitted and evaluated on that
subset), and with the optical sensor degraded at test time only (resolution halved, 8-bit
precision) against the all-sensor probe. Labels: majority land-cover class of each chip.

    python benchmarks/pretrain_quality.py --checkpoint runs/pretrain/checkpoints/final.ckpt
    python benchmarks/pretrain_quality.py            # pretrains first (default config)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch.utils.data import Dataset

from benchmarks.report import write_json
from fusion.checkpoint import load_pretrained
from fusion.data.collate import collate_samples
from fusion.data.datasets import build_datasets
from fusion.data.sample import Sample
from fusion.models import FusionEncoder
from fusion.pretrain import PretrainConfig, pretrain
from fusion.views import degrade

Edit = Callable[[Sample], Sample]
OPTICAL = "syn_optical"


@torch.no_grad()
def embed(encoder: FusionEncoder, ds: Dataset[Sample], edit: Edit, batch: int = 64) -> np.ndarray:
    encoder.eval()
    n = len(ds)  # type: ignore[arg-type]
    out = []
    for i in range(0, n, batch):
        samples = [edit(ds[j]) for j in range(i, min(i + batch, n))]
        out.append(encoder(collate_samples(samples)).numpy())
    return np.concatenate(out)


def labels(ds: Dataset[Sample]) -> np.ndarray:
    return np.array([int(ds[i].label) for i in range(len(ds))])  # type: ignore[arg-type]


def probe(xtr: np.ndarray, ytr: np.ndarray) -> Any:
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    return clf.fit(xtr, ytr)


def run(checkpoint: str, seed: int) -> dict[str, Any]:
    model = load_pretrained(checkpoint)
    run_cfg = model.meta["pretrain"]
    bundle = build_datasets(
        run_cfg["data"], chip_m=float(run_cfg["chip_m"]), seed=int(run_cfg["seed"])
    )
    torch.manual_seed(seed)
    random = FusionEncoder.from_config(model.encoder.config())
    ytr, yva = labels(bundle.train), labels(bundle.val)
    sensors = sorted(model.specs)
    keep: Edit = lambda s: s  # noqa: E731

    def without(name: str) -> Edit:
        return lambda s: s.without(name) if len(s.sensors) > 1 or name not in s.sensors else s

    rows: dict[str, dict[str, float]] = {}
    for label, enc in (("pretrained", model.encoder), ("random init", random)):
        row: dict[str, float] = {}
        xtr, xva = embed(enc, bundle.train, keep), embed(enc, bundle.val, keep)
        clf = probe(xtr, ytr)
        row["all sensors"] = float(clf.score(xva, yva))
        for name in sensors:
            edit = without(name)
            sub = probe(embed(enc, bundle.train, edit), ytr)
            row[f"without {name}"] = float(sub.score(embed(enc, bundle.val, edit), yva))
        if OPTICAL in sensors:
            halved = embed(enc, bundle.val, lambda s: degrade(s, halve_resolution={OPTICAL}))
            row["optical res/2 (test only)"] = float(clf.score(halved, yva))
            eight_bit = embed(enc, bundle.val, lambda s: degrade(s, bits={OPTICAL: 8}))
            row["optical 8-bit (test only)"] = float(clf.score(eight_bit, yva))
        rows[label] = row
    majority = float(np.mean(yva == np.bincount(ytr).argmax()))
    return {
        "checkpoint": checkpoint,
        "data": bundle.description,
        "train_chips": len(ytr),
        "val_chips": len(yva),
        "majority_baseline": majority,
        "accuracy": rows,
    }


def print_table(result: dict[str, Any]) -> None:
    rows = result["accuracy"]
    cols = list(next(iter(rows.values())))
    print(
        f"## Linear probe on frozen embeddings, {result['data']} ({result['train_chips']} "
        f"train / {result['val_chips']} held-out samples; "
        f"majority class {result['majority_baseline']:.3f})\n"
    )
    print("| encoder | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")
    pre, rnd = rows["pretrained"], rows["random init"]
    full = pre["all sensors"]
    print(
        f"\n- pretrained − random (all sensors): {100 * (full - rnd['all sensors']):+.1f} points "
        "(target ≥ +15)"
    )
    for c in cols[1:]:
        print(f"- {c}: {pre[c] / max(full, 1e-9):.1%} of all-sensor accuracy (target ≥ 90%)")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="a fusion pretrain checkpoint; pretrains one if absent")
    p.add_argument("--max-steps", type=int, default=None, help="steps when pretraining here")
    p.add_argument("--config", help="pretraining config when pretraining here (default: synthetic)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-init encoder")
    p.add_argument("--json", help="write the numbers here")
    args = p.parse_args(argv)
    ckpt = args.checkpoint
    if ckpt is None:
        out = tempfile.mkdtemp(prefix="fusion-quality-")
        over = {"max_steps": args.max_steps, "out": out, "name": "quality"}
        cfg = (
            PretrainConfig.from_yaml(args.config, over)
            if args.config
            else PretrainConfig.from_dict({}, overrides=over)
        )
        ckpt = pretrain(cfg, progress=sys.stderr.isatty())["checkpoint"]
    result = run(ckpt, args.seed)
    print_table(result)
    if args.json:
        write_json(Path(args.json), result)
    return result


if __name__ == "__main__":
    main()
