"""Chips in ground units, random and grid samplers, spatial-block splits, and a torch Dataset.

A chip is a square footprint given in metres whose top-left corner lies on its scene's lattice
(see :mod:`fusion.data.align`), so every sensor's pixels start at the same ground point.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.coords import BoundingBox
from torch.utils.data import Dataset

from fusion.data.align import AlignedScene
from fusion.data.errors import ChipError
from fusion.data.sample import Sample
from fusion.data.timeseries import AlignedSeries


@dataclass(frozen=True)
class ChipRef:
    """A chip: the index of its scene and its bounds (metres, in the scene's CRS)."""

    scene: int
    bounds: BoundingBox


def _check_size(scene: AlignedScene, size_m: float) -> None:
    w, h = scene.size_m
    if size_m <= 0:
        raise ChipError(f"chip size must be > 0 m, got {size_m}")
    if size_m > min(w, h) + 1e-6:
        raise ChipError(
            f"chip of {size_m:g} m does not fit in the footprint of {w:g} × {h:g} m "
            f"(sensors {scene.meta.get('sensors')})"
        )


def grid_chips(
    scene: AlignedScene, size_m: float, stride_m: float | None = None
) -> list[BoundingBox]:
    """Chips of ``size_m`` on a regular grid, rows then columns, inside the footprint.

    ``stride_m`` defaults to ``size_m`` (no overlap) and is rounded up to the lattice step.
    """
    _check_size(scene, size_m)
    step = scene.lattice_m
    stride = math.ceil((stride_m or size_m) / step - 1e-9) * step
    w, h = scene.size_m
    ncol = int((w - size_m) // stride) + 1
    nrow = int((h - size_m) // stride) + 1
    b = scene.bounds
    return [
        scene.chip_bounds(b.left + c * stride, b.top - r * stride, size_m)
        for r in range(nrow)
        for c in range(ncol)
    ]


def random_chips(scene: AlignedScene, size_m: float, n: int, seed: int = 0) -> list[BoundingBox]:
    """``n`` chips of ``size_m`` with corners drawn uniformly from the lattice (seeded)."""
    _check_size(scene, size_m)
    step = scene.lattice_m
    w, h = scene.size_m
    ncol = int((w - size_m) // step) + 1
    nrow = int((h - size_m) // step) + 1
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, ncol, size=n)
    rows = rng.integers(0, nrow, size=n)
    b = scene.bounds
    return [
        scene.chip_bounds(b.left + c * step, b.top - r * step, size_m)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
    ]


def spatial_block_split(
    scenes: Sequence[AlignedScene],
    chips: Sequence[ChipRef],
    *,
    block_m: float,
    fractions: dict[str, float] | None = None,
    seed: int = 0,
) -> dict[str, list[ChipRef]]:
    """Split chips by square ground blocks so neighbouring chips never straddle two splits.

    Blocks are keyed by (CRS, column, row) in CRS metres, so scenes of one place at different
    dates share blocks. Blocks are shuffled (seeded) and dealt out by ``fractions``; a chip that
    touches blocks of different splits is dropped rather than leaked.

    Args:
        scenes: the aligned scenes the chips index into.
        chips: chips to split.
        block_m: block size in metres (choose it larger than the chip).
        fractions: split name → fraction, default ``{"train": .7, "val": .15, "test": .15}``.
        seed: shuffling seed.
    """
    fractions = fractions or {"train": 0.7, "val": 0.15, "test": 0.15}
    if block_m <= 0:
        raise ChipError(f"block size must be > 0 m, got {block_m}")

    def blocks(ref: ChipRef) -> set[tuple[str, int, int]]:
        crs = scenes[ref.scene].crs.to_string()
        b = ref.bounds
        eps = 1e-6
        cols = range(math.floor(b.left / block_m), math.floor((b.right - eps) / block_m) + 1)
        rows = range(math.floor(b.bottom / block_m), math.floor((b.top - eps) / block_m) + 1)
        return {(crs, c, r) for c in cols for r in rows}

    touched = [blocks(ref) for ref in chips]
    unique = sorted(set().union(*touched)) if touched else []
    order = np.random.default_rng(seed).permutation(len(unique))
    total = sum(fractions.values())
    names = list(fractions)
    bounds = np.cumsum([fractions[k] / total for k in names])
    assign = {}
    for rank, idx in enumerate(order.tolist()):
        pos = (rank + 0.5) / max(len(unique), 1)
        assign[unique[idx]] = names[int(np.searchsorted(bounds, pos))]
    out: dict[str, list[ChipRef]] = {k: [] for k in names}
    for ref, bl in zip(chips, touched, strict=True):
        splits = {assign[b] for b in bl}
        if len(splits) == 1:
            out[splits.pop()].append(ref)
    return out


LabelFn = Callable[[AlignedScene, BoundingBox], Any]


class ChipDataset(Dataset[Sample]):
    """A torch Dataset of chips cut from aligned scenes, each a :class:`Sample`.

    Args:
        scenes: aligned scenes.
        chips: chips (scene index and bounds).
        label_fn: optional ``(scene, bounds) → label``.
        transform: optional ``Sample → Sample`` (normalisation, views).
    """

    def __init__(
        self,
        scenes: Sequence[AlignedScene],
        chips: Sequence[ChipRef],
        *,
        label_fn: LabelFn | None = None,
        transform: Callable[[Sample], Sample] | None = None,
    ) -> None:
        self.scenes = list(scenes)
        self.chips = list(chips)
        self.label_fn = label_fn
        self.transform = transform

    def __len__(self) -> int:
        return len(self.chips)

    def __getitem__(self, index: int) -> Sample:
        ref = self.chips[index]
        scene = self.scenes[ref.scene]
        label = self.label_fn(scene, ref.bounds) if self.label_fn else None
        sample = scene.read_chip(ref.bounds, label=label)
        sample.meta["scene"] = ref.scene
        return self.transform(sample) if self.transform else sample

    @classmethod
    def gridded(
        cls,
        scenes: Sequence[AlignedScene],
        size_m: float,
        stride_m: float | None = None,
        **kwargs: Any,
    ) -> ChipDataset:
        """Every grid chip of every scene (scenes too small for one chip are left out)."""
        chips = [
            ChipRef(i, b)
            for i, s in enumerate(scenes)
            if min(s.size_m) >= size_m
            for b in grid_chips(s, size_m, stride_m)
        ]
        return cls(scenes, chips, **kwargs)


class WindowDataset(Dataset[Sample]):
    """A torch Dataset of time windows (seconds) cut from aligned recordings.

    Args:
        recordings: aligned time series (each sensor at its native rate).
        duration_s: window length in seconds (a whole number of samples for every stream).
        stride_s: step between window starts; defaults to ``duration_s``.
        labels: optional label per recording, given to each of its windows.
        transform: optional ``Sample → Sample``.
    """

    def __init__(
        self,
        recordings: Sequence[AlignedSeries],
        duration_s: float,
        stride_s: float | None = None,
        *,
        labels: Sequence[Any] | None = None,
        transform: Callable[[Sample], Sample] | None = None,
    ) -> None:
        self.recordings = list(recordings)
        self.duration_s = duration_s
        self.labels = list(labels) if labels is not None else None
        self.transform = transform
        self.index: list[tuple[int, float]] = [
            (i, float(t0))
            for i, rec in enumerate(self.recordings)
            for t0 in rec.window_starts(duration_s, stride_s or duration_s)
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> Sample:
        i, t0 = self.index[index]
        label = self.labels[i] if self.labels is not None else None
        sample = self.recordings[i].window(t0, self.duration_s, label=label)
        sample.meta["recording"] = i
        return self.transform(sample) if self.transform else sample
