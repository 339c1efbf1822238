"""Labelled arrays (netCDF, zarr, or an open xarray Dataset/DataArray) as sensor sources.

Two layouts are understood:

- a *band dimension* (``band_dim``, default ``"band"``) whose coordinate labels are band names or
  aliases of the spec (``("band", "y", "x")``, as stackstac/odc-stac/rioxarray write);
- one *data variable per band*, named after the band, each possibly on its own x/y coordinates
  (``B02(y10, x10)`` at 10 m beside ``B05(y20, x20)`` at 20 m).

Every variable gets its own :class:`~fusion.data.grid.Grid`, built from its 1-D pixel-centre
coordinates, and its CRS from the CF grid mapping (a ``spatial_ref``/``crs`` variable with a
``crs_wkt`` or ``spatial_ref`` attribute, as rioxarray writes) or a ``crs`` attribute. Data stay
lazy: files open with dask chunks and each band reader holds a dask array, so nothing is read until
a window is.

Values are raw (``mask_and_scale=False`` when we open the file): scale, offset and nodata come from
the spec and the ``_FillValue``/``nodata`` attributes, as for every other reader.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from fusion.data.errors import (
    BandCountError,
    CorruptFileError,
    IrregularGridError,
    LayoutError,
    MissingCRSError,
    UnknownBandError,
)
from fusion.data.grid import Grid
from fusion.data.readers.arrays import canonical_band_names, parse_crs, spec_for_grids
from fusion.data.sources import ArrayBand, BandReader, SensorSource
from fusion.data.specs import SensorSpec

XarraySource = str | os.PathLike[str] | xr.Dataset | xr.DataArray
"""A netCDF file, a zarr store (directory) or an already-open Dataset/DataArray."""

TimeKey = int | str | datetime | np.datetime64
"""A time step: its position (int) or its label (datetime, ``np.datetime64`` or ISO string)."""

NETCDF_ENGINES: tuple[str, ...] = ("h5netcdf", "netcdf4")
"""Engines tried in order for netCDF files (h5netcdf needs h5py; netCDF4 also reads netCDF-3)."""

_X_NAMES = ("x", "lon", "longitude", "easting")
_Y_NAMES = ("y", "lat", "latitude", "northing")
_CRS_VARIABLES = ("spatial_ref", "crs")
_CRS_ATTRS = ("crs_wkt", "spatial_ref", "crs", "epsg")
_NODATA_ATTRS = ("_FillValue", "missing_value", "nodata")


@dataclass
class _Entry:
    """One band found in the data: canonical name, its array (time?, y, x dims), a label."""

    band: str
    array: xr.DataArray
    label: str


# ----------------------------------------------------------------------------------------- opening


def _open(
    source: XarraySource, chunks: Any, engine: str | None
) -> tuple[xr.Dataset | xr.DataArray, str | None, str]:
    """The data, its path (``None`` in memory) and its format name."""
    if isinstance(source, xr.Dataset | xr.DataArray):
        return source, None, "xarray"
    path = os.fspath(source)
    if not Path(path).exists():
        raise LayoutError("no such file or directory", path=path)
    is_zarr = Path(path).is_dir() or path.rstrip("/").endswith(".zarr") or engine == "zarr"
    engines = ("zarr",) if is_zarr else ((engine,) if engine else NETCDF_ENGINES)
    # Raw values: masking and scaling are the spec's job, and decoding would turn uint16 into
    # float32 copies. Grid-mapping variables become coordinates so every variable finds its CRS.
    kwargs: dict[str, Any] = {"chunks": chunks, "mask_and_scale": False, "decode_coords": "all"}
    errors: list[str] = []
    for eng in engines:
        try:
            ds = xr.open_dataset(path, engine=eng, **kwargs)
        except (ImportError, ValueError, OSError, RuntimeError, KeyError, TypeError) as err:
            # Engine not usable here (h5netcdf without h5py) or not this format: try the next;
            # if none opens it, the file is reported corrupt with every engine's reason.
            errors.append(f"{eng}: {err}")
            continue
        return ds, path, "zarr" if is_zarr else "netcdf"
    raise CorruptFileError(f"cannot open as {'zarr' if is_zarr else 'netCDF'}: {errors}", path=path)


# ------------------------------------------------------------------------------------------ bands


def _labels(values: Any) -> list[str] | None:
    """Band labels as strings, or ``None`` when they are positions (1..N) rather than names."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iuf":
        return None
    return [v.decode() if isinstance(v, bytes) else str(v) for v in arr.tolist()]


