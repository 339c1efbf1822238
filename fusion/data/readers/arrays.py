"""Sensor sources from in-memory arrays (numpy or dask), and the helpers every reader shares.

:func:`from_array` takes one ``(C, H, W)`` raster whose bands share a grid; :func:`from_arrays`
takes one 2-D array per band, each on its own grid (10/20/60 m Sentinel-2 bands without
upsampling). The helpers resolve band names against a spec, parse CRSs and rewrite a spec's band
resolutions when a product was resampled away from the native ones (EuroSAT: all 13 bands at 10 m).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias

from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError

from fusion.data.errors import BandCountError, FusionDataError, MissingCRSError, UnknownBandError
from fusion.data.grid import Grid
from fusion.data.sources import ArrayBand, BandReader, SensorSource
from fusion.data.specs import SensorSpec

CRSLike: TypeAlias = "CRS | str | int"
"""A CRS, or what ``CRS.from_user_input`` accepts (WKT, ``"EPSG:32633"``, 32633)."""

# Relative difference below which a grid's pixel size counts as a band's native resolution.
# Reprojected products drift off round numbers (EuroSAT's pixels are 9.97-10.03 m: Sentinel-2's
# 10 m), but a band resampled from 20 m or 60 m is off by a factor of 2 or more.
RESOLUTION_RTOL = 0.01


def canonical_band_names(
    spec: SensorSpec,
    names: Sequence[str],
    *,
    path: str | Path | None = None,
) -> list[str]:
    """Canonical names of ``names`` (names or aliases in ``spec``), in the given order.

    Args:
        spec: the sensor spec the names belong to.
        names: band names or aliases as found in a file or given by the caller.
        path: the file involved, named in errors.

    Returns:
        One canonical band name per entry of ``names``.

    Raises:
        UnknownBandError: a name is not in the spec.
        BandCountError: two names resolve to the same band (e.g. ``"B8"`` and ``"B08"``).
    """
    out: list[str] = []
    seen: dict[str, str] = {}
    for name in names:
        try:
            canonical = spec.bands[spec.band_index(str(name))].name
        except UnknownBandError as err:
            raise UnknownBandError(
                err.reason, path=path, sensor=spec.name, band=str(name)
            ) from None
        if canonical in seen:
            raise BandCountError(
                f"band {canonical!r} given twice (as {seen[canonical]!r} and {name!r}); "
                "each band may appear once",
                path=path,
                sensor=spec.name,
                band=canonical,
            )
        seen[canonical] = str(name)
        out.append(canonical)
    return out


def parse_crs(crs: CRSLike | None, *, path: str | Path | None = None) -> CRS:
    """A rasterio CRS from a CRS, WKT, ``"EPSG:n"`` string or EPSG code.

    Raises:
        MissingCRSError: ``crs`` is ``None`` or cannot be parsed.
    """
    if crs is None:
        raise MissingCRSError(
            "no CRS given; rasters must be georeferenced (pass crs=, e.g. 'EPSG:32633')",
            path=path,
        )
    if isinstance(crs, CRS):
        return crs
    try:
        return CRS.from_user_input(crs)
    except CRSError as err:
        raise MissingCRSError(f"cannot parse CRS {str(crs)[:80]!r}: {err}", path=path) from err


def _as_affine(transform: Affine | Sequence[float]) -> Affine:
    # Six numbers are taken in rasterio/affine order (a, b, c, d, e, f), not GDAL's GeoTransform.
    if isinstance(transform, Affine):
        return transform
    values = [float(v) for v in transform]
    if len(values) not in (6, 9):
        raise FusionDataError(
            f"transform needs 6 affine coefficients (a, b, c, d, e, f), got {len(values)}"
        )
    return Affine(*values[:6])


def pixel_size_m(grid: Grid) -> float | None:
    """A grid's pixel size in metres (x step), or ``None`` when its CRS is not in metres."""
    if grid.crs.is_geographic:
        return None
    units = (grid.crs.linear_units or "").lower()
    if units and units not in ("metre", "meter", "m", "metres", "meters", "unknown"):
        return None
    return round(grid.res[0], 6)  # drop float noise from products that store centre coordinates


