"""Quality of the pretrained representation on the synthetic default (issue: pretraining, item 6).

Embeds the spatially held-out chips with (a) a pretrained checkpoint and (b) the same encoder at
random initialisation, fits a logistic-regression probe on frozen train-chip embeddings and reports
held-out accuracy: with all sensors, with each sensor removed (probe fitted and evaluated on that
subset), and with the optical sensor degraded at test time only (resolution halved, 8-bit
precision) against the all-sensor probe. Labels: majority land-cover class of each chip.

Held-out set. The synthetic default's own spatial hold-out has only 63 chips (one chip is 1.6
points of accuracy), so on the synthetic source the probe is scored on those chips *plus* every
chip of ``--extra-places`` further synthetic places that pretraining never saw (seeds 1000, 1001,
...; the same pattern of sensors per place as the default, so some places lack the optical or the
thermal sensor; normalised with the checkpoint's statistics). The probe is always fitted on the
pretraining train split only. Scores on the 63-chip split alone are reported too
(``accuracy_split_only``), and, as a reference for what the chips' labels allow, a probe on
hand-made per-band statistics (mean, std, 10/50/90th percentiles of every band).

    python benchmarks/pretrain_quality.py --checkpoint runs/pretrain/checkpoints/final.ckpt
    python benchmarks/pretrain_quality.py            # pretrains first (default config)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch.utils.data import Dataset

from benchmarks.report import atomic_write, write_json
from fusion.checkpoint import load_pretrained
from fusion.data.align import align
from fusion.data.collate import collate_samples
from fusion.data.datasets import SYNTHETIC_PLACES, build_datasets
from fusion.data.normalise import Normaliser
from fusion.data.sample import Sample
from fusion.data.sampling import ChipDataset, ChipRef, grid_chips
from fusion.data.specs import SensorSpec
from fusion.data.synthetic import chip_label, make_scene
from fusion.models import FusionEncoder
from fusion.pretrain import PretrainConfig, pretrain
from fusion.views import degrade

Edit = Callable[[Sample], Sample]
OPTICAL = "syn_optical"
EXTRA_SEED = 1000  # first seed of the extra held-out places (pretraining uses seeds 0..4)


class Samples(Dataset[Sample]):
    """Samples held in memory (read once, embedded many times)."""

    def __init__(self, items: Sequence[Sample]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        return self.items[index]


def materialise(ds: Dataset[Sample]) -> Samples:
    return Samples([ds[i] for i in range(len(ds))])  # type: ignore[arg-type]


def _scene_label(scene: Any, _scene: Any, bounds: Any) -> int:
    """A chip's label from the synthetic scene it was cut from (``label_fn`` of ChipDataset)."""
    return chip_label(scene, bounds)


def extra_places(n: int, specs: dict[str, SensorSpec] | None, chip_m: float = 640.0) -> Samples:
    """Every chip of ``n`` synthetic places pretraining never saw (seeds from ``EXTRA_SEED``),
    each with the sensors of the default's place at the same position in its cycle; normalised
    with ``specs``' statistics, physical values when ``specs`` is ``None``."""
    items: list[Sample] = []
    norm = Normaliser(specs) if specs is not None else None
    for i in range(n):
        sensors = SYNTHETIC_PLACES[i % len(SYNTHETIC_PLACES)]
        scene = make_scene(EXTRA_SEED + i, sensors=list(sensors) if sensors else None)
        aligned = align(scene.sources)
        chips = [ChipRef(0, b) for b in grid_chips(aligned, chip_m)]
        ds = ChipDataset([aligned], chips, label_fn=partial(_scene_label, scene), transform=norm)
        items += materialise(ds).items
    return Samples(items)


def band_statistics(samples: Samples, keys: Sequence[str], bands: dict[str, int]) -> np.ndarray:
    """Hand-made features: mean, std and 10/50/90th percentiles of every band over its valid
    pixels, and a flag per stream (zeros for absent streams or bands)."""
    q = torch.tensor([0.1, 0.5, 0.9])
    rows = []
    for s in samples.items:
        f: list[float] = []
        for k in keys:
            if k not in s.data:
                f += [0.0] * (5 * bands[k] + 1)
                continue
            x, m = s.data[k], s.masks[k]
            for c in range(x.shape[0]):
                v = x[c][m]
                if v.numel() < 2:
                    f += [0.0] * 5
                    continue
                f += [float(v.mean()), float(v.std()), *torch.quantile(v, q).tolist()]
            f.append(1.0)
        rows.append(f)
    return np.asarray(rows, dtype=np.float64)


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
    if isinstance(ds, Samples):
        return np.array([int(s.label) for s in ds.items])
    return np.array([int(ds[i].label) for i in range(len(ds))])  # type: ignore[arg-type]


