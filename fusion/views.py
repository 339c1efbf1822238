"""Views: two randomly degraded copies of one Sample, for contrastive pretraining.

A view drops whole sensors and single channels (Contrastive Sensor Fusion, Swope et al. 2021),
crops the same ground in every stream whatever its resolution, flips and rotates every stream
alike, and jitters values. Streams stay on their native grids at their native shapes, so views
of different samples collate. Absent sensors are removed from the Sample, never zero-filled; a
dropped channel keeps its slot, is zeroed and flagged in ``band_present``.

Gains and offsets are in *standardised units*: with ``μ`` and ``σ`` a band's mean and standard
deviation over the sample's valid pixels, ``x' = μ + gain · (x − μ) + offset · σ``, which is
plain ``gain · z + offset`` on standardised values ``z`` whatever the physical unit.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import reduce
from typing import Any

import torch
import torch.nn.functional as F

from fusion.data.collate import Batch, collate_samples
from fusion.data.errors import FusionDataError
from fusion.data.sample import Sample

__all__ = ["ViewConfig", "ViewMaker", "collate_views", "degrade", "drop_schedule"]

_GEOMETRY_TRIES = 8  # crops drawn before falling back to the whole chip (all clouds in the crop)
_MM = 1000  # resolutions and sample periods are compared in whole milli-units


@dataclass(frozen=True, kw_only=True)
class ViewConfig:
    """How views are drawn. Probabilities are per view; sizes are fractions of the chip side.

    Args:
        sensor_drop: probability of dropping each whole sensor (all its streams together).
        channel_drop: probability of dropping each band (zeroed, flagged absent, slot kept).
        warmup_fraction: fraction of training over which both drop rates ramp linearly from 0 to
            their values (see :meth:`ViewMaker.set_progress`); 0 uses the full rates at once.
        overlap: how many present sensors the two views share: each sensor is offered to both
            views with this probability, otherwise to one of them; 0 gives disjoint sensor sets
            (when at least 2 sensors carry data), 1 independent draws.
        crop_scale: ``(min, max)`` side of the crop as a fraction of the chip side, or ``None``
            for no crop. The crop is snapped to the coarsest stream's pixel (the lattice).
        hflip: flip left-right with probability 0.5.
        vflip: flip top-bottom with probability 0.5.
        rot90: rotate by 0, 90, 180 or 270 degrees, uniformly (0 or 180 on non-square grids).
        time_crop_scale: ``(min, max)`` length of the time window as a fraction of the duration,
            or ``None`` for no time crop.
        time_flip: reverse time with probability 0.5 (off by default: most signals are causal).
        gain_jitter: per-band gain drawn in ``[1 - gain_jitter, 1 + gain_jitter]`` (standardised).
        offset_jitter: per-band offset drawn in ``[-offset_jitter, offset_jitter]`` (band stds).
        p_lowres: probability per sensor of halving its resolution (2× area average, upsampled
            back to the native grid).
        p_lighting: probability per sensor of one gain and offset shared by all its bands.
        lighting_gain: ``(min, max)`` of that gain (standardised units).
        lighting_offset: that offset is drawn in ``[-lighting_offset, lighting_offset]`` (stds).
        p_quantise: probability per sensor of quantising to ``quantise_bits`` bits.
        quantise_bits: bits over each band's robust range (``robust_range`` percentiles).
        p_clip: probability per sensor of clipping each band to its central percentiles.
        clip_percentile: clip to ``[P(100 - q), P(q)]`` of the band's valid values (q in %).
        robust_range: ``(low, high)`` percentiles spanned by the quantiser's levels.
        band_subsets: named band subsets a deployment will feed alone (``[["B02", "B03",
            "B04"]]`` for an RGB camera); bands are matched by name or alias in every sensor.
        p_band_subset: probability per view of keeping only one of ``band_subsets`` (drawn
            uniformly; channel drop is not applied on top) instead of the random channel drop,
            so the representation of a subset is trained to agree with the full views rather
            than met for the first time at deployment. A subset the sample does not carry is
            skipped for that view.
    """

    sensor_drop: float = 0.3
    channel_drop: float = 0.15
    warmup_fraction: float = 0.0
    overlap: float = 1.0
    crop_scale: tuple[float, float] | None = (0.5, 1.0)
    hflip: bool = True
    vflip: bool = True
    rot90: bool = True
    time_crop_scale: tuple[float, float] | None = (0.5, 1.0)
    time_flip: bool = False
    gain_jitter: float = 0.1
    offset_jitter: float = 0.1
    p_lowres: float = 0.1
    p_lighting: float = 0.1
    lighting_gain: tuple[float, float] = (0.7, 1.3)
    lighting_offset: float = 0.3
    p_quantise: float = 0.1
    quantise_bits: int = 8
    p_clip: float = 0.1
    clip_percentile: float = 99.0
    robust_range: tuple[float, float] = (1.0, 99.0)
    band_subsets: tuple[tuple[str, ...], ...] = ()
    p_band_subset: float = 0.0

    def __post_init__(self) -> None:
        # YAML gives lists; the frozen config keeps tuples.
        subsets = tuple(tuple(str(b) for b in sub) for sub in self.band_subsets)
        object.__setattr__(self, "band_subsets", subsets)
        if any(not sub for sub in self.band_subsets):
            raise ValueError(f"band_subsets must not hold an empty subset: {self.band_subsets}")
        if self.p_band_subset > 0 and not self.band_subsets:
            raise ValueError("p_band_subset > 0 needs at least one subset in band_subsets")
        for name in (
            "sensor_drop",
            "channel_drop",
            "warmup_fraction",
            "overlap",
            "p_lowres",
            "p_lighting",
            "p_quantise",
            "p_clip",
            "p_band_subset",
        ):
            _check_unit(name, getattr(self, name))
        for name in ("crop_scale", "time_crop_scale"):
            scale = getattr(self, name)
            if scale is not None and not 0 < scale[0] <= scale[1] <= 1:
                raise ValueError(f"{name} must satisfy 0 < min <= max <= 1, got {scale}")
        if not 0 <= self.gain_jitter < 1:
            raise ValueError(f"gain_jitter must be in [0, 1), got {self.gain_jitter}")
        if not 0 < self.lighting_gain[0] <= self.lighting_gain[1]:
            raise ValueError(f"lighting_gain must be 0 < min <= max, got {self.lighting_gain}")
        if not 1 <= self.quantise_bits <= 24:
            raise ValueError(f"quantise_bits must be in 1..24, got {self.quantise_bits}")
        if not 50 < self.clip_percentile <= 100:
            raise ValueError(f"clip_percentile must be in (50, 100], got {self.clip_percentile}")
        if not 0 <= self.robust_range[0] < self.robust_range[1] <= 100:
            raise ValueError(f"robust_range must be 0 <= low < high <= 100: {self.robust_range}")


def _check_unit(name: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def drop_schedule(step: float, warmup_steps: float, final: float) -> float:
    """Drop rate at ``step``: linear from 0 at step 0 to ``final`` at ``warmup_steps``, then flat.

    Starting with easy views (nothing dropped) and hardening them lets the encoder first learn
    what the sensors share; CSF ramped its drop rate to 0.66. ``warmup_steps <= 0`` gives
    ``final`` at once. Steps may be counts or fractions of training, in the same unit.
    """
    if warmup_steps <= 0:
        return final
    return final * min(1.0, max(0.0, step) / warmup_steps)


class ViewMaker:
    """Callable ``Sample → (view, view)`` drawing sensor/channel dropout and augmentations.

    Args:
        config: the view settings.
        seed: seeds the view generator, so a sequence of calls is reproducible; ``None`` draws a
            seed from torch's global generator. Inside DataLoader workers the generator is
            re-seeded once per worker from ``seed`` and the worker's seed, so workers (and, with
            fresh workers, epochs) do not repeat each other's augmentations.
    """

    def __init__(self, config: ViewConfig | None = None, seed: int | None = None) -> None:
        self.config = config or ViewConfig()
        self.seed = seed
        # Shared memory, so set_progress() in the training process reaches DataLoader workers
        # that hold their own copy of this object.
        self._progress = torch.ones(())
        self._progress.share_memory_()  # type: ignore[no-untyped-call]
        self._gen: torch.Generator | None = None
        self._worker: int | None = None

    def set_progress(self, fraction: float) -> None:
        """Tell the drop curriculum how far training is, ``0`` (start) to ``1`` (end)."""
        _check_unit("fraction", fraction)
        self._progress.fill_(fraction)

    @property
    def drop_rates(self) -> tuple[float, float]:
        """``(sensor_drop, channel_drop)`` at the current progress."""
        p, c = float(self._progress), self.config
        return (
            drop_schedule(p, c.warmup_fraction, c.sensor_drop),
            drop_schedule(p, c.warmup_fraction, c.channel_drop),
        )

    def _generator(self) -> torch.Generator:
        info = torch.utils.data.get_worker_info()
        worker = None if info is None else info.id
        if self._gen is None or worker != self._worker:
            if self.seed is None:
                seed = int(torch.randint(2**62, ()))
            else:
                seed = self.seed if info is None else (self.seed * 1_000_003 + info.seed) % 2**62
            self._gen, self._worker = torch.Generator().manual_seed(seed), worker
        return self._gen

    def __call__(self, sample: Sample) -> tuple[Sample, Sample]:
        """Two views of ``sample``.

        Raises:
            FusionDataError: no stream of the sample has a present band and a valid pixel.
        """
        g = self._generator()
        eligible = _eligible_sensors(sample)
        if not eligible:
            raise FusionDataError(
                f"cannot make views of a sample with no valid pixel in any present band "
                f"(streams {sorted(sample.data)}, meta bounds {sample.meta.get('bounds')})"
            )
        p_sensor, p_channel = self.drop_rates
        offered = _offer(sample.sensors, eligible, self.config.overlap, g)
        views = []
        for cand in offered:
            kept = {s for s in sorted(cand) if _rand(g) >= p_sensor}
            if not kept & eligible:  # never an empty view: force-keep one sensor with data
                kept.add(_choice(sorted(cand & eligible), g))
            chosen = None
            if self.config.band_subsets and _rand(g) < self.config.p_band_subset:
                subset = _choice(self.config.band_subsets, g)
                chosen = _restrict(sample, subset)  # the subset's bands, whichever sensors
            views.append(self._view(chosen or _select(sample, kept, p_channel, g), g))
        return views[0], views[1]

    def _view(self, sample: Sample, g: torch.Generator) -> Sample:
        c = self.config
        # Device degradations first: they happen in the sensor, before any crop of ours.
        lowres: set[str] = set()
        bits: dict[str, int] = {}
        gain: dict[str, float] = {}
        offset: dict[str, float] = {}
        clip: dict[str, float] = {}
        for sensor in sample.sensors:
            if _rand(g) < c.p_lowres:
                lowres.add(sensor)
            if _rand(g) < c.p_lighting:
                gain[sensor] = _uniform(g, *c.lighting_gain)
                offset[sensor] = _uniform(g, -c.lighting_offset, c.lighting_offset)
            if _rand(g) < c.p_quantise:
                bits[sensor] = c.quantise_bits
            if _rand(g) < c.p_clip:
                clip[sensor] = c.clip_percentile
        sample = degrade(
            sample,
            halve_resolution=lowres,
            bits=bits,
            gain=gain,
            offset=offset,
            clip_percentile=clip,
            robust_range=c.robust_range,
        )
        for attempt in range(_GEOMETRY_TRIES + 1):
            view = self._geometry(sample, g, crop=attempt < _GEOMETRY_TRIES)
            if _eligible_sensors(view):
                break
        return self._jitter(view, g)

    def _geometry(self, sample: Sample, g: torch.Generator, *, crop: bool) -> Sample:
        c = self.config
        data, masks, meta = dict(sample.data), dict(sample.masks), dict(sample.meta)
        rasters = [k for k, x in sample.data.items() if x.dim() == 3]
        series = [k for k, x in sample.data.items() if x.dim() == 2]
        record: dict[str, Any] = {}
        if rasters:
            box = _draw_crop(sample, rasters, c.crop_scale, g) if crop and c.crop_scale else None
            hflip = c.hflip and _rand(g) < 0.5
            vflip = c.vflip and _rand(g) < 0.5
            square = all(sample.data[k].shape[1] == sample.data[k].shape[2] for k in rasters)
            k90 = (_randint(4, g) if square else 2 * _randint(2, g)) if c.rot90 else 0
            for key in rasters:
                x, m = data[key], masks[key]
                if box is not None:
                    res = _resolution(sample, key)
                    px, py, pw, ph = (round(v / res) for v in box)
                    x, m = _resize(
                        x[:, py : py + ph, px : px + pw], m[py : py + ph, px : px + pw], m.shape
                    )
                if hflip:
                    x, m = x.flip(-1), m.flip(-1)
                if vflip:
                    x, m = x.flip(-2), m.flip(-2)
                data[key], masks[key] = torch.rot90(x, k90, (-2, -1)), torch.rot90(m, k90, (-2, -1))
            if box is not None:
                meta["extent_m"] = {
                    **meta.get("extent_m", {}),
                    **{k: (box[3], box[2]) if k90 % 2 else (box[2], box[3]) for k in rasters},
                }
                if isinstance(meta.get("bounds"), Sequence) and len(meta["bounds"]) == 4:
                    left, _, _, top = meta["bounds"]
                    x0, y0, w, h = box
                    meta["bounds"] = (left + x0, top - y0 - h, left + x0 + w, top - y0)
            record.update(crop_m=box, hflip=hflip, vflip=vflip, rot90=k90)
        if series:
            window = (
                _draw_window(sample, series, c.time_crop_scale, g) if c.time_crop_scale else None
            )
            tflip = c.time_flip and _rand(g) < 0.5
            for key in series:
                x, m = data[key], masks[key]
                if window is not None:
                    rate = _rate(sample, key)
                    i0, n = round(window[0] * rate), max(1, round(window[1] * rate))
                    x, m = _resize(x[:, i0 : i0 + n], m[i0 : i0 + n], m.shape)
                data[key], masks[key] = (x.flip(-1), m.flip(-1)) if tflip else (x, m)
            if window is not None and "t0_s" in meta:
                meta["t0_s"], meta["duration_s"] = meta["t0_s"] + window[0], window[1]
            record.update(time_window_s=window, time_flip=tflip)
        meta["view"] = record
        return replace(sample, data=data, masks=masks, meta=meta)

    def _jitter(self, sample: Sample, g: torch.Generator) -> Sample:
        # Affine only, never clamped: standardised multispectral values beyond ±3 are real
        # (bright roofs, water in NIR) and clipping them destroys signal (torchgeo #3997).
        c, data = self.config, {}
        if c.gain_jitter == 0 and c.offset_jitter == 0:
            return sample
        for key, x in sample.data.items():
            n = x.shape[0]
            gain = 1 + c.gain_jitter * (2 * torch.rand(n, generator=g) - 1)
            offset = c.offset_jitter * (2 * torch.rand(n, generator=g) - 1)
            data[key] = _standardised_affine(x, sample.masks[key], gain, offset)
        return _rezero(replace(sample, data=data))


def degrade(
    sample: Sample,
    *,
    halve_resolution: Collection[str] = (),
    bits: Mapping[str, int] | None = None,
    gain: Mapping[str, float] | None = None,
    offset: Mapping[str, float] | None = None,
    clip_percentile: Mapping[str, float] | None = None,
    robust_range: tuple[float, float] = (1.0, 99.0),
) -> Sample:
    """Deterministic device degradations, by sensor name, applied in the order a device would.

    Sensors named here but absent from the sample are ignored, so one setting serves a whole
    benchmark whatever each sample holds. The input is not modified.

    Args:
        sample: the sample to degrade.
        halve_resolution: sensors whose streams are area-averaged over 2×2 pixels (2 steps for
            time series) and interpolated back to the native grid: half the resolution, same shape.
        bits: sensor → bits: each band is quantised to ``2**bits`` levels spanning its
            ``robust_range`` percentiles (values outside saturate at the end levels).
        gain: sensor → gain on every band (standardised units, see the module docstring).
        offset: sensor → offset on every band, in band standard deviations.
        clip_percentile: sensor → ``q``: each band is clipped to ``[P(100 - q), P(q)]`` (%).
        robust_range: ``(low, high)`` percentiles of valid values spanned by the quantiser.

    Returns:
        A new Sample; masks, shapes and band flags unchanged.
    """
    bits, gain, offset = bits or {}, gain or {}, offset or {}
    clip_percentile = clip_percentile or {}
    data = dict(sample.data)
    for key, x in sample.data.items():
        sensor, m = sample.streams[key].sensor, sample.masks[key]
        if sensor in halve_resolution:
            small, m_small = _resize(x, m, tuple(math.ceil(s / 2) for s in m.shape), "area")
            x, _ = _resize(small, m_small, tuple(m.shape))
        if sensor in gain or sensor in offset:
            n = x.shape[0]
            x = _standardised_affine(
                x,
                m,
                torch.full((n,), gain.get(sensor, 1.0)),
                torch.full((n,), offset.get(sensor, 0.0)),
            )
        if sensor in clip_percentile:
            q = clip_percentile[sensor]
            lo_hi = _band_percentiles(x, m, (100 - q, q))
            if lo_hi is not None:
                x = x.clamp(_expand(lo_hi[:, 0], x), _expand(lo_hi[:, 1], x))
        if sensor in bits:
            lo_hi = _band_percentiles(x, m, robust_range)
            if lo_hi is not None:
                lo, span = _expand(lo_hi[:, 0], x), _expand(lo_hi[:, 1] - lo_hi[:, 0], x)
                levels = 2 ** bits[sensor] - 1
                span = span.clamp_min(1e-12)  # a constant band keeps its one value
                x = lo + torch.round(((x - lo) / span).clamp(0, 1) * levels) / levels * span
        data[key] = x
    return _rezero(replace(sample, data=data))


def collate_views(pairs: Sequence[tuple[Sample, Sample]]) -> tuple[Batch, Batch]:
    """Batch a list of view pairs into ``(first views, second views)``.

    A stream present in any view of a batch appears in that batch; rows without it are zeros
    flagged in ``Batch.present``. Use as a DataLoader ``collate_fn`` after mapping samples
    through a :class:`ViewMaker`.
    """
    return collate_samples([a for a, _ in pairs]), collate_samples([b for _, b in pairs])


# -- sensor and channel selection ---------------------------------------------------------------


def _eligible_sensors(sample: Sample) -> set[str]:
    """Sensors with at least one present band in a stream with at least one valid pixel."""
    return {
        st.sensor
        for k, st in sample.streams.items()
        if sample.bands_present(k).any() and sample.masks[k].any()
    }


def _offer(
    sensors: Sequence[str], eligible: set[str], overlap: float, g: torch.Generator
) -> list[set[str]]:
    """The sensors each view may keep: shared with probability ``overlap``, else one view's."""
    offered: list[set[str]] = [set(), set()]
    for s in sensors:
        if _rand(g) < overlap:
            offered[0].add(s)
            offered[1].add(s)
        else:
            offered[_randint(2, g)].add(s)
    if len(eligible) == 1:  # one sensor with data: both views need it
        (only,) = eligible
        offered[0].add(only)
        offered[1].add(only)
    for v in (0, 1):
        if not offered[v] & eligible:
            # Every sensor with data went to the other view alone (there are >= 2): move one.
            moved = _choice(sorted(offered[1 - v] & eligible), g)
            offered[1 - v].discard(moved)
            offered[v].add(moved)
    return offered


