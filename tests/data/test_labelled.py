"""Labelled train/test data for probes: every layout, in physical values, and bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from fusion.data.datasets import Transformed, synthetic_datasets
from fusion.data.errors import BandCountError, ConfigError, LayoutError
from fusion.data.labelled import LabelledData, label_array, load_labelled
from fusion.data.layouts import SYNTHETIC_ACQUIRED, SYNTHETIC_PLACES
from fusion.data.sampling import ChipDataset
from fusion.data.synthetic import CLASS_NAMES, chip_label, make_scene, write_scene
from tests.data.generated import write_band, write_s2_folder
from tests.data.test_eurosat import random_image, write_multiband


def chips_of(data: LabelledData) -> list[tuple[ChipDataset, int]]:
    """(dataset, index) of every Sample of both splits (chip layouts)."""
    out = []
    for ds in (data.train, data.test):
        assert isinstance(ds, ChipDataset)
        out.extend((ds, i) for i in range(len(ds)))
    return out


# -- synthetic ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic() -> LabelledData:
    return load_labelled("synthetic")


def test_synthetic_matches_the_pretraining_split_and_labels(synthetic: LabelledData):
    bundle = synthetic_datasets(stats_samples=1)
    assert synthetic.task == "classification" and synthetic.class_names == CLASS_NAMES
    for name, normalised in (("train", bundle.train), ("test", bundle.val)):
        ours = synthetic.split(name)
        assert isinstance(ours, ChipDataset) and isinstance(normalised, Transformed)
        assert ours.chips == normalised.base.chips  # type: ignore[attr-defined]
        y = synthetic.labels(name)
        assert y.dtype == np.int64 and y.shape == (len(ours),)
        for i in range(0, len(ours), 40):
            assert normalised[i].label == y[i]
    place = 3  # a place without the optical sensor: labels come from the truth, not the data
    scene = make_scene(place, sensors=SYNTHETIC_PLACES[place])
    test = synthetic.test
    assert isinstance(test, ChipDataset)
    y = synthetic.labels("test")
    checked = [i for i, ref in enumerate(test.chips) if ref.scene == place]
    assert checked
    for i in checked:
        assert chip_label(scene, test.chips[i].bounds) == y[i]


def test_synthetic_places_are_dated_through_the_seasons(synthetic: LabelledData):
    assert SYNTHETIC_ACQUIRED[0] == datetime(2023, 6, 15, 10, 0, tzinfo=UTC)  # make_scene's date
    # summer, spring, winter (every sensor), autumn (no optical), summer (no thermal) at 47.8° N
    assert [t.month for t in SYNTHETIC_ACQUIRED] == [6, 4, 1, 11, 8]
    test = synthetic.test
    assert isinstance(test, ChipDataset)
    assert len(test.scenes) == len(SYNTHETIC_PLACES) == len(SYNTHETIC_ACQUIRED)
    for scene, when in zip(test.scenes, SYNTHETIC_ACQUIRED, strict=True):
        times = scene.meta["time"]
        assert times["syn_sar"] == (when - timedelta(hours=28, minutes=40)).isoformat()
        if "syn_optical" in times:
            assert times["syn_optical"] == when.isoformat()
    chip = test[0]
    assert chip.meta["time"] == test.scenes[test.chips[0].scene].meta["time"]


def test_synthetic_values_are_physical_not_normalised(synthetic: LabelledData):
    s = synthetic.train[0]
    assert 250.0 < float(s.data["syn_thermal"].mean()) < 330.0  # brightness temperature, K
    optical = s.data["syn_optical_10m"][:, s.masks["syn_optical_10m"]]
    assert float(optical.min()) >= 0.0 and float(optical.max()) < 1.0  # reflectance


# -- EuroSAT-MS --------------------------------------------------------------------------------


def test_eurosat_classification(shared_data: Path):
    root = shared_data / "eurosat-ms"
    data = load_labelled(root, seed=5)
    y_train, y_test = data.labels("train"), data.labels("test")
    assert data.task == "classification" and len(data.class_names or ()) == 10
    assert len(y_train) + len(y_test) == 271 and data.specs.keys() == {"s2_l1c"}
    assert set(np.unique(y_test)) == set(range(10))  # stratified: every class is tested
    # the cheap labels agree with the labels the Samples carry (read by iterating)
    np.testing.assert_array_equal(
        label_array(Transformed(data.test, lambda s: s), data.task), y_test
    )
    again = load_labelled(root, seed=5)
    assert [data.test[i].meta["path"] for i in range(3)] == [
        again.test[i].meta["path"] for i in range(3)
    ]


# -- BigEarthNet-MM v1 pairs -------------------------------------------------------------------


def test_bigearthnet_pairs_are_multilabel_with_s1_partners(shared_data: Path):
    root = shared_data / "bigearthnet-v1-pairs"
    s2_meta = {
        p.parent.name: json.loads(p.read_text())
        for p in root.glob("BigEarthNet-S2-Example/*/*_labels_metadata.json")
    }
    data = load_labelled(root)
    names = sorted({label for m in s2_meta.values() for label in m["labels"]})
    assert data.task == "multilabel" and data.class_names == tuple(names)
    y_train, y_test = data.labels("train"), data.labels("test")
    assert y_train.dtype == np.float32 and y_train.shape[1] == y_test.shape[1] == len(names)
    assert len(y_train) + len(y_test) == len(s2_meta) and len(y_test) >= 1
    for ds, y in ((data.train, y_train), (data.test, y_test)):
        for i in range(len(ds)):  # type: ignore[arg-type]
            s = ds[i]
            patch = s.meta["patch"]
            expected = [float(n in s2_meta[patch]["labels"]) for n in names]
            assert y[i].tolist() == expected and s.label.tolist() == expected
            assert s.shapes() == {
                "s2_l2a_10m": (4, 120, 120),
                "s2_l2a_20m": (6, 60, 60),
                "s2_l2a_60m": (2, 20, 20),
                "s1_grd": (2, 120, 120),
            }
            s1_folder = Path(s.meta["s1_grd_meta"]["folder"])
            s1_json = json.loads(next(s1_folder.glob("*_labels_metadata.json")).read_text())
            assert s1_json["corresponding_s2_patch"] == patch
            with rasterio.open(next(s1_folder.glob("*_VV.tif"))) as f:
                vv = f.read(1)
            np.testing.assert_allclose(s.data["s1_grd"][0].numpy(), vv, rtol=1e-6)
            assert 0.0 < float(s.data["s2_l2a_10m"].median()) < 0.5  # reflectance


# -- label raster ------------------------------------------------------------------------------


def _majority(values: np.ndarray, nodata: float | None) -> tuple[int, float]:
    codes, counts = np.unique(
        values[values != nodata] if nodata is not None else values, return_counts=True
    )
    k = int(np.argmax(counts))
    return int(codes[k]), float(counts[k] / counts.sum())


@pytest.fixture(scope="module")
def reference_on_s2(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real reference map's CORINE codes, georeferenced onto the real S2 patch.

    The shipped map belongs to another patch (tile 33UUP, 26_57) than the S2 and S1 patches
    beside it, so as shipped it labels no image pixel (see the next test).
    """
    root = shared_data / "bigearthnet-v2"
    ref = next(root.glob("Reference_Maps/*/*/*_reference_map.tif"))
    b02 = next(root.glob("BigEarthNet-S2/*/*/*_B02.tif"))
    with rasterio.open(ref) as f:
        codes, profile = f.read(1), f.profile
    with rasterio.open(b02) as f:
        profile.update(transform=f.transform, crs=f.crs)
    out = tmp_path_factory.mktemp("labels") / "reference_on_s2.tif"
    with rasterio.open(out, "w", **profile) as f:
        f.write(codes, 1)
    return out


