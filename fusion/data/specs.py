"""`SensorSpec`: a named sensor, its bands, value encoding and normalisation statistics.

A spec is split into *streams*: the bands that share one native resolution (rasters) or one
sample rate (time series). A Sentinel-2 spec has three streams (10, 20, 60 m); each stream is read,
stored and encoded on its own grid, so nothing is upsampled to the finest grid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from fusion.data.bands import Band
from fusion.data.errors import SpecError, UnknownBandError

SensorKind = Literal["raster", "timeseries"]


@dataclass(frozen=True)
class NormStats:
    """Per-band normalisation statistics of physical values (after scale/offset).

    Args:
        mean: per-band mean, in band order.
        std: per-band standard deviation, in band order.
        count: number of valid values each statistic was computed from.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    count: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "count": list(self.count)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NormStats:
        return cls(
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            count=tuple(int(v) for v in data.get("count", ())),
        )


@dataclass(frozen=True)
class Stream:
    """The bands of one sensor that share a native grid (rasters) or sample rate (time series).

    Args:
        key: the name used in :class:`~fusion.data.sample.Sample` mappings, e.g. ``"s2_l2a_20m"``.
        sensor: the sensor (spec) name.
        bands: the bands of this stream, in spec order.
        resolution_m: native ground sample distance in metres (rasters).
        rate_hz: native sample rate in hertz (time series).
    """

    key: str
    sensor: str
    bands: tuple[Band, ...]
    resolution_m: float | None = None
    rate_hz: float | None = None

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bands)


def _fmt(value: float) -> str:
    return f"{value:g}".replace(".", "p")


