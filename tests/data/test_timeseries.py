"""Time-series sources, alignment and windows at native rates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion.data.bands import Band
from fusion.data.catalog import ACCELEROMETER, S1_GRD
from fusion.data.collate import collate_samples
from fusion.data.errors import BandCountError, ChipError, NoOverlapError, SpecError
from fusion.data.specs import SensorSpec
from fusion.data.timeseries import (
    SeriesSource,
    align_series,
    series_tensors,
    spec_at_rate,
    split_streams,
)


def _spec(name: str, n_bands: int, rate_hz: float, **kw: float) -> SensorSpec:
    bands = tuple(Band(name=f"{name}_{i}", rate_hz=rate_hz) for i in range(n_bands))
    return SensorSpec(name=name, kind="timeseries", bands=bands, **kw)  # type: ignore[arg-type]


def _clock(n_bands: int, start_s: float, n: int, rate_hz: float) -> np.ndarray:
    """Channel 0 holds each sample's own time (s), the others seeded noise."""
    rng = np.random.default_rng(7)
    values = rng.normal(size=(n_bands, n))
    values[0] = start_s + np.arange(n) / rate_hz
    return values


@pytest.fixture
def two_rates() -> tuple[SeriesSource, SeriesSource]:
    # fast: 50 Hz over [100, 120) s; slow: 10 Hz over [103, 133) s -> common span [103, 120) s
    fast = SeriesSource(_spec("fast", 2, 50.0), _clock(2, 100.0, 1000, 50.0), start_s=100.0)
    slow = SeriesSource(_spec("slow", 1, 10.0), _clock(1, 103.0, 300, 10.0), start_s=103.0)
    return fast, slow


def test_align_takes_latest_start_and_earliest_end(two_rates):
    aligned = align_series(two_rates)
    assert aligned.start_s == pytest.approx(103.0)
    assert aligned.end_s == pytest.approx(120.0)
    assert aligned.sensors == ["fast", "slow"]


def test_window_counts_and_times_line_up(two_rates):
    aligned = align_series(two_rates)
    s = aligned.window(105.0, 2.0, label=3)
    assert s.shapes() == {"fast": (2, 100), "slow": (1, 20)}
    torch.testing.assert_close(
        s.data["fast"][0], torch.tensor(105.0 + np.arange(100) / 50.0).float()
    )
    torch.testing.assert_close(
        s.data["slow"][0], torch.tensor(105.0 + np.arange(20) / 10.0).float()
    )
    assert s.label == 3
    assert s.meta["t0_s"] == 105.0 and s.meta["duration_s"] == 2.0
    assert s.meta["sensors"] == ["fast", "slow"]
    assert s.meta["stream_t0_s"] == pytest.approx({"fast": 105.0, "slow": 105.0})
    assert s.streams["fast"].rate_hz == 50.0 and s.streams["slow"].rate_hz == 10.0


def test_window_between_sample_instants_keeps_counts(two_rates):
    # 105.03 s falls between samples of both sensors; the window still holds whole samples in it
    s = align_series(two_rates).window(105.03, 2.0)
    assert s.shapes() == {"fast": (2, 100), "slow": (1, 20)}
    for key in ("fast", "slow"):
        times = s.data[key][0]
        assert float(times.min()) >= 105.03 - 1e-4
        assert float(times.max()) < 107.03
    assert float(s.data["fast"][0, 0]) == pytest.approx(105.04, abs=1e-4)
    assert float(s.data["slow"][0, 0]) == pytest.approx(105.1, abs=1e-4)


def test_window_at_span_edges(two_rates):
    aligned = align_series(two_rates)
    first = aligned.window(103.0, 1.0)
    last = aligned.window(119.0, 1.0)
    assert float(first.data["fast"][0, 0]) == pytest.approx(103.0, abs=1e-4)
    assert float(last.data["slow"][0, -1]) == pytest.approx(119.9, abs=1e-4)
    with pytest.raises(ChipError, match="leaves the common span"):
        aligned.window(119.5, 1.0)
    with pytest.raises(ChipError, match="leaves the common span"):
        aligned.window(102.0, 1.0)


def test_duration_not_whole_samples_raises(two_rates):
    aligned = align_series(two_rates)
    # 0.25 s is 12.5 samples at 50 Hz and 2.5 at 10 Hz
    with pytest.raises(ChipError, match="whole number"):
        aligned.window(105.0, 0.25)
    with pytest.raises(ChipError, match="whole number"):
        next(aligned.windows(0.05, 1.0))


