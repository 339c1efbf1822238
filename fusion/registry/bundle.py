"""The deployable bundle: one zip file holding everything a device or a server needs to run a
student, with a sha256 of every member.

Not to be confused with :class:`fusion.deploy.student_io.StudentBundle`, the *in-memory* student
(float and int8 forms, specs, metadata) that a student **directory** stores: a deployable
:class:`Bundle` is a single **file** that carries such a directory plus its exports and the
pre- and post-processing a device must apply around it.

Members (format version 1)::

    manifest.json       format, toolkit version, model reference and lineage, sensors (sensor →
                        stream → bands), sensor specs, pre-processing (band order, normalisation
                        statistics, input shapes, int8 input quantisation per stream; stream
                        order = present-mask bits), post-processing (task, label map, thresholds,
                        int8 output quantisation), budget fit, the C and .tflite entries, and
                        ``members``: path → sha256 and size of every other member
    manifest.sha256     sha256 of manifest.json
    student/…           the student directory (student.json, weights.pt, student_int8.npz …)
    c/<name>.c .h _weights.h   the portable C99 export
    tflite/<name>.tflite       the full-int8 .tflite, when the optional exporter is installed
                               (otherwise the manifest's ``tflite.reason`` says why it is absent)

Checksums detect corruption and edits; they are not a signature (whoever can rewrite the file
can rewrite the manifest too).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from fusion.data.errors import FusionDataError
from fusion.data.specs import SensorSpec
from fusion.deploy.errors import DeployError
from fusion.deploy.student_io import StudentBundle, describe_sensors, load_student, save_student
from fusion.files import atomic_write
from fusion.registry.blobs import CHUNK_BYTES, sha256_file
from fusion.registry.errors import (
    BundleChecksumError,
    BundleError,
    BundleFormatError,
    BundleSensorError,
)
from fusion.registry.predict import Engine, Predictor, postprocessing, preprocessing

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Bundle",
    "build_bundle",
    "inspect_bundle",
    "load_bundle",
    "sensor_differences",
    "verify_bundle",
]

FORMAT = "fusion-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest.sha256"
#: Fixed member time stamps: the same content gives the same zip bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)

Sensors = dict[str, dict[str, list[str]]]


@dataclass
class Bundle:
    """A verified deployable bundle, loaded.

    Args:
        path: the bundle file.
        manifest: its manifest.
        student: the student inside.
    """

    path: Path
    manifest: dict[str, Any]
    student: StudentBundle

    @property
    def model(self) -> str:
        """The registry reference it was built from, else the file name."""
        ref = (self.manifest.get("model") or {}).get("ref")
        return str(ref) if ref else self.path.name

    @property
    def sensors(self) -> Sensors:
        return dict(self.manifest["sensors"])

    def predictor(self, engine: Engine = "int8") -> Predictor:
        """A :class:`Predictor` applying the manifest's thresholds."""
        thresholds = self.manifest["postprocessing"].get("thresholds", {})
        return Predictor(self.student, self.model, engine, dict(thresholds))


# --- building ------------------------------------------------------------------------------------


def _tflite(
    student: StudentBundle, folder: Path, name: str, want: bool | None, data: str | None
) -> dict[str, Any]:
    """Export the ``.tflite`` into ``folder`` when wanted and possible; say why not otherwise.

    Raises:
        BundleError: it was required (``want=True``) and cannot be made.
    """
    if want is False:
        return {"included": False, "reason": "not requested"}
    try:
        from fusion.deploy.degradation import load_eval_data
        from fusion.deploy.distill import calibration_pairs
        from fusion.deploy.student_io import tflite_exporter

        exporter = tflite_exporter()
        if data is None and student.meta.get("data") is None:
            raise DeployError("no data to calibrate the .tflite on (give the student's data)")
        train, _ = load_eval_data(student, data, split="train")
        calibration = calibration_pairs(train, student.sensors, 64)
        folder.mkdir(parents=True, exist_ok=True)
        report = exporter(student.student, calibration, folder / f"{name}.tflite")
    except (DeployError, FusionDataError) as err:
        if want:
            raise BundleError(f"the .tflite export was required and failed: {err}") from err
        return {"included": False, "reason": str(err)}
    to_dict = getattr(report, "to_dict", None)
    return {
        "included": True,
        "file": f"tflite/{name}.tflite",
        "streams": list(student.quantized.keys),
        "report": to_dict() if callable(to_dict) else str(report),
    }