def _band_dim_entries(
    da: xr.DataArray,
    spec: SensorSpec,
    band_dim: str,
    bands: Sequence[str] | None,
    where: str | None,
) -> list[_Entry]:
    count = int(da.sizes[band_dim])
    names: list[str] | None
    if bands is not None:
        if len(bands) != count:
            raise BandCountError(
                f"variable {da.name!r} holds {count} bands along {band_dim!r} but bands= lists "
                f"{len(bands)} {list(bands)}",
                path=where,
                sensor=spec.name,
            )
        names = list(bands)
    else:
        names = _labels(da[band_dim].values) if band_dim in da.coords else None
        long_name = da.attrs.get("long_name")
        if names is None and isinstance(long_name, list | tuple) and len(long_name) == count:
            names = [str(n) for n in long_name]  # rioxarray keeps band descriptions here
        if names is None:
            if count != len(spec.bands):
                raise BandCountError(
                    f"variable {da.name!r} holds {count} unnamed bands along {band_dim!r}, "
                    f"expected {len(spec.bands)} for {spec.name}; pass bands= in order",
                    path=where,
                    sensor=spec.name,
                )
            names = list(spec.band_names)
    canonical = canonical_band_names(spec, names, path=where)
    return [
        _Entry(c, da.isel({band_dim: i}, drop=True), f"{da.name}[{label}]")
        for i, (c, label) in enumerate(zip(canonical, names, strict=True))
    ]


def _single_entry(
    da: xr.DataArray,
    spec: SensorSpec,
    bands: Sequence[str] | None,
    where: str | None,
    band_dim: str,
    time_dim: str,
) -> list[_Entry]:
    planar = [d for d in da.dims if da.sizes[d] > 1 and d != time_dim and not _is_time_coord(da, d)]
    if len(planar) > 2:
        # More than (time, y, x): most likely a band dimension under another name.
        raise LayoutError(
            f"variable {da.name!r} has dimensions {dict(da.sizes)} and no {band_dim!r} "
            "dimension; expected (y, x) with an optional time dimension, or pass band_dim=",
            path=where,
            sensor=spec.name,
        )
    if bands is not None:
        if len(bands) != 1:
            raise BandCountError(
                f"variable {da.name!r} holds one band (no {len(bands)}-long band dimension) but "
                f"bands= lists {len(bands)} {list(bands)}",
                path=where,
                sensor=spec.name,
            )
        name = bands[0]
    elif da.name is not None and spec.has_band(str(da.name)):
        name = str(da.name)
    elif len(spec.bands) == 1:
        name = spec.bands[0].name
    else:
        raise UnknownBandError(
            f"variable {da.name!r} has no band dimension and is not named after a band of "
            f"{spec.name} {list(spec.band_names)}; pass bands=[name] or band_dim=",
            path=where,
            sensor=spec.name,
            band=None if da.name is None else str(da.name),
        )
    return [_Entry(canonical_band_names(spec, [name], path=where)[0], da, str(da.name or name))]


def _is_data(da: xr.DataArray) -> bool:
    # Grid-mapping variables (0-d, or named spatial_ref/crs) are metadata, not bands.
    return da.ndim >= 2 and str(da.name) not in _CRS_VARIABLES


