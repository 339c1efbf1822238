"""Deployable bundles: what the manifest records, predictions through pre- and post-processing,
the .tflite present or its absence explained, and tampered bundles refused with what differs."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fusion.deploy.errors import DeployError, StudentInputError
from fusion.deploy.golden import golden_forward
from fusion.deploy.student_io import StudentBundle
from fusion.registry import (
    BundleChecksumError,
    BundleFormatError,
    BundleSensorError,
    RegistryError,
)
from fusion.registry.bundle import build_bundle, inspect_bundle, load_bundle, verify_bundle
from tests.registry.site_data import imu_cases


@pytest.fixture(scope="module")
def bundle_file(general_student: StudentBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "imu-1.0.0.zip"
    build_bundle(
        general_student,
        out,
        model={"ref": "imu:1.0.0", "parent": None},
        thresholds={"min_confidence": 0.5},
        tflite=False,
    )
    return out


def rewrite(src: Path, dst: Path, changes: dict[str, bytes | None]) -> Path:
    """Copy a zip, replacing members (``None`` drops one; a new name adds one)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename in changes:
                data = changes[info.filename]
                if data is not None:
                    zout.writestr(info.filename, data)
            else:
                zout.writestr(info, zin.read(info.filename))
        for name, data in changes.items():
            if name not in zin.namelist() and data is not None:
                zout.writestr(name, data)
    return dst


def test_manifest_records_everything(bundle_file: Path, general_student: StudentBundle) -> None:
    info = inspect_bundle(bundle_file)
    m = info["manifest"]
    assert info["checksums"] == "ok" and m["format"] == "fusion-bundle"
    assert m["toolkit_version"] and m["model"]["ref"] == "imu:1.0.0"
    assert m["sensors"] == {
        "accelerometer": {"accelerometer": ["accel_x", "accel_y", "accel_z"]},
        "gyroscope": {"gyroscope": ["gyro_x", "gyro_y", "gyro_z"]},
    }
    pre = m["preprocessing"]["streams"]["accelerometer"]
    stats = general_student.specs["accelerometer"].stats
    assert stats is not None and pre["mean"] == list(stats.mean) and pre["input_shape"] == [3, 100]
    assert m["preprocessing"]["stream_order"] == ["accelerometer", "gyroscope"]
    post = m["postprocessing"]
    assert post["label_map"] == {"0": "still", "1": "walk", "2": "run"}
    assert post["thresholds"] == {"min_confidence": 0.5}
    assert m["tflite"] == {"included": False, "reason": "not requested"}
    assert set(m["members"]) == {
        "student/student.json",
        "student/weights.pt",
        "student/student_int8.npz",
        "c/fusion_student.c",
        "c/fusion_student.h",
        "c/fusion_student_weights.h",
    }
    assert all(len(v["sha256"]) == 64 for v in m["members"].values())
    assert verify_bundle(bundle_file)["ok"]


def test_predictions_match_the_student(bundle_file: Path, general_student: StudentBundle) -> None:
    bundle = load_bundle(bundle_file, expect=general_student.specs)
    cases, _ = imu_cases(2, seed=5)
    pred = bundle.predictor("int8")
    for case in cases:
        inputs = {"accelerometer": case[:3].tolist(), "gyroscope": case[3:].tolist()}
        answer = pred.predict(inputs)
        # Same answer as normalising by hand and running the golden model.
        x = pred.normalise(inputs)
        q = general_student.quantized
        raw = golden_forward(q, q.quantize_inputs(x), {k: np.ones(1, bool) for k in x})
        assert answer["prediction"] == int(raw[0].argmax())  # dequantising keeps the order
        assert answer["model"] == "imu:1.0.0" and answer["label"] in ("still", "walk", "run")
        assert answer["accepted"] == (answer["confidence"] >= 0.5)
    one = bundle.predictor("float").predict({"gyroscope": cases[0][3:].tolist()})
    assert one["streams"] == ["gyroscope"] and abs(sum(one["scores"]) - 1) < 1e-6
    with pytest.raises(StudentInputError, match="not one this model takes"):
        pred.predict({"magnetometer": cases[0][:3].tolist()})
    with pytest.raises(StudentInputError, match=r"expected \(3, 100\)"):
        pred.predict({"accelerometer": cases[0][:3, :50].tolist()})


