"""The fields a data unit test can select on: a Sample's metadata, flattened, plus a few derived.

Every field of a Sample comes from here, so that a suite names the same thing whatever the
reader: what the reader put in ``meta`` (``scene``, ``case``, ``class_name``, ``time.syn_sar`` —
nested mappings become dotted names) and these, computed when the Sample allows:

- ``label``: the class name (classification), the list of class names (multi-label) or the value
  (regression); ``label_index``: the class index (classification).
- ``sensors``: the sensors present (a list); ``n_sensors``: how many.
- ``valid_fraction.<stream>``: share of valid pixels or time steps of each stream.
- ``cloud_fraction``: share of invalid pixels of the finest optical stream (clouds, and nodata
  where a reader marks it the same way); absent without an optical sensor.
- ``time`` (ISO 8601, the earliest acquisition of a sensor present), ``year``, ``month`` and
  ``season`` (meteorological, flipped south of the equator).
- ``latitude`` and ``longitude`` (degrees), from ``latlon`` or from the CRS and bounds.
- ``site``: the reader's ``site``, else the scene (place) a chip was cut from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import torch

from fusion.data.sample import Sample
from fusion.data.specs import Stream

__all__ = ["cloud_fraction", "field_table", "sample_fields", "season"]

#: Bands with a centre wavelength below this (nm) are reflective optical (thermal is ~10 µm).
_OPTICAL_MAX_NM = 3000.0

_SEASONS_NORTH = {
    12: "winter", 1: "winter", 2: "winter",
    3: "spring", 4: "spring", 5: "spring",
    6: "summer", 7: "summer", 8: "summer",
    9: "autumn", 10: "autumn", 11: "autumn",
}  # fmt: skip
_OPPOSITE = {"winter": "summer", "summer": "winter", "spring": "autumn", "autumn": "spring"}

Scalar = str | int | float | bool


def season(month: int, latitude: float | None = None) -> str:
    """Meteorological season of a month (1–12): DJF winter, MAM spring, JJA summer, SON autumn,
    the other way round south of the equator (``latitude < 0``)."""
    name = _SEASONS_NORTH[month]
    return _OPPOSITE[name] if latitude is not None and latitude < 0 else name


def _is_optical(stream: Stream) -> bool:
    wl = [b.wavelength_nm for b in stream.bands]
    return bool(wl) and all(w is not None and w < _OPTICAL_MAX_NM for w in wl)


def cloud_fraction(sample: Sample) -> float | None:
    """Share of invalid pixels of the finest optical raster stream, or ``None`` without one.

    Readers mark clouded pixels invalid (the synthetic optical sensor writes 0 = nodata under
    cloud), so this is the cloud cover the model saw, per chip, rather than a scene-level figure.
    """
    optical = [
        k for k, s in sample.streams.items() if _is_optical(s) and sample.masks[k].dim() == 2
    ]
    if not optical:
        return None
    finest = max(optical, key=lambda k: sample.masks[k].numel())
    return 1.0 - float(sample.masks[finest].float().mean())


def _scalar(value: Any) -> Scalar | None:
    one_tensor = isinstance(value, torch.Tensor) and value.numel() == 1
    if one_tensor or (isinstance(value, np.ndarray | np.generic) and value.size == 1):
        value = value.item()
    return value if isinstance(value, str | int | float | bool) else None


def _flatten(meta: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalars and lists of scalars of ``meta``, nested mappings as dotted names."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if not prefix:  # one level deep: ``time.syn_sar``, ``syn_optical_meta.seed``
                out.update(_flatten(value, f"{name}."))
            continue
        if isinstance(value, list | tuple):
            items = [_scalar(v) for v in value]
            if items and all(v is not None for v in items):
                out[name] = items
            continue
        scalar = _scalar(value)
        if scalar is not None:
            out[name] = scalar
    return out


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _acquired(sample: Sample) -> datetime | None:
    """The earliest acquisition time of a sensor present (``meta["time"]``: one time or a
    mapping sensor → time)."""
    raw = sample.meta.get("time")
    if isinstance(raw, Mapping):
        present = set(sample.sensors)
        values = [v for k, v in raw.items() if k in present] or list(raw.values())
    else:
        values = [raw]
    times = [t for t in map(_parse_time, values) if t is not None]
    return min(times) if times else None


def _lonlat(meta: Mapping[str, Any]) -> tuple[float, float] | None:
    latlon = meta.get("latlon")
    if isinstance(latlon, list | tuple) and len(latlon) == 2:
        return float(latlon[1]), float(latlon[0])
    crs, bounds = meta.get("crs"), meta.get("bounds")
    if not crs or not isinstance(bounds, list | tuple) or len(bounds) != 4:
        return None
    # Imported here: only raster samples carry a CRS, and rasterio is slow to import.
    from rasterio.errors import RasterioError
    from rasterio.warp import transform

    try:
        x, y = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
        lon, lat = transform(crs, "EPSG:4326", [x], [y])
    except (RasterioError, ValueError):
        return None
    return float(lon[0]), float(lat[0])


def _label_fields(label: Any, class_names: Sequence[str] | None) -> dict[str, Any]:
    if label is None:
        return {}
    value = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
    if value.ndim == 1:  # multi-hot
        hot = np.flatnonzero(value > 0.5).tolist()
        names = [class_names[i] if class_names else str(i) for i in hot]
        return {"label": names}
    if value.dtype.kind in "biu" and class_names:
        index = int(value)
        return {"label": class_names[index], "label_index": index}
    item = value.item()
    return {"label": int(item) if value.dtype.kind in "biu" else float(item)}


def sample_fields(sample: Sample, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Every field of ``sample`` (see the module docstring); missing ones are simply absent."""
    fields = _flatten(sample.meta)
    derived: dict[str, Any] = {
        **_label_fields(sample.label, class_names),
        "sensors": sample.sensors,
        "n_sensors": len(sample.sensors),
    }
    for key, share in sample.valid_fraction().items():
        derived[f"valid_fraction.{key}"] = share
    clouds = cloud_fraction(sample)
    if clouds is not None:
        derived["cloud_fraction"] = clouds
    lonlat = _lonlat(sample.meta)
    if lonlat is not None and all(math.isfinite(v) for v in lonlat):
        derived["longitude"], derived["latitude"] = lonlat
    when = _acquired(sample)
    if when is not None:
        derived["time"] = when.isoformat()
        derived["year"] = when.year
        derived["month"] = when.month
        derived["season"] = season(when.month, derived.get("latitude"))
    if "site" not in fields and "scene" in fields:
        derived["site"] = fields["scene"]
    # What the reader wrote wins over a derived value of the same name (e.g. Presto's months).
    return {**derived, **fields}


def field_table(
    samples: Sequence[Sample], class_names: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """The fields of each of ``samples``, in order."""
    return [sample_fields(s, class_names) for s in samples]