def _select(sample: Sample, sensors: set[str], p_channel: float, g: torch.Generator) -> Sample:
    """Keep ``sensors`` and drop each band with ``p_channel``.

    A stream whose bands are all dropped is removed: it would carry nothing.
    """
    keep: dict[str, torch.Tensor] = {}
    for sensor in sorted(sensors):
        keys = [k for k, st in sample.streams.items() if st.sensor == sensor]
        for k in keys:
            present = sample.bands_present(k)
            keep[k] = present & (torch.rand(present.shape, generator=g) >= p_channel)
        # A kept sensor keeps a band where it has data: losing them all would turn channel drop
        # into extra sensor drop (and could empty a view whose only sensor with data is this one).
        pool = [k for k in keys if sample.masks[k].any() and sample.bands_present(k).any()]
        pool = pool or keys
        if not any(keep[k].any() for k in pool):
            slots = [(k, int(i)) for k in pool for i in sample.bands_present(k).nonzero()]
            if slots:
                k, i = _choice(slots, g)
                keep[k][i] = True
    return _with_bands(sample, keep)


def _with_bands(sample: Sample, keep: dict[str, torch.Tensor]) -> Sample:
    """``sample`` with the bands flagged in ``keep`` present and the rest zeroed; streams not in
    ``keep`` or left with no band are removed."""
    keys = [k for k in sample.data if k in keep and keep[k].any()]
    return Sample(
        data={k: sample.data[k] * _expand(keep[k].float(), sample.data[k]) for k in keys},
        masks={k: sample.masks[k] for k in keys},
        streams={k: sample.streams[k] for k in keys},
        meta={**sample.meta, "sensors": sorted({sample.streams[k].sensor for k in keys})},
        label=sample.label,
        band_present={k: keep[k] for k in keys},
    )


