"""UEA/sktime .ts reader: the real BasicMotions files and generated (also malformed) files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fusion.data.catalog import ACCELEROMETER, GYROSCOPE
from fusion.data.collate import collate_samples
from fusion.data.errors import BandCountError, CorruptFileError
from fusion.data.readers.ts_file import TsCaseDataset, case_to_sources, read_ts_file

CLASSES = ("Standing", "Running", "Walking", "Badminton")


@pytest.mark.parametrize("split", ["TRAIN", "TEST"])
def test_basic_motions(shared_data: Path, split: str):
    ts = read_ts_file(shared_data / "imu" / f"BasicMotions_{split}.ts")
    assert len(ts) == 40
    assert ts.n_dims == 6
    assert set(ts.lengths) == {100}
    assert ts.class_names == CLASSES
    assert Counter(ts.labels) == dict.fromkeys(CLASSES, 10)
    assert ts.header["problemname"] == "BasicMotions"
    assert all(np.isfinite(v).all() for v in ts.values)


def test_basic_motions_dataset(shared_data: Path):
    path = shared_data / "imu" / "BasicMotions_TRAIN.ts"
    ts = read_ts_file(path)
    ds = TsCaseDataset(ts)
    assert len(ds) == 40
    s = ds[5]
    assert s.shapes() == {"accelerometer": (3, 100), "gyroscope": (3, 100)}
    assert s.streams["accelerometer"].rate_hz == 10.0
    assert int(s.label) == CLASSES.index(ts.labels[5])
    assert bool(s.masks["gyroscope"].all())
    np.testing.assert_allclose(s.data["accelerometer"].numpy(), ts.values[5][:3], rtol=1e-6)
    np.testing.assert_allclose(s.data["gyroscope"].numpy(), ts.values[5][3:], rtol=1e-6)
    assert s.meta["case"] == 5 and s.meta["class_name"] == ts.labels[5]
    batch = next(iter(DataLoader(ds, batch_size=8, collate_fn=collate_samples)))
    assert tuple(batch.data["gyroscope"].shape) == (8, 3, 100)
    assert batch.labels is not None and batch.labels.dtype == torch.int64
    np.testing.assert_array_equal(batch.labels.numpy(), ts.label_indices()[:8])


def test_case_to_sources_rate_and_split(shared_data: Path):
    ts = read_ts_file(shared_data / "imu" / "BasicMotions_TEST.ts")
    acc, gyr = case_to_sources(ts.values[0], rate_hz=20.0)
    assert acc.rate_hz == 20.0 and gyr.rate_hz == 20.0
    assert acc.end_s == pytest.approx(5.0)
    np.testing.assert_array_equal(gyr.values, ts.values[0][3:])
    with pytest.raises(BandCountError, match="expected 3 dimensions"):
        case_to_sources(ts.values[0], [ACCELEROMETER])
    with pytest.raises(BandCountError, match="expected 3"):
        TsCaseDataset(ts, [GYROSCOPE])


def _write(tmp_path: Path, text: str, name: str = "case.ts") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


HEADER = """# generated
@problemName Toy
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength {equal}
{length}@classLabel true up down
@data
"""


def _toy(n_cases: int, lengths: list[int], seed: int = 3) -> tuple[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    equal = len(set(lengths)) == 1
    text = HEADER.format(
        equal="true" if equal else "false",
        length=f"@seriesLength {lengths[0]}\n" if equal else "",
    )
    arrays = []
    for i in range(n_cases):
        arr = np.round(rng.normal(size=(2, lengths[i])), 6)
        arrays.append(arr)
        dims = ":".join(",".join(f"{v:.6f}" for v in row) for row in arr)
        text += f"{dims}:{'up' if i % 2 == 0 else 'down'}\n"
    return text, arrays


def test_generated_equal_length(tmp_path: Path):
    text, arrays = _toy(4, [12] * 4)
    ts = read_ts_file(_write(tmp_path, text))
    assert len(ts) == 4 and ts.labels == ["up", "down", "up", "down"]
    for got, want in zip(ts.values, arrays, strict=True):
        np.testing.assert_allclose(got, want)
    np.testing.assert_array_equal(ts.label_indices(), [0, 1, 0, 1])


def test_generated_unequal_length_and_missing(tmp_path: Path):
    text, _ = _toy(3, [5, 9, 7])
    lines = text.splitlines()
    # replace the third value of the second dimension of the first case by '?'
    dims = lines[-3].split(":")
    values = dims[1].split(",")
    values[2] = "?"
    dims[1] = ",".join(values)
    lines[-3] = ":".join(dims)
    ts = read_ts_file(_write(tmp_path, "\n".join(lines) + "\n"))
    assert ts.lengths == [5, 9, 7]
    assert np.isnan(ts.values[0][1, 2]) and np.isfinite(ts.values[0][0, 2])
    ds = TsCaseDataset(ts, [ACCELEROMETER.subset(["accel_x", "accel_y"])], rate_hz=5.0)
    s = ds[0]
    assert s.shapes() == {"accelerometer": (2, 5)}
    assert s.masks["accelerometer"].tolist() == [True, True, False, True, True]
    assert float(s.data["accelerometer"][1, 2]) == 0.0
    assert ds[1].shapes() == {"accelerometer": (2, 9)}


def test_regression_and_unlabelled(tmp_path: Path):
    reg = "@dimensions 1\n@targetLabel true\n@data\n1,2,3:0.5\n4,5,6:1.5\n"
    ts = read_ts_file(_write(tmp_path, reg, "reg.ts"))
    assert ts.labels == ["0.5", "1.5"] and ts.class_names == () and ts.is_regression
    spec = ACCELEROMETER.subset(["accel_x"])
    assert float(TsCaseDataset(ts, [spec])[1].label) == pytest.approx(1.5)
    plain = read_ts_file(_write(tmp_path, "@univariate true\n@data\n1,2\n3,4\n", "plain.ts"))
    assert plain.labels == [] and TsCaseDataset(plain, [spec])[0].label is None


@pytest.mark.parametrize(
    ("text", "error", "pattern"),
    [
        ("@problemName X\n@dimensions 1\n1,2,3\n", CorruptFileError, r"line 3: expected a header"),
        ("@problemName X\n@dimensions 1\n", CorruptFileError, "no @data line"),
        (
            "@dimensions 2\n@classLabel true a b\n@data\n1,2:3,4:a\n1,2:b\n",
            BandCountError,
            "line 5",
        ),
        ("@dimensions 1\n@classLabel true a b\n@data\n1,x,3:a\n", CorruptFileError, r"line 4.*'x'"),
        ("@dimensions 1\n@classLabel true a b\n@data\n", CorruptFileError, "no cases"),
        ("@dimensions 1\n@classLabel true a b\n@data\n1,2:a\n1,", CorruptFileError, "line 5"),
        ("@dimensions 1\n@classLabel true a b\n@data\n1,2:c\n", CorruptFileError, "'c'"),
        ("@equalLength true\n@seriesLength 3\n@data\n1,2,3\n1,2\n", CorruptFileError, "line 5"),
        ("@dimensions 2\n@data\n1,2:3\n", CorruptFileError, "different lengths"),
    ],
    ids=[
        "data-before-@data",
        "missing-@data",
        "wrong-dimensions",
        "non-numeric",
        "no-cases",
        "truncated",
        "unknown-class",
        "series-length",
        "ragged-case",
    ],
)
def test_malformed(tmp_path: Path, text: str, error: type[Exception], pattern: str):
    path = _write(tmp_path, text, "bad.ts")
    with pytest.raises(error, match=pattern) as info:
        read_ts_file(path)
    assert str(path) in str(info.value)


def test_dimension_mismatch_is_band_count_error(tmp_path: Path):
    text, _ = _toy(2, [4, 4])
    text = text.replace("@dimensions 2", "@dimensions 3")
    with pytest.raises(BandCountError, match=r"line 11: case has 2 dimensions, expected 3"):
        read_ts_file(_write(tmp_path, text))
