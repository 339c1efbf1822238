"""CSV sensor streams: the real Daphnet recording and generated files with gaps and defects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fusion.data.bands import Band
from fusion.data.errors import CorruptFileError, LayoutError, SpecError, UnknownBandError
from fusion.data.readers.csv_stream import estimate_rate_hz, read_csv_stream, specs_from_columns
from fusion.data.specs import SensorSpec
from fusion.data.timeseries import align_series

AXES = ("horiz_fwd", "vert", "horiz_lateral")
DAPHNET = {site: [f"{site}_{a}" for a in AXES] for site in ("ankle", "leg", "trunk")}


@pytest.fixture(scope="module")
def daphnet(shared_data: Path) -> Path:
    return shared_data / "imu" / "S06R02E0.csv"


def test_daphnet_groups(daphnet: Path):
    sources = read_csv_stream(daphnet, DAPHNET, unit="mg")
    assert [s.key for s in sources] == ["ankle", "leg", "trunk"]
    raw = pd.read_csv(daphnet)
    for s in sources:
        assert s.rate_hz == 64.0
        assert s.values.shape == (3, 7040)
        assert s.start_s == pytest.approx(280.0)  # 1970-01-01 00:04:40 as epoch seconds
        assert s.meta["gap_steps"] == 0
        assert s.spec.bands[0].unit == "mg"
        np.testing.assert_array_equal(s.values, raw[DAPHNET[s.key]].to_numpy().T)
    aligned = align_series(sources)
    assert aligned.duration_s == pytest.approx(7040 / 64)
    sample = aligned.window(300.0, 1.0)
    assert sample.shapes() == {k: (3, 64) for k in DAPHNET}
    # 300 s is 20 s after the start: row 1280 at 64 Hz
    np.testing.assert_array_equal(
        sample.data["trunk"].numpy(), raw[DAPHNET["trunk"]].to_numpy().T[:, 1280:1344]
    )


def test_daphnet_with_specs(daphnet: Path):
    specs = specs_from_columns(DAPHNET, rate_hz=64.0, unit="mg")
    assert [s.band_names for s in specs] == [tuple(c) for c in DAPHNET.values()]
    assert len(read_csv_stream(daphnet, specs)) == 3
    slow = specs_from_columns({"ankle": DAPHNET["ankle"]}, rate_hz=50.0)
    with pytest.raises(SpecError, match="64 Hz, expected 50 Hz"):
        read_csv_stream(daphnet, slow)
    with pytest.raises(SpecError, match="expected 100 Hz"):
        read_csv_stream(daphnet, DAPHNET, rate_hz=100.0)


def test_daphnet_unknown_column(daphnet: Path):
    with pytest.raises(UnknownBandError) as info:
        read_csv_stream(daphnet, {"ankle": ["ankle_horiz_fwd", "ankle_up"]})
    message = str(info.value)
    assert "'ankle_up'" in message and str(daphnet) in message
    assert "trunk_horiz_lateral" in message  # the available columns are listed


def _gappy_csv(tmp_path: Path, rate_hz: float = 50.0, n: int = 500) -> tuple[Path, np.ndarray]:
    """Numeric-seconds CSV, times rounded to the millisecond, with rows 100-109 and 300 removed."""
    rng = np.random.default_rng(11)
    t = 1000.0 + np.arange(n) / rate_hz
    frame = pd.DataFrame(
        {
            "time": np.round(t, 3),
            "ax": rng.normal(size=n),
            "ay": rng.normal(size=n),
            "temp": 20 + rng.normal(size=n),
        }
    )
    drop = [*range(100, 110), 300]
    path = tmp_path / "gappy.csv"
    frame.drop(index=drop).to_csv(path, index=False)
    return path, np.asarray(drop)


def test_gaps_become_masked_steps(tmp_path: Path):
    path, drop = _gappy_csv(tmp_path)
    acc, temp = read_csv_stream(
        path, {"acc": ["ax", "ay"], "thermo": ["temp"]}, time_column="time", unit="g"
    )
    assert acc.rate_hz == 50.0
    assert acc.values.shape == (2, 500) and temp.values.shape == (1, 500)
    assert acc.meta["gap_steps"] == 11
    np.testing.assert_array_equal(np.flatnonzero(~acc.valid()), drop)
    sample = align_series([acc, temp]).window(1001.0, 2.0)  # steps 50..149
    mask = sample.masks["acc"].numpy()
    assert np.flatnonzero(~mask).tolist() == list(range(50, 60))
    assert not sample.data["acc"][:, 50:60].any()


def test_spec_with_aliases_matches_columns(tmp_path: Path):
    path, _ = _gappy_csv(tmp_path)
    spec = SensorSpec(
        name="acc",
        kind="timeseries",
        bands=(
            Band("accel_x", rate_hz=50.0, aliases=("ax",)),
            Band("accel_y", rate_hz=50.0, aliases=("AY",)),
        ),
        scale=2.0,
    )
    (src,) = read_csv_stream(path, [spec], time_column="time")
    raw = pd.read_csv(path)
    np.testing.assert_array_equal(src.values[1, :100], raw["ay"].to_numpy()[:100])
    window = align_series([src]).window(1000.0, 1.0)
    np.testing.assert_allclose(window.data["acc"][0].numpy(), 2 * raw["ax"].to_numpy()[:50], 1e-6)
    missing = SensorSpec(name="gyro", kind="timeseries", bands=(Band("gx", rate_hz=50.0),))
    with pytest.raises(UnknownBandError, match="available columns"):
        read_csv_stream(path, [missing], time_column="time")


def test_datetime_timestamps_rounded_to_ms(tmp_path: Path):
    n = 640
    t = pd.Timestamp("2024-05-01 12:00:00") + pd.to_timedelta(np.arange(n) / 64.0, unit="s")
    frame = pd.DataFrame({"timestamp": t.round("ms").strftime("%Y-%m-%d %H:%M:%S.%f"), "a": 1.0})
    path = tmp_path / "ms.csv"
    frame.to_csv(path, index=False)
    (src,) = read_csv_stream(path, {"s": ["a"]})
    assert src.rate_hz == 64.0
    assert src.values.shape == (1, n) and src.meta["gap_steps"] == 0
    assert src.start_s == pytest.approx(pd.Timestamp("2024-05-01 12:00:00").timestamp())


def test_estimate_rate_ignores_gaps():
    t = np.concatenate([np.arange(100) / 25.0, 10 + np.arange(100) / 25.0])
    assert estimate_rate_hz(t) == 25.0


@pytest.mark.parametrize(
    ("text", "error", "pattern"),
    [
        ("time,a\n0.0,1\n0.1,x\n0.2,3\n", CorruptFileError, r"line 3: column 'a' holds 'x'"),
        ("time,a\n0.0,1\n0.1,2\n0.1,3\n", CorruptFileError, r"line 4: time stamps do not increase"),
        ("t,a\n0.0,1\n0.1,2\n", LayoutError, "no time column 'time'"),
        ("time,a\n0.0,1\n", CorruptFileError, "at least two"),
        ("", CorruptFileError, "cannot parse CSV"),
        ("time,a\n0.0,1\nabc,2\n0.2,3\n", CorruptFileError, "time column"),
    ],
    ids=["non-numeric", "not-increasing", "no-time-column", "one-row", "empty", "bad-time"],
)
def test_malformed(tmp_path: Path, text: str, error: type[Exception], pattern: str):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(error, match=pattern) as info:
        read_csv_stream(path, {"s": ["a"]}, time_column="time")
    assert str(path) in str(info.value)


def test_empty_cells_are_gaps(tmp_path: Path):
    path = tmp_path / "holes.csv"
    path.write_text("time,a,b\n0.0,1,2\n0.1,,3\n0.2,4,5\n0.3,6,7\n")
    (src,) = read_csv_stream(path, {"s": ["a", "b"]}, time_column="time")
    assert src.rate_hz == 10.0
    assert src.valid().tolist() == [True, False, True, True]