@dataclass(frozen=True)
class SensorSpec:
    """A named sensor.

    Args:
        name: identifier, lower-case with underscores (``"s2_l2a"``).
        kind: ``"raster"`` (bands have ``resolution_m``) or ``"timeseries"`` (``rate_hz``).
        bands: the bands in canonical order.
        dtype: storage dtype of the raw values (``"uint16"``, ``"float32"``).
        nodata: raw value that marks a missing measurement, or ``None``.
        scale: raw → physical: ``physical = raw * scale + offset``.
        offset: see ``scale``.
        stats: normalisation statistics of physical values, or ``None`` until computed.
        description: free text.
    """

    name: str
    kind: SensorKind
    bands: tuple[Band, ...]
    dtype: str = "float32"
    nodata: float | None = None
    scale: float = 1.0
    offset: float = 0.0
    stats: NormStats | None = None
    description: str = ""
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise SpecError("a sensor spec needs a name")
        if self.kind not in ("raster", "timeseries"):
            raise SpecError(
                f"kind must be 'raster' or 'timeseries', got {self.kind!r}", sensor=self.name
            )
        if not self.bands:
            raise SpecError("a sensor spec needs at least one band", sensor=self.name)
        for b in self.bands:
            if self.kind == "raster" and b.resolution_m is None:
                raise SpecError("raster bands need resolution_m", sensor=self.name, band=b.name)
            if self.kind == "timeseries" and b.rate_hz is None:
                raise SpecError("time-series bands need rate_hz", sensor=self.name, band=b.name)
        index: dict[str, int] = {}
        for i, b in enumerate(self.bands):
            for alias in (b.name, *b.aliases):
                key = alias.upper()
                if key in index and index[key] != i:
                    raise SpecError(f"band name {alias!r} used twice", sensor=self.name)
                index[key] = i
        object.__setattr__(self, "_index", index)
        if self.stats is not None and len(self.stats.mean) != len(self.bands):
            raise SpecError(
                f"stats hold {len(self.stats.mean)} values, expected one per band "
                f"({len(self.bands)})",
                sensor=self.name,
            )

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bands)

    def band_index(self, name: str) -> int:
        """Position of a band (by name or alias) in :attr:`bands`.

        Raises:
            UnknownBandError: the name is not in this spec.
        """
        try:
            return self._index[name.upper()]
        except KeyError:
            raise UnknownBandError(
                f"unknown band {name!r}; expected one of {list(self.band_names)}",
                sensor=self.name,
                band=name,
            ) from None

    def band(self, name: str) -> Band:
        """The :class:`Band` called ``name`` (or with that alias)."""
        return self.bands[self.band_index(name)]

    def has_band(self, name: str) -> bool:
        return name.upper() in self._index

    def subset(self, names: Iterable[str]) -> SensorSpec:
        """A spec with only the named bands, in spec order (stats follow)."""
        idx = sorted({self.band_index(n) for n in names})
        stats = None
        if self.stats is not None:
            cnt = self.stats.count
            stats = NormStats(
                tuple(self.stats.mean[i] for i in idx),
                tuple(self.stats.std[i] for i in idx),
                tuple(cnt[i] for i in idx) if cnt else (),
            )
        return replace(self, bands=tuple(self.bands[i] for i in idx), stats=stats)

    def with_stats(self, stats: NormStats) -> SensorSpec:
        return replace(self, stats=stats)

    def streams(self) -> tuple[Stream, ...]:
        """Bands grouped by native resolution (finest first) or rate (fastest first)."""
        if self.kind == "raster":
            values = sorted({b.resolution_m for b in self.bands if b.resolution_m})
            groups = [(v, tuple(b for b in self.bands if b.resolution_m == v)) for v in values]
            suffix = "m"
        else:
            values = sorted({b.rate_hz for b in self.bands if b.rate_hz}, reverse=True)
            groups = [(v, tuple(b for b in self.bands if b.rate_hz == v)) for v in values]
            suffix = "hz"
        out = []
        for v, bands in groups:
            key = self.name if len(groups) == 1 else f"{self.name}_{_fmt(v)}{suffix}"
            out.append(
                Stream(
                    key=key,
                    sensor=self.name,
                    bands=bands,
                    resolution_m=v if self.kind == "raster" else None,
                    rate_hz=v if self.kind == "timeseries" else None,
                )
            )
        return tuple(out)

    def stream_of(self, band: str) -> Stream:
        """The stream that holds ``band``."""
        b = self.band(band)
        for s in self.streams():
            if b in s.bands:
                return s
        raise AssertionError("unreachable: every band belongs to a stream")

    def finest_resolution_m(self) -> float:
        return min(b.resolution_m for b in self.bands if b.resolution_m is not None)

    def coarsest_resolution_m(self) -> float:
        return max(b.resolution_m for b in self.bands if b.resolution_m is not None)

    def check_integer_ratios(self) -> None:
        """Raster resolutions must be integer multiples of the finest one (10/20/60 m)."""
        if self.kind != "raster":
            return
        fine = self.finest_resolution_m()
        for b in self.bands:
            assert b.resolution_m is not None
            ratio = b.resolution_m / fine
            if not math.isclose(ratio, round(ratio), rel_tol=1e-6):
                raise SpecError(
                    f"resolution {b.resolution_m} m is not an integer multiple of the finest "
                    f"({fine} m)",
                    sensor=self.name,
                    band=b.name,
                )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "dtype": self.dtype,
            "nodata": self.nodata,
            "scale": self.scale,
            "offset": self.offset,
            "description": self.description,
            "bands": [b.to_dict() for b in self.bands],
        }
        if self.stats is not None:
            out["stats"] = self.stats.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | Path | None = None) -> SensorSpec:
        """Build a spec from plain data (as read from YAML); errors name ``source``."""
        name = str(data.get("name", ""))
        allowed = {"name", "kind", "dtype", "nodata", "scale", "offset", "stats", "description"}
        unknown = set(data) - allowed - {"bands"}
        if unknown:
            raise SpecError(
                f"unknown sensor field(s) {sorted(unknown)}; expected some of "
                f"{sorted(allowed | {'bands'})}",
                path=source,
                sensor=name or None,
            )
        if not isinstance(data.get("bands"), list):
            raise SpecError("a sensor needs a list 'bands'", path=source, sensor=name or None)
        try:
            bands = tuple(Band.from_dict(b) for b in data["bands"])
            stats = NormStats.from_dict(data["stats"]) if data.get("stats") else None
            return cls(
                name=name,
                kind=data.get("kind", "raster"),
                bands=bands,
                dtype=str(data.get("dtype", "float32")),
                nodata=data.get("nodata"),
                scale=float(data.get("scale", 1.0)),
                offset=float(data.get("offset", 0.0)),
                stats=stats,
                description=str(data.get("description", "")),
            )
        except SpecError as err:
            raise type(err)(
                err.reason, path=source, sensor=name or err.sensor, band=err.band
            ) from err
        except (TypeError, ValueError, KeyError) as err:
            raise SpecError(f"malformed sensor spec: {err}", path=source, sensor=name) from err


def load_specs(path: str | Path) -> list[SensorSpec]:
    """Read user-declared sensors from a YAML file.

    The file holds either one sensor mapping or ``{"sensors": [...]}``.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SpecError(f"cannot read sensor YAML: {err}", path=path) from err
    entries: Sequence[Any]
    if isinstance(data, dict) and "sensors" in data:
        entries = data["sensors"]
    elif isinstance(data, dict):
        entries = [data]
    else:
        raise SpecError("expected a mapping or {'sensors': [...]}", path=path)
    return [SensorSpec.from_dict(e, source=path) for e in entries]


def save_specs(specs: Sequence[SensorSpec], path: str | Path) -> None:
    """Write specs to YAML atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump({"sensors": [s.to_dict() for s in specs]}, sort_keys=False))
    tmp.replace(path)