def supervised(
    config: dict[str, Any], train: Samples, test: Samples, *, epochs: int, seed: int
) -> float:
    """Reference for what the labels allow: the same architecture trained end to end with labels
    on the train chips (AdamW 2e-3, cosine, cross-entropy; no pretraining), accuracy on ``test``."""
    torch.manual_seed(seed)
    encoder = FusionEncoder.from_config(config)
    y = torch.as_tensor(labels(train))
    head = torch.nn.Linear(encoder.embed_dim, int(y.max()) + 1)
    params = [*encoder.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.05)
    per_epoch = -(-len(train) // 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=epochs * per_epoch)
    gen = torch.Generator().manual_seed(seed)
    encoder.train()
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=gen).tolist()
        for i in range(0, len(order), 32):
            idx = order[i : i + 32]
            batch = collate_samples([train.items[j] for j in idx])
            loss = torch.nn.functional.cross_entropy(head(encoder(batch)), y[idx])
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
    encoder.eval()
    with torch.no_grad():
        pred = np.concatenate(
            [
                head(encoder(collate_samples(test.items[i : i + 64]))).argmax(1).numpy()
                for i in range(0, len(test), 64)
            ]
        )
    return float(np.mean(pred == labels(test)))


def probe(xtr: np.ndarray, ytr: np.ndarray) -> Any:
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    return clf.fit(xtr, ytr)


def run(checkpoint: str, seed: int, extra: int = 10, supervised_epochs: int = 0) -> dict[str, Any]:
    model = load_pretrained(checkpoint)
    run_cfg = model.meta["pretrain"]
    bundle = build_datasets(
        run_cfg["data"], chip_m=float(run_cfg["chip_m"]), seed=int(run_cfg["seed"])
    )
    torch.manual_seed(seed)
    random = FusionEncoder.from_config(model.encoder.config())
    train, split = materialise(bundle.train), materialise(bundle.val)
    synthetic = run_cfg["data"] == "synthetic"
    more = extra_places(extra, model.specs, float(run_cfg["chip_m"])) if synthetic else Samples([])
    test = Samples(split.items + more.items)
    n_split = len(split)
    ytr, yte = labels(train), labels(test)
    sensors = sorted(model.specs)
    keep: Edit = lambda s: s  # noqa: E731

    def without(name: str) -> Edit:
        return lambda s: s.without(name) if len(s.sensors) > 1 or name not in s.sensors else s

    def scores(clf: Any, x: np.ndarray) -> tuple[float, float]:
        return float(clf.score(x, yte)), float(clf.score(x[:n_split], yte[:n_split]))

    rows: dict[str, dict[str, float]] = {}
    split_rows: dict[str, dict[str, float]] = {}
    for label, enc in (("pretrained", model.encoder), ("random init", random)):
        row: dict[str, float] = {}
        srow: dict[str, float] = {}
        clf = probe(embed(enc, train, keep), ytr)
        row["all sensors"], srow["all sensors"] = scores(clf, embed(enc, test, keep))
        for name in sensors:
            edit = without(name)
            sub = probe(embed(enc, train, edit), ytr)
            col = f"without {name}"
            row[col], srow[col] = scores(sub, embed(enc, test, edit))
        if OPTICAL in sensors:
            halved = embed(enc, test, lambda s: degrade(s, halve_resolution={OPTICAL}))
            col = "optical res/2 (test only)"
            row[col], srow[col] = scores(clf, halved)
            eight_bit = embed(enc, test, lambda s: degrade(s, bits={OPTICAL: 8}))
            col = "optical 8-bit (test only)"
            row[col], srow[col] = scores(clf, eight_bit)
        rows[label] = row
        split_rows[label] = srow
    keys = sorted({k for s in train.items for k in s.data})
    bands = {k: next(s.data[k].shape[0] for s in train.items if k in s.data) for k in keys}
    stats = probe(band_statistics(train, keys, bands), ytr)
    stats_all, stats_split = scores(stats, band_statistics(test, keys, bands))
    majority = float(np.mean(yte == np.bincount(ytr).argmax()))
    reference: dict[str, Any] = {}
    if supervised_epochs > 0:
        reference = {
            "supervised_end_to_end": {
                "epochs": supervised_epochs,
                "all chips": supervised(
                    model.encoder.config(), train, test, epochs=supervised_epochs, seed=seed
                ),
            }
        }
    return {
        "checkpoint": checkpoint,
        "data": bundle.description,
        "pretrain": {k: run_cfg.get(k) for k in ("max_steps", "batch_size", "lr", "temperature")},
        "encoder": {k: v for k, v in model.encoder.config().items() if k != "streams"},
        "train_chips": len(ytr),
        "val_chips": len(yte),
        "split_chips": n_split,
        "extra_places": extra if synthetic else 0,
        "extra_place_seeds": [EXTRA_SEED + i for i in range(extra)] if synthetic else [],
        "majority_baseline": majority,
        "band_statistics_probe": {"all chips": stats_all, "split only": stats_split},
        **reference,
        "accuracy": rows,
        "accuracy_split_only": split_rows,
    }