def _members(root: Path) -> dict[str, dict[str, Any]]:
    return {
        p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _write_zip(fh: BinaryIO, root: Path, manifest_bytes: bytes) -> None:
    digest = hashlib.sha256(manifest_bytes).hexdigest()
    with zipfile.ZipFile(fh, "w") as zf:
        for arcname, data in ((MANIFEST, manifest_bytes), (MANIFEST_DIGEST, digest.encode())):
            zf.writestr(zipfile.ZipInfo(arcname, _EPOCH), data, zipfile.ZIP_DEFLATED)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), _EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as src, zf.open(info, "w") as dst:
                for chunk in iter(lambda: src.read(CHUNK_BYTES), b""):
                    dst.write(chunk)


def build_bundle(
    student: StudentBundle,
    out: str | Path,
    *,
    model: Mapping[str, Any] | None = None,
    name: str = "fusion_student",
    thresholds: Mapping[str, float] | None = None,
    tflite: bool | None = None,
    data: str | None = None,
    target: str = "m4-256k",
) -> dict[str, Any]:
    """Write a deployable bundle file (atomically: a temporary file renamed into place).

    Args:
        student: the student.
        out: the bundle file to write (``.zip``).
        model: what it is: ``{"ref", "name", "version", "parent", "data", "tags"}`` from the
            registry (``ModelVersion.to_dict()`` works), or ``None``.
        name: base name of the C and ``.tflite`` files (a C identifier).
        thresholds: post-processing thresholds (``min_confidence``, 0 … 1).
        tflite: ``None`` includes the ``.tflite`` when the optional exporter is installed,
            ``True`` requires it, ``False`` leaves it out.
        data: labelled data to calibrate the ``.tflite`` on (default: the student's data).
        target: MCU target of the recorded budget fit.

    Returns:
        The manifest.

    Raises:
        BundleError: ``tflite=True`` and the ``.tflite`` cannot be made.
        DeployError: ``name`` is not a C identifier.
    """
    from fusion import __version__
    from fusion.deploy.budget import budget_report
    from fusion.deploy.c_export import export_c

    with tempfile.TemporaryDirectory(prefix="fusion-bundle-") as tmp:
        root = Path(tmp) / "bundle"
        save_student(student, root / "student")
        exp = export_c(student.quantized, root / "c", name=name)
        tflite_entry = _tflite(student, root / "tflite", name, tflite, data)
        report = budget_report(student.quantized, target, sensors=student.sensors, measure=False)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "toolkit_version": __version__,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "model": dict(model) if model is not None else None,
            "sensors": student.expected(),
            "specs": [spec.to_dict() for spec in student.specs.values()],
            "preprocessing": {
                "stream_order": list(student.quantized.keys),
                "streams": preprocessing(student),
            },
            "postprocessing": postprocessing(student, thresholds),
            "student": {"dir": "student/", "config": student.student.config()},
            "c": {
                "files": [f"c/{p.name}" for p in (exp.source, exp.header, exp.weights)],
                "arena_bytes": exp.arena.total_bytes,
                "weight_bytes": exp.weight_bytes,
            },
            "tflite": tflite_entry,
            "budget": report.to_dict(),
            "members": _members(root),
        }
        body = json.dumps(manifest, indent=2, default=str).encode()

        def write(fh: BinaryIO) -> None:
            _write_zip(fh, root, body)

        atomic_write(out, write, mode="wb")
    return manifest


# --- reading -----------------------------------------------------------------------------------


