"""Time series at native rates: `SeriesSource` (one sensor's recording), alignment and windows.

Each sensor keeps its own sample rate: a window of ``d`` seconds gives a 50 Hz sensor ``50 d`` steps
and a 10 Hz sensor ``10 d`` steps, never a resampled common grid. Sample ``i`` of a source was taken
at ``start_s + i / rate_hz``; a window ``[t0, t0 + d)`` holds, for each sensor, exactly the samples
whose times fall inside it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from fusion.data.errors import (
    BandCountError,
    ChipError,
    FusionDataError,
    NoOverlapError,
    SpecError,
)
from fusion.data.sample import Sample
from fusion.data.specs import SensorSpec, Stream

# Tolerance in units of one sample period: window edges computed in floating point may miss a
# sample instant by rounding error (e.g. 0.1 s * 3 at 10 Hz), which must not shift the window.
_STEP_EPS = 1e-6


def spec_at_rate(spec: SensorSpec, rate_hz: float) -> SensorSpec:
    """The same time-series spec with every band at ``rate_hz`` (Hz).

    Catalogue specs carry one device's rate (the IMU specs are at 10 Hz); recordings of the same
    sensor type at another rate reuse the spec with the rate replaced.
    """
    if spec.kind != "timeseries":
        raise SpecError("only time-series specs have a sample rate", sensor=spec.name)
    if all(b.rate_hz == rate_hz for b in spec.bands):
        return spec
    return replace(spec, bands=tuple(replace(b, rate_hz=rate_hz) for b in spec.bands))


def series_tensors(spec: SensorSpec, raw: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Physical float32 values and step validity of a raw ``(C, T)`` block.

    A step is valid when every channel is finite and none equals the spec's ``nodata``; invalid
    steps are set to 0 in every channel, so no partial step leaks into a model that ignores masks.

    Args:
        spec: the sensor spec (its ``scale``/``offset`` map raw to physical values).
        raw: raw values, shape ``(C, T)``; NaN marks a gap.

    Returns:
        ``(values, mask)``: float32 ``(C, T)`` physical values and bool ``(T,)`` validity.
    """
    raw = np.asarray(raw, dtype=np.float64)
    valid_cells = np.isfinite(raw)
    if spec.nodata is not None:
        valid_cells &= raw != spec.nodata
    valid = valid_cells.all(axis=0)
    physical = np.where(valid[None, :], raw * spec.scale + spec.offset, 0.0)
    return torch.from_numpy(physical.astype(np.float32)), torch.from_numpy(valid)


@dataclass
class SeriesSource:
    """One sensor's recording at a single sample rate.

    Args:
        spec: a time-series spec whose bands all share one ``rate_hz`` (split a multi-rate spec
            with :func:`split_streams`).
        values: raw values, shape ``(C, N)`` with ``C = len(spec.bands)``; NaN marks a gap.
        start_s: time of the first sample, in seconds (epoch or relative; all sources that are
            aligned together must use the same clock).
        meta: free metadata (file, subject, ...).
        source: where the recording came from (file path or description), for metadata and errors.
        key: the stream key in Samples; defaults to the spec's single stream key (the sensor name).
    """

    spec: SensorSpec
    values: np.ndarray
    start_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    key: str = ""

    def __post_init__(self) -> None:
        if self.spec.kind != "timeseries":
            raise SpecError(
                f"a SeriesSource needs a time-series spec, got kind {self.spec.kind!r}",
                path=self.source or None,
                sensor=self.spec.name,
            )
        rates = sorted({b.rate_hz for b in self.spec.bands if b.rate_hz is not None})
        if len(rates) != 1:
            raise SpecError(
                f"bands of one SeriesSource must share a rate, got {rates} Hz; split the spec "
                "with split_streams()",
                path=self.source or None,
                sensor=self.spec.name,
            )
        self.values = np.asarray(self.values)
        if self.values.ndim != 2 or self.values.shape[0] != len(self.spec.bands):
            raise BandCountError(
                f"values have shape {tuple(self.values.shape)}, expected ({len(self.spec.bands)}, "
                f"N) for bands {list(self.spec.band_names)}",
                path=self.source or None,
                sensor=self.spec.name,
            )
        if not self.key:
            self.key = self.spec.streams()[0].key

    @property
    def rate_hz(self) -> float:
        """Sample rate in hertz (shared by all bands)."""
        rate = self.spec.bands[0].rate_hz
        assert rate is not None  # checked in __post_init__
        return rate

    @property
    def n_samples(self) -> int:
        return int(self.values.shape[1])

    @property
    def end_s(self) -> float:
        """End of the recording in seconds: one period after the last sample."""
        return self.start_s + self.n_samples / self.rate_hz

    @property
    def stream(self) -> Stream:
        return Stream(
            key=self.key, sensor=self.spec.name, bands=self.spec.bands, rate_hz=self.rate_hz
        )

    def valid(self) -> np.ndarray:
        """Bool ``(N,)``: steps where every channel is finite (and not nodata)."""
        ok = np.isfinite(self.values)
        if self.spec.nodata is not None:
            ok &= self.values != self.spec.nodata
        return np.asarray(ok.all(axis=0))