def print_table(result: dict[str, Any]) -> None:
    rows = result["accuracy"]
    cols = list(next(iter(rows.values())))
    extra = (
        f" = {result['split_chips']} of the spatial split + {result['extra_places']} unseen places"
        if result.get("extra_places")
        else ""
    )
    print(
        f"## Linear probe on frozen embeddings, {result['data']} ({result['train_chips']} "
        f"train / {result['val_chips']} held-out samples{extra}; "
        f"majority class {result['majority_baseline']:.3f})\n"
    )
    print("| encoder | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")
    split = result.get("accuracy_split_only", {})
    for name, row in split.items():
        print(f"| {name}, split only | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")
    stats = result.get("band_statistics_probe")
    if stats:
        print(
            f"\nReference: probe on per-band statistics {stats['all chips']:.3f} "
            f"(split only {stats['split only']:.3f})"
        )
    sup = result.get("supervised_end_to_end")
    if sup:
        print(
            f"Reference: the same encoder trained end to end with labels ({sup['epochs']} "
            f"epochs, no pretraining) {sup['all chips']:.3f}"
        )
    pre, rnd = rows["pretrained"], rows["random init"]
    full = pre["all sensors"]
    gap = 100 * (full - rnd["all sensors"])
    print(
        f"\n- pretrained − random (all sensors): {gap:+.1f} points (target ≥ +15) "
        f"{'PASS' if gap >= 15 else 'MISS'}"
    )
    for c in cols[1:]:
        r = pre[c] / max(full, 1e-9)
        print(
            f"- {c}: {r:.1%} of all-sensor accuracy (target ≥ 90%) {'PASS' if r >= 0.9 else 'MISS'}"
        )


def write_plot(path: Path, result: dict[str, Any]) -> None:
    """Grouped bars: accuracy per condition, pretrained against random init."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["accuracy"]
    cols = list(next(iter(rows.values())))
    fig, ax = plt.subplots(figsize=(8.5, 3.8), dpi=120)
    width = 0.38
    for i, (name, colour) in enumerate((("pretrained", "tab:green"), ("random init", "tab:gray"))):
        xs = [j + (i - 0.5) * width for j in range(len(cols))]
        bars = ax.bar(xs, [rows[name][c] for c in cols], width, label=name, color=colour)
        ax.bar_label(bars, labels=[f"{rows[name][c]:.2f}" for c in cols], fontsize=7, padding=1)
    stats = result.get("band_statistics_probe")
    if stats:
        ax.axhline(stats["all chips"], color="tab:blue", ls=":", lw=1, label="per-band statistics")
    sup = result.get("supervised_end_to_end")
    if sup:
        ax.axhline(sup["all chips"], color="tab:red", ls="-.", lw=1, label="supervised end to end")
    ax.axhline(result["majority_baseline"], color="k", ls="--", lw=0.8, label="majority class")
    ax.set_xticks(range(len(cols)), [c.replace(" (test only)", "\n(test only)") for c in cols])
    ax.tick_params(axis="x", labelsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("linear-probe accuracy")
    ax.set_title(f"{result['data']}: {result['val_chips']} held-out chips", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"), mode="wb")
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="a fusion pretrain checkpoint; pretrains one if absent")
    p.add_argument("--max-steps", type=int, default=None, help="steps when pretraining here")
    p.add_argument("--config", help="pretraining config when pretraining here (default: synthetic)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-init encoder")
    p.add_argument(
        "--extra-places",
        type=int,
        default=10,
        help="unseen synthetic places added to the held-out chips (synthetic source only)",
    )
    p.add_argument(
        "--supervised-epochs",
        type=int,
        default=30,
        help="epochs of the supervised end-to-end reference (0: skip it)",
    )
    p.add_argument("--json", help="write the numbers here")
    p.add_argument("--plot", help="write a bar chart (PNG) here")
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
    result = run(ckpt, args.seed, args.extra_places, args.supervised_epochs)
    result["command"] = "python -m benchmarks.pretrain_quality " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    print_table(result)
    if args.json:
        write_json(Path(args.json), result)
    if args.plot:
        write_plot(Path(args.plot), result)
    return result


if __name__ == "__main__":
    main()
