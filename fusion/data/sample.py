"""`Sample`: one footprint (or time window) seen by several sensors, each at its native grid."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from fusion.data.errors import FusionDataError, UnknownBandError
from fusion.data.specs import Stream


@dataclass
class Sample:
    """One footprint or time window seen by several sensors.

    A sensor that did not see the footprint is *absent* from the mappings, never zero-filled.
    Values are physical (scale and offset applied), float32; where ``masks`` is ``False`` the value
    is 0 and must not be used.

    Args:
        data: stream key → tensor, ``(C, H, W)`` for rasters (H, W at the stream's native
            resolution) or ``(C, T)`` for time series (T at the stream's native rate).
        masks: stream key → bool validity, ``(H, W)`` or ``(T,)``.
        streams: stream key → :class:`~fusion.data.specs.Stream` (sensor, band order, resolution).
        meta: location, time, CRS, bounds (metres, in ``meta["crs"]``), source files.
        label: optional target (class index, value or multi-hot tensor).
        band_present: stream key → bool ``(C,)``: which bands carry data. A band dropped by a
            view (or switched off) keeps its slot in the band order but is flagged absent and
            zero; missing keys mean every band is present.
    """

    data: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    streams: dict[str, Stream]
    meta: dict[str, Any] = field(default_factory=dict)
    label: Any = None
    band_present: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.data) != set(self.masks) or set(self.data) != set(self.streams):
            raise FusionDataError(
                f"data {sorted(self.data)}, masks {sorted(self.masks)} and streams "
                f"{sorted(self.streams)} must name the same streams"
            )
        for key, x in self.data.items():
            stream = self.streams[key]
            if x.shape[0] != len(stream.bands):
                raise FusionDataError(
                    f"stream {key!r} holds {x.shape[0]} channels, expected {len(stream.bands)} "
                    f"({list(stream.band_names)})",
                    sensor=stream.sensor,
                )
            flags = self.band_present.get(key)
            if flags is not None and tuple(flags.shape) != (x.shape[0],):
                raise FusionDataError(
                    f"band_present of stream {key!r} has shape {tuple(flags.shape)}, expected "
                    f"({x.shape[0]},)",
                    sensor=stream.sensor,
                )
            if tuple(self.masks[key].shape) != tuple(x.shape[1:]):
                raise FusionDataError(
                    f"mask of stream {key!r} has shape {tuple(self.masks[key].shape)}, expected "
                    f"{tuple(x.shape[1:])}",
                    sensor=stream.sensor,
                )

    def bands_present(self, key: str) -> torch.Tensor:
        """Bool ``(C,)`` of the bands of stream ``key`` that carry data."""
        flags = self.band_present.get(key)
        if flags is None:
            return torch.ones(self.data[key].shape[0], dtype=torch.bool)
        return flags

    @property
    def sensors(self) -> list[str]:
        """Names of the sensors present (a sensor may contribute several streams)."""
        return sorted({s.sensor for s in self.streams.values()})

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.data.items()}

    def valid_fraction(self) -> dict[str, float]:
        """Fraction of valid pixels or time steps per stream."""
        return {k: float(m.float().mean()) for k, m in self.masks.items()}

    def select_bands(self, bands: Mapping[str, Collection[str]]) -> Sample:
        """The same sample reduced to some bands: sensor name → band names to keep.

        Sensors not named are removed whole; a stream left with no band is removed. Band order
        within a stream is kept. Bands are matched by name or alias.

        Raises:
            UnknownBandError: a named band is not one of the sensor's bands in this sample.
        """
        keep_data, keep_masks, keep_streams, keep_present = {}, {}, {}, {}
        for sensor, names in bands.items():
            streams = {k: s for k, s in self.streams.items() if s.sensor == sensor}
            have = [b for s in streams.values() for b in s.bands]
            missing = [n for n in names if not any(b.matches(n) for b in have)]
            if streams and missing:
                raise UnknownBandError(
                    f"band(s) {missing} are not among {[b.name for b in have]}", sensor=sensor
                )
            for key, stream in streams.items():
                idx = [i for i, b in enumerate(stream.bands) if any(b.matches(n) for n in names)]
                if not idx:
                    continue
                sel = torch.tensor(idx)
                keep_data[key] = self.data[key][sel]
                keep_masks[key] = self.masks[key]
                keep_streams[key] = replace(stream, bands=tuple(stream.bands[i] for i in idx))
                if key in self.band_present:
                    keep_present[key] = self.band_present[key][sel]
        return Sample(
            data=keep_data,
            masks=keep_masks,
            streams=keep_streams,
            meta=dict(self.meta),
            label=self.label,
            band_present=keep_present,
        )

    def without(self, *sensors: str) -> Sample:
        """The same sample with whole sensors removed (their streams become absent)."""
        keep = [k for k, s in self.streams.items() if s.sensor not in sensors]
        return Sample(
            data={k: self.data[k] for k in keep},
            masks={k: self.masks[k] for k in keep},
            streams={k: self.streams[k] for k in keep},
            meta=dict(self.meta),
            label=self.label,
            band_present={k: v for k, v in self.band_present.items() if k in keep},
        )