def split_streams(
    spec: SensorSpec,
    values: Mapping[str, np.ndarray],
    *,
    start_s: float = 0.0,
    meta: dict[str, Any] | None = None,
    source: str = "",
) -> list[SeriesSource]:
    """One :class:`SeriesSource` per stream of a spec whose bands run at several rates.

    Args:
        spec: a time-series spec (e.g. an IMU with a 100 Hz accelerometer and a 1 Hz barometer).
        values: stream key (see ``spec.streams()``) → raw ``(C_stream, N_stream)`` values.
        start_s: time of the first sample of every stream, in seconds.
        meta: metadata copied into every source.
        source: file path or description.

    Raises:
        SpecError: ``values`` does not name exactly the spec's streams.
    """
    streams = spec.streams()
    keys = [s.key for s in streams]
    if sorted(values) != sorted(keys):
        raise SpecError(
            f"values are given for streams {sorted(values)}, expected {keys}",
            path=source or None,
            sensor=spec.name,
        )
    return [
        SeriesSource(
            spec=spec.subset(st.band_names),
            values=values[st.key],
            start_s=start_s,
            meta=dict(meta or {}),
            source=source,
            key=st.key,
        )
        for st in streams
    ]


def _whole_steps(duration_s: float, rate_hz: float, key: str, sensor: str) -> int:
    steps = duration_s * rate_hz
    n = round(steps)
    if n < 1 or abs(steps - n) > _STEP_EPS * max(1.0, steps):
        raise ChipError(
            f"a window of {duration_s:g} s holds {steps:g} samples of stream {key!r} at "
            f"{rate_hz:g} Hz; choose a duration that is a whole number (>= 1) of samples at every "
            "sensor's rate",
            sensor=sensor,
        )
    return n


