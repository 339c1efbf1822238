"""Alignment: bring several sensors onto one footprint while each keeps its native resolution.

The footprint is the ground all sensors see, in one projected CRS, snapped to a lattice whose step
is the least common multiple of the native resolutions (60 m for 10/20/60 m). Each stream (bands of
one sensor at one resolution) gets a grid of its own resolution over that footprint, so a 1200 m
chip is 120 px at 10 m, 60 px at 20 m and 20 px at 60 m, with all three sharing the same corner.

A band whose pixels already fall on its target grid (same CRS, resolution and whole-pixel origin
offset, the common case for Sentinel products) is read with plain windowed reads. Any other band is
resampled once onto the target grid through GDAL's WarpedVRT, using its own georeferencing, so
sources with slightly different bounds (SSL4EO-S12's per-group bounds in EPSG:4326) are placed
where they are, never shifted by a silent sub-pixel offset.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import numpy as np
import torch
from rasterio.coords import BoundingBox
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from fusion.data.errors import ChipError, CRSMismatchError, FusionDataError, NoOverlapError
from fusion.data.grid import Grid
from fusion.data.sample import Sample
from fusion.data.sources import BandReader, FileBand, SensorSource, StackedFileBands
from fusion.data.specs import Stream

_MM = 1000  # resolutions are compared in whole millimetres


def utm_crs(lon: float, lat: float) -> CRS:
    """The WGS 84 / UTM zone CRS containing a point (no special zones for Norway/Svalbard)."""
    zone = int((lon + 180) // 6) % 60 + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _lcm_m(values: Sequence[float]) -> float:
    mm = [round(v * _MM) for v in values]
    return reduce(math.lcm, mm) / _MM


def _snap_inward(bounds: BoundingBox, origin: tuple[float, float], step: float) -> BoundingBox:
    ox, oy = origin
    left = ox + math.ceil((bounds.left - ox) / step - 1e-9) * step
    right = ox + math.floor((bounds.right - ox) / step + 1e-9) * step
    top = oy - math.ceil((oy - bounds.top) / step - 1e-9) * step
    bottom = oy - math.floor((oy - bounds.bottom) / step + 1e-9) * step
    return BoundingBox(left, bottom, right, top)


@dataclass
class AlignedStream:
    """One stream of one sensor on its target grid.

    Args:
        stream: key, sensor, bands, resolution.
        grid: the target grid (footprint at the stream's native resolution).
        readers: one reader per band, already on ``grid``.
        masks: invalid-data masks of the sensor, on their own (target-CRS) grids.
        scale: raw → physical scale of the sensor.
        offset: raw → physical offset.
        resampled: band names that needed resampling (not on the target grid natively).
        stack: all bands read in one call, when they are files on one aligned grid.
        stack_masks: masks read as trailing bands of ``stack`` (on the same grid).
    """

    stream: Stream
    grid: Grid
    readers: list[BandReader]
    masks: list[BandReader]
    scale: float
    offset: float
    resampled: list[str] = field(default_factory=list)
    stack: StackedFileBands | None = None
    stack_masks: list[BandReader] = field(default_factory=list)


@dataclass
class AlignedScene:
    """Several sensors over one footprint, each stream at its native resolution.

    Args:
        crs: the projected CRS of the footprint.
        bounds: the footprint (metres), on the lattice of step :attr:`lattice_m`.
        lattice_m: least common multiple of the native resolutions; chip corners lie on it.
        streams: stream key → :class:`AlignedStream`.
        sources: the sensor sources, by sensor name.
        meta: scene metadata (times, folders, labels).
    """

    crs: CRS
    bounds: BoundingBox
    lattice_m: float
    streams: dict[str, AlignedStream]
    sources: dict[str, SensorSource]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A CRS read from a file holds WKT: to_string() redoes an EPSG lookup (~36 µs) per call.
        self.crs_name = self.crs.to_string()

    @property
    def size_m(self) -> tuple[float, float]:
        return self.bounds.right - self.bounds.left, self.bounds.top - self.bounds.bottom

    def chip_bounds(self, left: float, top: float, size_m: float) -> BoundingBox:
        """Bounds of a square chip whose top-left corner is snapped onto the lattice."""
        step = self.lattice_m
        col = round((left - self.bounds.left) / step)
        row = round((self.bounds.top - top) / step)
        x0, y0 = self.bounds.left + col * step, self.bounds.top - row * step
        return BoundingBox(x0, y0 - size_m, x0 + size_m, y0)

    def chip_shapes(self, size_m: float) -> dict[str, tuple[int, ...]]:
        """Shape of each stream's tensor for a chip of ``size_m`` metres."""
        out: dict[str, tuple[int, ...]] = {}
        for key, a in self.streams.items():
            n = math.ceil(size_m / a.grid.res[0] - 1e-6)
            out[key] = (len(a.readers), n, n)
        return out

    def read_chip(self, bounds: BoundingBox, *, label: Any = None) -> Sample:
        """Read every stream over ``bounds`` (its top-left corner must be on the lattice).

        A stream whose resolution does not divide the chip size covers the smallest whole number
        of its pixels from the same corner (e.g. 640 m → 11 px at 60 m, covering 660 m);
        ``meta["extent_m"]`` records what each stream covers.

        Raises:
            ChipError: the corner is off the lattice or the chip lies outside the footprint.
        """
        left, bottom, right, top = bounds
        for v, ref in ((left, self.bounds.left), (top, self.bounds.top)):
            k = (v - ref) / self.lattice_m
            if abs(k - round(k)) > 1e-6:
                raise ChipError(
                    f"chip corner ({left}, {top}) is not on the {self.lattice_m:g} m lattice "
                    f"anchored at ({self.bounds.left}, {self.bounds.top})"
                )
        if right <= self.bounds.left or left >= self.bounds.right or top <= self.bounds.bottom:
            raise ChipError(f"chip {tuple(bounds)} lies outside the footprint {tuple(self.bounds)}")
        data, masks, streams, extent = {}, {}, {}, {}
        sizes = {}
        for key, a in self.streams.items():
            res = a.grid.res[0]
            sizes[key] = (
                math.ceil((top - bottom) / res - 1e-6),
                math.ceil((right - left) / res - 1e-6),
                res,
            )
        # Masks (clouds) are read once per chip over the largest stream extent, then reduced to
        # each stream's grid: one read instead of one per stream.
        ext_w = max(n * res for _, n, res in sizes.values())
        ext_h = max(m * res for m, _, res in sizes.values())
        union = BoundingBox(left, top - ext_h, left + ext_w, top)
        mask_cache: dict[int, np.ndarray | None] = {}
        for key, a in self.streams.items():
            m, n, res = sizes[key]
            stacked = _read_stacked_with_masks(a, union, (m, n), mask_cache)
            if stacked is not None:
                values, valid = stacked
            else:
                window = a.grid.integer_window(
                    BoundingBox(left, top - m * res, left + n * res, top)
                )
                values, valid = _read_stream(a, window, (m, n))
            for mask in a.masks:
                if id(mask) not in mask_cache:
                    flagged = _bad_pixels(mask, union)
                    mask_cache[id(mask)] = flagged if flagged.any() else None
                bad = mask_cache[id(mask)]
                if bad is None:  # a clear chip: nothing to resize
                    continue
                mres = mask.grid.res[0]
                rows, cols = math.ceil(m * res / mres - 1e-6), math.ceil(n * res / mres - 1e-6)
                valid &= ~_resize_mask(bad[:rows, :cols], (m, n))
            if a.scale != 1.0:
                values *= a.scale
            if a.offset != 0.0:
                values += a.offset
            values *= valid  # invalid pixels become 0 (broadcast over bands, in place)
            data[key] = torch.from_numpy(values)
            masks[key] = torch.from_numpy(valid)
            streams[key] = a.stream
            extent[key] = (n * res, m * res)
        meta = {
            **self.meta,
            "crs": self.crs_name,
            "bounds": tuple(bounds),
            "extent_m": extent,
        }
        return Sample(data=data, masks=masks, streams=streams, meta=meta, label=label)


def _read_stream(
    a: AlignedStream, window: Window, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Values ``(C, m, n)`` float32 and validity ``(m, n)`` of one stream over ``window``."""
    if a.stack is not None:
        raw, valid = a.stack.read(window)
        return raw.astype(np.float32), valid
    values = np.empty((len(a.readers), *shape), dtype=np.float32)
    valid = np.ones(shape, dtype=bool)
    for i, reader in enumerate(a.readers):
        raw, ok = reader.read(window)
        values[i] = raw
        valid &= ok
    return values, valid


def _read_stacked_with_masks(
    a: AlignedStream,
    union: BoundingBox,
    shape: tuple[int, int],
    mask_cache: dict[int, np.ndarray | None],
) -> tuple[np.ndarray, np.ndarray] | None:
    """Values, validity and the sensor's masks in one read over the chip's widest extent."""
    if a.stack is None or not a.stack_masks:
        return None
    try:
        window = a.grid.integer_window(union)
    except ValueError:
        return None
    raw, valid = a.stack.read(window)
    c = len(a.readers)
    for j, mask in enumerate(a.stack_masks):
        flagged = raw[c + j] != 0
        mask_cache[id(mask)] = flagged if flagged.any() else None
    m, n = shape
    values = raw[:c, :m, :n].astype(np.float32)
    return values, np.ascontiguousarray(valid[:m, :n])


def _bad_pixels(mask: BandReader, bounds: BoundingBox) -> np.ndarray:
    """Pixels of a mask reader flagged invalid (non-zero) over ``bounds``, on the mask's grid."""
    raw, ok = mask.read(mask.grid.integer_window(_expand(bounds, mask.grid)))
    bad: np.ndarray = (raw != 0) & ok
    return bad


def _resize_mask(bad: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bring an invalid-pixel mask to ``shape``: a coarser pixel is invalid when any finer pixel
    inside it is (cloud edges stay masked); a finer output repeats the mask pixel."""
    h, w = bad.shape
    m, n = shape
    if (h, w) == (m, n):
        return bad
    if h >= m:
        fy, fx = h // m, w // n
        out: np.ndarray = np.asarray(bad[: m * fy, : n * fx].reshape(m, fy, n, fx).any(axis=(1, 3)))
        return out
    fy, fx = -(-m // h), -(-n // w)
    return np.asarray(np.repeat(np.repeat(bad, fy, axis=0), fx, axis=1)[:m, :n])


def _expand(bounds: BoundingBox, grid: Grid) -> BoundingBox:
    res = grid.res[0]
    t = grid.transform
    left = t.c + math.floor((bounds.left - t.c) / res + 1e-6) * res
    top = t.f - math.floor((t.f - bounds.top) / res + 1e-6) * res
    n = math.ceil((bounds.right - left) / res - 1e-6)
    m = math.ceil((top - bounds.bottom) / res - 1e-6)
    return BoundingBox(left, top - m * res, left + n * res, top)


def _choose_crs(sources: Sequence[SensorSource], crs: CRS | str | None) -> CRS:
    if crs is not None:
        return CRS.from_user_input(crs)
    projected = [s for s in sources if s.crs.is_projected]
    if projected:
        crss = {s.crs for s in projected}
        if len(crss) > 1:
            names = sorted(f"{s.name}: {s.crs}" for s in projected)
            raise CRSMismatchError(
                f"sources are in different projected CRSs ({names}); pass crs= to choose the "
                "one to resample into, or align each scene on its own"
            )
        return projected[0].crs
    left, bottom, right, top = transform_bounds(sources[0].crs, "EPSG:4326", *_bounds(sources[0]))
    return utm_crs((left + right) / 2, (bottom + top) / 2)


def _bounds(source: SensorSource) -> BoundingBox:
    """The ground every band of one source covers (intersection of the bands' bounds)."""
    bs = [r.grid.bounds for r in source.bands.values()]
    return BoundingBox(
        max(b.left for b in bs),
        max(b.bottom for b in bs),
        min(b.right for b in bs),
        min(b.top for b in bs),
    )


def align(
    sources: Sequence[SensorSource],
    *,
    crs: CRS | str | None = None,
    resampling: Resampling = Resampling.bilinear,
) -> AlignedScene:
    """Align sensors onto their common footprint, each stream at its native resolution.

    Args:
        sources: at most one source per sensor, covering the same ground.
        crs: target CRS; default: the sources' projected CRS (they must agree), or the UTM zone
            of the footprint when every source is geographic (EPSG:4326).
        resampling: resampling for bands not already on the target grid (masks use nearest).

    Raises:
        NoOverlapError: the sources' footprints do not share a lattice cell.
        CRSMismatchError: projected sources in different CRSs and no ``crs`` given.
        FusionDataError: two sources of the same sensor, or resolutions that are not integer
            ratios of the finest.
    """
    if not sources:
        raise FusionDataError("align() needs at least one sensor source")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise FusionDataError(
            f"align() takes one source per sensor, got {names}; split acquisitions into scenes"
        )
    target = _choose_crs(sources, crs)
    resolutions = sorted({b.resolution_m for s in sources for b in s.spec.bands if b.resolution_m})
    fine = resolutions[0]
    for r in resolutions:
        if abs(r / fine - round(r / fine)) > 1e-6:
            raise FusionDataError(
                f"resolution {r:g} m is not an integer multiple of the finest ({fine:g} m)"
            )
    lattice = _lcm_m(resolutions)
    footprint: BoundingBox | None = None
    extents = {}
    for s in sources:
        b = _bounds(s)
        tb = BoundingBox(*transform_bounds(s.crs, target, *b)) if s.crs != target else b
        extents[s.name] = tb
        footprint = (
            tb
            if footprint is None
            else BoundingBox(
                max(footprint.left, tb.left),
                max(footprint.bottom, tb.bottom),
                min(footprint.right, tb.right),
                min(footprint.top, tb.top),
            )
        )
    assert footprint is not None
    origin = _anchor(sources, target, fine)
    snapped = _snap_inward(footprint, origin, lattice)
    if snapped.right <= snapped.left or snapped.top <= snapped.bottom:
        detail = ", ".join(f"{k}: {tuple(round(v) for v in e)}" for k, e in extents.items())
        raise NoOverlapError(
            f"the footprints of {names} do not overlap by one {lattice:g} m cell in {target} "
            f"({detail})"
        )
    streams: dict[str, AlignedStream] = {}
    for s in sources:
        mask_readers = [
            m.on_grid(_mask_grid(m, target, snapped), Resampling.nearest) for m in s.masks
        ]
        for stream in s.spec.streams():
            assert stream.resolution_m is not None
            grid = Grid.covering(target, snapped, stream.resolution_m)
            readers, resampled = [], []
            for band in stream.bands:
                reader = s.bands[band.name].on_grid(grid, resampling)
                if reader is not s.bands[band.name]:
                    resampled.append(band.name)
                readers.append(reader)
            files = [r for r in readers if isinstance(r, FileBand)]
            stack, stacked_masks = None, list[FileBand]()
            if len(files) == len(readers) > 1 and all(f.grid == files[0].grid for f in files):
                # A cloud mask on this grid rides along in the same read (first stream only).
                stacked_masks = [
                    mk
                    for mk in mask_readers
                    if isinstance(mk, FileBand)
                    and mk.grid == files[0].grid
                    and not any(mk in x.stack_masks for x in streams.values())
                ]
                stack = StackedFileBands(files, masks=stacked_masks)
            streams[stream.key] = AlignedStream(
                stream,
                grid,
                readers,
                mask_readers,
                s.spec.scale,
                s.spec.offset,
                resampled,
                stack,
                list[BandReader](stacked_masks),
            )
    meta = {
        "sensors": names,
        "time": {s.name: s.time.isoformat() if s.time else None for s in sources},
        **{f"{s.name}_meta": s.meta for s in sources if s.meta},
    }
    return AlignedScene(target, snapped, lattice, streams, {s.name: s for s in sources}, meta)


def _anchor(sources: Sequence[SensorSource], crs: CRS, fine: float) -> tuple[float, float]:
    """Lattice origin: the corner of a finest-resolution band already in the target CRS (so its
    pixels need no resampling), else the CRS origin (multiples of 60 m in UTM are the Sentinel-2
    tile grid)."""
    for s in sources:
        for name, reader in s.bands.items():
            if reader.grid.crs == crs and s.spec.band(name).resolution_m == fine:
                return reader.grid.transform.c, reader.grid.transform.f
    return 0.0, 0.0


def _mask_grid(mask: BandReader, crs: CRS, bounds: BoundingBox) -> Grid:
    if mask.grid.crs == crs:
        return mask.grid
    res = min(mask.grid.res)
    if not crs.is_geographic and mask.grid.crs.is_geographic:
        res = res * 111_320.0  # degrees → metres at the equator; only sets the mask's pixel size
    return Grid.covering(crs, bounds, res)