def _entries(
    data: xr.Dataset | xr.DataArray,
    spec: SensorSpec,
    *,
    variable: str | None,
    band_dim: str,
    time_dim: str,
    bands: Sequence[str] | None,
    where: str | None,
) -> tuple[list[_Entry], list[str]]:
    """The bands found in ``data`` and the data variables left unused."""
    if isinstance(data, xr.DataArray):
        da = data
    elif variable is not None:
        if variable not in data.data_vars:
            raise LayoutError(
                f"no data variable {variable!r}; variables are {sorted(map(str, data.data_vars))}",
                path=where,
                sensor=spec.name,
            )
        da = data[variable]
    else:
        data_vars = [data[v] for v in data.data_vars if _is_data(data[v])]
        by_name = [v for v in data_vars if spec.has_band(str(v.name))]
        if by_name:
            # One variable per band; other variables (masks, quality flags) are reported in meta.
            band_vars = {str(v.name) for v in by_name}
            unused = [str(v.name) for v in data_vars if str(v.name) not in band_vars]
            entries = [
                e for v in by_name for e in _single_entry(v, spec, None, where, band_dim, time_dim)
            ]
            names = canonical_band_names(spec, [e.band for e in entries], path=where)
            if bands is not None:
                wanted = canonical_band_names(spec, bands, path=where)
                missing = [b for b in wanted if b not in names]
                if missing:
                    raise BandCountError(
                        f"bands= lists {len(wanted)} bands but the data holds {len(names)} "
                        f"band variables {names}; missing {missing}",
                        path=where,
                        sensor=spec.name,
                    )
                entries = [e for e in entries if e.band in wanted]
            return entries, unused
        stacked = [v for v in data_vars if band_dim in v.dims]
        if len(stacked) == 1:
            da = stacked[0]
        elif len(stacked) > 1:
            raise LayoutError(
                f"several variables {[str(v.name) for v in stacked]} have a {band_dim!r} "
                "dimension; pick one with variable=",
                path=where,
                sensor=spec.name,
            )
        elif data_vars:
            names = [str(v.name) for v in data_vars]
            raise UnknownBandError(
                f"no data variable is named after a band of {spec.name} "
                f"{list(spec.band_names)} and none has a {band_dim!r} dimension; variables are "
                f"{names} (pass band_dim= or variable= with bands=)",
                path=where,
                sensor=spec.name,
                band=names[0],
            )
        else:
            raise LayoutError("no 2-D data variables", path=where, sensor=spec.name)
    if band_dim in da.dims:
        return _band_dim_entries(da, spec, band_dim, bands, where), []
    return _single_entry(da, spec, bands, where, band_dim, time_dim), []


# ------------------------------------------------------------------------------------ coordinates


def _is_time_coord(da: xr.DataArray, dim: Hashable) -> bool:
    if dim not in da.coords:
        return False
    values = da.coords[dim]
    if values.dtype.kind == "M":
        return True
    # cftime calendars decode to objects with a ``calendar`` attribute.
    return values.dtype == object and values.size > 0 and hasattr(values.values[0], "calendar")


def _axis_of(da: xr.DataArray, dim: Hashable) -> str | None:
    attrs = da.coords[dim].attrs if dim in da.coords else {}
    axis = str(attrs.get("axis", "")).upper()
    std = str(attrs.get("standard_name", ""))
    if axis == "X" or std in ("projection_x_coordinate", "longitude"):
        return "x"
    if axis == "Y" or std in ("projection_y_coordinate", "latitude"):
        return "y"
    name = str(dim).lower()
    if name.startswith(_X_NAMES):
        return "x"
    if name.startswith(_Y_NAMES):
        return "y"
    return None


