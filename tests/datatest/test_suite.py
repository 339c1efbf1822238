"""Suite files: parsing, the generated sensor-off tests, and named errors for bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fusion.datatest import (
    DataTest,
    Suite,
    SuiteError,
    UnknownFieldError,
    UnknownMetricError,
    UnknownSensorError,
    load_suite,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _suite(**spec: Any) -> Suite:
    return Suite.from_dict({"name": "s", "metric": "accuracy", **spec})


def test_the_shipped_suites_load() -> None:
    synthetic = load_suite(CONFIGS / "datatest_synthetic.yaml")
    assert synthetic.name == "synthetic" and synthetic.data == "synthetic"
    cloudy = next(t for t in synthetic.tests if t.name == "cloudy")
    assert cloudy.slice.describe() == "cloud_fraction >= 0.2" and cloudy.minimum == 0.5
    winter = next(t for t in synthetic.tests if t.name == "winter")
    assert winter.slice.describe() == "season == 'winter'" and not winter.allow_empty
    assert (winter.minimum, winter.max_drop) == (0.5, 0.2)
    imu = load_suite(CONFIGS / "datatest_basicmotions.yaml")
    names = [t.name for t in imu.expand(["accelerometer", "gyroscope"])]
    assert names[-2:] == ["accelerometer_off", "gyroscope_off"] and len(names) == 10


def test_sensor_off_tests_are_generated_unless_written_or_disabled() -> None:
    suite = _suite(tests=[{"name": "sar_off", "switch_off": "sar", "min": 0.1}])
    tests = suite.expand(["optical", "sar"])
    assert [t.name for t in tests] == ["sar_off", "optical_off"]
    generated = tests[1]
    assert generated.generated and generated.slice.off == ("optical",)
    assert generated.max_drop == 0.2 and generated.minimum is None  # the default rule
    custom = _suite(sensor_off={"min": 0.5, "metric": "macro_f1"}).expand(["a"])
    assert (custom[0].metric, custom[0].minimum, custom[0].max_drop) == ("macro_f1", 0.5, None)
    assert _suite(sensor_off=False, tests=[{"name": "t", "min": 0}]).expand(["a"])[0].name == "t"


def test_thresholds_min_max_and_drop() -> None:
    t = DataTest.from_dict({"name": "t", "min": 0.5, "max_drop": 0.1}, default_metric="accuracy")
    assert t.failures(0.8, reference=0.85) == []
    assert t.failures(0.45, reference=0.5) == ["accuracy 0.450 < min 0.5"]
    assert "0.200 worse than 0.800" in t.failures(0.6, reference=0.8)[0]
    rmse = DataTest.from_dict(
        {"name": "r", "metric": "rmse", "max": 2, "max_drop": 0.5}, default_metric=None
    )
    assert rmse.failures(1.5, reference=1.2) == []  # lower is better: 0.3 worse is allowed
    assert len(rmse.failures(2.5, reference=1.2)) == 2
    assert rmse.failures(float("nan")) == ["rmse is undefined on this slice", "rmse nan > max 2"]


def test_unknown_metric_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownMetricError, match=r"unknown metric 'acc'.*'accuracy'.*'rmse'"):
        _suite(tests=[{"name": "t", "metric": "acc", "min": 0.5}])
    suite = _suite(tests=[{"name": "t", "metric": "rmse", "max": 1}])
    with pytest.raises(UnknownMetricError, match=r"not reported for classification.*'macro_f1'"):
        suite.check(suite.tests, task="classification", fields={"label"}, sensors={"a"})


def test_unknown_field_names_the_field_and_the_fields_the_data_has() -> None:
    suite = _suite(tests=[{"name": "far", "where": {"distance_m": {">": 100}}, "min": 0.5}])
    with pytest.raises(UnknownFieldError) as err:
        suite.check(suite.tests, task="classification", fields={"label", "site"}, sensors=set())
    assert err.value.field == "distance_m" and err.value.available == ["label", "site"]
    assert "test 'far'" in str(err.value) and "['label', 'site']" in str(err.value)


def test_unknown_sensor_switched_off() -> None:
    suite = _suite(tests=[{"name": "t", "switch_off": ["radar"], "min": 0.5}])
    with pytest.raises(UnknownSensorError, match=r"\['radar'\].*\['optical', 'sar'\]"):
        suite.check(suite.tests, task="classification", fields=set(), sensors={"sar", "optical"})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"tests": [{"name": "t"}]}, "has no threshold"),
        ({"tests": [{"min": 0.5}]}, "with a 'name'"),
        ({"tests": [{"name": "t", "min": "high"}]}, "min must be a number"),
        ({"tests": [{"name": "t", "min": 0.5}, {"name": "t", "min": 0.4}]}, "more than once"),
        ({"tests": [{"name": "t", "min": 0.5, "treshold": 1}]}, r"unknown key\(s\) \['treshold'\]"),
        ({"tests": [{"name": "t", False: ["sar"], "min": 0.5}]}, "quote keys such as 'off'"),
        ({"sensor_off": False}, "holds no test"),
        ({"probe": "finetune"}, "unknown probe 'finetune'"),
        ({"sensor_off": {"min": 0.5, "max_dorp": 1}}, "sensor_off: unknown key"),
    ],
)
def test_malformed_suites_are_refused_with_a_reason(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        _suite(**spec)


def test_an_unreadable_suite_file_is_a_suite_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tests: [unclosed\n")
    with pytest.raises(SuiteError, match=r"bad\.yaml"):
        load_suite(bad)
    with pytest.raises(SuiteError, match=r"missing\.yaml"):
        load_suite(tmp_path / "missing.yaml")
