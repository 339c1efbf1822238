"""`Grid`: where a raster's pixels lie on the ground (CRS, affine transform, shape)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from affine import Affine
from rasterio.coords import BoundingBox
from rasterio.crs import CRS
from rasterio.windows import Window

_EPS = 1e-6  # fraction of a pixel below which two grid lines are the same line


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid.

    Args:
        crs: coordinate reference system of the transform.
        transform: affine pixel → CRS transform (north-up: no rotation, negative y step).
        width: columns.
        height: rows.
    """

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units (metres for projected CRSs)."""
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> BoundingBox:
        t = self.transform
        return BoundingBox(t.c, t.f + t.e * self.height, t.c + t.a * self.width, t.f)

    def window(self, bounds: BoundingBox | tuple[float, float, float, float]) -> Window:
        """The (possibly fractional) pixel window covering ``bounds`` on this grid."""
        left, bottom, right, top = bounds
        t = self.transform  # north-up grids only (checked where grids are built)
        col0, row0 = (left - t.c) / t.a, (top - t.f) / t.e
        col1, row1 = (right - t.c) / t.a, (bottom - t.f) / t.e
        return Window(col0, row0, col1 - col0, row1 - row0)

    def integer_window(self, bounds: BoundingBox | tuple[float, float, float, float]) -> Window:
        """Like :meth:`window` but requires whole pixels; raises ``ValueError`` otherwise."""
        left, bottom, right, top = bounds
        t = self.transform
        vals = (
            (left - t.c) / t.a,
            (top - t.f) / t.e,
            (right - left) / t.a,
            (bottom - top) / t.e,
        )
        rounded = [round(v) for v in vals]
        for v, r in zip(vals, rounded, strict=True):
            if abs(v - r) > 1e-3:
                raise ValueError(f"bounds {tuple(bounds)} do not fall on whole pixels of {self}")
        return Window(*rounded)

    def is_north_up(self) -> bool:
        t = self.transform
        return t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0

    def shares_lines_with(self, other: Grid) -> bool:
        """Whether ``other``'s pixel edges fall on this grid's pixel edges (same CRS, resolution
        and an origin offset of whole pixels), so a window read needs no resampling."""
        if self.crs != other.crs or not (self.is_north_up() and other.is_north_up()):
            return False
        (ax, ay), (bx, by) = self.res, other.res
        if not (math.isclose(ax, bx, rel_tol=1e-9) and math.isclose(ay, by, rel_tol=1e-9)):
            return False
        dx = (other.transform.c - self.transform.c) / ax
        dy = (other.transform.f - self.transform.f) / ay
        return abs(dx - round(dx)) < _EPS and abs(dy - round(dy)) < _EPS

    @classmethod
    def covering(cls, crs: CRS, bounds: BoundingBox, res: float) -> Grid:
        """A grid of ``res`` metres tiling ``bounds`` exactly (bounds must be multiples of it)."""
        width = round((bounds.right - bounds.left) / res)
        height = round((bounds.top - bounds.bottom) / res)
        return cls(crs, Affine(res, 0, bounds.left, 0, -res, bounds.top), width, height)
