"""EuroSAT-MS: class folders of 13-band GeoTIFFs → labelled Samples at native S2 grids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from fusion.data.catalog import S2_L1C
from fusion.data.datasets import build_datasets, describe
from fusion.data.errors import BandCountError, LayoutError
from fusion.data.readers.eurosat import EuroSatDataset, read_eurosat, scan_eurosat
from fusion.data.readers.geotiff import EUROSAT_BAND_ORDER
from fusion.data.splits import stratified_split

SHAPES = {"s2_l1c_10m": (4, 64, 64), "s2_l1c_20m": (6, 32, 32), "s2_l1c_60m": (3, 11, 11)}


def write_multiband(
    path: Path, data: np.ndarray, *, descriptions: Sequence[str] | None = None
) -> Path:
    """A EuroSAT-like GeoTIFF: ``(C, H, W)`` uint16, 10 m pixels in UTM 33N, no nodata tag."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count, height, width = data.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=str(data.dtype),
        crs="EPSG:32633",
        transform=Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0),
    ) as ds:
        ds.write(data)
        for i, d in enumerate(descriptions or (), start=1):
            ds.set_band_description(i, d)
    return path


def random_image(seed: int = 0, count: int = 13) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 5000, size=(count, 64, 64), dtype=np.uint16)


@pytest.fixture(scope="module")
def eurosat(shared_data: Path) -> Path:
    return shared_data / "eurosat-ms"


def test_index_lists_every_file_by_class(eurosat: Path):
    index = scan_eurosat(eurosat)
    folders = sorted(p for p in eurosat.iterdir() if p.is_dir())
    assert len(index) == 271
    assert index.class_names == tuple(f.name for f in folders) and len(index.class_names) == 10
    assert index.counts() == {f.name: len(list(f.glob("*.tif"))) for f in folders}
    assert all(
        index.files[i].parent.name == index.class_names[c] for i, c in enumerate(index.labels)
    )


def test_samples_hold_native_grids_in_reflectance(eurosat: Path):
    ds = EuroSatDataset(eurosat)
    assert ds.labels().dtype == np.int64 and len(ds.labels()) == len(ds) == 271
    medians = {k: [] for k in SHAPES}
    for i in range(0, len(ds), 9):
        s = ds[i]
        assert s.shapes() == SHAPES
        assert [st.band_names for st in s.streams.values()] == [
            st.band_names for st in S2_L1C.streams()
        ]
        assert int(s.label) == ds.labels()[i]
        assert s.meta["class_name"] == Path(s.meta["path"]).parent.name
        assert s.meta["crs"].startswith("EPSG:326") and len(s.meta["bounds"]) == 4
        assert s.meta["extent_m"]["s2_l1c_60m"] == (660.0, 660.0)  # as AlignedScene.read_chip
        for key, x in s.data.items():
            assert s.masks[key].all()  # EuroSAT has no nodata pixels
            assert float(x.min()) >= 0.0 and float(x.max()) < 3.0
            medians[key].append(float(x.median()))
    for key, values in medians.items():
        assert 0.005 < np.median(values) < 0.5, key  # typical top-of-atmosphere reflectance


def test_native_pixels_are_area_means_anchored_top_left(eurosat: Path):
    path = scan_eurosat(eurosat).files[0]
    s = read_eurosat(path)
    with rasterio.open(path) as f:
        raw = f.read().astype(np.float64) * 1e-4
    band = {name: raw[i] for i, name in enumerate(EUROSAT_BAND_ORDER)}
    np.testing.assert_allclose(s.data["s2_l1c_10m"][3].numpy(), band["B08"], rtol=1e-6)
    b8a = s.data["s2_l1c_20m"][3].numpy()  # B05 B06 B07 B8A B11 B12: B8A is last in the file
    np.testing.assert_allclose(b8a[5, 7], band["B8A"][10:12, 14:16].mean(), rtol=1e-5)
    b09 = s.data["s2_l1c_60m"][1].numpy()  # B01 B09 B10
    np.testing.assert_allclose(b09[2, 3], band["B09"][12:18, 18:24].mean(), rtol=1e-5)
    # the last 60 m cell reaches 20 m past the file: it averages the 4 × 4 pixels inside
    np.testing.assert_allclose(b09[10, 10], band["B09"][60:, 60:].mean(), rtol=1e-5)