def spec_for_grids(
    spec: SensorSpec, grids: Mapping[str, Grid], *, rtol: float = RESOLUTION_RTOL
) -> tuple[SensorSpec, bool]:
    """Make a spec's band resolutions tell the truth about the grids the bands were found on.

    A product that resampled bands away from their native resolution (EuroSAT stores all 13
    Sentinel-2 bands at 10 m) must not claim 60 m for B01: downstream, streams are formed by
    resolution and chips are cut in pixels of that resolution. For every group of bands sharing a
    pixel size, if any band's ``resolution_m`` differs from it, every band of the group gets the
    grid's pixel size (so the group stays one stream).

    Args:
        spec: the spec, already restricted to the bands present.
        grids: canonical band name → the grid the band lies on.
        rtol: relative tolerance under which a pixel size equals a native resolution.

    Returns:
        ``(spec, resampled)``: the possibly rewritten spec and whether any band was rewritten.
        Grids whose CRS is not in metres (geographic) leave their bands untouched.
    """
    if spec.kind != "raster":
        return spec, False
    groups: dict[float, list[str]] = {}
    for name, grid in grids.items():
        size = pixel_size_m(grid)
        if size is not None:
            groups.setdefault(size, []).append(spec.band(name).name)
    new_res: dict[str, float] = {}
    for size, names in groups.items():
        native = [spec.band(n).resolution_m for n in names]
        if any(r is None or not math.isclose(r, size, rel_tol=rtol) for r in native):
            new_res.update(dict.fromkeys(names, size))
    if not new_res:
        return spec, False
    bands = tuple(
        replace(b, resolution_m=new_res[b.name]) if b.name in new_res else b for b in spec.bands
    )
    return replace(spec, bands=bands), True


def _in_spec_order(spec: SensorSpec, readers: Mapping[str, BandReader]) -> dict[str, BandReader]:
    return {b.name: readers[b.name] for b in spec.bands if b.name in readers}


def _array_band(
    array: Any, grid: Grid, *, nodata: float | None, name: str, sensor: str, band: str
) -> ArrayBand:
    if getattr(array, "ndim", None) != 2:
        raise FusionDataError(
            f"band array must be 2-D (H, W), got shape {tuple(getattr(array, 'shape', ()))}",
            sensor=sensor,
            band=band,
        )
    try:
        return ArrayBand(array, grid, nodata=nodata, name=name)
    except ValueError as err:
        raise FusionDataError(str(err), sensor=sensor, band=band) from err


def from_array(
    array: Any,
    spec: SensorSpec,
    *,
    transform: Affine | Sequence[float],
    crs: CRSLike | None,
    band_names: Sequence[str] | None = None,
    nodata: float | None = None,
    time: datetime | None = None,
    meta: Mapping[str, Any] | None = None,
) -> SensorSource:
    """A sensor source from one raster array whose bands share a grid.

    Args:
        array: ``(C, H, W)`` numpy or dask array of raw values (before scale/offset). Dask arrays
            stay lazy; each window read computes only the chunks it touches.
        spec: the sensor spec.
        transform: affine pixel → CRS transform of the array's top-left corner (rasterio order
            ``(a, b, c, d, e, f)``); pixel size in CRS units (metres for UTM).
        crs: the CRS of ``transform`` (required).
        band_names: name or alias of each of the ``C`` channels, in array order; defaults to the
            spec's band order, which needs ``C == len(spec.bands)``.
        nodata: raw value marking missing pixels; defaults to ``spec.nodata``.
        time: acquisition time, if known.
        meta: extra metadata copied into the source's ``meta``.

    Returns:
        A :class:`SensorSource` with the bands present (spec order), each an :class:`ArrayBand`.
        If the grid's pixel size is not the bands' native resolution, the source's spec carries the
        grid's pixel size and ``meta["resampled_from_native"]`` is ``True``.

    Raises:
        BandCountError: ``C`` differs from ``len(band_names)`` or, without names, from the spec.
        UnknownBandError: a name is not in the spec.
        MissingCRSError: no (parsable) CRS.
    """
    shape = tuple(getattr(array, "shape", ()))
    if len(shape) != 3:
        raise BandCountError(
            f"expected a (C, H, W) array, got shape {shape}; wrap a single band as array[None]",
            sensor=spec.name,
        )
    count, height, width = (int(v) for v in shape)
    if band_names is None:
        if count != len(spec.bands):
            raise BandCountError(
                f"array holds {count} channels but {spec.name} has {len(spec.bands)} bands "
                f"{list(spec.band_names)}; pass band_names= for a subset",
                sensor=spec.name,
            )
        names = list(spec.band_names)
    else:
        if len(band_names) != count:
            raise BandCountError(
                f"array holds {count} channels but band_names lists {len(band_names)} "
                f"{list(band_names)}",
                sensor=spec.name,
            )
        names = canonical_band_names(spec, band_names)
    grid = Grid(parse_crs(crs), _as_affine(transform), width, height)
    fill = spec.nodata if nodata is None else nodata
    readers: dict[str, BandReader] = {
        name: _array_band(
            array[i], grid, nodata=fill, name=f"array[{i}]", sensor=spec.name, band=name
        )
        for i, name in enumerate(names)
    }
    sub, resampled = spec_for_grids(spec.subset(names), dict.fromkeys(names, grid))
    info: dict[str, Any] = {"source": "array", "resampled_from_native": resampled}
    info.update(meta or {})
    return SensorSource(spec=sub, bands=_in_spec_order(sub, readers), time=time, meta=info)