def _open(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise BundleFormatError(f"no bundle at {path}")
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise BundleFormatError(
            f"{path} is not a deployable bundle (not a zip file: {err})"
        ) from err


def _read(zf: zipfile.ZipFile, name: str, path: Path) -> bytes:
    try:
        return zf.read(name)
    except KeyError:
        raise BundleFormatError(f"{path} lacks {name}; it is not a deployable bundle") from None
    except (zipfile.BadZipFile, OSError, EOFError) as err:  # CRC mismatch, truncated data
        raise BundleChecksumError(f"{path}: member {name} is damaged ({err})") from err


def _manifest(zf: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    body = _read(zf, MANIFEST, path)
    stated = _read(zf, MANIFEST_DIGEST, path).decode(errors="replace").strip()
    actual = hashlib.sha256(body).hexdigest()
    if actual != stated:
        raise BundleChecksumError(
            f"{path}: {MANIFEST} has sha256 {actual}, {MANIFEST_DIGEST} says {stated}"
        )
    try:
        manifest: dict[str, Any] = json.loads(body)
    except json.JSONDecodeError as err:
        raise BundleFormatError(f"{path}: {MANIFEST} is not JSON: {err}") from err
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise BundleFormatError(
            f"{path} has format {manifest.get('format')!r} version "
            f"{manifest.get('format_version')!r}; expected {FORMAT!r} version {FORMAT_VERSION}"
        )
    return manifest


def verify_bundle(path: str | Path) -> dict[str, Any]:
    """Check every member of a bundle against the manifest's sha256 and size.

    Returns:
        ``{"path", "members", "bytes", "manifest_sha256", "ok": True}``.

    Raises:
        BundleFormatError: not a bundle, or of another format version.
        BundleChecksumError: naming every member that is missing, unlisted or differs, with the
            expected and actual sha256.
    """
    path = Path(path)
    with _open(path) as zf:
        manifest = _manifest(zf, path)
        listed: dict[str, dict[str, Any]] = manifest.get("members", {})
        present = set(zf.namelist()) - {MANIFEST, MANIFEST_DIGEST}
        problems = [f"{m} is missing" for m in sorted(set(listed) - present)]
        problems += [f"{m} is not in the manifest" for m in sorted(present - set(listed))]
        total = 0
        for member in sorted(present & set(listed)):
            digest = hashlib.sha256(_read(zf, member, path)).hexdigest()
            total += listed[member]["size"]
            if digest != listed[member]["sha256"]:
                problems.append(
                    f"{member} has sha256 {digest}, the manifest says {listed[member]['sha256']}"
                )
    if problems:
        raise BundleChecksumError(f"{path} fails its checksums: " + "; ".join(problems))
    return {
        "path": str(path),
        "members": len(listed),
        "bytes": total,
        "manifest_sha256": hashlib.sha256(
            json.dumps(manifest, sort_keys=True).encode()
        ).hexdigest(),
        "ok": True,
    }


def sensor_differences(built: Sensors, given: Sensors, *, names_only: bool = False) -> list[str]:
    """What differs between the sensors a bundle was built for and those given (empty when
    they match): sensors missing or unexpected, and per stream the band lists."""
    out = [f"missing sensor {n}" for n in sorted(set(built) - set(given))]
    out += [f"unexpected sensor {n}" for n in sorted(set(given) - set(built))]
    if names_only:
        return out
    for name in sorted(set(built) & set(given)):
        for key, bands in built[name].items():
            got = given[name].get(key)
            if got is None:
                out.append(f"sensor {name} lacks stream {key}")
            elif list(got) != list(bands):
                out.append(
                    f"sensor {name} stream {key} has bands {'/'.join(got)}, expected "
                    f"{'/'.join(bands)}"
                )
    return out


def _given(expect: Mapping[str, SensorSpec] | Iterable[str]) -> tuple[Sensors, bool]:
    if isinstance(expect, Mapping):
        return {
            n: {s.key: list(s.band_names) for s in spec.streams()} for n, spec in expect.items()
        }, False
    return {n: {} for n in expect}, True


def load_bundle(
    path: str | Path, *, expect: Mapping[str, SensorSpec] | Iterable[str] | None = None
) -> Bundle:
    """Verify a bundle's checksums, read its student and check its sensors.

    Args:
        path: the bundle file.
        expect: sensor specs (or names) the caller will feed.

    Raises:
        BundleFormatError, BundleChecksumError: see :func:`verify_bundle`.
        BundleSensorError: the manifest's sensors disagree with the student inside, or with
            ``expect`` (saying what differs).
    """
    path = Path(path)
    verify_bundle(path)
    with _open(path) as zf, tempfile.TemporaryDirectory(prefix="fusion-bundle-") as tmp:
        manifest = _manifest(zf, path)
        for member in manifest["members"]:
            if member.startswith("student/"):
                zf.extract(member, tmp)
        student = load_student(Path(tmp) / "student")
    built: Sensors = manifest["sensors"]
    inside = sensor_differences(built, student.expected())
    if inside:
        raise BundleSensorError(
            f"{path}: the manifest's sensors disagree with the student inside: " + "; ".join(inside)
        )
    if expect is not None:
        given, names_only = _given(expect)
        diff = sensor_differences(built, given, names_only=names_only)
        if diff:
            raise BundleSensorError(
                f"{path} was built for sensors {describe_sensors(built)}; "
                f"given {describe_sensors(given)}: " + "; ".join(diff)
            )
    return Bundle(path, manifest, student)


def inspect_bundle(path: str | Path) -> dict[str, Any]:
    """The manifest, the members with their sizes, and whether the checksums hold (an error
    message instead of raising)."""
    path = Path(path)
    with _open(path) as zf:
        manifest = _manifest(zf, path)
        sizes = {i.filename: i.file_size for i in zf.infolist()}
    try:
        verify_bundle(path)
        checks = "ok"
    except BundleChecksumError as err:
        checks = str(err)
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "checksums": checks,
        "sizes": sizes,
        "manifest": manifest,
    }