def test_band_descriptions_override_the_eurosat_order(tmp_path: Path):
    order = list(reversed(S2_L1C.band_names))
    data = random_image()
    path = write_multiband(tmp_path / "Forest" / "a.tif", data, descriptions=order)
    s = read_eurosat(path)
    assert s.meta["band_order_from"] == "descriptions"
    b02 = data[order.index("B02")].astype(np.float32) * 1e-4
    np.testing.assert_allclose(s.data["s2_l1c_10m"][0].numpy(), b02, rtol=1e-6)


def test_nodata_pixels_are_masked_and_left_out_of_means(tmp_path: Path):
    data = random_image()
    data[:, 0, 0] = 0  # one nodata pixel in every band
    data[4, 40:42, 40:42] = 0  # a whole 20 m cell of B05 (file position 4)
    s = read_eurosat(write_multiband(tmp_path / "Forest" / "a.tif", data))
    assert not s.masks["s2_l1c_10m"][0, 0] and s.masks["s2_l1c_10m"].sum() == 64 * 64 - 1
    assert s.masks["s2_l1c_20m"][0, 0]  # three of four fine pixels valid
    expected = data[4, :2, :2].astype(np.float64).sum() / 3 * 1e-4
    np.testing.assert_allclose(float(s.data["s2_l1c_20m"][0, 0, 0]), expected, rtol=1e-5)
    assert (
        not s.masks["s2_l1c_20m"][20, 20]
        and float(s.data["s2_l1c_20m"][:, 20, 20].abs().sum()) == 0
    )


def test_stratified_split_is_deterministic_disjoint_and_per_class(eurosat: Path):
    labels = scan_eurosat(eurosat).labels
    train, test = stratified_split(labels, 0.2, seed=3)
    again = stratified_split(labels, 0.2, seed=3)
    other = stratified_split(labels, 0.2, seed=4)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])
    assert not np.array_equal(test, other[1])
    assert not set(train) & set(test) and len(train) + len(test) == len(labels)
    for c in np.unique(labels):
        n = int((labels == c).sum())
        assert int((labels[test] == c).sum()) == round(0.2 * n)


def test_wrong_band_count_names_the_file_and_bands(tmp_path: Path):
    path = write_multiband(tmp_path / "Forest" / "bad.tif", random_image(count=12))
    ds = EuroSatDataset(tmp_path)
    with pytest.raises(BandCountError, match="12 bands, expected 13") as info:
        ds[0]
    assert str(path) in str(info.value) and "B8A" in str(info.value)


def test_empty_class_folder_and_missing_class_folders(tmp_path: Path):
    write_multiband(tmp_path / "Forest" / "a.tif", random_image())
    (tmp_path / "River").mkdir()
    with pytest.raises(LayoutError, match=r"holds no \.tif") as info:
        scan_eurosat(tmp_path)
    assert str(tmp_path / "River") in str(info.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LayoutError, match="no class folders") as info:
        scan_eurosat(empty)
    assert str(empty) in str(info.value)


def test_eurosat_is_a_pretraining_source(eurosat: Path):
    bundle = build_datasets(eurosat, stats_samples=16)
    assert describe(bundle)["train"] + describe(bundle)["val"] == 271
    stats = bundle.specs["s2_l1c"].stats
    assert stats is not None and all(c > 0 for c in stats.count)
    x = bundle.train[0].data["s2_l1c_10m"]
    assert abs(float(x.mean())) < 5.0  # normalised, no longer reflectance