def _dims(
    entry: _Entry, time_dim: str, spec: SensorSpec, where: str | None
) -> tuple[str | None, str, str]:
    """(time dim or None, y dim, x dim) of an entry; size-1 extra dims are squeezed away."""
    da = entry.array
    tdims = [d for d in da.dims if d == time_dim or _is_time_coord(da, d)]
    if len(tdims) > 1:
        raise LayoutError(
            f"variable {entry.label} has several time dimensions {tdims}",
            path=where,
            sensor=spec.name,
            band=entry.band,
        )
    rest = [d for d in da.dims if d not in tdims]
    xs = [d for d in rest if _axis_of(da, d) == "x"]
    ys = [d for d in rest if _axis_of(da, d) == "y"]
    if len(xs) == 1 and len(ys) == 1:
        ydim, xdim = ys[0], xs[0]
    elif len(rest) == 2:
        ydim, xdim = rest  # CF order (..., y, x) when names say nothing
    else:
        ydim = xdim = None
    extra = [d for d in rest if d not in (ydim, xdim)]
    if ydim is None or xdim is None or any(da.sizes[d] != 1 for d in extra):
        raise LayoutError(
            f"variable {entry.label} has dimensions {dict(da.sizes)}; expected (y, x) with an "
            "optional time dimension (and the band dimension, see band_dim=)",
            path=where,
            sensor=spec.name,
            band=entry.band,
        )
    if extra:
        entry.array = da.isel(dict.fromkeys(extra, 0), drop=True)
    return (str(tdims[0]) if tdims else None), str(ydim), str(xdim)


def _step(values: np.ndarray, dim: str, label: str, where: str | None, band: str) -> float:
    """The regular spacing of pixel-centre coordinates, checked."""
    if values.size < 2:
        raise IrregularGridError(
            f"coordinate {dim!r} of {label} has {values.size} value(s); need at least 2 to know "
            "the pixel size",
            path=where,
            band=band,
        )
    v = values.astype("float64")
    step = (v[-1] - v[0]) / (v.size - 1)  # end-to-end: robust to rounding of single steps
    # float32 coordinates at UTM magnitudes carry ~0.5 m of rounding; allow that, not more.
    eps = np.finfo(values.dtype).eps if values.dtype.kind == "f" else 0.0
    tol = max(1e-6 * abs(step), 4 * eps * float(np.max(np.abs(v))))
    deviation = float(np.max(np.abs(v - (v[0] + step * np.arange(v.size)))))
    if step == 0 or deviation > tol:
        raise IrregularGridError(
            f"coordinate {dim!r} of {label} is not evenly spaced (mean step {step:g}, largest "
            f"deviation {deviation:g}); expected pixel centres of a regular grid",
            path=where,
            band=band,
        )
    return float(step)


def _orient(da: xr.DataArray, ydim: str, xdim: str) -> xr.DataArray:
    # Grids are north-up: flip (lazily) data stored south-up or east-to-west.
    flips: dict[Hashable, slice] = {}
    for dim, want_increasing in ((xdim, True), (ydim, False)):
        c = np.asarray(da[dim].values) if dim in da.coords else None
        if c is not None and c.size > 1 and (c[-1] > c[0]) != want_increasing:
            flips[dim] = slice(None, None, -1)
    return da.isel(flips) if flips else da


def _grid(da: xr.DataArray, ydim: str, xdim: str, crs: CRS, label: str, where: str | None) -> Grid:
    for dim in (xdim, ydim):
        if dim not in da.coords:
            raise IrregularGridError(
                f"dimension {dim!r} of {label} has no coordinate values; need pixel-centre x/y "
                "coordinates to place it",
                path=where,
            )
    xs = np.asarray(da[xdim].values)
    ys = np.asarray(da[ydim].values)
    dx = _step(xs, xdim, label, where, label)
    dy = _step(ys, ydim, label, where, label)
    transform = Affine(dx, 0.0, float(xs[0]) - dx / 2, 0.0, dy, float(ys[0]) - dy / 2)
    return Grid(crs, transform, int(xs.size), int(ys.size))


