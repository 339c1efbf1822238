"""Tests of the synthetic default scene (fusion.data.synthetic)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.coords import BoundingBox
from rasterio.windows import Window

from fusion.data.align import align
from fusion.data.catalog import get_spec
from fusion.data.errors import ChipError, FusionDataError, SpecError
from fusion.data.readers.band_folder import open_band_folders
from fusion.data.scenes import group_scenes
from fusion.data.sources import ArrayBand, SensorSource
from fusion.data.synthetic import (
    CLASS_NAMES,
    SYN_OPTICAL,
    SYN_SAR,
    SYN_THERMAL,
    SyntheticScene,
    chip_label,
    make_scene,
    write_scene,
)

WATER, FOREST, GRASS, CROPS, URBAN, BARE = range(len(CLASS_NAMES))


@pytest.fixture(scope="module")
def scene() -> SyntheticScene:
    return make_scene(seed=0)


def arr(src: SensorSource, band: str) -> np.ndarray:
    a = src.bands[band]
    assert isinstance(a, ArrayBand)
    return np.asarray(a.array)


def all_arrays(s: SyntheticScene) -> dict[str, np.ndarray]:
    out = {f"{src.name}/{b}": arr(src, b) for src in s.sources for b in src.bands}
    out["labels"] = np.asarray(s.labels.array)
    out["cloud"] = np.asarray(s.cloud.array)
    return out


def test_specs_registered_with_native_streams() -> None:
    assert get_spec("syn_optical") is SYN_OPTICAL
    assert get_spec("syn_sar") is SYN_SAR
    assert get_spec("syn_thermal") is SYN_THERMAL
    keys = {s.key: s.resolution_m for s in SYN_OPTICAL.streams()}
    assert keys == {"syn_optical_10m": 10.0, "syn_optical_20m": 20.0}
    assert [s.resolution_m for s in SYN_THERMAL.streams()] == [60.0]
    for spec in (SYN_OPTICAL, SYN_SAR, SYN_THERMAL):
        spec.check_integer_ratios()
    assert SYN_OPTICAL.band("nir").name == "B08"


def test_same_seed_identical_other_seed_differs(scene: SyntheticScene) -> None:
    again = all_arrays(make_scene(seed=0))
    first = all_arrays(scene)
    other = all_arrays(make_scene(seed=1))
    assert first.keys() == again.keys() == other.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], again[key], err_msg=key)
        assert not np.array_equal(first[key], other[key]), key


def test_shapes_grids_and_dtypes_at_native_resolution(scene: SyntheticScene) -> None:
    assert scene.crs.to_epsg() == 32633
    assert scene.bounds.right - scene.bounds.left == 7680.0
    assert scene.bounds.top - scene.bounds.bottom == 7680.0
    assert scene.bounds.left % 60 == 0 and scene.bounds.top % 60 == 0
    expected = {10.0: 768, 20.0: 384, 60.0: 128}
    for src in scene.sources:
        for name, reader in src.bands.items():
            res = src.spec.band(name).resolution_m
            assert res is not None
            n = expected[res]
            assert arr(src, name).shape == (n, n), (src.name, name)
            assert arr(src, name).dtype == np.dtype(src.spec.dtype)
            assert reader.grid.res == (res, res)
            assert tuple(reader.grid.bounds) == tuple(scene.bounds)
    assert scene.labels.array.shape == (768, 768)
    assert set(np.unique(scene.labels.array)) == set(range(len(CLASS_NAMES)))
    assert scene.sensors == ["syn_optical", "syn_sar", "syn_thermal"]


def test_non_square_size() -> None:
    s = make_scene(seed=3, size_m=(1920.0, 960.0), sensors=["syn_thermal"])
    assert s.labels.array.shape == (96, 192)
    assert arr(s.source("syn_thermal"), "TIR1").shape == (16, 32)


def test_invalid_arguments() -> None:
    with pytest.raises(FusionDataError, match="multiple of the coarsest"):
        make_scene(size_m=1000.0)
    with pytest.raises(FusionDataError, match="cloud_fraction"):
        make_scene(cloud_fraction=1.5)
    with pytest.raises(FusionDataError, match="origin"):
        make_scene(origin=(400000.0, 5300010.0))
    with pytest.raises(SpecError, match="syn_lidar"):
        make_scene(sensors=["syn_optical", "syn_lidar"])


def test_dropped_sensor_is_absent_and_others_unchanged(scene: SyntheticScene) -> None:
    part = make_scene(seed=0, sensors=["syn_sar", "syn_optical"], cloud_fraction=0.2)
    assert part.sensors == ["syn_optical", "syn_sar"]
    with pytest.raises(SpecError):
        part.source("syn_thermal")
    full, sub = all_arrays(scene), all_arrays(part)
    assert set(sub) == {k for k in full if not k.startswith("syn_thermal/")}
    for key, value in sub.items():
        np.testing.assert_array_equal(value, full[key], err_msg=key)


def test_acquisition_date_moves_the_times_and_no_pixel(scene: SyntheticScene) -> None:
    default = {
        "syn_optical": datetime(2023, 6, 15, 10, 0, tzinfo=UTC),
        "syn_sar": datetime(2023, 6, 14, 5, 20, tzinfo=UTC),  # dawn pass the day before
        "syn_thermal": datetime(2023, 6, 15, 10, 30, tzinfo=UTC),
    }
    assert {s.name: s.time for s in scene.sources} == default
    small = make_scene(seed=2, size_m=960.0)
    winter = make_scene(seed=2, size_m=960.0, acquired=datetime(2024, 1, 20, 10, 0))  # naive: UTC
    assert {s.name: s.time for s in small.sources} == default
    shift = datetime(2024, 1, 20, 10, 0, tzinfo=UTC) - default["syn_optical"]
    assert {s.name: s.time for s in winter.sources} == {k: t + shift for k, t in default.items()}
    # Without the optical sensor, ``acquired`` still dates the SAR pass relative to it.
    sar = make_scene(seed=2, size_m=960.0, sensors=["syn_sar"], acquired=datetime(2024, 1, 20, 10))
    assert sar.source("syn_sar").time == winter.source("syn_sar").time
    a, b = all_arrays(small), all_arrays(winter)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    with pytest.raises(FusionDataError, match="acquired"):
        make_scene(size_m=960.0, acquired="2024-01-20")  # type: ignore[arg-type]


def test_cloud_knocks_out_optical_only(scene: SyntheticScene) -> None:
    cloud = scene.cloud.array.astype(bool)
    opt, sar = scene.source("syn_optical"), scene.source("syn_sar")
    assert opt.masks == [scene.cloud]
    assert not sar.masks and not scene.source("syn_thermal").masks
    for band in ("B02", "B08"):
        values, valid = opt.bands[band].read(Window(0, 0, 768, 768))
        assert (values[cloud] == 0).all()
        assert not valid[cloud].any()
        assert (values[~cloud] > 0).all()  # clear pixels never collide with nodata
    # A 20 m pixel is invalid wherever any of its four 10 m cells is cloudy.
    cloud20 = cloud.reshape(384, 2, 384, 2).any(axis=(1, 3))
    b11 = arr(opt, "B11")
    assert (b11[cloud20] == 0).all() and (b11[~cloud20] > 0).all()
    for band in ("VV", "VH"):
        values, valid = sar.bands[band].read(Window(0, 0, 768, 768))
        assert valid[cloud].all()
        assert np.isfinite(values[cloud]).all()


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.35, 0.6])
def test_cloud_fraction_as_requested(fraction: float) -> None:
    s = make_scene(seed=5, size_m=3840.0, cloud_fraction=fraction, sensors=["syn_optical"])
    assert abs(float(s.cloud.array.mean()) - fraction) < 0.02
    zeros = float((arr(s.source("syn_optical"), "B04") == 0).mean())
    assert abs(zeros - fraction) < 0.02


def test_class_dependent_signal(scene: SyntheticScene) -> None:
    labels = scene.labels.array
    cloud = scene.cloud.array.astype(bool)
    opt, sar = scene.source("syn_optical"), scene.source("syn_sar")
    nir = arr(opt, "B08").astype(float)
    red = arr(opt, "B04").astype(float)

    def mean(values: np.ndarray, cls: int, clear: np.ndarray) -> float:
        return float(values[(labels == cls) & clear].mean())

    clear = ~cloud
    nir_mean = {c: mean(nir, c, clear) for c in range(len(CLASS_NAMES))}
    assert nir_mean[WATER] < 0.25 * min(nir_mean[c] for c in (FOREST, GRASS, CROPS))
    ndvi = (nir - red) / np.maximum(nir + red, 1)
    veg = min(mean(ndvi, c, clear) for c in (FOREST, GRASS, CROPS))
    assert veg > 0.5 > max(mean(ndvi, c, clear) for c in (URBAN, BARE, WATER))
    # Classes are separable in the 10 m bands: means differ by more than the noise.
    means = sorted(nir_mean.values())
    assert min(np.diff(means)) > 50  # reflectance × 1e4
    everywhere = np.ones_like(clear)
    vv = arr(sar, "VV")
    assert mean(vv, WATER, everywhere) < mean(vv, FOREST, everywhere) - 8
    assert mean(vv, URBAN, everywhere) > mean(vv, FOREST, everywhere)
    # 60 m thermal: blocks wholly water are cooler than blocks wholly urban or bare.
    tir = arr(scene.source("syn_thermal"), "TIR1")
    blocks = labels.reshape(128, 6, 128, 6).transpose(0, 2, 1, 3).reshape(128, 128, 36)
    pure = (blocks == blocks[..., :1]).all(axis=-1)
    cls60 = blocks[..., 0]
    water_t = tir[pure & (cls60 == WATER)].mean()
    hot_t = tir[pure & np.isin(cls60, (URBAN, BARE))].mean()
    assert hot_t - water_t > 8.0


def test_20m_band_is_area_average_of_10m_classes(scene: SyntheticScene) -> None:
    """A mixed 20 m pixel is the fraction-weighted mix of its 2×2 classes, not one sub-pixel."""
    labels = scene.labels.array
    clear20 = ~scene.cloud.array.astype(bool).reshape(384, 2, 384, 2).any(axis=(1, 3))
    b11 = arr(scene.source("syn_optical"), "B11").astype(float)
    blocks = labels.reshape(384, 2, 384, 2).transpose(0, 2, 1, 3).reshape(384, 384, 4)
    fractions = (blocks[..., None] == np.arange(len(CLASS_NAMES))).mean(axis=2)
    pure = fractions.max(axis=-1) == 1.0
    class_mean = np.array(
        [b11[pure & clear20 & (fractions[..., c] == 1)].mean() for c in range(len(CLASS_NAMES))]
    )
    mixed = ~pure & clear20
    assert mixed.sum() > 1000
    area_avg = fractions[mixed] @ class_mean
    top_left = class_mean[blocks[mixed][:, 0]]
    err_avg = np.abs(b11[mixed] - area_avg).mean()
    err_top_left = np.abs(b11[mixed] - top_left).mean()
    assert err_avg < 0.6 * err_top_left
    # The same for the 60 m thermal band over 6×6 blocks.
    tir = arr(scene.source("syn_thermal"), "TIR1").astype(float)
    b60 = labels.reshape(128, 6, 128, 6).transpose(0, 2, 1, 3).reshape(128, 128, 36)
    f60 = (b60[..., None] == np.arange(len(CLASS_NAMES))).mean(axis=2)
    pure60 = f60.max(axis=-1) == 1.0
    present = [c for c in range(len(CLASS_NAMES)) if (pure60 & (f60[..., c] == 1)).any()]
    assert len(present) >= 4
    cm = np.zeros(len(CLASS_NAMES))
    for c in present:
        cm[c] = tir[pure60 & (f60[..., c] == 1)].mean()
    ok = ~pure60 & (f60[..., [c for c in range(len(CLASS_NAMES)) if c not in present]] == 0).all(-1)
    err_avg60 = np.abs(tir[ok] - f60[ok] @ cm).mean()
    err_first60 = np.abs(tir[ok] - cm[b60[ok][:, 0]]).mean()
    assert err_avg60 < 0.7 * err_first60


def test_write_scene_round_trips(scene: SyntheticScene, tmp_path: Path) -> None:
    small = make_scene(seed=2, size_m=1920.0, cloud_fraction=0.3)
    out = write_scene(small, tmp_path / "scene")
    assert out == tmp_path / "scene"
    for src in small.sources:
        for name, reader in src.bands.items():
            path = out / src.name / f"{name}.tif"
            with rasterio.open(path) as ds:
                assert ds.driver == "GTiff"
                assert ds.crs.to_epsg() == 32633
                assert ds.transform == reader.grid.transform
                assert (ds.height, ds.width) == (reader.grid.height, reader.grid.width)
                assert ds.nodata == src.spec.nodata
                assert ds.dtypes[0] == src.spec.dtype
                np.testing.assert_array_equal(ds.read(1), arr(src, name))
    with rasterio.open(out / "labels.tif") as ds:
        assert ds.transform == small.labels.grid.transform
        assert ds.nodata == 255
        np.testing.assert_array_equal(ds.read(1), small.labels.array)
        assert ds.tags()["classes"] == ",".join(CLASS_NAMES)
    with rasterio.open(out / "cloud.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), small.cloud.array)
    assert not list(out.rglob("*.tmp"))  # temporary names were all renamed
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.tif"))
    assert "syn_optical/B11.tif" in written and "syn_thermal/TIR2.tif" in written
    assert len(written) == 6 + 2 + 2 + 2
    write_scene(small, out)  # rewriting over existing files works


def test_aligned_chips_keep_native_resolutions_and_cloud_validity(scene: SyntheticScene) -> None:
    aligned = align(scene.sources)
    assert aligned.crs == scene.crs and aligned.size_m == (7680.0, 7680.0)
    sample = aligned.read_chip(aligned.chip_bounds(aligned.bounds.left, aligned.bounds.top, 1200))
    assert {k: v[1:] for k, v in sample.shapes().items()} == {
        "syn_optical_10m": (120, 120),
        "syn_optical_20m": (60, 60),
        "syn_sar": (120, 120),
        "syn_thermal": (20, 20),
    }
    whole = aligned.read_chip(aligned.bounds).valid_fraction()
    cloud = float(scene.cloud.array.mean())
    assert whole["syn_sar"] == 1.0 and whole["syn_thermal"] == 1.0
    assert whole["syn_optical_10m"] == pytest.approx(1 - cloud, abs=0.01)


def test_written_scene_reopens_as_band_folders(tmp_path: Path) -> None:
    small = make_scene(seed=4, size_m=1920.0, cloud_fraction=0.25)
    folder = write_scene(small, tmp_path / "scene")
    sources = open_band_folders([folder], strict=True)
    assert sorted(s.name for s in sources) == ["syn_optical", "syn_sar", "syn_thermal"]
    (group,) = group_scenes(sources)
    aligned = align(group)
    assert aligned.crs == small.crs and aligned.size_m == (1920.0, 1920.0)
    opt = next(s for s in sources if s.name == "syn_optical")
    values, valid = opt.bands["B08"].read(Window(0, 0, 192, 192))
    np.testing.assert_array_equal(values, arr(small.source("syn_optical"), "B08"))
    np.testing.assert_array_equal(valid, ~small.cloud.array.astype(bool))


def test_chip_label_majority(scene: SyntheticScene) -> None:
    grid = scene.labels.grid
    labels = np.full((grid.height, grid.width), GRASS, dtype=np.uint8)
    labels[:100, :100] = URBAN
    labels[:64, :48] = WATER  # in the chip below: 48×64 water vs 16×64 urban
    fake = replace(scene, labels=ArrayBand(labels, grid, name="fake"))
    left, top = scene.bounds.left, scene.bounds.top
    chip = BoundingBox(left, top - 640.0, left + 640.0, top)
    assert chip_label(fake, chip) == WATER
    assert chip_label(fake, BoundingBox(left + 500, top - 1000, left + 1000, top - 500)) == URBAN
    assert chip_label(fake, BoundingBox(left + 500, top - 1500, left + 1000, top - 1000)) == GRASS
    # A tie (40×40 px urban, 40×40 grass) goes to the lower class index.
    assert chip_label(fake, (left + 600, top - 1000, left + 1400, top - 600)) == GRASS
    # Partly off the scene: only the 90×90 px on it count (3072 water, 5028 urban).
    assert chip_label(fake, (left - 300, top - 900, left + 900, top + 300)) == URBAN
    with pytest.raises(ChipError):
        chip_label(fake, (left - 2000, top - 1000, left - 1000, top))
    # On the real map the majority matches a direct count.
    real = chip_label(scene, chip)
    assert real == int(np.bincount(scene.labels.array[:64, :64].ravel()).argmax())
