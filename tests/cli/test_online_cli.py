"""`fusion online` end to end on a tiny BasicMotions student: --json keys, the plot, the C export,
and bad input (a stream with other channels, a bad drift) as one red line with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from fusion.data.labelled import load_labelled
from fusion.deploy.student_io import save_student
from tests.deploy.conftest import standardise
from tests.deploy.tiny import tiny_bundle

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def student(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny student (3 distillation steps) built for BasicMotions' accelerometer + gyroscope;
    it names no training data, so the head is warm-started on the stream."""
    data = load_labelled(shared_data / "imu" / "BasicMotions_TRAIN.ts")
    samples = standardise([data.train[i] for i in range(12)])
    return save_student(tiny_bundle(samples, steps=3), tmp_path_factory.mktemp("ol") / "student")


def _run(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, ["online", *args])
    return result.exit_code, result.output


def test_online_json_plot_and_c_export(student: Path, shared_data: Path, tmp_path: Path) -> None:
    plot = tmp_path / "online.png"
    code, out = _run(
        [
            "--student",
            str(student),
            "--stream",
            str(shared_data / "imu" / "BasicMotions_TEST.ts"),
            "--drift",
            "gain:accelerometer=0.2@30,nan:gyroscope=0.1@10",
            "--drift",
            "newclass:Running@50",
            "--length",
            "100",
            "--window",
            "25",
            "--horizon",
            "50",
            "--lr",
            "0.05",
            "--plot",
            str(plot),
            "--export-c",
            str(tmp_path / "c"),
            "--json",
        ]
    )
    assert code == 0, out
    report = json.loads(out)
    assert set(report) >= {
        "info",
        "drifts",
        "metric",
        "windows",
        "heldout",
        "recovery",
        "forgetting",
        "costs",
        "counters",
    }
    assert report["metric"] == "accuracy"
    assert [d["spec"] for d in report["drifts"]] == [
        "nan:gyroscope=0.1@10",
        "gain:accelerometer=0.2@30",
        "newclass:Running@50",
    ]
    assert report["windows"]["t_end"] == [25.0, 50.0, 75.0, 100.0]
    assert set(report["costs"]) >= {
        "ram_bytes",
        "ram_breakdown",
        "macs_per_update",
        "extractor_macs",
        "us_per_update_median",
    }
    assert report["costs"]["ram_bytes"] <= 8 * 1024
    assert report["counters"]["skipped_nan"] > 0
    assert "Running" in report["counters"]["classes"]
    assert report["recovery"][0]["drift"] == "gain:accelerometer=0.2@30"
    assert "stream rows" in report["info"]["warm_start"]
    assert plot.stat().st_size > 1000
    names = {Path(f).name for f in report["export_c"]}
    assert {"fusion_student_online.c", "fusion_student_online.h", "fusion_student.c"} <= names


def test_online_text_report(student: Path, shared_data: Path) -> None:
    code, out = _run(
        [
            "--student",
            str(student),
            "--stream",
            str(shared_data / "imu" / "BasicMotions_TEST.ts"),
            "--length",
            "40",
            "--head",
            "autoencoder",
            "--drift",
            "newclass:Badminton@10",
        ]
    )
    assert code == 0, out
    assert "autoencoder (auc)" in out and "µs (host, median)" in out


def test_stream_with_other_channels_exits_2(student: Path, shared_data: Path) -> None:
    code, out = _run(
        ["--student", str(student), "--stream", str(shared_data / "imu" / "S06R02E0.csv")]
    )
    assert code == 2
    assert "StreamChannelError" in out and "accel_x" in out and "ankle_horiz_fwd" in out


def test_bad_drift_exits_2(student: Path, shared_data: Path) -> None:
    stream = str(shared_data / "imu" / "BasicMotions_TEST.ts")
    code, out = _run(["--student", str(student), "--stream", stream, "--drift", "gain:radar=2@3"])
    assert code == 2
    assert "DriftSpecError" in out and "radar" in out