# -------------------------------------------------------------------------------- crs and nodata


def _crs_value(attrs: Mapping[Hashable, Any]) -> Any:
    for key in _CRS_ATTRS:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def _crs(
    da: xr.DataArray, data: xr.Dataset | xr.DataArray, where: str | None, band: str, sensor: str
) -> CRS:
    """CRS of a variable: its CF grid mapping, a spatial_ref/crs variable, or a crs attribute."""
    pool: dict[Hashable, xr.DataArray] = {k: da.coords[k] for k in da.coords}
    if isinstance(data, xr.Dataset):
        pool.update({k: data[k] for k in data.variables})
    else:
        pool.update({k: data.coords[k] for k in data.coords})
    candidates: list[Any] = []
    mapping = da.attrs.get("grid_mapping") or da.encoding.get("grid_mapping")
    if isinstance(mapping, str):
        # CF allows "name" or "name: coord1 coord2"; the first word names the mapping variable.
        name = mapping.split(":")[0].split()[0]
        if name in pool:
            candidates.append(_crs_value(pool[name].attrs))
    candidates.extend(_crs_value(pool[n].attrs) for n in _CRS_VARIABLES if n in pool)
    candidates.append(_crs_value(da.attrs))
    candidates.append(_crs_value(data.attrs))
    value = next((c for c in candidates if c is not None), None)
    if value is None:
        raise MissingCRSError(
            "no CRS found: expected a 'spatial_ref' or 'crs' variable with a 'crs_wkt' or "
            "'spatial_ref' attribute (CF grid mapping, as rioxarray writes) or a 'crs' attribute",
            path=where or "<in-memory dataset>",
            sensor=sensor,
            band=band,
        )
    if isinstance(value, np.integer | np.ndarray):
        value = value.item() if np.ndim(value) == 0 else value.tolist()
    return parse_crs(value, path=where or "<in-memory dataset>")


def _nodata(da: xr.DataArray, default: float | None) -> float | None:
    for source in (da.attrs, da.encoding):
        for key in _NODATA_ATTRS:
            value = source.get(key)
            if value is None:
                continue
            arr = np.asarray(value).ravel()
            if arr.size:
                return float(arr[0])
    return default


# ------------------------------------------------------------------------------------------- time


def _to_datetime(value: Any) -> datetime | None:
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        out = value.astype("datetime64[us]").item()
        return out if isinstance(out, datetime) else None
    if isinstance(value, datetime):
        return value
    if hasattr(value, "calendar"):  # cftime
        return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second)
    return None


def _time_values(entries: list[_Entry], tdims: dict[str, str | None]) -> np.ndarray | None:
    for e in entries:
        tdim = tdims[e.band]
        if tdim is not None:
            return np.asarray(e.array[tdim].values) if tdim in e.array.coords else None
    return None


def _time_index(
    time: TimeKey, steps: int, values: np.ndarray | None, where: str | None, sensor: str
) -> int:
    if isinstance(time, int | np.integer) and not isinstance(time, bool):
        i = int(time)
        if not -steps <= i < steps:
            raise LayoutError(
                f"time index {i} out of range for {steps} time steps", path=where, sensor=sensor
            )
        return i % steps
    if values is None:
        raise LayoutError(
            f"time={time!r} is a label but the time dimension has no coordinate values; pass "
            "an index",
            path=where,
            sensor=sensor,
        )
    try:
        target: Any = time
        if values.dtype.kind == "M":
            target = np.datetime64(target)
        hits = np.flatnonzero(values == target)
    except (TypeError, ValueError) as err:
        raise LayoutError(
            f"cannot compare time={time!r} with the time coordinate: {err}",
            path=where,
            sensor=sensor,
        ) from err
    if hits.size != 1:
        shown = [str(v) for v in values[:5]]
        raise LayoutError(
            f"time {time!r} matches {hits.size} time steps; available: {shown}"
            + (" ..." if values.size > 5 else ""),
            path=where,
            sensor=sensor,
        )
    return int(hits[0])