def test_tflite_absence_is_recorded(
    general_student: StudentBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fusion.deploy.student_io as student_io

    def unavailable() -> None:
        raise DeployError("the .tflite export needs the optional 'tflite' extra")

    monkeypatch.setattr(student_io, "tflite_exporter", unavailable)
    m = build_bundle(general_student, tmp_path / "b.zip")  # default: include when available
    assert m["tflite"]["included"] is False and "tflite' extra" in m["tflite"]["reason"]
    assert not any(k.startswith("tflite/") for k in m["members"])
    with pytest.raises(RegistryError, match="required"):
        build_bundle(general_student, tmp_path / "c.zip", tflite=True)
    assert not (tmp_path / "c.zip").exists()


@pytest.mark.slow
def test_tflite_included_when_available(general_student: StudentBundle, tmp_path: Path) -> None:
    pytest.importorskip("litert_torch")
    m = build_bundle(general_student, tmp_path / "b.zip", tflite=True)
    assert m["tflite"]["included"] and "tflite/fusion_student.tflite" in m["members"]
    assert verify_bundle(tmp_path / "b.zip")["ok"]


def test_tampered_bundles_are_refused(bundle_file: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(bundle_file) as zf:
        doc = json.loads(zf.read("student/student.json"))
        manifest = json.loads(zf.read("manifest.json"))
    doc["meta"]["class_names"] = ["still", "walk", "sprint"]
    edited = rewrite(bundle_file, tmp_path / "edited.zip", {
        "student/student.json": json.dumps(doc).encode()
    })  # fmt: skip
    with pytest.raises(
        BundleChecksumError, match=r"student/student\.json has sha256 \w+, the manifest says"
    ):
        load_bundle(edited)
    extra = rewrite(bundle_file, tmp_path / "extra.zip", {"c/backdoor.c": b"int x;"})
    with pytest.raises(BundleChecksumError, match=r"c/backdoor\.c is not in the manifest"):
        verify_bundle(extra)
    missing = rewrite(bundle_file, tmp_path / "missing.zip", {"c/fusion_student.c": None})
    with pytest.raises(BundleChecksumError, match=r"c/fusion_student\.c is missing"):
        verify_bundle(missing)
    # A manifest edited without its digest, then a consistent forgery of the sensors.
    manifest["sensors"]["accelerometer"]["accelerometer"] = ["accel_z", "accel_y", "accel_x"]
    body = json.dumps(manifest).encode()
    loose = rewrite(bundle_file, tmp_path / "loose.zip", {"manifest.json": body})
    with pytest.raises(BundleChecksumError, match=r"manifest\.sha256 says"):
        verify_bundle(loose)
    forged = rewrite(bundle_file, tmp_path / "forged.zip", {
        "manifest.json": body, "manifest.sha256": hashlib.sha256(body).hexdigest().encode()
    })  # fmt: skip
    with pytest.raises(BundleSensorError, match="has bands accel_x/accel_y/accel_z, expected"):
        load_bundle(forged)
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bundle_file.read_bytes()[:-200])
    with pytest.raises((BundleFormatError, BundleChecksumError)):
        load_bundle(damaged)
    with pytest.raises(BundleFormatError, match="no bundle"):
        load_bundle(tmp_path / "nothing.zip")


def test_other_sensors_are_refused(bundle_file: Path) -> None:
    with pytest.raises(BundleSensorError, match="missing sensor gyroscope"):
        load_bundle(bundle_file, expect=["accelerometer"])
    with pytest.raises(BundleSensorError, match="unexpected sensor magnetometer"):
        load_bundle(bundle_file, expect=["accelerometer", "gyroscope", "magnetometer"])