def _restrict(sample: Sample, subset: Sequence[str]) -> Sample | None:
    """``sample`` with only the bands named in ``subset`` present (every sensor), or ``None``
    when that leaves no present band with a valid pixel."""
    keep = {
        k: sample.bands_present(k)
        & torch.tensor([any(b.matches(n) for n in subset) for b in st.bands])
        for k, st in sample.streams.items()
    }
    if not any(keep[k].any() and sample.masks[k].any() for k in keep):
        return None
    return _with_bands(sample, keep)


# -- geometry -----------------------------------------------------------------------------------


def _resolution(sample: Sample, key: str) -> float:
    res = sample.streams[key].resolution_m
    if res is None:
        raise FusionDataError(f"raster stream {key!r} has no resolution_m", sensor=key)
    return res


def _rate(sample: Sample, key: str) -> float:
    rate = sample.streams[key].rate_hz
    if rate is None:
        raise FusionDataError(f"time-series stream {key!r} has no rate_hz", sensor=key)
    return rate


def _lattice(steps: Sequence[float], extent: float) -> float:
    """Least common multiple of the steps (milli-unit precision), or the largest step when that
    multiple exceeds ``extent`` (incommensurate grids: crops then round to each stream's pixel)."""
    lcm = reduce(math.lcm, [max(1, round(s * _MM)) for s in steps]) / _MM
    return lcm if lcm <= extent else max(steps)