def test_shipped_reference_map_overlaps_no_image(shared_data: Path):
    with pytest.raises(LayoutError, match="must overlap the images") as info:
        load_labelled(shared_data / "bigearthnet-v2", chip_m=600)
    assert "_reference_map.tif" in str(info.value)


def test_label_raster_keeps_pure_chips_only(shared_data: Path, reference_on_s2: Path):
    min_purity = 0.8
    data = load_labelled(
        shared_data / "bigearthnet-v2",
        chip_m=240,
        label_raster=reference_on_s2,
        min_purity=min_purity,
    )
    with rasterio.open(reference_on_s2) as f:
        codes, nodata, transform = f.read(1), f.nodata, f.transform
    # direct majority over every 240 m chip (24 px) of the S2 patch
    direct = {}
    for r in range(codes.shape[0] // 24):
        for c in range(codes.shape[1] // 24):
            left, top = transform * (c * 24, r * 24)
            direct[(left, top)] = _majority(
                codes[r * 24 : (r + 1) * 24, c * 24 : (c + 1) * 24], nodata
            )
    impure = sum(p < min_purity for _, p in direct.values())
    assert data.task == "classification" and impure > 0
    assert data.info["dropped_impure"] == impure
    assert data.info["dropped_unlabelled"] == data.info["chips"] - len(direct)  # the S1 patch
    assert f"{impure} below purity 0.8" in data.description
    names = data.class_names or ()
    assert list(names) == sorted(names, key=int)
    kept = chips_of(data)
    assert len(kept) == len(direct) - impure
    labels = np.concatenate([data.labels("train"), data.labels("test")])
    for (ds, i), label in zip(kept, labels, strict=True):
        b = ds.chips[i].bounds
        code, purity = direct[(b.left, b.top)]
        assert purity >= min_purity and names[label] == str(code)
    s = data.train[0]
    assert s.shapes() == {
        "s2_l2a_10m": (4, 24, 24),
        "s2_l2a_20m": (6, 12, 12),
        "s2_l2a_60m": (2, 4, 4),
    }


def test_label_raster_found_beside_generated_scene(tmp_path: Path):
    scene = make_scene(3, size_m=1920, cloud_fraction=0.0)
    write_scene(scene, tmp_path / "scene")  # labels.tif beside the sensor folders
    data = load_labelled(tmp_path / "scene", chip_m=480, min_purity=0.0)
    assert data.info["kept"] == data.info["chips"] == 16
    names = data.class_names or ()
    labels = np.concatenate([data.labels("train"), data.labels("test")])
    for (ds, i), label in zip(chips_of(data), labels, strict=True):
        assert names[label] == str(chip_label(scene, ds.chips[i].bounds))


def test_label_raster_on_another_grid_is_resampled(tmp_path: Path):
    write_s2_folder(tmp_path / "img" / "patch", bands={"B02": 10, "B03": 10, "B04": 10})
    codes = np.full((180, 180), 7, dtype=np.uint16)  # 7 m pixels, corner 3 m off the image
    codes[:, 90:] = 9
    labels = write_band(
        tmp_path / "codes.tif", codes, transform=Affine(7, 0, 499_997, 0, -7, 5_000_043), nodata=0
    )
    data = load_labelled(tmp_path / "img", chip_m=600, label_raster=labels)
    assert data.class_names == ("7", "9")
    for (ds, i), label in zip(
        chips_of(data), np.concatenate([data.labels("train"), data.labels("test")]), strict=True
    ):
        left_half = ds.chips[i].bounds.left < 500_600
        assert label == (0 if left_half else 1)


# -- Presto, .ts -------------------------------------------------------------------------------


def test_presto_regression_uses_the_published_split(shared_data: Path):
    root = shared_data / "presto" / "fuel_moisture"
    is_test = np.load(root / "npy" / "is_test.npy").astype(bool)
    target = np.load(root / "npy" / "target.npy")
    data = load_labelled(root)
    assert data.task == "regression" and data.class_names is None
    y_train, y_test = data.labels("train"), data.labels("test")
    assert y_test.dtype == np.float32
    assert len(y_train) == int((~is_test).sum()) and len(y_test) == int(is_test.sum())
    np.testing.assert_allclose(y_test, target[is_test], rtol=1e-6)


def test_ts_classification(shared_data: Path):
    path = shared_data / "imu" / "BasicMotions_TRAIN.ts"
    header = next(
        line for line in path.read_text().splitlines() if line.lower().startswith("@classlabel")
    )
    data = load_labelled(path)
    assert data.task == "classification" and data.class_names == tuple(header.split()[2:])
    assert len(data.class_names) == 4
    y_train, y_test = data.labels("train"), data.labels("test")
    assert len(y_train) == len(y_test) == 40 and set(y_test) == set(range(4))
    assert int(data.test[5].label) == y_test[5]


# -- bad input ---------------------------------------------------------------------------------


def test_unknown_layout_and_missing_path_name_the_path(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("no data here")
    for path, pattern in ((tmp_path, "no labels found"), (tmp_path / "nope", "does not exist")):
        with pytest.raises(LayoutError, match=pattern) as info:
            load_labelled(path)
        message = str(info.value)
        assert str(path) in message and "EuroSAT-MS" in message and "synthetic" in message


def test_missing_relative_path_names_the_working_directory(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LayoutError, match="relative to the working directory") as info:
        load_labelled("../shared/data/eurosat-ms")
    assert str(tmp_path) in str(info.value)


def test_eurosat_defects_name_the_file_or_folder(tmp_path: Path):
    write_multiband(tmp_path / "Forest" / "a.tif", random_image())
    write_multiband(tmp_path / "Forest" / "b.tif", random_image(1))
    bad = write_multiband(tmp_path / "River" / "c.tif", random_image(count=12))
    write_multiband(tmp_path / "River" / "d.tif", random_image(2))
    data = load_labelled(tmp_path, test_fraction=0.5)
    with pytest.raises(BandCountError, match="expected 13") as info:
        for ds in (data.train, data.test):
            for i in range(len(ds)):  # type: ignore[arg-type]
                ds[i]
    assert str(bad) in str(info.value)
    (tmp_path / "SeaLake").mkdir()
    with pytest.raises(LayoutError, match="holds no") as info:
        load_labelled(tmp_path)
    assert str(tmp_path / "SeaLake") in str(info.value)


def test_other_bad_arguments(tmp_path: Path, shared_data: Path):
    train = tmp_path / "X_TRAIN.ts"
    train.write_text((shared_data / "imu" / "BasicMotions_TRAIN.ts").read_text())
    with pytest.raises(LayoutError, match=r"X_TEST\.ts") as info:
        load_labelled(train)
    assert str(train) in str(info.value)
    with pytest.raises(ConfigError, match="test_fraction"):
        load_labelled("synthetic", test_fraction=1.0)
    with pytest.raises(LayoutError, match="label_raster= applies"):
        load_labelled(shared_data / "eurosat-ms", label_raster=train)
    with pytest.raises(LayoutError, match="label raster does not exist") as info:
        load_labelled(shared_data / "bigearthnet-v2", label_raster=tmp_path / "none.tif")
    assert "none.tif" in str(info.value)
