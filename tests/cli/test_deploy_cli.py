"""`fusion distill / export / degrade / budget` end to end on the tiny synthetic checkpoint, with
--json, and bad input: a failing export leaves no half folder, other sensors are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("single_thread")


def _run(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, args)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def student(
    checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("deploy") / "student"
    code, text = _run(
        ["distill", "--teacher", str(checkpoint), "--out", str(out), "--steps", "2",
         "--batch-size", "8", "--json"]
    )  # fmt: skip
    assert code == 0, text
    return out, json.loads(text)


def test_distill_json(student: tuple[Path, dict[str, Any]]) -> None:
    out, summary = student
    assert (out / "student.json").is_file() and (out / "student_int8.npz").is_file()
    assert set(summary["sensors"]) == {"syn_optical", "syn_sar", "syn_thermal"}
    assert summary["meta"]["steps"] == 2 and summary["meta"]["task"] == "classification"
    assert summary["budget"]["fits"] and summary["budget"]["weight_bytes"]["total"] > 0
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_export_c_with_power_policy(student: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out = tmp_path / "c"
    power = Path(__file__).resolve().parents[2] / "configs" / "power_synthetic.yaml"
    code, text = _run(
        ["export", "--student", str(student[0]), "--format", "c", "--out", str(out),
         "--power", str(power), "--json"]
    )  # fmt: skip
    assert code == 0, text
    summary = json.loads(text)
    names = sorted(Path(f).name for f in summary["files"])
    assert names == ["fusion_student.c", "fusion_student.h", "fusion_student_weights.h"]
    assert "fusion_student_power_policy" in (out / "fusion_student.h").read_text()
    assert summary["power_policy"]["pareto_front"]
    assert (out / "student_meta.json").is_file()


def test_degrade_json_and_plot(student: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    png = tmp_path / "deg.png"
    code, text = _run(["degrade", "--student", str(student[0]), "--json", "--plot", str(png)])
    assert code == 0, text
    report = json.loads(text)
    assert len(report["student"]) == 7 and len(report["baseline"]) == 7
    assert report["curves"]["student_int8"]["off"] == [0, 1, 2]
    assert "single_sensor_off" in report["targets"]
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_budget_miss_exits_2_with_the_numbers(student: tuple[Path, dict[str, Any]]) -> None:
    code, text = _run(["budget", "--student", str(student[0]), "--target", "tiny:8:16"])
    assert code == 2
    assert "BudgetExceededError" in text and "over by" in text and "%" in text
    code, text = _run(["budget", "--student", str(student[0]), "--json"])
    assert code == 0 and json.loads(text)["fits"]


@pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="gcc-arm-none-eabi / qemu-system-arm not installed (apt-get install them)",
)
def test_firmware_runs_bit_exact_under_qemu(
    student: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    code, text = _run(
        ["firmware", "--student", str(student[0]), "--out", str(tmp_path), "--cases", "7",
         "--json"]
    )  # fmt: skip
    assert code == 0, text
    report = json.loads(text)
    assert report["qemu"]["passed"] and report["qemu"]["mismatches"] == 0
    fw = report["firmware"]
    assert fw["cpu"] == "cortex-m4" and fw["machine"] == "mps2-an386"
    assert fw["model_flash_bytes"] >= fw["weight_bytes"] and fw["ram_bytes"] >= fw["arena_bytes"]
    assert Path(fw["elf"]).is_file()


def test_failing_export_leaves_no_half_folder(
    student: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fusion.deploy.c_export as c_export

    real = c_export.export_c

    def broken(q: Any, out_dir: Any, *args: Any, **kwargs: Any) -> Any:
        real(q, out_dir, *args, **kwargs)  # the files are written, then something fails
        raise c_export.DeployError("disk full (simulated)")

    monkeypatch.setattr(c_export, "export_c", broken)
    out = tmp_path / "c"
    code, text = _run(["export", "--student", str(student[0]), "--out", str(out)])
    assert code == 2 and "disk full" in text
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a temporary one
    monkeypatch.undo()
    code, text = _run(["export", "--student", str(student[0]), "--out", str(out), "--name", "9x"])
    assert code == 2 and "C identifier" in text and not out.exists()


def test_tflite_without_the_extra_fails_cleanly(
    student: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tflite_model = pytest.importorskip("fusion.deploy.tflite_model")
    monkeypatch.setattr(tflite_model, "tflite_available", lambda: False)
    out = tmp_path / "tfl"
    code, text = _run(
        ["export", "--student", str(student[0]), "--format", "tflite", "--out", str(out)]
    )
    assert code == 2 and "tflite" in text and "--format c" in text
    assert list(tmp_path.iterdir()) == []


def test_student_for_other_sensors_is_refused(
    student: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    from fusion.deploy.student_io import save_student
    from tests.deploy.tiny import series_windows, tiny_bundle

    imu = save_student(tiny_bundle(series_windows(), steps=1), tmp_path / "imu")
    code, text = _run(["degrade", "--student", str(imu), "--data", "synthetic"])
    assert code == 2 and "StudentSensorError" in text
    assert "accelerometer" in text and "syn_optical" in text


def test_teacher_without_metadata(checkpoint: Path, tmp_path: Path) -> None:
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    del ckpt["fusion"]["specs"]
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    code, text = _run(["distill", "--teacher", str(bad), "--out", str(tmp_path / "s")])
    assert code == 2 and "TeacherError" in text and "sensor metadata" in text
    assert not (tmp_path / "s").exists()
