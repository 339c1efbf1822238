from __future__ import annotations

from pathlib import Path

import pytest

from fusion.data.catalog import (
    IMU_SENSORS,
    PRESTO_SENSORS,
    S1_GRD,
    S2_L1C,
    S2_L2A,
    get_spec,
    register_yaml,
)
from fusion.data.errors import SpecError, UnknownBandError
from fusion.data.specs import NormStats, load_specs, save_specs


def test_sentinel2_band_counts_wavelengths_and_resolutions() -> None:
    assert len(S2_L1C.bands) == 13
    assert len(S2_L2A.bands) == 12 and not S2_L2A.has_band("B10")
    assert S2_L2A.band("B8").name == "B08"  # SSL4EO names the band B8
    assert S2_L2A.band("B04").wavelength_nm == pytest.approx(664.6)
    assert {b.resolution_m for b in S2_L2A.bands} == {10.0, 20.0, 60.0}
    # canonical order is by wavelength: B8A (narrow NIR) sits between B08 and B09
    wl = [b.wavelength_nm for b in S2_L1C.bands]
    assert wl == sorted(wl)


def test_streams_split_by_native_resolution() -> None:
    streams = S2_L2A.streams()
    assert [s.key for s in streams] == ["s2_l2a_10m", "s2_l2a_20m", "s2_l2a_60m"]
    assert streams[0].band_names == ("B02", "B03", "B04", "B08")
    assert streams[2].band_names == ("B01", "B09")
    assert [s.key for s in S1_GRD.streams()] == ["s1_grd"]


def test_builtin_timeseries_specs() -> None:
    assert sum(len(s.bands) for s in PRESTO_SENSORS) == 18
    assert [b.name for b in IMU_SENSORS[0].bands] == ["accel_x", "accel_y", "accel_z"]
    assert all(b.rate_hz == 10.0 for s in IMU_SENSORS for b in s.bands)


def test_unknown_band_names_the_sensor_and_band() -> None:
    with pytest.raises(UnknownBandError) as info:
        S2_L2A.band("B13")
    assert info.value.sensor == "s2_l2a" and info.value.band == "B13"
    assert "B12" in str(info.value)


def test_unknown_sensor_lists_known_ones() -> None:
    with pytest.raises(SpecError, match="s2_l2a"):
        get_spec("landsat9")


def test_yaml_round_trip_with_stats(tmp_path: Path) -> None:
    spec = S1_GRD.with_stats(NormStats((-12.0, -19.0), (3.0, 4.0), (10, 10)))
    path = tmp_path / "sensors.yaml"
    save_specs([spec, S2_L2A], path)
    loaded = load_specs(path)
    assert loaded[0] == spec and loaded[1] == S2_L2A


def test_user_sensor_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "thermal.yaml"
    path.write_text(
        "name: my_thermal\nkind: raster\ndtype: uint16\nscale: 0.01\nbands:\n"
        "  - {name: LWIR, wavelength_nm: 10900, bandwidth_nm: 590, resolution_m: 100}\n"
    )
    (spec,) = register_yaml(path)
    assert get_spec("my_thermal") is spec
    assert spec.band("lwir").resolution_m == 100


def test_bad_yaml_field_names_file_and_sensor(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: oops\nkind: raster\nbands:\n  - {name: X, resolution: 10}\n")
    with pytest.raises(SpecError) as info:
        load_specs(path)
    assert info.value.path == str(path) and info.value.sensor == "oops"
    assert "resolution" in str(info.value)


def test_raster_band_without_resolution_is_refused() -> None:
    with pytest.raises(SpecError, match="resolution_m"):
        S2_L2A.from_dict({"name": "x", "kind": "raster", "bands": [{"name": "A"}]})


def test_example_sensor_config_registers(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    specs = register_yaml(root / "configs" / "sensors" / "example_thermal.yaml", overwrite=True)
    assert [s.name for s in specs] == ["landsat_tirs", "weather_station"]
    assert get_spec("landsat_tirs").band("B10").unit == "K"
    assert get_spec("weather_station").streams()[0].rate_hz == pytest.approx(1 / 600)