def test_nan_is_masked_and_zeroed_and_scale_applied():
    rng = np.random.default_rng(0)
    raw = rng.uniform(100, 200, size=(3, 40))
    gaps = np.sort(rng.choice(40, size=5, replace=False))
    raw[1, gaps] = np.nan
    spec = _spec("acc", 3, 20.0, scale=0.5, offset=-1.0)
    s = align_series([SeriesSource(spec, raw, start_s=0.0)]).window(0.0, 2.0)
    mask = s.masks["acc"].numpy()
    assert np.flatnonzero(~mask).tolist() == gaps.tolist()
    assert torch.all(s.data["acc"][:, gaps] == 0)
    ok = np.flatnonzero(mask)
    np.testing.assert_allclose(s.data["acc"][:, ok].numpy(), raw[:, ok] * 0.5 - 1.0, rtol=1e-6)
    assert s.data["acc"].dtype == torch.float32


def test_nodata_is_invalid():
    spec = _spec("baro", 1, 1.0, nodata=-9999.0)
    values, mask = series_tensors(spec, np.array([[1.0, -9999.0, 3.0]]))
    assert mask.tolist() == [True, False, True]
    assert values.tolist() == [[1.0, 0.0, 3.0]]


def test_no_overlap_names_sensors():
    a = SeriesSource(_spec("left", 1, 10.0), np.zeros((1, 100)), start_s=0.0)
    b = SeriesSource(_spec("right", 1, 10.0), np.zeros((1, 100)), start_s=10.0)
    with pytest.raises(NoOverlapError) as info:
        align_series([a, b])
    assert "left" in str(info.value) and "right" in str(info.value)


def test_grid_windows(two_rates):
    aligned = align_series(two_rates)
    starts = aligned.window_starts(2.0, 1.0)
    # span of 17 s: windows start at 103, 104, ..., 118
    np.testing.assert_allclose(starts, 103.0 + np.arange(16))
    samples = list(aligned.windows(2.0, 1.0))
    assert len(samples) == 16
    assert all(s.shapes() == {"fast": (2, 100), "slow": (1, 20)} for s in samples)
    batch = collate_samples(samples)
    assert tuple(batch.data["fast"].shape) == (16, 2, 100)
    assert tuple(batch.masks["slow"].shape) == (16, 20)


def test_random_windows_reproducible_and_inside(two_rates):
    aligned = align_series(two_rates)
    a = aligned.random_windows(2.0, 8, seed=1)
    b = aligned.random_windows(2.0, 8, seed=1)
    c = aligned.random_windows(2.0, 8, seed=2)
    assert [s.meta["t0_s"] for s in a] == [s.meta["t0_s"] for s in b]
    assert [s.meta["t0_s"] for s in a] != [s.meta["t0_s"] for s in c]
    for s in a:
        assert 103.0 <= s.meta["t0_s"] <= 118.0
        assert s.shapes() == {"fast": (2, 100), "slow": (1, 20)}
    with pytest.raises(ChipError, match="shorter"):
        aligned.random_windows(30.0, 1)


def test_source_validation():
    with pytest.raises(BandCountError, match="expected"):
        SeriesSource(ACCELEROMETER, np.zeros((2, 10)))
    with pytest.raises(SpecError, match="time-series"):
        SeriesSource(S1_GRD, np.zeros((2, 10)))
    mixed = SensorSpec(
        name="imu",
        kind="timeseries",
        bands=(Band("acc", rate_hz=50.0), Band("baro", rate_hz=1.0)),
    )
    with pytest.raises(SpecError, match="split_streams"):
        SeriesSource(mixed, np.zeros((2, 10)))


def test_split_streams_keeps_stream_keys():
    spec = SensorSpec(
        name="imu",
        kind="timeseries",
        bands=(Band("acc", rate_hz=50.0), Band("gyro", rate_hz=50.0), Band("baro", rate_hz=1.0)),
    )
    keys = [s.key for s in spec.streams()]
    sources = split_streams(spec, {keys[0]: np.ones((2, 500)), keys[1]: np.ones((1, 10))})
    assert [s.key for s in sources] == ["imu_50hz", "imu_1hz"]
    s = align_series(sources).window(0.0, 5.0)
    assert s.shapes() == {"imu_50hz": (2, 250), "imu_1hz": (1, 5)}
    assert s.sensors == ["imu"]
    with pytest.raises(SpecError, match="expected"):
        split_streams(spec, {keys[0]: np.ones((2, 500))})


def test_spec_at_rate():
    fast = spec_at_rate(ACCELEROMETER, 100.0)
    assert {b.rate_hz for b in fast.bands} == {100.0}
    assert fast.band_names == ACCELEROMETER.band_names
    assert spec_at_rate(ACCELEROMETER, 10.0) is ACCELEROMETER
