"""Chip labels from a label raster: the majority class code over each chip's footprint.

A label raster holds one class code per pixel (BigEarthNet v2's ``*_reference_map.tif`` holds
CORINE level-3 codes, the synthetic scenes' ``labels.tif`` land-cover indices). For a chip, every
label raster whose extent meets the chip is read over the chip's bounds, windowed when its pixels
already fall on the chip's grid and otherwise resampled (nearest) through the same readers the
image bands use; nodata and pixels beyond the raster do not count. The chip's label is the most
frequent code (ties: the smaller code) and its *purity* the fraction of counted pixels holding it;
codes from several rasters (tiled reference maps) are summed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rasterio.coords import BoundingBox
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from fusion.data.align import AlignedScene
from fusion.data.errors import ConfigError
from fusion.data.grid import Grid
from fusion.data.readers.band_folder import LABEL_STEMS
from fusion.data.sampling import ChipRef
from fusion.data.sources import FileBand

_SUFFIXES = (".tif", ".tiff")


def is_label_file(path: Path) -> bool:
    """Whether a file is named like a label raster (``labels.tif``, ``*_reference_map.tif``)."""
    stem = path.stem.lower()
    return path.suffix.lower() in _SUFFIXES and any(
        stem == s or stem.endswith("_" + s) for s in LABEL_STEMS
    )


def find_label_rasters(root: str | Path) -> list[Path]:
    """Label rasters at or under ``root`` (a label file itself, or any found by name), sorted."""
    root = Path(root)
    if root.is_file():
        return [root] if is_label_file(root) else []
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and is_label_file(p))


@dataclass(frozen=True)
class ChipLabel:
    """The label of one chip.

    Args:
        code: the majority class code, or ``None`` when no label pixel falls in the chip.
        purity: pixels holding ``code`` over pixels counted (0 without any).
        counted: label pixels counted (valid, inside a label raster).
    """

    code: int | None
    purity: float
    counted: int


class LabelRaster:
    """One label raster, read over chip footprints in any CRS.

    Args:
        path: the raster; its first band holds integer class codes, its nodata tag (if any)
            marks unlabelled pixels.

    Raises:
        CorruptFileError: the file cannot be opened.
        MissingCRSError: the file has no CRS.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.band = FileBand(self.path)
        self._bounds: dict[str, BoundingBox] = {}

    def bounds_in(self, crs: CRS) -> BoundingBox:
        """The raster's extent in ``crs`` (cached per CRS)."""
        key = crs.to_string()
        if key not in self._bounds:
            own = self.band.grid
            b = own.bounds
            self._bounds[key] = (
                b if own.crs == crs else BoundingBox(*transform_bounds(own.crs, crs, *b))
            )
        return self._bounds[key]

    def counts(self, crs: CRS, bounds: BoundingBox, res: float) -> dict[int, int]:
        """Code → pixel count over ``bounds`` (in ``crs``), counted on a grid of ``res`` metres
        (the raster's own pixels when they line up with the chip)."""
        ext = self.bounds_in(crs)
        if (
            ext.right <= bounds.left
            or ext.left >= bounds.right
            or ext.top <= bounds.bottom
            or ext.bottom >= bounds.top
        ):
            return {}
        own = self.band.grid
        size = bounds.right - bounds.left
        if own.crs == crs and _divides(own.res[0], size):
            res = own.res[0]
        grid = Grid.covering(crs, bounds, res)
        reader = self.band.on_grid(grid, Resampling.nearest)
        if reader is self.band:  # the raster's pixels lie on the chip grid: a plain window
            window = own.integer_window(bounds)
        else:
            window = Window(0, 0, grid.width, grid.height)
        values, valid = reader.read(window)
        codes, n = np.unique(values[valid].astype(np.int64), return_counts=True)
        return {int(c): int(k) for c, k in zip(codes, n, strict=True)}


def _divides(res: float, size: float) -> bool:
    k = size / res
    return math.isclose(k, round(k), rel_tol=0, abs_tol=1e-6)


def chip_label(
    rasters: Sequence[LabelRaster], scene: AlignedScene, bounds: BoundingBox
) -> ChipLabel:
    """Majority code and purity of a chip over every raster in ``rasters``."""
    res = min(a.grid.res[0] for a in scene.streams.values())
    total: dict[int, int] = {}
    for raster in rasters:
        for code, n in raster.counts(scene.crs, bounds, res).items():
            total[code] = total.get(code, 0) + n
    counted = sum(total.values())
    if not counted:
        return ChipLabel(None, 0.0, 0)
    code = min(total, key=lambda c: (-total[c], c))
    return ChipLabel(code, total[code] / counted, counted)


@dataclass
class LabelledChips:
    """Chips that passed the purity threshold, with their codes, and what was dropped.

    Args:
        chips: kept chips, in input order.
        codes: majority code of each kept chip.
        purity: purity of each kept chip.
        dropped_impure: chips whose purity was below the threshold.
        dropped_unlabelled: chips no label raster covers (or covers only with nodata).
    """

    chips: list[ChipRef] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    purity: list[float] = field(default_factory=list)
    dropped_impure: int = 0
    dropped_unlabelled: int = 0


def label_chips(
    scenes: Sequence[AlignedScene],
    chips: Sequence[ChipRef],
    rasters: Sequence[LabelRaster],
    *,
    min_purity: float,
) -> LabelledChips:
    """Label every chip by majority code and keep those with purity ``>= min_purity``.

    Raises:
        ConfigError: ``min_purity`` is outside ``[0, 1]``.
    """
    if not 0.0 <= min_purity <= 1.0:
        raise ConfigError(f"min_purity must lie in [0, 1], got {min_purity}")
    out = LabelledChips()
    for ref in chips:
        lab = chip_label(rasters, scenes[ref.scene], ref.bounds)
        if lab.code is None:
            out.dropped_unlabelled += 1
        elif lab.purity < min_purity:
            out.dropped_impure += 1
        else:
            out.chips.append(ref)
            out.codes.append(lab.code)
            out.purity.append(lab.purity)
    return out


@dataclass(frozen=True)
class CodeLookup:
    """``(scene, bounds) → class index`` for chips labelled by :func:`label_chips`.

    Keyed by CRS and bounds (picklable into DataLoader workers): chips of the same ground share
    a label raster value whatever the acquisition.

    Args:
        index: ``(crs, bounds) → class index``.
    """

    index: dict[tuple[str, tuple[float, ...]], int]

    def __call__(self, scene: AlignedScene, bounds: BoundingBox) -> torch.Tensor:
        return torch.tensor(self.index[(scene.crs_name, tuple(bounds))], dtype=torch.int64)
