"""Synthetic multi-sensor scenes: the embedded default dataset (no files needed).

A scene is a procedural land-cover map on a projected grid, seen by three simulated sensors, each
rendered at its own native resolution:

- ``syn_optical``: 4 bands at 10 m (blue, green, red, NIR) and 2 SWIR bands at 20 m, uint16
  reflectance × 1e4, with per-class spectra, texture, sensor noise and clouds (value 0 = nodata).
- ``syn_sar``: C-band-like VV and VH backscatter at 10 m in dB, with multiplicative gamma speckle;
  it sees through clouds.
- ``syn_thermal``: two thermal-infrared brightness temperatures (K) at 60 m, smoothly related to
  land cover and elevation; it sees through clouds too.

Coarser bands integrate the ground: the noise-free surface is rendered on the 10 m class map and
area-averaged to 20 m / 60 m before sensor noise is added, so a 20 m pixel is the mean of its
2×2 block of 10 m ground cells (mixed pixels are mixtures, not one sub-pixel picked at random).

Everything is deterministic given ``seed``: the landscape, the clouds and each sensor draw from
their own random streams, so dropping a sensor or changing the cloud fraction leaves the other
arrays unchanged. The acquisition date (``acquired``) is metadata only: it moves the sensors'
times and no pixel.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio
from rasterio.coords import BoundingBox
from rasterio.crs import CRS
from rasterio.windows import Window

from fusion.data.bands import Band
from fusion.data.catalog import register
from fusion.data.errors import ChipError, FusionDataError, SpecError
from fusion.data.grid import Grid
from fusion.data.sources import ArrayBand, BandReader, SensorSource
from fusion.data.specs import SensorSpec

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_CRS",
    "DEFAULT_ORIGIN",
    "DEFAULT_SIZE_M",
    "SYNTHETIC_SENSORS",
    "SYN_OPTICAL",
    "SYN_SAR",
    "SYN_THERMAL",
    "SyntheticScene",
    "chip_label",
    "make_scene",
    "write_scene",
]

# ---------------------------------------------------------------------------------------------
# Sensor specs
# ---------------------------------------------------------------------------------------------

# name, aliases, centre wavelength (nm), bandwidth (nm), native resolution (m): Sentinel-2A MSI
# values, so a model pretrained here meets familiar wavelengths on real data.
_OPTICAL_BANDS: tuple[tuple[str, tuple[str, ...], float, float, float], ...] = (
    ("B02", ("B2", "blue"), 492.4, 66.0, 10.0),
    ("B03", ("B3", "green"), 559.8, 36.0, 10.0),
    ("B04", ("B4", "red"), 664.6, 31.0, 10.0),
    ("B08", ("B8", "nir"), 832.8, 106.0, 10.0),
    ("B11", ("swir1",), 1613.7, 91.0, 20.0),
    ("B12", ("swir2",), 2202.4, 175.0, 20.0),
)

SYN_OPTICAL = SensorSpec(
    name="syn_optical",
    kind="raster",
    bands=tuple(
        Band(
            name=n,
            wavelength_nm=wl,
            bandwidth_nm=bw,
            quantity="reflectance",
            unit="1",
            resolution_m=res,
            aliases=al,
        )
        for n, al, wl, bw, res in _OPTICAL_BANDS
    ),
    dtype="uint16",
    nodata=0,
    scale=1e-4,
    description="Synthetic multispectral sensor: B02-B08 at 10 m, B11-B12 at 20 m, reflectance×1e4",
)

SYN_SAR = SensorSpec(
    name="syn_sar",
    kind="raster",
    bands=tuple(
        Band(
            name=p,
            polarisation=p,
            wavelength_nm=55.47e6,  # C band, 5.405 GHz
            quantity="backscatter",
            unit="dB",
            resolution_m=10.0,
        )
        for p in ("VV", "VH")
    ),
    dtype="float32",
    nodata=None,
    description="Synthetic C-band SAR: sigma0 VV/VH in dB at 10 m with gamma speckle",
)

# Centres and widths of the Landsat 8 TIRS bands 10 (10.60-11.19 um) and 11 (11.50-12.51 um).
SYN_THERMAL = SensorSpec(
    name="syn_thermal",
    kind="raster",
    bands=(
        Band(
            name="TIR1",
            wavelength_nm=10895.0,
            bandwidth_nm=590.0,
            quantity="brightness_temperature",
            unit="K",
            resolution_m=60.0,
        ),
        Band(
            name="TIR2",
            wavelength_nm=12005.0,
            bandwidth_nm=1010.0,
            quantity="brightness_temperature",
            unit="K",
            resolution_m=60.0,
        ),
    ),
    dtype="float32",
    nodata=None,
    description="Synthetic thermal-infrared sensor: two brightness temperatures (K) at 60 m",
)

#: The simulated sensors, in the order their sources appear in a scene.
SYNTHETIC_SENSORS: tuple[SensorSpec, ...] = (SYN_OPTICAL, SYN_SAR, SYN_THERMAL)
for _spec in SYNTHETIC_SENSORS:
    register(_spec)

# ---------------------------------------------------------------------------------------------
# Scene geometry and land cover
# ---------------------------------------------------------------------------------------------

#: Land-cover classes; the label value is the index into this tuple.
CLASS_NAMES: tuple[str, ...] = ("water", "forest", "grassland", "cropland", "urban", "bare")
_WATER, _FOREST, _GRASS, _CROPS, _URBAN, _BARE = range(len(CLASS_NAMES))

DEFAULT_CRS = "EPSG:32633"
#: Top-left corner (x, y) in metres: the origin of Sentinel-2 tiles in UTM 33N, a multiple of 60 m.
DEFAULT_ORIGIN: tuple[float, float] = (399960.0, 5300040.0)
#: Default scene side in metres: 768 px at 10 m, 384 at 20 m, 128 at 60 m.
DEFAULT_SIZE_M = 7680.0

_FINE_M = 10.0  # the resolution the landscape is rendered at
_COARSEST_M = max(s.coarsest_resolution_m() for s in SYNTHETIC_SENSORS)
_LABEL_NODATA = 255  # written to labels.tif; every pixel of a scene is labelled

# Independent random streams (second SeedSequence word) so that one component's draws do not
# shift when another component is left out or reconfigured.
_RNG_LANDSCAPE, _RNG_CLOUD = 0, 1
_RNG_SENSOR = {SYN_OPTICAL.name: 2, SYN_SAR.name: 3, SYN_THERMAL.name: 4}

# Acquisition times of the default scene: SAR on a dawn pass the day before, optical and thermal
# mid-morning. ``make_scene(acquired=...)`` moves all three together, keeping these offsets.
_TIMES = {
    SYN_OPTICAL.name: datetime(2023, 6, 15, 10, 0, tzinfo=UTC),
    SYN_SAR.name: datetime(2023, 6, 14, 5, 20, tzinfo=UTC),
    SYN_THERMAL.name: datetime(2023, 6, 15, 10, 30, tzinfo=UTC),
}


def _lut(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """Class × band table as float32 ``(n_classes, n_bands)``."""
    out = np.asarray(rows, dtype=np.float32)
    assert out.shape[0] == len(CLASS_NAMES)
    return out


# Surface reflectance per class for B02 B03 B04 B08 B11 B12 (typical library spectra: water dark
# beyond red, vegetation with a red edge, soil and roofs bright in SWIR).
_REFL = _lut(
    [
        [0.060, 0.055, 0.035, 0.020, 0.010, 0.006],  # water
        [0.025, 0.045, 0.025, 0.300, 0.150, 0.070],  # forest
        [0.040, 0.080, 0.055, 0.330, 0.230, 0.130],  # grassland
        [0.035, 0.070, 0.045, 0.380, 0.200, 0.100],  # cropland
        [0.100, 0.110, 0.120, 0.180, 0.220, 0.200],  # urban
        [0.110, 0.140, 0.180, 0.250, 0.320, 0.280],  # bare
    ]
)
# Reflectance change per unit vigour (vigour in [-1, 1]): greener means darker red/SWIR and
# brighter NIR; crops vary most (parcels at different growth stages).
_REFL_VIGOUR = _lut(
    [
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [-0.005, -0.008, -0.008, 0.060, -0.020, -0.015],
        [-0.008, -0.015, -0.015, 0.080, -0.040, -0.030],
        [-0.010, -0.020, -0.030, 0.150, -0.060, -0.050],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    ]
)
# Relative amplitude of fine brightness texture (canopy gaps, roofs vs streets, soil moisture).
_REFL_TEXTURE = np.asarray([0.03, 0.10, 0.06, 0.05, 0.20, 0.08], dtype=np.float32)
_REFL_NOISE = 0.003  # additive sensor noise, reflectance units

# Backscatter per class (dB) for VV, VH and its change per unit vigour (more biomass, more
# volume scattering, mostly in cross-pol); urban double bounce is bright and very textured.
_SAR_DB = _lut([[-21.0, -28.0], [-7.5, -13.0], [-11.0, -18.0], [-10.0, -17.0], [-3.0, -9.0],
                [-13.0, -21.0]])  # fmt: skip
_SAR_VIGOUR = _lut([[0.0, 0.0], [0.5, 0.8], [1.0, 1.5], [2.0, 3.0], [0.0, 0.0], [0.0, 0.0]])
_SAR_TEXTURE_DB = np.asarray([0.5, 1.0, 0.8, 0.8, 4.0, 1.0], dtype=np.float32)
_SAR_SLOPE_DB_PER_DEG = 0.4  # slopes facing the radar look brighter (foreshortening)
_SAR_LOOKS = 4.4  # equivalent number of looks of a GRD-like product

# Land-surface temperature (K), its change per unit vigour (transpiration cools), and per-band
# brightness-temperature deficits (K) standing in for emissivity below 1.
_LST_K = np.asarray([290.0, 294.0, 299.0, 297.0, 306.0, 309.0], dtype=np.float32)
_LST_VIGOUR = np.asarray([0.0, -1.0, -2.0, -3.0, 0.0, 0.0], dtype=np.float32)
_TIR_DEFICIT = _lut([[0.3, 0.6], [0.5, 0.9], [0.6, 1.0], [0.6, 1.0], [1.2, 2.0], [1.8, 2.8]])
_LAPSE_K_PER_M = -0.0065
_TIR_NOISE_K = 0.15


@dataclass(frozen=True)
class SyntheticScene:
    """A synthetic scene: sensor sources, the land-cover truth and the cloud mask.

    Args:
        sources: one :class:`SensorSource` per sensor present, each band an :class:`ArrayBand`
            on the band's native grid (10, 20 or 60 m).
        labels: land-cover class index per 10 m pixel, uint8 ``(H, W)``; see ``class_names``.
        class_names: name of each class index.
        crs: projected CRS of every grid (metres).
        bounds: scene extent (left, bottom, right, top) in metres.
        cloud: 1 where the optical sensor sees cloud, uint8 ``(H, W)`` at 10 m (present even
            when the optical sensor is not).
        seed: the seed the scene was made from.
        cloud_fraction: requested fraction of 10 m pixels under cloud.
    """

    sources: list[SensorSource]
    labels: ArrayBand
    class_names: tuple[str, ...]
    crs: CRS
    bounds: BoundingBox
    cloud: ArrayBand
    seed: int
    cloud_fraction: float

    @property
    def sensors(self) -> list[str]:
        """Names of the sensors present, in source order."""
        return [s.name for s in self.sources]

    def source(self, name: str) -> SensorSource:
        """The source of sensor ``name``.

        Raises:
            SpecError: the sensor is not part of this scene.
        """
        for s in self.sources:
            if s.name == name:
                return s
        raise SpecError(f"sensor not in this scene; present: {self.sensors}", sensor=name)

    def grid(self, resolution_m: float) -> Grid:
        """The grid of ``resolution_m`` metre pixels covering the scene."""
        return Grid.covering(self.crs, self.bounds, resolution_m)


# ---------------------------------------------------------------------------------------------
# Random fields and resampling helpers
# ---------------------------------------------------------------------------------------------


def _smooth_fields(
    rng: np.random.Generator, shape: tuple[int, int], sigmas_px: Sequence[float]
) -> np.ndarray:
    """Gaussian random fields, one per correlation length: white noise filtered in Fourier space.

    Args:
        rng: random generator.
        shape: ``(H, W)`` in pixels.
        sigmas_px: standard deviation of the Gaussian smoothing kernel of each field, in pixels.

    Returns:
        float32 ``(len(sigmas_px), H, W)``, each field with zero mean and unit standard
        deviation. Fields are periodic (the FFT wraps around), which no consumer minds.
    """
    h, w = shape
    ky = np.fft.fftfreq(h).astype(np.float32)[:, None]
    kx = np.fft.rfftfreq(w).astype(np.float32)[None, :]
    k2 = ky * ky + kx * kx
    # The spectrum of white noise is itself complex white noise, so draw it directly (no forward
    # FFT), and only where the filter keeps more than 1e-4 of it: a smooth field needs a few
    # low frequencies, not h×w random numbers. irfft2 keeps what a real field can hold.
    spec = np.zeros((len(sigmas_px), h, w // 2 + 1), dtype=np.complex64)
    for i, sigma in enumerate(sigmas_px):
        k_max = math.sqrt(math.log(1e4) / (2.0 * math.pi**2)) / max(sigma, 1e-6)  # cycles/px
        ny, nx = math.ceil(k_max * h), math.ceil(k_max * w) + 1
        rows = np.arange(h) if 2 * ny + 1 >= h else np.r_[0 : ny + 1, h - ny : h]
        cols = np.arange(min(nx, w // 2 + 1))
        block = rng.standard_normal((len(rows), len(cols), 2), dtype=np.float32).view(np.complex64)
        # Fourier transform of a Gaussian of std sigma (pixels): exp(-2 pi^2 sigma^2 k^2).
        gain = np.exp(np.float32(-2.0 * math.pi**2 * sigma**2) * k2[np.ix_(rows, cols)])
        spec[i][np.ix_(rows, cols)] = block[..., 0] * gain
    out = np.fft.irfft2(spec, s=shape).astype(np.float32, copy=False)
    out -= out.mean(axis=(1, 2), keepdims=True)
    out /= out.std(axis=(1, 2), keepdims=True) + np.float32(1e-12)
    return out


def _block_mean(arr: np.ndarray, factor: int) -> np.ndarray:
    """Area average over ``factor``×``factor`` blocks: ``(H, W)`` → ``(H/f, W/f)`` float32."""
    if factor == 1:
        return arr.astype(np.float32, copy=False)
    h, w = arr.shape
    # Rows first, then columns: two contiguous reductions beat one over axes (1, 3).
    rows = arr.reshape(h // factor, factor, w).sum(axis=1, dtype=np.float32)
    out: np.ndarray = rows.reshape(h // factor, w // factor, factor).sum(axis=2)
    out *= np.float32(1.0 / (factor * factor))
    return out


def _block_any(mask: np.ndarray, factor: int) -> np.ndarray:
    """Whether any fine pixel of each ``factor``×``factor`` block is set: bool ``(H/f, W/f)``."""
    if factor == 1:
        return mask
    h, w = mask.shape
    out: np.ndarray = np.asarray(
        mask.reshape(h // factor, factor, w // factor, factor).any(axis=(1, 3))
    )
    return out


def _random_cuts(rng: np.random.Generator, n: int, lo: int, hi: int) -> np.ndarray:
    """Index of the interval each of ``n`` pixels falls in, intervals ``lo``..``hi`` px long."""
    widths = rng.integers(lo, hi + 1, size=n // lo + 2)
    edges = np.cumsum(widths)
    return np.searchsorted(edges, np.arange(n), side="right")


@dataclass(frozen=True)
class _Landscape:
    """The ground truth on the 10 m grid, all ``(H, W)``."""

    classes: np.ndarray  # uint8 class index
    elevation_m: np.ndarray  # float32 metres
    vigour: np.ndarray  # float32 in [-1, 1], vegetation vigour / growth stage
    texture: np.ndarray  # float32, zero mean unit std, fine brightness texture


def _landscape(seed: int, shape: tuple[int, int]) -> _Landscape:
    """Procedural land cover: valleys with lakes and towns, forested hills, farmland parcels."""
    rng = np.random.default_rng([seed, _RNG_LANDSCAPE])
    # Correlation lengths in 10 m pixels: relief ~1 km, forest stands ~500 m, towns ~200 m,
    # within-field variability ~30 m, canopy/roof texture ~15 m.
    elev, forest_f, urban_f, vig_f, tex = _smooth_fields(rng, shape, (100.0, 50.0, 20.0, 3.0, 1.5))
    h, w = shape

    # Farmland is a patchwork of rectangular parcels (120-360 m a side), each with one land use
    # and one growth stage; cuts are drawn before anything depends on the parcel count.
    rows = _random_cuts(rng, h, 12, 36)
    cols = _random_cuts(rng, w, 12, 36)
    n_parcels = (int(rows[-1]) + 1, int(cols[-1]) + 1)
    parcel_use = rng.choice(
        np.array([_CROPS, _GRASS, _BARE], dtype=np.uint8), size=n_parcels, p=[0.65, 0.25, 0.10]
    )
    parcel_vigour = rng.uniform(-1.0, 1.0, size=n_parcels).astype(np.float32)
    classes = parcel_use[rows[:, None], cols[None, :]]
    vigour = np.where(classes == _CROPS, parcel_vigour[rows[:, None], cols[None, :]], 0.0)

    # Precedence, lowest first: forest on hills, then rock tops, towns in valleys, lakes in the
    # lowest ground. Thresholds are quantiles so class shares do not swing with the seed.
    forest_score = forest_f + 0.7 * elev
    classes[forest_score > np.quantile(forest_score, 0.55)] = _FOREST
    classes[elev > np.quantile(elev, 0.975)] = _BARE
    urban_score = urban_f - 0.3 * elev
    classes[urban_score > np.quantile(urban_score, 0.91)] = _URBAN
    classes[elev < np.quantile(elev, 0.08)] = _WATER

    vigour = np.clip(vigour + 0.3 * vig_f, -1.0, 1.0).astype(np.float32)
    vigour[classes == _WATER] = 0.0
    elevation_m = (250.0 + 120.0 * elev).astype(np.float32)
    return _Landscape(classes.astype(np.uint8), elevation_m, vigour, tex)


# ---------------------------------------------------------------------------------------------
# Sensors
# ---------------------------------------------------------------------------------------------


def _render_optical(
    land: _Landscape, cloud: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Optical bands at native resolution, uint16 reflectance×1e4, 0 under cloud.

    Args:
        land: the 10 m ground truth.
        cloud: bool ``(H, W)`` at 10 m, True under cloud.
        rng: the optical sensor's random generator.

    Returns:
        band name → uint16 array, ``(H, W)`` for 10 m bands, ``(H/2, W/2)`` for 20 m bands.
    """
    cls = land.classes
    bright = np.take(_REFL_TEXTURE, cls) * land.texture
    bright += np.float32(1.0)
    out: dict[str, np.ndarray] = {}
    for i, band in enumerate(SYN_OPTICAL.bands):
        assert band.resolution_m is not None
        factor = round(band.resolution_m / _FINE_M)
        surface = np.take(_REFL_VIGOUR[:, i], cls) * land.vigour
        surface += np.take(_REFL[:, i], cls)
        surface *= bright
        value = _block_mean(surface, factor)  # the sensor integrates the ground over its pixel
        value += np.float32(_REFL_NOISE) * rng.standard_normal(value.shape, dtype=np.float32)
        # Clear pixels never read 0 (nodata), even dark water with negative noise.
        raw = np.clip(np.rint(value * 1e4), 1, 65535).astype(np.uint16)
        raw[_block_any(cloud, factor)] = 0  # a coarse pixel touched by cloud is not usable
        out[band.name] = raw
    return out


