"""`fusion datatest` through the typer app: the shipped suites, exit codes, JUnit and errors."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from fusion.pretrain import PretrainConfig, pretrain
from tests.conftest import TINY_MODEL

runner = CliRunner()
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _run(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, ["datatest", *args, "--no-progress"])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def basicmotions(shared_data: Path) -> Path:
    return shared_data / "imu" / "BasicMotions_TRAIN.ts"


@pytest.fixture(scope="module")
def imu_checkpoint(basicmotions: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny encoder pretrained for three steps on the BasicMotions train split."""
    out = tmp_path_factory.mktemp("imu-runs")
    config = {**TINY_MODEL, "data": str(basicmotions), "out": str(out), "max_steps": 3}
    summary = pretrain(PretrainConfig.from_dict({**config, "name": "imu"}), progress=False)
    return Path(summary["checkpoint"])


def test_synthetic_suite_json_junit_and_contact_sheets(checkpoint: Path, tmp_path: Path) -> None:
    xml = tmp_path / "datatest.xml"
    code, out = _run(
        [
            "--suite", str(CONFIGS / "datatest_synthetic.yaml"), "--checkpoint", str(checkpoint),
            "--json", "--junit", str(xml), "--out", str(tmp_path / "sheets"),
        ]
    )  # fmt: skip
    report = json.loads(out)
    assert code == (0 if report["ok"] else 1), out
    tests = {t["name"]: t for t in report["tests"]}
    assert report["total"] == len(tests) == 15 and report["task"] == "classification"
    assert {"syn_optical_off", "syn_sar_off", "syn_thermal_off"} <= set(tests)
    assert all(t["status"] != "empty" for t in report["tests"])
    assert tests["syn_sar_off"]["n"] == report["n_test"] == 63
    assert tests["cloudy"]["n"] == 14 and tests["no_optical"]["n"] == 12
    # One place per season but summer (two): winter is place 2, spring and autumn places 1 and 3.
    assert tests["winter"]["n"] == 12
    assert tests["winter"]["reference"] == pytest.approx(tests["all_chips"]["value"])
    assert tests["spring_or_autumn"]["n"] == 24
    suite = ET.parse(xml).getroot().find("testsuite")
    assert suite is not None
    assert int(suite.get("tests", -1)) == report["total"]
    assert int(suite.get("failures", -1)) == report["failed"]
    assert int(suite.get("skipped", -1)) == report["skipped"] == 0
    for t in report["tests"]:
        if t["status"] == "fail":
            assert t["mining"]["worst"] and Path(t["mining"]["contact_sheet"]).is_file()


def test_a_failing_test_exits_1_with_the_count(
    imu_checkpoint: Path, basicmotions: Path, tmp_path: Path
) -> None:
    suite = tmp_path / "suite.yaml"
    tests = [
        {"name": "standing", "where": {"label": "Standing"}, "min": 0.0},
        {"name": "impossible", "min": 1.01},  # accuracy never exceeds 1
    ]
    suite.write_text(yaml.safe_dump({"name": "imu", "metric": "accuracy", "tests": tests}))
    args = ["--suite", str(suite), "--checkpoint", str(imu_checkpoint), "--data", str(basicmotions)]
    code, out = _run(
        [*args, "--out", str(tmp_path), "--worst", "3", "--junit", str(tmp_path / "j.xml")]
    )
    assert code == 1, out
    assert "impossible" in out and "< min 1.01" in out
    assert "Data unit tests passed: " in out and " / 4" in out  # 2 written + 2 sensor-off
    assert (tmp_path / "imu-impossible.png").stat().st_size > 10_000
    code, out = _run([*args, "--no-mine", "--json"])
    report = json.loads(out)
    assert code == 1 and report["tests"][1]["status"] == "fail"
    assert report["tests"][1]["mining"] is None


def test_the_basicmotions_suite_runs(imu_checkpoint: Path, basicmotions: Path) -> None:
    suite = CONFIGS / "datatest_basicmotions.yaml"
    code, out = _run(
        ["--suite", str(suite), "--checkpoint", str(imu_checkpoint), "--data", str(basicmotions),
         "--json", "--no-mine"]
    )  # fmt: skip
    report = json.loads(out)
    assert code == (0 if report["ok"] else 1)
    assert report["total"] == 10 and report["n_train"] == report["n_test"] == 40
    assert all(t["n"] > 0 for t in report["tests"])


def test_bad_input_gets_named_errors(
    imu_checkpoint: Path, basicmotions: Path, tmp_path: Path
) -> None:
    def run_suite(spec: dict[str, Any]) -> tuple[int, str]:
        path = tmp_path / "suite.yaml"
        path.write_text(yaml.safe_dump({"name": "bad", "metric": "accuracy", **spec}))
        args = ["--suite", str(path), "--checkpoint", str(imu_checkpoint)]
        return _run([*args, "--data", str(basicmotions)])

    code, out = run_suite(
        {"tests": [{"name": "cloudy", "where": {"cloud_fraction": {"<": 0.2}}, "min": 0.5}]}
    )
    assert code == 2 and "UnknownFieldError" in out and "'cloud_fraction'" in out
    assert "class_name" in out and "sensors" in out  # the fields the data has
    code, out = run_suite({"tests": [{"name": "t", "metric": "mAP", "min": 0.5}]})
    assert code == 2 and "UnknownMetricError" in out and "'macro_f1'" in out
    code, out = run_suite({"tests": [{"name": "t", "switch_off": "radar", "min": 0.5}]})
    assert code == 2 and "UnknownSensorError" in out and "accelerometer" in out
    code, out = run_suite({"tests": [{"name": "t", "metric": "accuarcy", "min": 0.5}]})
    assert code == 2 and "UnknownMetricError" in out
    code, out = run_suite({"tests": [{"name": "t"}]})
    assert code == 2 and "SuiteError" in out and "no threshold" in out