def _snap(extent: float, step: float, s: float, g: torch.Generator) -> tuple[float, float]:
    """Start and length (same unit as ``extent``) of a window of ``s`` × extent on the lattice."""
    cells = math.floor(extent / step + 1e-6)
    n = min(cells, max(1, round(s * extent / step)))
    return _randint(cells - n + 1, g) * step, n * step


def _draw_crop(
    sample: Sample, keys: Sequence[str], scale: tuple[float, float], g: torch.Generator
) -> tuple[float, float, float, float] | None:
    """``(x0, y0, width, height)`` in metres from the chip's top-left corner, on the lattice.

    Streams may overrun the chip (11 px at 60 m cover 660 m of a 640 m chip), so the crop is
    drawn inside the ground every stream covers.
    """
    extents = sample.meta.get("extent_m", {})
    width = min(
        extents.get(k, (0, 0))[0] or sample.data[k].shape[2] * _resolution(sample, k) for k in keys
    )
    height = min(
        extents.get(k, (0, 0))[1] or sample.data[k].shape[1] * _resolution(sample, k) for k in keys
    )
    step = _lattice([_resolution(sample, k) for k in keys], min(width, height))
    if width < step or height < step:
        return None  # the chip is smaller than one coarsest pixel: nothing to crop
    s = _uniform(g, *scale)
    x0, w = _snap(width, step, s, g)
    y0, h = _snap(height, step, s, g)
    return x0, y0, w, h


