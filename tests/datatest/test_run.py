"""Running suites on real samples (band statistics as a fast, deterministic embedder): scores,
failures, empty slices, generated sensor-off tests, JUnit XML and contact sheets."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from fusion.data.labelled import LabelledData, load_labelled
from fusion.data.sample import Sample
from fusion.datatest import (
    Suite,
    SuiteResult,
    field_table,
    load_suite,
    print_result,
    run_suite,
    write_contact_sheet,
    write_junit,
)
from fusion.probe import KNNProbe, embed_dataset
from fusion.probe.baselines import BandStatistics

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

WINTER_NO_OPTICAL = {"season": "winter", "sensors": {"not_in": ["syn_optical"]}}
SUITE = {
    "name": "toy",
    "metric": "accuracy",
    "sensor_off": {"max_drop": 1.0},  # only the wiring is tested here: always passes
    "tests": [
        {"name": "everything", "min": 0.0},
        # Accuracy never exceeds 1: this test must fail.
        {"name": "impossible", "where": {"cloud_fraction": {"<": 0.05}}, "min": 1.01},
        # The winter place has every sensor: winter without optical selects nothing.
        {"name": "winter", "where": WINTER_NO_OPTICAL, "min": 0.5},
        {"name": "winter_allowed", "where": WINTER_NO_OPTICAL, "min": 0.5, "allow_empty": True},
    ],
}


@pytest.fixture(scope="module")
def result(small_data: LabelledData) -> SuiteResult:
    return run_suite(Suite.from_dict(SUITE), BandStatistics(small_data.specs), small_data)


def test_scores_are_the_probe_on_the_slice(
    small_data: LabelledData, test_chips: list[Sample], result: SuiteResult
) -> None:
    stats = BandStatistics(small_data.specs)
    train = embed_dataset(stats, small_data.train)
    test = embed_dataset(stats, test_chips)
    assert train.y is not None and test.y is not None
    probe = KNNProbe().fit(train.x, train.y)
    table = field_table(test_chips, small_data.class_names)
    clear = [i for i, row in enumerate(table) if row.get("cloud_fraction", 1.0) < 0.05]
    expected = probe.score(test.x[clear], test.y[clear])["accuracy"]
    tests = {r.test.name: r for r in result.results}
    impossible = tests["impossible"]
    assert impossible.index.tolist() == clear and impossible.value == pytest.approx(expected)
    assert impossible.status == "fail" and not impossible.ok
    assert impossible.reasons == [f"accuracy {expected:.3f} < min 1.01"]
    assert tests["everything"].status == "pass" and tests["everything"].n == len(test_chips)


def test_empty_slices_fail_unless_allowed(result: SuiteResult, test_chips: list[Sample]) -> None:
    tests = {r.test.name: r for r in result.results}
    winter, allowed = tests["winter"], tests["winter_allowed"]
    assert winter.status == allowed.status == "empty" and winter.n == 0
    assert not winter.ok and allowed.ok
    # Each condition alone keeps some chips; the values the data holds are listed.
    table = field_table(test_chips, ("water", "forest", "grassland", "cropland", "urban", "bare"))
    n_winter = sum(row["season"] == "winter" for row in table)
    n_no_optical = sum("syn_optical" not in row["sensors"] for row in table)
    assert n_winter and n_no_optical
    seasons = "['autumn', 'spring', 'summer', 'winter']"
    assert f"season == 'winter' keeps {n_winter}; values: {seasons}" in winter.reasons[0]
    assert f"sensors not_in ['syn_optical'] keeps {n_no_optical}" in winter.reasons[0]
    # everything, three sensors off pass; impossible and winter fail; winter_allowed is skipped
    assert (result.total, result.passed, result.failed, result.skipped) == (7, 4, 2, 1)
    assert result.summary() == "Data unit tests passed: 4 / 7 (1 empty, allowed)"


def test_sensor_off_slices_are_generated(
    small_data: LabelledData, test_chips: list[Sample], result: SuiteResult
) -> None:
    generated = [r for r in result.results if r.test.generated]
    assert [r.test.name for r in generated] == ["syn_optical_off", "syn_sar_off", "syn_thermal_off"]
    for r in generated:
        (sensor,) = r.test.slice.off
        have = [i for i, s in enumerate(test_chips) if sensor in s.sensors and len(s.sensors) > 1]
        assert r.index.tolist() == have and r.reference is not None
        assert r.x.shape[0] == len(have)
    # Switching the optical sensor off changes the optical columns of the features.
    optical = result.results[[r.test.name for r in result.results].index("syn_optical_off")]
    full = embed_dataset(BandStatistics(small_data.specs), [test_chips[i] for i in optical.index])
    assert not np.allclose(full.x, optical.x)


def test_failures_are_mined_and_drawn(result: SuiteResult, tmp_path: Path) -> None:
    failing = next(r for r in result.results if r.test.name == "impossible")
    mining = failing.mining
    assert mining is not None
    assert mining.n_failures == int((failing.y_true != failing.y_pred).sum())
    assert set(mining.worst.tolist()) <= set(failing.index.tolist())
    assert mining.neighbours.shape[0] == len(mining.worst) and mining.harmful
    png = write_contact_sheet(result, failing, tmp_path / "impossible.png")
    assert png.stat().st_size > 10_000 and mining.sheet == png
    assert mining.to_dict()["contact_sheet"] == str(png)
    assert all(r.mining is None for r in result.results if r.status != "fail")


def test_junit_xml_parses_and_counts(result: SuiteResult, tmp_path: Path) -> None:
    path = write_junit(result, tmp_path / "junit.xml")
    root = ET.parse(path).getroot()
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == "toy"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("7", "2", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert len(cases) == 7
    impossible = cases["impossible"].find("failure")
    assert impossible is not None and impossible.get("type") == "threshold"
    assert "< min 1.01" in impossible.get("message", "")
    winter = cases["winter"].find("failure")
    assert winter is not None and winter.get("type") == "empty"
    assert cases["winter_allowed"].find("skipped") is not None
    assert cases["everything"].find("failure") is None


def test_printed_table(result: SuiteResult) -> None:
    console = Console(width=200, record=True)
    print_result(result, console)
    text = console.export_text()
    assert "Data unit tests passed: 4 / 7" in text and "FAIL" in text and "EMPTY" in text
    assert "most harmful training samples (TracIn)" in text


def test_basicmotions_suite_on_band_statistics(shared_data: Path) -> None:
    data = load_labelled(shared_data / "imu" / "BasicMotions_TRAIN.ts")
    suite = load_suite(CONFIGS / "datatest_basicmotions.yaml")
    result = run_suite(suite, BandStatistics(data.specs), data, mine=False)
    tests = {r.test.name: r for r in result.results}
    assert result.total == 10 and all(r.status != "empty" for r in result.results)
    assert tests["accelerometer_off"].n == tests["gyroscope_off"].n == 40
    assert tests["standing"].n == 10 and tests["moving_without_gyroscope"].n == 30
    assert all(r.mining is None for r in result.results)
