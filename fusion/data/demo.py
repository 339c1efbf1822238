"""The data layer at work on the embedded default: generate, write, inspect, align, chip, batch.

Backs ``fusion demo`` (and ``make demo``). Everything runs on a synthetic scene made on the fly;
when the real sample data is present, one BigEarthNet S1+S2 pair is aligned as well.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from fusion.data.align import align
from fusion.data.collate import collate_samples
from fusion.data.inspect import inspect_paths
from fusion.data.normalise import Normaliser, compute_stats
from fusion.data.plot import plot_sample
from fusion.data.readers.band_folder import open_band_folders
from fusion.data.sampling import ChipDataset, ChipRef, grid_chips, spatial_block_split
from fusion.data.scenes import group_scenes
from fusion.data.shared import shared_data_dir
from fusion.data.synthetic import chip_label, make_scene, write_scene


def run_demo(out: Path, *, seed: int = 0, chip_m: float = 640.0) -> dict[str, Any]:
    """Run the data-layer demo, writing files under ``out``; returns a JSON-ready summary."""
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"seed": seed, "chip_m": chip_m, "out": str(out)}

    t0 = time.perf_counter()
    scene = make_scene(seed)
    summary["generate_s"] = round(time.perf_counter() - t0, 3)
    folder = write_scene(scene, out / "scene")
    summary["inspect"] = inspect_paths([folder])

    # A second place where the optical sensor is off: its stream is absent, never zero-filled.
    partial = make_scene(seed + 1, sensors=["syn_sar", "syn_thermal"])
    aligned = [align(scene.sources), align(partial.sources)]
    syn = {0: scene, 1: partial}
    chips = [ChipRef(i, b) for i, s in enumerate(aligned) for b in grid_chips(s, chip_m)]
    splits = spatial_block_split(aligned, chips, block_m=4 * chip_m, seed=seed)

    def label(s: Any, bounds: Any) -> int:
        index = next(i for i, a in enumerate(aligned) if a is s)
        return chip_label(syn[index], bounds)

    train = ChipDataset(aligned, splits["train"], label_fn=label)
    t0 = time.perf_counter()
    specs = compute_stats(
        (train[i] for i in range(len(train))),
        {src.name: src.spec for src in scene.sources},
    )
    elapsed = time.perf_counter() - t0
    summary["chips_per_s"] = round(len(train) / max(elapsed, 1e-9), 1)
    summary["splits"] = {k: len(v) for k, v in splits.items()}
    summary["dropped_straddling_chips"] = len(chips) - sum(len(v) for v in splits.values())
    summary["class_counts"] = {
        k: dict(Counter(scene.class_names[label(aligned[r.scene], r.bounds)] for r in v))
        for k, v in splits.items()
    }
    summary["stats"] = {
        name: {"bands": list(spec.band_names), "mean": spec.stats.mean, "std": spec.stats.std}
        for name, spec in specs.items()
        if spec.stats is not None
    }
    train.transform = Normaliser(specs)
    loader = DataLoader(train, batch_size=8, shuffle=True, collate_fn=collate_samples)
    batch = next(iter(loader))
    summary["batch"] = {
        key: {
            "shape": list(x.shape),
            "present": int(batch.present[key].sum()),
            "valid_fraction": round(float(batch.masks[key].float().mean()), 3),
        }
        for key, x in batch.data.items()
    }
    cloudy = max(range(len(train)), key=lambda i: _cloud_score(train, i))
    summary["plot"] = str(
        plot_sample(train[cloudy], out / "chip.png", title="synthetic chip (normalised)")
    )
    summary["real"] = _real_pair()
    return summary


def _cloud_score(ds: ChipDataset, index: int) -> float:
    ref = ds.chips[index]
    if ref.scene != 0:
        return -1.0
    mask = ds.scenes[0].read_chip(ref.bounds).masks.get("syn_optical_10m")
    if mask is None:
        return -1.0
    invalid = 1.0 - float(mask.float().mean())
    return -abs(invalid - 0.3)  # a chip partly under cloud shows the mask best


def _real_pair() -> dict[str, Any] | None:
    root = shared_data_dir() / "bigearthnet-v1-pairs"
    if not root.is_dir():
        return None
    group = group_scenes(open_band_folders([root]))[0]
    scene = align(group)
    sample = scene.read_chip(scene.chip_bounds(scene.bounds.left, scene.bounds.top, 1200))
    return {
        "path": str(root),
        "crs": scene.crs.to_string(),
        "sensors": sample.sensors,
        "shapes": {k: list(v) for k, v in sample.shapes().items()},
    }