def _draw_window(
    sample: Sample, keys: Sequence[str], scale: tuple[float, float], g: torch.Generator
) -> tuple[float, float] | None:
    """``(t0, duration)`` in seconds from the window start, whole samples at every rate."""
    duration = min(sample.data[k].shape[1] / _rate(sample, k) for k in keys)
    step = _lattice([1 / _rate(sample, k) for k in keys], duration)
    if duration < step:
        return None
    return _snap(duration, step, _uniform(g, *scale), g)


# -- tensor helpers -----------------------------------------------------------------------------


def _resize(
    x: torch.Tensor, m: torch.Tensor, size: Sequence[int], mode: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample ``(C, *S)`` values and ``S`` mask to ``size``, ignoring invalid values.

    Values are interpolated as ``interp(x · m) / interp(m)`` so invalid zeros (clouds, gaps) do
    not darken their valid neighbours; ``mode`` defaults to (bi)linear. The mask is resampled by
    nearest neighbour (pixel centres, hence ``nearest-exact``), or for ``"area"`` marks every
    output cell that averaged at least one valid input.
    """
    size = tuple(int(s) for s in size)
    if tuple(m.shape) == size:
        return x, m
    mode = mode or ("bilinear" if m.dim() == 2 else "linear")
    corners = False if mode in ("bilinear", "linear") else None
    mf = m.to(x.dtype)[None, None]
    num = F.interpolate((x * mf[0])[None], size=size, mode=mode, align_corners=corners)[0]
    den = F.interpolate(mf, size=size, mode=mode, align_corners=corners)[0]
    if mode == "area":
        m_new = den[0] > 0
    else:
        m_new = F.interpolate(mf, size=size, mode="nearest-exact")[0, 0] > 0.5
    return torch.where(m_new, num / den.clamp_min(1e-12), 0.0), m_new


def _expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-band ``(C,)`` values shaped to broadcast against ``(C, *S)``."""
    return v.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def _band_percentiles(x: torch.Tensor, m: torch.Tensor, q: Sequence[float]) -> torch.Tensor | None:
    """``(C, len(q))`` percentiles (q in %) of each band's valid values, or ``None`` if none."""
    values = x.reshape(x.shape[0], -1)[:, m.reshape(-1)]
    if values.shape[1] == 0:
        return None
    qs = torch.tensor([v / 100 for v in q], dtype=values.dtype)
    return torch.quantile(values, qs, dim=1).T


def _standardised_affine(
    x: torch.Tensor, m: torch.Tensor, gain: torch.Tensor, offset: torch.Tensor
) -> torch.Tensor:
    """``μ + gain · (x − μ) + offset · σ`` per band, ``μ, σ`` over valid values."""
    values = x.reshape(x.shape[0], -1)[:, m.reshape(-1)]
    if values.shape[1] == 0:
        return x
    mu = values.mean(dim=1)
    sigma = values.std(dim=1, correction=0)
    return _expand(mu, x) + _expand(gain, x) * (x - _expand(mu, x)) + _expand(offset * sigma, x)


def _rezero(sample: Sample) -> Sample:
    """Zero invalid pixels and dropped bands again (the Sample convention) after value edits."""
    data = {
        k: x * sample.masks[k].to(x.dtype) * _expand(sample.bands_present(k).float(), x)
        for k, x in sample.data.items()
    }
    return replace(sample, data=data)


def _rand(g: torch.Generator) -> float:
    return float(torch.rand((), generator=g))


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * _rand(g)


def _randint(n: int, g: torch.Generator) -> int:
    return int(torch.randint(n, (), generator=g))


def _choice(items: Sequence[Any], g: torch.Generator) -> Any:
    return items[_randint(len(items), g)]
