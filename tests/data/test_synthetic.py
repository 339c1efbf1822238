"""The synthetic default: deterministic, native resolutions, clouds, class signal, real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from fusion.data.align import align
from fusion.data.errors import SpecError
from fusion.data.readers.band_folder import open_band_folders
from fusion.data.scenes import group_scenes
from fusion.data.synthetic import CLASS_NAMES, chip_label, make_scene, write_scene


def _full(reader) -> np.ndarray:  # type: ignore[no-untyped-def]
    values, _ = reader.read(Window(0, 0, reader.grid.width, reader.grid.height))
    return np.asarray(values)


@pytest.fixture(scope="module")
def scene():  # type: ignore[no-untyped-def]
    return make_scene(seed=0, size_m=3840, cloud_fraction=0.25)


def test_same_seed_same_arrays_other_seed_differs(scene) -> None:  # type: ignore[no-untyped-def]
    again = make_scene(seed=0, size_m=3840, cloud_fraction=0.25)
    other = make_scene(seed=1, size_m=3840, cloud_fraction=0.25)
    for a, b, c in zip(scene.sources, again.sources, other.sources, strict=True):
        for name in a.bands:
            assert np.array_equal(_full(a.bands[name]), _full(b.bands[name]))
        first = next(iter(a.bands))
        assert not np.array_equal(_full(a.bands[first]), _full(c.bands[first]))


def test_native_resolutions(scene) -> None:  # type: ignore[no-untyped-def]
    shapes = {
        (src.name, name): (r.grid.height, r.grid.res[0])
        for src in scene.sources
        for name, r in src.bands.items()
    }
    res = {res for _, res in shapes.values()}
    assert res == {10.0, 20.0, 60.0}
    for height, r in shapes.values():
        assert height * r == 3840
    aligned = align(scene.sources)
    sample = aligned.read_chip(aligned.chip_bounds(aligned.bounds.left, aligned.bounds.top, 1200))
    assert {k: v[1] for k, v in sample.shapes().items()} == {
        "syn_optical_10m": 120,
        "syn_optical_20m": 60,
        "syn_sar": 120,
        "syn_thermal": 20,
    }


def test_clouds_blank_optical_but_not_sar(scene) -> None:  # type: ignore[no-untyped-def]
    cloud = _full(scene.cloud).astype(bool)
    assert 0.15 < cloud.mean() < 0.35  # asked for 0.25
    optical = scene.source("syn_optical")
    first10 = next(n for n, r in optical.bands.items() if r.grid.res[0] == 10)
    values = _full(optical.bands[first10])
    assert (values[cloud] == 0).all() and (values[~cloud] > 0).mean() > 0.99
    sar = scene.source("syn_sar")
    assert np.isfinite(_full(next(iter(sar.bands.values())))[cloud]).all()
    aligned = align(scene.sources)
    sample = aligned.read_chip(aligned.bounds)
    assert sample.valid_fraction()["syn_sar"] == 1.0
    assert sample.valid_fraction()["syn_optical_10m"] == pytest.approx(1 - cloud.mean(), abs=0.01)


def test_classes_have_distinct_signal(scene) -> None:  # type: ignore[no-untyped-def]
    labels = _full(scene.labels)
    optical = scene.source("syn_optical")
    nir_name = max(
        (n for n, r in optical.bands.items() if r.grid.res[0] == 10),
        key=lambda n: optical.spec.band(n).wavelength_nm or 0,
    )
    nir = _full(optical.bands[nir_name]).astype(float)
    ok = nir > 0
    means = {
        CLASS_NAMES[c]: nir[(labels == c) & ok].mean()
        for c in np.unique(labels)
        if ((labels == c) & ok).sum() > 100
    }
    assert "water" in means and "forest" in means
    assert means["water"] < 0.5 * means["forest"]  # water is dark in the near infrared


def test_coarse_bands_are_area_averages(scene) -> None:  # type: ignore[no-untyped-def]
    """A 60 m thermal pixel over a pure 6×6 block of one class is that class's value; pixels over
    mixed blocks fall between the pure values (mixtures, not a sub-pixel picked at random)."""
    labels = _full(scene.labels)
    thermal = scene.source("syn_thermal")
    tir = _full(next(iter(thermal.bands.values()))).astype(float)
    blocks = (
        labels.reshape(tir.shape[0], 6, tir.shape[1], 6)
        .transpose(0, 2, 1, 3)
        .reshape(*tir.shape, 36)
    )
    pure = (blocks == blocks[..., :1]).all(axis=-1)
    assert pure.mean() > 0.3 and (~pure).mean() > 0.05

    def r2(features: np.ndarray) -> float:
        x = np.c_[features.reshape(-1, features.shape[-1]), np.ones(tir.size)]
        coef, *_ = np.linalg.lstsq(x, tir.ravel(), rcond=None)
        resid = tir.ravel() - x @ coef
        return float(1 - resid.var() / tir.var())

    n = len(CLASS_NAMES)
    fractions = np.stack([(blocks == c).mean(axis=-1) for c in range(n)], axis=-1)
    one_pixel = np.stack([(blocks[..., 0] == c).astype(float) for c in range(n)], axis=-1)
    # class fractions of the block explain the coarse pixel better than any single sub-pixel
    assert r2(fractions) > r2(one_pixel) + 0.05  # measured 0.85 vs 0.71 for seed 0


def test_chip_label_is_the_majority(scene) -> None:  # type: ignore[no-untyped-def]
    labels = _full(scene.labels)
    b = scene.bounds
    bounds = (b.left, b.top - 640, b.left + 640, b.top)
    expected = np.bincount(labels[:64, :64].ravel()).argmax()
    assert chip_label(scene, bounds) == expected


def test_write_scene_round_trips_through_rasterio(scene, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = write_scene(scene, tmp_path / "scene")
    assert not list(folder.rglob("*.tmp*"))  # no temporary files left behind
    sources = open_band_folders([folder])
    assert sorted(s.name for s in sources) == ["syn_optical", "syn_sar", "syn_thermal"]
    (group,) = group_scenes(sources)
    aligned = align(group)
    assert aligned.crs == scene.crs and aligned.size_m == (3840.0, 3840.0)
    sar = scene.source("syn_sar")
    name = next(iter(sar.bands))
    with rasterio.open(next(folder.rglob(f"{name}.tif"))) as ds:
        assert ds.crs == scene.crs and ds.res == (10.0, 10.0)
        np.testing.assert_array_equal(ds.read(1), _full(sar.bands[name]))


def test_sensor_subset_and_unknown_sensor() -> None:
    partial = make_scene(seed=0, size_m=1920, sensors=["syn_sar"])
    assert [s.name for s in partial.sources] == ["syn_sar"]
    full = make_scene(seed=0, size_m=1920)
    name = next(iter(partial.sources[0].bands))
    assert np.array_equal(
        _full(partial.sources[0].bands[name]), _full(full.source("syn_sar").bands[name])
    )
    with pytest.raises(SpecError, match="syn_lidar"):
        make_scene(seed=0, sensors=["syn_lidar"])