# ------------------------------------------------------------------------------------------- main


def _sources(
    source: XarraySource,
    spec: SensorSpec,
    *,
    variable: str | None,
    band_dim: str,
    bands: Sequence[str] | None,
    chunks: Any,
    time: TimeKey | None,
    time_dim: str,
    engine: str | None,
    all_steps: bool,
) -> list[SensorSource]:
    data, path, fmt = _open(source, chunks, engine)
    where = path
    entries, unused = _entries(
        data,
        spec,
        variable=variable,
        band_dim=band_dim,
        time_dim=time_dim,
        bands=bands,
        where=where,
    )
    canonical_band_names(spec, [e.band for e in entries], path=where)  # refuses duplicates

    tdims: dict[str, str | None] = {}
    grids: dict[str, Grid] = {}
    grid_cache: dict[tuple[str, str, str], Grid] = {}
    for e in entries:
        tdim, ydim, xdim = _dims(e, time_dim, spec, where)
        tdims[e.band] = tdim
        crs = _crs(e.array, data, where, e.band, spec.name)
        e.array = _orient(e.array, ydim, xdim)
        order = [d for d in (tdim, ydim, xdim) if d is not None]
        e.array = e.array.transpose(*order)
        key = (ydim, xdim, crs.to_string())
        if key not in grid_cache:
            grid_cache[key] = _grid(e.array, ydim, xdim, crs, e.label, where)
        grids[e.band] = grid_cache[key]
        if chunks is not None and e.array.chunks is None:
            # Wrap in-memory or backend-lazy data in dask so windows compute only what they touch.
            e.array = e.array.chunk(chunks)

    steps_by_band = {e.band: int(e.array.sizes[t]) for e in entries if (t := tdims[e.band])}
    step_counts = set(steps_by_band.values())
    if len(step_counts) > 1:
        raise LayoutError(
            f"bands have different numbers of time steps {steps_by_band}",
            path=where,
            sensor=spec.name,
        )
    steps = step_counts.pop() if step_counts else 0
    values = _time_values(entries, tdims)
    if steps == 0:
        if time is not None:
            raise LayoutError(
                f"time={time!r} given but the data has no time dimension {time_dim!r}",
                path=where,
                sensor=spec.name,
            )
        indices: list[int | None] = [None]
    elif all_steps:
        indices = list(range(steps))
    elif time is None:
        if steps > 1:
            raise LayoutError(
                f"the data holds {steps} time steps along {time_dim!r}; pass time= (index or "
                "label) or use open_xarray_series",
                path=where,
                sensor=spec.name,
            )
        indices = [0]
    else:
        indices = [_time_index(time, steps, values, where, spec.name)]

    sub, resampled = spec_for_grids(spec.subset(grids), grids)
    nodata = {e.band: _nodata(e.array, spec.nodata) for e in entries}
    base_meta: dict[str, Any] = {
        "path": path,
        "format": fmt,
        "variables": {e.band: e.label for e in entries},
        "resampled_from_native": resampled,
    }
    if unused:
        base_meta["unused_variables"] = unused
    out = []
    for i in indices:
        readers: dict[str, BandReader] = {}
        when: datetime | None = None
        for e in entries:
            da = e.array
            tdim = tdims[e.band]
            if tdim is not None and i is not None:
                da = da.isel({tdim: i})
            # Dask-backed: hand over the dask array; otherwise the (lazily indexed) DataArray,
            # whose positional slicing reads only the window.
            arr: Any = da.data if da.chunks is not None else da
            name = f"{path}:{e.label}" if path else e.label
            readers[e.band] = ArrayBand(arr, grids[e.band], nodata=nodata[e.band], name=name)
        if i is not None and values is not None:
            when = _to_datetime(values[i])
        elif time_dim in entries[0].array.coords and entries[0].array[time_dim].ndim == 0:
            when = _to_datetime(entries[0].array[time_dim].values[()])
        meta = dict(base_meta)
        if i is not None:
            meta["time_index"] = i
        out.append(
            SensorSource(
                spec=sub,
                bands={b.name: readers[b.name] for b in sub.bands},
                time=when,
                meta=meta,
            )
        )
    return out