@dataclass
class AlignedSeries:
    """Sensors' recordings restricted to their common time span, each at its native rate.

    Args:
        sources: stream key → source.
        start_s: start of the common span (latest start over sensors), seconds.
        end_s: end of the common span (earliest end over sensors), seconds.
    """

    sources: dict[str, SeriesSource]
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def streams(self) -> dict[str, Stream]:
        return {k: s.stream for k, s in self.sources.items()}

    def steps(self, duration_s: float) -> dict[str, int]:
        """Number of samples per stream in a window of ``duration_s`` seconds.

        Raises:
            ChipError: the duration is not a whole number of samples for some stream.
        """
        return {
            k: _whole_steps(duration_s, s.rate_hz, k, s.spec.name) for k, s in self.sources.items()
        }

    def window(self, t0_s: float, duration_s: float, label: Any = None) -> Sample:
        """The samples of every sensor whose times fall in ``[t0_s, t0_s + duration_s)``.

        Args:
            t0_s: window start in seconds (same clock as the sources' ``start_s``).
            duration_s: window length in seconds; must be a whole number of samples at every
                sensor's rate.
            label: optional target copied into the Sample.

        Returns:
            A Sample with one ``(C, round(duration_s * rate))`` float32 tensor per stream
            (physical values, 0 where the mask is ``False``). ``meta`` holds ``t0_s``,
            ``duration_s``, ``sensors``, ``sources`` (stream key → source name) and
            ``stream_t0_s`` (stream key → time of its first sample in the window, seconds).

        Raises:
            ChipError: the window is not a whole number of samples for some stream, or it leaves
                the common span.
        """
        steps = self.steps(duration_s)
        tol = _STEP_EPS / max(s.rate_hz for s in self.sources.values())
        if t0_s < self.start_s - tol or t0_s + duration_s > self.end_s + tol:
            raise ChipError(
                f"window [{t0_s:g}, {t0_s + duration_s:g}) s leaves the common span "
                f"[{self.start_s:g}, {self.end_s:g}) s of sensors {self.sensors}"
            )
        data: dict[str, torch.Tensor] = {}
        masks: dict[str, torch.Tensor] = {}
        first: dict[str, float] = {}
        for key, src in self.sources.items():
            n = steps[key]
            i0 = math.ceil((t0_s - src.start_s) * src.rate_hz - _STEP_EPS)
            if i0 < 0 or i0 + n > src.n_samples:
                raise ChipError(
                    f"window [{t0_s:g}, {t0_s + duration_s:g}) s needs samples {i0}..{i0 + n - 1} "
                    f"of stream {key!r}, which has {src.n_samples}",
                    path=src.source or None,
                    sensor=src.spec.name,
                )
            data[key], masks[key] = series_tensors(src.spec, src.values[:, i0 : i0 + n])
            first[key] = src.start_s + i0 / src.rate_hz
        return Sample(
            data=data,
            masks=masks,
            streams=self.streams,
            meta={
                "t0_s": float(t0_s),
                "duration_s": float(duration_s),
                "sensors": self.sensors,
                "sources": {k: s.source for k, s in self.sources.items()},
                "stream_t0_s": first,
            },
            label=label,
        )

    @property
    def sensors(self) -> list[str]:
        return sorted({s.spec.name for s in self.sources.values()})

    def window_starts(self, duration_s: float, stride_s: float) -> np.ndarray:
        """Start times (seconds) of the grid windows ``start_s + k * stride_s`` inside the span."""
        if stride_s <= 0:
            raise ChipError(f"stride must be > 0 s, got {stride_s:g}")
        self.steps(duration_s)
        room = self.duration_s - duration_s
        tol = _STEP_EPS / max(s.rate_hz for s in self.sources.values())
        if room < -tol:
            return np.zeros(0)
        count = math.floor((room + tol) / stride_s) + 1
        return np.asarray(self.start_s + stride_s * np.arange(count), dtype=np.float64)

    def windows(self, duration_s: float, stride_s: float, label: Any = None) -> Iterator[Sample]:
        """Windows of ``duration_s`` seconds every ``stride_s`` seconds from the span's start.

        Windows that would run past the end of the common span are left out.
        """
        for t0 in self.window_starts(duration_s, stride_s):
            yield self.window(float(t0), duration_s, label)

    def random_windows(
        self, duration_s: float, n: int, seed: int = 0, label: Any = None
    ) -> list[Sample]:
        """``n`` windows whose starts are drawn uniformly over the common span.

        Args:
            duration_s: window length in seconds.
            n: number of windows.
            seed: seed of the generator (same seed, same windows).
            label: optional target copied into every Sample.

        Raises:
            ChipError: the span is shorter than one window, or the duration is not whole samples.
        """
        self.steps(duration_s)
        room = self.duration_s - duration_s
        if room < 0:
            raise ChipError(
                f"the common span of {self.duration_s:g} s is shorter than a {duration_s:g} s "
                f"window (sensors {self.sensors})"
            )
        rng = np.random.default_rng(seed)
        starts = self.start_s + rng.uniform(0.0, room, size=n)
        return [self.window(float(t0), duration_s, label) for t0 in starts]


def align_series(sources: Sequence[SeriesSource]) -> AlignedSeries:
    """Restrict recordings to their common time span (latest start to earliest end).

    Args:
        sources: one or more recordings on the same clock; stream keys must be unique.

    Raises:
        FusionDataError: no sources, or two sources share a stream key.
        NoOverlapError: the recordings' spans do not overlap (the message lists each span).
    """
    if not sources:
        raise FusionDataError("align_series needs at least one SeriesSource")
    by_key: dict[str, SeriesSource] = {}
    for src in sources:
        if src.key in by_key:
            raise FusionDataError(
                f"two sources have the stream key {src.key!r}; give them distinct keys",
                sensor=src.spec.name,
            )
        by_key[src.key] = src
    start = max(s.start_s for s in sources)
    end = min(s.end_s for s in sources)
    if end <= start:
        spans = ", ".join(f"{s.key}: [{s.start_s:g}, {s.end_s:g}) s" for s in sources)
        raise NoOverlapError(
            f"recordings do not overlap in time ({spans})",
            sensor=",".join(sorted({s.spec.name for s in sources})),
        )
    return AlignedSeries(sources=by_key, start_s=start, end_s=end)