def _extent_check(spec: SensorSpec, grids: Mapping[str, Grid]) -> None:
    # Bands of one scene cover one footprint: a 10 m array passed for a 20 m band covers twice the
    # ground and would silently misalign every chip.
    items = list(grids.items())
    ref_name, ref = items[0]
    for name, grid in items[1:]:
        for axis, (a, b, ra, rb) in enumerate(
            (
                (ref.width * ref.res[0], grid.width * grid.res[0], ref.res[0], grid.res[0]),
                (ref.height * ref.res[1], grid.height * grid.res[1], ref.res[1], grid.res[1]),
            )
        ):
            if abs(a - b) >= max(ra, rb):
                dim = "width" if axis == 0 else "height"
                raise FusionDataError(
                    f"band {name} covers {b:g} in {dim} ({grid.width}×{grid.height} px at "
                    f"{grid.res[0]:g}) but band {ref_name} covers {a:g} ({ref.width}×{ref.height} "
                    f"px at {ref.res[0]:g}); is an array at the wrong resolution?",
                    sensor=spec.name,
                    band=name,
                )


def from_arrays(
    arrays: Mapping[str, Any],
    spec: SensorSpec,
    *,
    grids: Grid | Mapping[str, Grid] | None = None,
    transform: Affine | Sequence[float] | None = None,
    crs: CRSLike | None = None,
    nodata: float | None = None,
    time: datetime | None = None,
    meta: Mapping[str, Any] | None = None,
) -> SensorSource:
    """A sensor source from one 2-D array per band, each band on its own (native) grid.

    Give either ``grids`` (one grid for all bands, or one per band) or ``transform`` and ``crs``:
    then every band's grid starts at the transform's top-left corner and has the band's native
    pixel size from the spec (``resolution_m``, with the transform's axis directions).

    Args:
        arrays: band name or alias → ``(H, W)`` numpy or dask array of raw values; H, W at that
            band's resolution.
        spec: the sensor spec; a subset of its bands may be given.
        grids: a :class:`Grid` shared by all bands, or band name → grid.
        transform: affine of the scene's top-left corner (rasterio order); only its origin and
            axis directions are used.
        crs: CRS of ``transform`` (required with it).
        nodata: raw value marking missing pixels; defaults to ``spec.nodata``.
        time: acquisition time, if known.
        meta: extra metadata copied into the source's ``meta``.

    Returns:
        A :class:`SensorSource` (bands in spec order); see :func:`from_array` for
        ``meta["resampled_from_native"]``.

    Raises:
        BandCountError: no arrays, or one band given twice under two names.
        UnknownBandError: a name (in ``arrays`` or ``grids``) is not in the spec.
        MissingCRSError: neither grids nor a (parsable) CRS.
        FusionDataError: a grid is missing for a band, an array does not match its grid, or the
            bands cover different extents.
    """
    if not arrays:
        raise BandCountError("no band arrays given", sensor=spec.name)
    names = canonical_band_names(spec, list(arrays))
    given = dict(zip(names, arrays.values(), strict=True))
    band_grids: dict[str, Grid] = {}
    if grids is not None:
        if transform is not None or crs is not None:
            raise FusionDataError(
                "give either grids= or transform= and crs=, not both", sensor=spec.name
            )
        if isinstance(grids, Grid):
            band_grids = dict.fromkeys(names, grids)
        else:
            by_name = dict(
                zip(canonical_band_names(spec, list(grids)), grids.values(), strict=True)
            )
            missing = [n for n in names if n not in by_name]
            if missing:
                raise FusionDataError(
                    f"grids has no entry for band(s) {missing}", sensor=spec.name, band=missing[0]
                )
            band_grids = {n: by_name[n] for n in names}
    else:
        base_crs = parse_crs(crs)
        if transform is None:
            raise FusionDataError(
                "from_arrays needs grids= or transform= (top-left corner) with crs=",
                sensor=spec.name,
            )
        base = _as_affine(transform)
        for name, arr in given.items():
            res = spec.band(name).resolution_m
            if res is None:
                raise FusionDataError(
                    "band has no resolution_m; pass grids=", sensor=spec.name, band=name
                )
            shape = tuple(getattr(arr, "shape", ()))
            if len(shape) != 2:
                raise FusionDataError(
                    f"band array must be 2-D (H, W), got shape {shape}", sensor=spec.name, band=name
                )
            sx = math.copysign(res, base.a)
            sy = math.copysign(res, base.e)
            band_grids[name] = Grid(
                base_crs, Affine(sx, 0.0, base.c, 0.0, sy, base.f), int(shape[1]), int(shape[0])
            )
    fill = spec.nodata if nodata is None else nodata
    readers: dict[str, BandReader] = {
        name: _array_band(
            arr, band_grids[name], nodata=fill, name=f"array {name}", sensor=spec.name, band=name
        )
        for name, arr in given.items()
    }
    _extent_check(spec, band_grids)
    sub, resampled = spec_for_grids(spec.subset(names), band_grids)
    info: dict[str, Any] = {"source": "arrays", "resampled_from_native": resampled}
    info.update(meta or {})
    return SensorSource(spec=sub, bands=_in_spec_order(sub, readers), time=time, meta=info)
