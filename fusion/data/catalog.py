"""Built-in sensor specs and the registry users add their own to.

Sentinel-2 centre wavelengths and bandwidths are those of the Sentinel-2A MSI spectral response
(ESA, S2-SRF document COPE-GSEG-EOPG-TN-15-0007, v3.0), native resolutions 10/20/60 m.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from fusion.data.bands import Band
from fusion.data.errors import SpecError
from fusion.data.specs import SensorSpec, load_specs

# name, centre wavelength (nm), bandwidth (nm), native resolution (m)
_S2_BANDS: tuple[tuple[str, float, float, float], ...] = (
    ("B01", 442.7, 21.0, 60.0),
    ("B02", 492.4, 66.0, 10.0),
    ("B03", 559.8, 36.0, 10.0),
    ("B04", 664.6, 31.0, 10.0),
    ("B05", 704.1, 15.0, 20.0),
    ("B06", 740.5, 15.0, 20.0),
    ("B07", 782.8, 20.0, 20.0),
    ("B08", 832.8, 106.0, 10.0),
    ("B8A", 864.7, 21.0, 20.0),
    ("B09", 945.1, 20.0, 60.0),
    ("B10", 1373.5, 31.0, 60.0),
    ("B11", 1613.7, 91.0, 20.0),
    ("B12", 2202.4, 175.0, 20.0),
)


def _s2_band(name: str, wl: float, bw: float, res: float) -> Band:
    aliases = (name.replace("B0", "B"),) if name.startswith("B0") else ()
    return Band(
        name=name,
        wavelength_nm=wl,
        bandwidth_nm=bw,
        quantity="reflectance",
        unit="1",
        resolution_m=res,
        aliases=aliases,
    )


S2_L1C = SensorSpec(
    name="s2_l1c",
    kind="raster",
    bands=tuple(_s2_band(*b) for b in _S2_BANDS),
    dtype="uint16",
    nodata=0,
    scale=1e-4,
    description="Sentinel-2 MSI Level-1C top-of-atmosphere reflectance, 13 bands",
)

# L2A drops the cirrus band B10 (it carries no surface signal after atmospheric correction).
S2_L2A = SensorSpec(
    name="s2_l2a",
    kind="raster",
    bands=tuple(_s2_band(*b) for b in _S2_BANDS if b[0] != "B10"),
    dtype="uint16",
    nodata=0,
    scale=1e-4,
    description="Sentinel-2 MSI Level-2A bottom-of-atmosphere reflectance, 12 bands",
)

# C-band SAR at 5.405 GHz (wavelength 55.47 mm), IW GRD high resolution, 10 m pixel spacing.
S1_GRD = SensorSpec(
    name="s1_grd",
    kind="raster",
    bands=tuple(
        Band(
            name=p,
            polarisation=p,
            wavelength_nm=55.47e6,
            quantity="backscatter",
            unit="dB",
            resolution_m=10.0,
        )
        for p in ("VV", "VH")
    ),
    dtype="float32",
    nodata=None,
    description="Sentinel-1 C-band SAR, IW GRD, sigma0 backscatter in dB",
)


def _axes(prefix: str, quantity: str, unit: str, rate_hz: float) -> tuple[Band, ...]:
    return tuple(
        Band(name=f"{prefix}_{a}", quantity=quantity, unit=unit, rate_hz=rate_hz) for a in "xyz"
    )


ACCELEROMETER = SensorSpec(
    name="accelerometer",
    kind="timeseries",
    bands=_axes("accel", "acceleration", "m/s^2", 10.0),
    description="3-axis accelerometer of an IMU (rate is the BasicMotions smartwatch's, 10 Hz)",
)
GYROSCOPE = SensorSpec(
    name="gyroscope",
    kind="timeseries",
    bands=_axes("gyro", "angular_velocity", "rad/s", 10.0),
    description="3-axis gyroscope of an IMU (rate is the BasicMotions smartwatch's, 10 Hz)",
)

# Presto-style monthly pixel time series (nasaharvest/presto fuel-moisture arrays).
MONTH_HZ = 1.0 / (30.436875 * 86400.0)  # one sample per mean Gregorian month


def _monthly(name: str, **kw: object) -> Band:
    return Band(name=name, rate_hz=MONTH_HZ, **kw)  # type: ignore[arg-type]


PRESTO_S1 = SensorSpec(
    name="presto_s1",
    kind="timeseries",
    bands=tuple(
        _monthly(p, polarisation=p, quantity="backscatter", unit="dB") for p in ("VV", "VH")
    ),
    description="Sentinel-1 monthly composite (Presto channel order)",
)
PRESTO_S2 = SensorSpec(
    name="presto_s2",
    kind="timeseries",
    bands=tuple(
        _monthly(
            n.replace("B0", "B"),
            wavelength_nm=wl,
            bandwidth_nm=bw,
            quantity="reflectance",
            unit="1e-4",
        )
        for n, wl, bw, _ in _S2_BANDS
        if n in ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
    ),
    description="Sentinel-2 monthly composite (Presto channel order B2..B12 without B1, B10)",
)
ERA5 = SensorSpec(
    name="era5",
    kind="timeseries",
    bands=(
        _monthly("temperature_2m", quantity="air_temperature", unit="K"),
        _monthly("total_precipitation", quantity="precipitation", unit="m"),
    ),
    description="ERA5 monthly reanalysis: 2 m temperature and total precipitation",
)
SRTM = SensorSpec(
    name="srtm",
    kind="timeseries",
    bands=(
        _monthly("elevation", quantity="elevation", unit="m"),
        _monthly("slope", quantity="slope", unit="degree"),
    ),
    description="SRTM elevation and slope (static, repeated each month)",
)
NDVI = SensorSpec(
    name="ndvi",
    kind="timeseries",
    bands=(_monthly("ndvi", quantity="vegetation_index", unit="1"),),
    description="NDVI derived from the Sentinel-2 composite",
)

#: Specs of the channels of ``s1_s2_era5_srtm.npy``, in file order (2 + 11 + 2 + 2 + 1 = 18).
PRESTO_SENSORS: tuple[SensorSpec, ...] = (PRESTO_S1, PRESTO_S2, ERA5, SRTM, NDVI)
#: The two sensors of one IMU, in the usual channel order (accelerometer xyz, then gyroscope xyz).
IMU_SENSORS: tuple[SensorSpec, ...] = (ACCELEROMETER, GYROSCOPE)

_REGISTRY: dict[str, SensorSpec] = {
    s.name: s for s in (S2_L1C, S2_L2A, S1_GRD, ACCELEROMETER, GYROSCOPE, *PRESTO_SENSORS)
}


def get_spec(name: str) -> SensorSpec:
    """The registered spec called ``name``.

    Raises:
        SpecError: no such sensor (the message lists the known ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SpecError(
            f"unknown sensor {name!r}; known sensors: {sorted(_REGISTRY)}", sensor=name
        ) from None


def register(spec: SensorSpec, *, overwrite: bool = False) -> SensorSpec:
    """Add a spec to the registry (refuses to replace a different one unless ``overwrite``)."""
    old = _REGISTRY.get(spec.name)
    if old is not None and old != spec and not overwrite:
        raise SpecError("a different sensor with this name is already registered", sensor=spec.name)
    _REGISTRY[spec.name] = spec
    return spec


def register_yaml(path: str | Path, *, overwrite: bool = False) -> list[SensorSpec]:
    """Load user sensors from YAML (see :func:`~fusion.data.specs.load_specs`) and register them."""
    return [register(s, overwrite=overwrite) for s in load_specs(path)]


def known_sensors() -> list[str]:
    return sorted(_REGISTRY)


def specs(names: Iterable[str]) -> list[SensorSpec]:
    return [get_spec(n) for n in names]