def _render_sar(land: _Landscape, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """SAR bands at 10 m: float32 sigma0 in dB with multiplicative gamma speckle, ``(H, W)``."""
    cls = land.classes
    (tex,) = _smooth_fields(rng, cls.shape, (1.0,))
    # Slope in the range direction (x), degrees; radar-facing slopes return more energy.
    dzdx = np.gradient(land.elevation_m, axis=1) / np.float32(_FINE_M)
    slope_deg = np.degrees(np.arctan(dzdx)).astype(np.float32)
    common = _SAR_TEXTURE_DB[cls] * tex + _SAR_SLOPE_DB_PER_DEG * slope_deg
    out: dict[str, np.ndarray] = {}
    for i, band in enumerate(SYN_SAR.bands):
        db = _SAR_DB[cls, i] + _SAR_VIGOUR[cls, i] * land.vigour + common
        # Multiplicative speckle of mean 1 (gamma, shape = looks) is an additive term in dB.
        speckle = rng.standard_gamma(_SAR_LOOKS, size=cls.shape, dtype=np.float32)
        speckle *= np.float32(1.0 / _SAR_LOOKS)
        np.maximum(speckle, np.float32(1e-6), out=speckle)
        out[band.name] = (db + np.float32(10.0) * np.log10(speckle)).astype(np.float32)
    return out


def _render_thermal(land: _Landscape, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Thermal bands at 60 m: float32 brightness temperature in K, ``(H/6, W/6)``."""
    cls = land.classes
    # Regional temperature gradient (weather, ~2 km), the same for both bands.
    (regional,) = _smooth_fields(rng, cls.shape, (200.0,))
    lst = (
        _LST_K[cls]
        + _LST_VIGOUR[cls] * land.vigour
        + _LAPSE_K_PER_M * (land.elevation_m - np.float32(250.0))
        + 1.5 * regional
    )
    out: dict[str, np.ndarray] = {}
    for i, band in enumerate(SYN_THERMAL.bands):
        assert band.resolution_m is not None
        factor = round(band.resolution_m / _FINE_M)
        value = _block_mean(lst - _TIR_DEFICIT[cls, i], factor)
        value += np.float32(_TIR_NOISE_K) * rng.standard_normal(value.shape, dtype=np.float32)
        out[band.name] = value.astype(np.float32, copy=False)
    return out


def _cloud_mask(seed: int, shape: tuple[int, int], fraction: float) -> np.ndarray:
    """Smooth cloud blobs covering ``fraction`` of the 10 m pixels: bool ``(H, W)``.

    The field depends on the seed only, so a larger fraction grows the same clouds.
    """
    if fraction <= 0.0:
        return np.zeros(shape, dtype=bool)
    if fraction >= 1.0:
        return np.ones(shape, dtype=bool)
    rng = np.random.default_rng([seed, _RNG_CLOUD])
    (field,) = _smooth_fields(rng, shape, (25.0,))  # ~250 m cumulus-sized blobs
    return np.asarray(field > np.quantile(field, 1.0 - fraction))


def _sensor_names(sensors: Iterable[str] | None) -> list[str]:
    known = [s.name for s in SYNTHETIC_SENSORS]
    if sensors is None:
        return known
    if isinstance(sensors, str):  # a lone name would otherwise be split into letters
        sensors = [sensors]
    wanted = list(dict.fromkeys(sensors))
    for name in wanted:
        if name not in known:
            raise SpecError(f"not a synthetic sensor; expected some of {known}", sensor=name)
    if not wanted:
        raise SpecError(f"a scene needs at least one sensor; expected some of {known}")
    return [n for n in known if n in wanted]  # source order is fixed, whatever the input order


def _size_xy(size_m: float | tuple[float, float]) -> tuple[float, float]:
    if isinstance(size_m, tuple | list):
        sx, sy = float(size_m[0]), float(size_m[1])
    else:  # a number, numpy scalars included
        sx = sy = float(size_m)
    for v in (sx, sy):
        ratio = v / _COARSEST_M
        if v <= 0 or not math.isclose(ratio, round(ratio), rel_tol=0, abs_tol=1e-6):
            raise FusionDataError(
                f"scene size {v} m must be a positive multiple of the coarsest pixel "
                f"({_COARSEST_M:g} m), e.g. {DEFAULT_SIZE_M:g}"
            )
    return float(sx), float(sy)


def _times(acquired: datetime | None) -> dict[str, datetime]:
    """Sensor → acquisition time, the optical one at ``acquired`` (the default when ``None``)."""
    if acquired is None:
        return dict(_TIMES)
    if not isinstance(acquired, datetime):
        raise FusionDataError(f"acquired must be a datetime, got {acquired!r}")
    if acquired.tzinfo is None:
        acquired = acquired.replace(tzinfo=UTC)
    shift = acquired - _TIMES[SYN_OPTICAL.name]
    return {name: t + shift for name, t in _TIMES.items()}


def make_scene(
    seed: int = 0,
    size_m: float | tuple[float, float] = DEFAULT_SIZE_M,
    cloud_fraction: float = 0.2,
    sensors: Iterable[str] | None = None,
    *,
    crs: str | CRS = DEFAULT_CRS,
    origin: tuple[float, float] = DEFAULT_ORIGIN,
    acquired: datetime | None = None,
) -> SyntheticScene:
    """Generate a synthetic multi-sensor scene.

    Args:
        seed: non-negative integer; the same seed gives identical arrays.
        size_m: scene side in metres, or ``(width_m, height_m)``; each a multiple of 60 m. The
            default 7680 m gives 768 px at 10 m, 384 px at 20 m and 128 px at 60 m.
        cloud_fraction: fraction of 10 m optical pixels under cloud, in ``[0, 1]``.
        sensors: names of the sensors to include (some of ``syn_optical``, ``syn_sar``,
            ``syn_thermal``); ``None`` for all. Left-out sensors are absent from
            ``scene.sources``, and the other sensors' arrays do not change.
        crs: projected CRS (metres) of the scene grids.
        origin: top-left corner ``(x, y)`` in metres, on a multiple of 60 m so every native
            grid shares pixel edges with the coarsest one.
        acquired: time of the optical acquisition (naive: UTC); the SAR pass is 28 h 40 min
            earlier and the thermal one 30 min later, as in the default. Only each source's
            ``time`` changes, never the arrays (the landscape does not depend on the date).
            ``None``: 2023-06-15 10:00 UTC (SAR 2023-06-14 05:20, thermal 10:30).

    Returns:
        The scene, its bands in memory as :class:`ArrayBand` readers.

    Raises:
        SpecError: an unknown sensor name, or no sensor.
        FusionDataError: a size, origin or cloud fraction out of range, or ``acquired`` not a
            datetime.
    """
    if not 0.0 <= cloud_fraction <= 1.0:
        raise FusionDataError(f"cloud_fraction must be in [0, 1], got {cloud_fraction}")
    if seed < 0:
        raise FusionDataError(f"seed must be a non-negative integer, got {seed}")
    names = _sensor_names(sensors)
    width_m, height_m = _size_xy(size_m)
    for v in origin:
        if not math.isclose(v / _COARSEST_M, round(v / _COARSEST_M), rel_tol=0, abs_tol=1e-6):
            raise FusionDataError(f"origin {origin} must lie on multiples of {_COARSEST_M:g} m")
    crs_obj = crs if isinstance(crs, CRS) else CRS.from_user_input(crs)
    if not crs_obj.is_projected:
        raise FusionDataError(f"the scene CRS must be projected (metres), got {crs_obj}")
    times = _times(acquired)

    left, top = origin
    bounds = BoundingBox(left, top - height_m, left + width_m, top)
    fine = Grid.covering(crs_obj, bounds, _FINE_M)
    shape = (fine.height, fine.width)

    land = _landscape(seed, shape)
    cloud = _cloud_mask(seed, shape, cloud_fraction)
    cloud_band = ArrayBand(cloud.astype(np.uint8), fine, nodata=None, name="synthetic:cloud")

    sources: list[SensorSource] = []
    for spec in SYNTHETIC_SENSORS:
        if spec.name not in names:
            continue
        rng = np.random.default_rng([seed, _RNG_SENSOR[spec.name]])
        meta: dict[str, object] = {"synthetic": True, "seed": seed}
        masks: list[BandReader] = []
        if spec is SYN_OPTICAL:
            arrays = _render_optical(land, cloud, rng)
            masks = [cloud_band]
            meta["cloud_fraction"] = float(cloud.mean())
        elif spec is SYN_SAR:
            arrays = _render_sar(land, rng)
        else:
            arrays = _render_thermal(land, rng)
        bands: dict[str, BandReader] = {}
        for band in spec.bands:
            assert band.resolution_m is not None
            bands[band.name] = ArrayBand(
                arrays[band.name],
                Grid.covering(crs_obj, bounds, band.resolution_m),
                nodata=spec.nodata,
                name=f"synthetic:{spec.name}/{band.name}",
            )
        sources.append(
            SensorSource(spec=spec, bands=bands, time=times[spec.name], masks=masks, meta=meta)
        )

    labels = ArrayBand(land.classes, fine, nodata=None, name="synthetic:labels")
    return SyntheticScene(
        sources=sources,
        labels=labels,
        class_names=CLASS_NAMES,
        crs=crs_obj,
        bounds=bounds,
        cloud=cloud_band,
        seed=seed,
        cloud_fraction=cloud_fraction,
    )


def chip_label(
    scene: SyntheticScene, bounds: BoundingBox | tuple[float, float, float, float]
) -> int:
    """Majority land-cover class of a footprint.

    Args:
        scene: the scene.
        bounds: footprint (left, bottom, right, top) in metres in ``scene.crs``; 10 m pixels count
            when their centre lies inside. A footprint partly off the scene counts the part on it.

    Returns:
        The class index (into ``scene.class_names``) covering the most pixels; ties go to the
        lower index.

    Raises:
        ChipError: the footprint covers no pixel of the scene.
    """
    w = scene.labels.grid.window(bounds)
    c0, r0 = round(w.col_off), round(w.row_off)
    c1, r1 = round(w.col_off + w.width), round(w.row_off + w.height)
    if c1 <= c0 or r1 <= r0:
        raise ChipError(f"footprint {tuple(bounds)} is smaller than one 10 m pixel")
    values, valid = scene.labels.read(Window(c0, r0, c1 - c0, r1 - r0))
    if not valid.any():
        raise ChipError(f"footprint {tuple(bounds)} does not overlap the scene {scene.bounds}")
    counts = np.bincount(values[valid].ravel(), minlength=len(scene.class_names))
    return int(np.argmax(counts))


def _write_tif(
    path: Path,
    array: np.ndarray,
    grid: Grid,
    nodata: float | None,
    *,
    description: str,
    tags: dict[str, str],
) -> None:
    """Write one single-band GeoTIFF via a temporary name, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    profile: dict[str, object] = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": 1,
        "dtype": array.dtype.name,
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": nodata,
        "compress": "deflate",
    }
    if grid.width >= 256 and grid.height >= 256:
        # Tiles keep windowed chip reads from decompressing whole rows of the image.
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    try:
        with rasterio.open(tmp, "w", **profile) as ds:
            ds.write(array, 1)
            ds.set_band_description(1, description)
            ds.update_tags(**tags)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _full(reader: BandReader) -> np.ndarray:
    """The whole array behind a reader, read as one window."""
    values, _ = reader.read(Window(0, 0, reader.grid.width, reader.grid.height))
    return values


def write_scene(scene: SyntheticScene, folder: str | Path) -> Path:
    """Write a scene as GeoTIFFs: one file per band, per-sensor subfolders.

    Layout::

        <folder>/labels.tif            uint8 class index at 10 m (nodata 255, never used)
        <folder>/cloud.tif             uint8 optical cloud mask at 10 m, 1 = cloud
        <folder>/<sensor>/<BAND>.tif   each band at its native grid, nodata from the spec

    Existing files are replaced; each file is written under a temporary name and renamed.

    Args:
        scene: the scene to write.
        folder: destination folder (created if needed).

    Returns:
        ``folder`` as a :class:`Path`.
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    common = {"synthetic": "true", "seed": str(scene.seed)}
    for src in scene.sources:
        sub = root / src.name
        sub.mkdir(exist_ok=True)
        for name, reader in src.bands.items():
            band = src.spec.band(name)
            _write_tif(
                sub / f"{name}.tif",
                _full(reader),
                reader.grid,
                src.spec.nodata,
                description=name,
                tags={**common, "sensor": src.name, "band": name, "unit": band.unit or ""},
            )
    _write_tif(
        root / "labels.tif",
        _full(scene.labels),
        scene.labels.grid,
        _LABEL_NODATA,
        description="land_cover",
        tags={**common, "classes": ",".join(scene.class_names)},
    )
    _write_tif(
        root / "cloud.tif",
        _full(scene.cloud),
        scene.cloud.grid,
        None,
        description="cloud",
        tags={**common, "meaning": "1 = cloud over the optical sensor"},
    )
    return root