def open_xarray(
    path_or_dataset: XarraySource,
    spec: SensorSpec,
    *,
    variable: str | None = None,
    band_dim: str = "band",
    bands: Sequence[str] | None = None,
    chunks: Any = "auto",
    time: TimeKey | None = None,
    time_dim: str = "time",
    engine: str | None = None,
) -> SensorSource:
    """Open labelled raster data as one sensor source (one time step).

    Args:
        path_or_dataset: a netCDF file (``.nc``; engines :data:`NETCDF_ENGINES` in turn), a zarr
            store (directory or ``.zarr``), or an open :class:`xarray.Dataset`/``DataArray``.
        spec: the sensor spec the bands belong to.
        variable: the data variable holding a band dimension; by default variables named after
            bands are used, else the one variable with ``band_dim``.
        band_dim: name of the band dimension.
        bands: name or alias of each entry along ``band_dim`` in order (overrides coordinate
            labels); with one variable per band, the bands to keep.
        chunks: dask chunks for opening (``"auto"``, a dict, ...); data not yet in dask are
            chunked with it. ``None`` keeps xarray's lazily indexed (or in-memory) arrays.
        time: the time step, by position or label, when the data have a time dimension with more
            than one step.
        time_dim: name of the time dimension (a dimension with datetime coordinates also counts).
        engine: xarray engine for a file, overriding the choice by extension.

    Returns:
        A :class:`SensorSource`: canonical band name (spec order) → :class:`ArrayBand` on the
        band's own grid (raw values, ``(H, W)`` dask array when ``chunks`` is set). ``meta`` holds
        ``path``, ``format``, ``variables`` (band → variable label), ``resampled_from_native``
        (see :func:`~fusion.data.readers.arrays.spec_for_grids`) and ``time_index``.

    Raises:
        LayoutError: no such file, no usable variable, unexpected dimensions or ambiguous time.
        CorruptFileError: the file cannot be opened by any engine.
        UnknownBandError: a band label or variable name is not in the spec.
        BandCountError: the band count differs from ``bands=`` (or, unnamed, from the spec).
        MissingCRSError: no CRS in the data.
        IrregularGridError: x/y coordinates are missing or not evenly spaced.
    """
    (out,) = _sources(
        path_or_dataset,
        spec,
        variable=variable,
        band_dim=band_dim,
        bands=bands,
        chunks=chunks,
        time=time,
        time_dim=time_dim,
        engine=engine,
        all_steps=False,
    )
    return out


def open_xarray_series(
    path_or_dataset: XarraySource,
    spec: SensorSpec,
    *,
    variable: str | None = None,
    band_dim: str = "band",
    bands: Sequence[str] | None = None,
    chunks: Any = "auto",
    time_dim: str = "time",
    engine: str | None = None,
) -> list[SensorSource]:
    """Like :func:`open_xarray`, but one source per time step (one source without time dim).

    Every source shares the same lazy arrays, sliced at its step; ``source.time`` is the step's
    time coordinate and ``meta["time_index"]`` its position. Bands without the time dimension
    (static layers) appear unchanged in every step.
    """
    return _sources(
        path_or_dataset,
        spec,
        variable=variable,
        band_dim=band_dim,
        bands=bands,
        chunks=chunks,
        time=None,
        time_dim=time_dim,
        engine=engine,
        all_steps=True,
    )


__all__ = [
    "NETCDF_ENGINES",
    "IrregularGridError",
    "TimeKey",
    "XarraySource",
    "open_xarray",
    "open_xarray_series",
]
