"""Report entries for single files and array folders (``fusion data inspect`` on non-band-folders).

Each inspector turns one path into report entries shaped like
:func:`fusion.data.inspect.describe_source`'s: ``name``, ``kind``, ``crs`` and ``bands`` (each
band with ``name`` and ``resolution_m`` for rasters or ``rate_hz`` for time series).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.data.catalog import PRESTO_SENSORS, get_spec
from fusion.data.errors import CorruptFileError, LayoutError, SpecError
from fusion.data.readers.csv_stream import read_csv_stream
from fusion.data.readers.geotiff import open_geotiff
from fusion.data.readers.presto import PRESTO_FILES, load_presto_arrays
from fusion.data.readers.ts_file import case_to_sources, read_ts_file
from fusion.data.readers.xarray_source import open_xarray_series
from fusion.data.timeseries import SeriesSource

Inspector = Callable[[Path, str | None], list[dict[str, Any]]]


def _series_entry(src: SeriesSource, path: Path, **extra: Any) -> dict[str, Any]:
    values = src.values
    gaps = ~np.isfinite(values).all(axis=0)
    return {
        "name": src.spec.name,
        "kind": "timeseries",
        "crs": None,
        "file": str(path),
        "n_samples": int(values.shape[1]),
        "duration_s": float(values.shape[1] / src.rate_hz),
        "nodata_fraction": round(float(gaps.mean()) if gaps.size else 0.0, 6),
        "bands": [
            {"name": b.name, "rate_hz": b.rate_hz, "quantity": b.quantity, "unit": b.unit}
            for b in src.spec.bands
        ],
        **extra,
    }


def inspect_ts(path: Path, sensor: str | None = None) -> list[dict[str, Any]]:
    """A UEA ``.ts`` file: its first case split into the IMU sensors (6 dimensions)."""
    ts = read_ts_file(path)
    if not ts.values:
        raise CorruptFileError("the file holds no cases", path=path)
    extra = {"n_cases": len(ts), "classes": list(ts.class_names)}
    sources = case_to_sources(ts.values[0], source=str(path))
    return [_series_entry(s, path, **extra) for s in sources]


def _column_groups(columns: list[str], time_column: str) -> dict[str, list[str]]:
    """Sensor groups from column names: the prefix before the first ``_`` (``ankle_vert``)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for col in columns:
        if col == time_column or col.lower() in ("label", "class", "is_anomaly", "target"):
            continue
        groups[col.split("_", 1)[0] if "_" in col else "sensor"].append(col)
    return dict(groups)


def inspect_csv(path: Path, sensor: str | None = None) -> list[dict[str, Any]]:
    """A CSV stream with a ``timestamp`` column; sensors grouped by column-name prefix."""
    try:
        header = pd.read_csv(path, nrows=0)
    except (OSError, ValueError) as err:
        raise CorruptFileError(f"cannot read CSV header: {err}", path=path) from err
    columns = [str(c) for c in header.columns]
    time_column = next((c for c in columns if "time" in c.lower()), None)
    if time_column is None:
        raise LayoutError(f"no time column among {columns}; expected e.g. 'timestamp'", path=path)
    groups = _column_groups(columns, time_column)
    sources = read_csv_stream(path, groups, time_column=time_column)
    return [_series_entry(s, path) for s in sources]


def inspect_presto(path: Path, sensor: str | None = None) -> list[dict[str, Any]]:
    """The Presto arrays folder (or one of its ``.npy`` files)."""
    root = path.parent if path.is_file() else path
    arrays = load_presto_arrays(root)
    entries = []
    offset = 0
    for spec in PRESTO_SENSORS:
        n = len(spec.bands)
        x = arrays.x[:, :, offset : offset + n]
        offset += n
        entries.append(
            {
                "name": spec.name,
                "kind": "timeseries",
                "crs": "EPSG:4326 (pixel locations)",
                "file": str(root),
                "n_pixels": len(arrays),
                "n_samples": int(x.shape[1]),
                "n_test": int(arrays.is_test.sum()),
                "nodata_fraction": round(float((~np.isfinite(x)).mean()), 6),
                "bands": [
                    {"name": b.name, "rate_hz": b.rate_hz, "unit": b.unit} for b in spec.bands
                ],
            }
        )
    return entries


def inspect_geotiff(path: Path, sensor: str | None = None) -> list[dict[str, Any]]:
    """A multi-band GeoTIFF (all bands on one grid)."""
    from fusion.data.inspect import describe_source

    spec = get_spec(sensor) if sensor else None
    return [describe_source(open_geotiff(path, spec))]


def inspect_xarray(path: Path, sensor: str | None = None) -> list[dict[str, Any]]:
    """A netCDF file or zarr store; needs the sensor name (``--sensor``)."""
    from fusion.data.inspect import describe_source

    if sensor is None:
        raise SpecError(
            "netCDF/zarr data needs its sensor: pass --sensor NAME (e.g. s2_l2a)", path=path
        )
    out = []
    for i, src in enumerate(open_xarray_series(path, get_spec(sensor))):
        entry = describe_source(src)
        entry["time_index"] = i
        out.append(entry)
    return out


INSPECTORS: dict[str, Inspector] = {
    ".ts": inspect_ts,
    ".csv": inspect_csv,
    ".tif": inspect_geotiff,
    ".tiff": inspect_geotiff,
    ".nc": inspect_xarray,
    ".zarr": inspect_xarray,
}


def inspector_for(path: Path) -> Inspector | None:
    """The inspector for a path, or ``None`` when it is a folder of band files."""
    if path.is_dir():
        if path.suffix.lower() == ".zarr":
            return inspect_xarray
        if (path / PRESTO_FILES["x"]).exists() or (path / "npy" / PRESTO_FILES["x"]).exists():
            return inspect_presto
        return None
    if path.suffix.lower() == ".npy":
        return inspect_presto
    return INSPECTORS.get(path.suffix.lower())
