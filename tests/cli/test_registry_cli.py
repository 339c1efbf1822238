"""`fusion registry …`, `fusion calibrate`, `fusion bundle …` and `fusion serve` end to end on a
small generated IMU student, with --json, and every bad input answered by a named error and
exit status 2."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from fusion.deploy.student_io import save_student
from tests.registry.conftest import train_student
from tests.registry.site_data import GENERAL, HIGHWAY, write_site

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("single_thread")


def run(*args: str | Path) -> tuple[int, str]:
    """Exit status and output, with the console's line wrapping undone."""
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def run_json(*args: str | Path) -> Any:
    result = runner.invoke(app, [*map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A registry holding imu:1.0.0 (the general student), the site's data, a work folder."""
    root = tmp_path_factory.mktemp("registry-cli")
    general = write_site(root / "general", "General", GENERAL, seed=0, n_train=20, n_test=12)
    site = write_site(root / "highway", "Highway", HIGHWAY, seed=7)
    student = save_student(train_student(general), root / "student")
    reg = root / "reg"
    mv = run_json("registry", "register", student, "--name", "imu", "--version", "1.0.0",
                  "--registry", reg, "--tag", "owner:ops")  # fmt: skip
    assert mv["ref"] == "imu:1.0.0" and mv["tags"] == {"owner": "ops"}
    assert mv["budget"]["fits"] and mv["data"]["files"] == 2  # TRAIN and TEST fingerprinted
    return {"root": root, "reg": reg, "student": student, "site": site}


def test_registry_commands(world: dict[str, Path]) -> None:
    reg = world["reg"]
    code, text = run("registry", "register", world["student"], "--name", "imu", "--version",
                     "1.0.0", "--registry", reg)  # fmt: skip
    assert code == 2 and "VersionExistsError" in text and "imu:1.1.0 instead" in text
    assert run_json("registry", "register", world["student"], "--name", "imu", "--registry", reg,
                    "--parent", "imu:1.0.0")["ref"] == "imu:1.1.0"  # fmt: skip
    listed = run_json("registry", "list", "--registry", reg)
    assert [v["ref"] for v in listed] == ["imu:1.0.0", "imu:1.1.0"]
    tagged = run_json("registry", "tag", "imu:1.1.0", "site:lab", "--registry", reg)
    assert tagged["tags"] == {"site": "lab"}
    assert [v["ref"] for v in run_json("registry", "list", "--tag", "site:lab", "--registry", reg)]
    assert (
        run_json("registry", "promote", "imu:1.0.0", "production", "--registry", reg)["previous"]
        is None
    )
    moved = run_json("registry", "promote", "imu:1.1.0", "production", "--registry", reg)
    assert (moved["version"], moved["previous"]) == ("1.1.0", "1.0.0")
    back = run_json("registry", "rollback", "imu", "production", "--registry", reg)
    assert (back["action"], back["version"]) == ("rollback", "1.0.0")
    shown = run_json("registry", "show", "imu@production", "--registry", reg)
    assert shown["ref"] == "imu:1.0.0" and len(shown["alias_history"]) == 3
    diff = run_json("registry", "diff", "imu:1.0.0", "imu:1.1.0", "--registry", reg)
    assert (
        diff["lineage"]["parent"] == {"a": None, "b": "imu:1.0.0"} and diff["files_changed"] == []
    )
    code, text = run("registry", "show", "imu:1.0.0", "--registry", reg)
    assert code == 0 and "imu:1.0.0" in text and "accelerometer" in text


def test_calibrate_registers_a_site_version(world: dict[str, Path]) -> None:
    reg = world["reg"]
    report = run_json("calibrate", "--base", "imu:1.0.0", "--site", "highway-3", "--data",
                      world["site"], "--registry", reg, "--version", "1.4.0")  # fmt: skip
    scores = report["scores"]
    general = scores["general"]["all_sensors"]["int8"]
    calibrated = scores["calibrated"]["all_sensors"]["int8"]
    print(f"site highway-3 held-out int8 accuracy: general {general:.3f} → {calibrated:.3f}")
    assert report["registered"] == "imu:1.4.0" and calibrated > general + 0.3
    shown = run_json("registry", "show", "imu:1.4.0", "--registry", reg)
    assert shown["parent"] == "imu:1.0.0" and shown["tags"] == {"site": "highway-3"}
    assert shown["data"]["source"] == str(world["site"])
    assert shown["metrics"]["calibration"]["scores"]["calibrated"]["all_sensors"]["int8"] == (
        calibrated
    )
    found = run_json("registry", "list", "--tag", "site:highway-3", "--registry", reg)
    assert [v["ref"] for v in found] == ["imu:1.4.0"]
    diff = run_json("registry", "diff", "imu:1.0.0", "imu:1.4.0", "--registry", reg)
    assert "calibration.gain_int8_points" in diff["metrics"]
    code, text = run("calibrate", "--base", "imu:1.0.0", "--site", "depot", "--data",
                     world["root"] / "depot_TRAIN.ts", "--registry", reg)  # fmt: skip
    assert code == 2 and "SiteDataError" in text and "depot" in text
    code, text = run("calibrate", "--base", "imu:7.0.0", "--site", "depot", "--data",
                     world["site"], "--registry", reg)  # fmt: skip
    assert code == 2 and "UnknownVersionError" in text
    code, text = run("calibrate", "--base", "imu:1.0.0", "--site", "depot", "--data",
                     world["site"], "--registry", reg, "--adapt", "weights")  # fmt: skip
    assert code == 2 and "CalibrationError" in text


def test_bundle_build_inspect_verify(world: dict[str, Path]) -> None:
    reg, out = world["reg"], world["root"] / "imu.zip"
    built = run_json("bundle", "build", "--ref", "imu:1.0.0", "--out", out, "--no-tflite",
                     "--registry", reg, "--min-confidence", "0.4")  # fmt: skip
    assert built["manifest"]["model"]["ref"] == "imu:1.0.0"
    info = run_json("bundle", "inspect", out)
    assert info["checksums"] == "ok" and info["manifest"]["tflite"]["included"] is False
    assert run_json("bundle", "verify", out, "--sensors", "accelerometer,gyroscope")["ok"]
    code, text = run("bundle", "verify", out, "--sensors", "accelerometer")
    assert code == 2 and "BundleSensorError" in text and "missing sensor gyroscope" in text
    tampered = world["root"] / "tampered.zip"
    with zipfile.ZipFile(out) as zin, zipfile.ZipFile(tampered, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            zout.writestr(item, data + b"\n" if item.filename == "c/fusion_student.h" else data)
    code, text = run("bundle", "verify", tampered)
    assert code == 2 and "BundleChecksumError" in text and "c/fusion_student.h" in text
    code, text = run("bundle", "inspect", tampered)
    assert code == 0 and "c/fusion_student.h has sha256" in text
    code, text = run("bundle", "verify", world["root"] / "nothing.zip")
    assert code == 2 and "BundleFormatError" in text


def test_bad_input_is_named(world: dict[str, Path]) -> None:
    reg, missing = world["reg"], world["root"] / "no-registry"
    cases = [
        (("registry", "list", "--registry", missing), "RegistryNotFoundError"),
        (("registry", "show", "imu:9.9.9", "--registry", reg), "UnknownVersionError"),
        (("registry", "show", "imu:1.0", "--registry", reg), "BadReferenceError"),
        (("registry", "show", "cam", "--registry", reg), "UnknownModelError"),
        (("registry", "promote", "imu:1.0.0", "1st", "--registry", reg), "BadReferenceError"),
        (("registry", "rollback", "imu", "staging", "--registry", reg), "UnknownAliasError"),
        (("registry", "tag", "imu:1.0.0", "site", "--registry", reg), "BadReferenceError"),
        (("serve", "--registry", missing), "RegistryNotFoundError"),
        (("serve", "--registry", reg, "--site", "lab"), "RegistryError"),
        (
            (
                "bundle",
                "build",
                "--ref",
                "imu@nope",
                "--out",
                world["root"] / "x.zip",
                "--registry",
                reg,
            ),
            "UnknownAliasError",
        ),
    ]
    for args, error in cases:
        code, text = run(*args)
        assert code == 2 and error in text, (args, code, text)
    assert not (world["root"] / "x.zip").exists()
