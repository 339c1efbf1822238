"""Presto fuel-moisture arrays: per-pixel multi-sensor Samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

from fusion.data.catalog import PRESTO_SENSORS
from fusion.data.collate import collate_samples
from fusion.data.errors import BandCountError, CorruptFileError, LayoutError
from fusion.data.readers.presto import PRESTO_FILES, PrestoDataset, load_presto_arrays

SHAPES = {"presto_s1": (2, 3), "presto_s2": (11, 3), "era5": (2, 3), "srtm": (2, 3), "ndvi": (1, 3)}


@pytest.fixture(scope="module")
def presto_root(shared_data: Path) -> Path:
    return shared_data / "presto" / "fuel_moisture"


def test_split_sizes(presto_root: Path):
    is_test = np.load(presto_root / "npy" / "is_test.npy")
    n_test = int((is_test == 1).sum())
    assert len(PrestoDataset(presto_root, "all")) == 2313
    assert len(PrestoDataset(presto_root, "test")) == n_test
    assert len(PrestoDataset(presto_root, "train")) == 2313 - n_test
    assert 0 < n_test < 2313


def test_sample_matches_arrays(presto_root: Path):
    x = np.load(presto_root / "npy" / "s1_s2_era5_srtm.npy")
    target = np.load(presto_root / "npy" / "target.npy")
    ds = PrestoDataset(presto_root, "test")
    s = ds[3]
    row = s.meta["index"]
    assert s.meta["is_test"] is True
    assert s.shapes() == SHAPES
    assert float(s.label) == pytest.approx(target[row], rel=1e-6)
    np.testing.assert_allclose(s.data["presto_s1"].numpy(), x[row, :, 0:2].T, rtol=1e-6)
    np.testing.assert_allclose(s.data["presto_s2"].numpy(), x[row, :, 2:13].T, rtol=1e-6)
    np.testing.assert_allclose(s.data["srtm"][0].numpy(), x[row, :, 15], rtol=1e-6)
    np.testing.assert_allclose(s.data["ndvi"][0].numpy(), x[row, :, 17], rtol=1e-6)
    assert s.streams["presto_s2"].band_names[0] == "B2"
    assert len(s.meta["month"]) == 3 and isinstance(s.meta["site"], str)
    lat, lon = s.meta["latlon"]
    assert 20 < lat < 60 and -130 < lon < -60  # western United States


def test_train_loader_batches(presto_root: Path):
    ds = PrestoDataset(presto_root)
    batch = next(iter(DataLoader(ds, batch_size=16, collate_fn=collate_samples)))
    assert tuple(batch.data["presto_s2"].shape) == (16, 11, 3)
    assert batch.labels is not None and tuple(batch.labels.shape) == (16,)
    np.testing.assert_allclose(batch.labels.numpy(), ds.targets[:16], rtol=1e-6)
    assert not any(m["is_test"] for m in batch.meta)


def _write_arrays(root: Path, n: int = 5, channels: int = 18, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    npy = root / "npy"
    npy.mkdir(parents=True)
    x = rng.normal(size=(n, 3, channels))
    arrays = {
        "x": x,
        "target": rng.uniform(50, 200, n),
        "is_test": np.array([0, 1] * (n // 2) + [0] * (n % 2)),
        "latlon": rng.uniform(30, 40, (n, 2)),
        "month": rng.integers(0, 12, (n, 3)),
        "site": np.array([f"site{i}" for i in range(n)]),
    }
    for key, name in PRESTO_FILES.items():
        np.save(npy / name, arrays[key])
    return x


def test_generated_nan_is_masked(tmp_path: Path):
    x = _write_arrays(tmp_path)
    x[0, 1, 3] = np.nan
    np.save(tmp_path / "npy" / PRESTO_FILES["x"], x)
    ds = PrestoDataset(tmp_path / "npy", "all")  # the npy folder itself is accepted too
    s = ds[0]
    assert s.masks["presto_s2"].tolist() == [True, False, True]
    assert s.masks["presto_s1"].tolist() == [True, True, True]
    assert not s.data["presto_s2"][:, 1].any()
    assert len(PrestoDataset(tmp_path, "train")) == 3


def test_channel_mismatch(tmp_path: Path):
    _write_arrays(tmp_path, channels=17)
    with pytest.raises(BandCountError, match="17 channels, expected 18") as info:
        load_presto_arrays(tmp_path)
    assert "s1_s2_era5_srtm.npy" in str(info.value)


def test_missing_and_inconsistent_files(tmp_path: Path):
    _write_arrays(tmp_path)
    np.save(tmp_path / "npy" / PRESTO_FILES["target"], np.zeros(4))
    with pytest.raises(CorruptFileError, match=r"expected \(5,\)"):
        load_presto_arrays(tmp_path)
    (tmp_path / "npy" / PRESTO_FILES["site"]).unlink()
    with pytest.raises(LayoutError, match=r"missing site\.npy"):
        PrestoDataset(tmp_path)
    with pytest.raises(ValueError, match="split"):
        PrestoDataset(tmp_path, "val")  # type: ignore[arg-type]


def test_sensor_specs_cover_channels():
    assert sum(len(s.bands) for s in PRESTO_SENSORS) == 18
