"""A distilled student on disk: one directory, written atomically, refused for other sensors.

Layout of a student directory (format version 1)::

    student.json        format, version, toolkit version, student config, sensor specs with the
                        teacher's normalisation statistics, sensor → stream keys, input shapes,
                        task and class names, teacher path, data, steps, losses, int8 layouts
    weights.pt          float state dicts: "student" and (optionally) "baseline"
    student_int8.npz    arrays of the full-int8 student (weights, biases, multipliers, shifts)
    baseline_int8.npz   the same for the baseline student (optional)

:func:`save_student` writes every file into a temporary folder beside the target, then renames it
into place, so an interrupted save never leaves a half directory (an existing directory is
replaced only once the new one is complete).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from fusion.data.specs import SensorSpec
from fusion.deploy.errors import StudentSensorError, StudentStoreError
from fusion.deploy.int8 import QConv, QParams, QPool, QStem, QuantizedStudent
from fusion.deploy.student import Student

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "StudentBundle",
    "atomic_dir",
    "describe_sensors",
    "export_student",
    "load_student",
    "quantized_from_dict",
    "quantized_to_dict",
    "save_student",
    "tflite_exporter",
]

FORMAT = "fusion-student"
FORMAT_VERSION = 1


@dataclass
class StudentBundle:
    """Everything a deployed student needs and what it came from.

    Args:
        student: the float student (eval mode), with its task head when the data had labels.
        quantized: its full-int8 form (the golden model and the C export read it).
        specs: sensor name → spec with the teacher's normalisation statistics.
        input_shapes: stream key → per-sample input shape fixed at export.
        meta: toolkit version, teacher, data, steps, task, class names, losses.
        baseline: the same architecture trained without sensor dropout (missing sensors are
            zero-filled at evaluation), if one was trained.
        baseline_quantized: its int8 form.
    """

    student: Student
    quantized: QuantizedStudent
    specs: dict[str, SensorSpec]
    input_shapes: dict[str, tuple[int, ...]]
    meta: dict[str, Any] = field(default_factory=dict)
    baseline: Student | None = None
    baseline_quantized: QuantizedStudent | None = None

    @property
    def sensors(self) -> dict[str, tuple[str, ...]]:
        """Sensor name → the stream keys of it the student has a stem for (spec order)."""
        keys = set(self.student.keys)
        out = {}
        for name, spec in self.specs.items():
            streams = tuple(s.key for s in spec.streams() if s.key in keys)
            if streams:
                out[name] = streams
        return out

    @property
    def task(self) -> str | None:
        task = self.meta.get("task")
        return None if task is None else str(task)

    @property
    def class_names(self) -> tuple[str, ...] | None:
        names = self.meta.get("class_names")
        return None if names is None else tuple(str(n) for n in names)

    def expected(self) -> dict[str, dict[str, list[str]]]:
        """Sensor → stream key → band names the student was built for."""
        bands = {s.key: list(s.bands) for s in self.student.cfg.stems}
        return {name: {k: bands[k] for k in keys} for name, keys in self.sensors.items()}

    def check_sensors(self, specs: Mapping[str, SensorSpec] | Iterable[str]) -> None:
        """Refuse data (or a caller) naming sensors, streams or bands other than the student's.

        Raises:
            StudentSensorError: listing what the student was built for and what was given.
        """
        expected = self.expected()
        if isinstance(specs, Mapping):
            given = {
                name: {s.key: list(s.band_names) for s in spec.streams()}
                for name, spec in specs.items()
            }
            same = set(given) == set(expected) and all(
                given[n].get(k) == b for n in expected for k, b in expected[n].items()
            )
        else:
            names = sorted(set(specs))
            given = {n: {} for n in names}
            same = names == sorted(expected)
        if not same:
            raise StudentSensorError(
                f"this student was built for sensors {describe_sensors(expected)}; "
                f"got {describe_sensors(given)}"
            )


def describe_sensors(sensors: Mapping[str, Mapping[str, list[str]]]) -> str:
    """``name (stream: band/band, …); …`` (no square brackets: consoles read them as markup)."""
    parts = []
    for name in sorted(sensors):
        streams = ", ".join(f"{k}: {'/'.join(b)}" for k, b in sensors[name].items())
        parts.append(f"{name} ({streams})" if streams else name)
    return "; ".join(parts) or "none"


# --- QuantizedStudent <-> plain data + arrays -----------------------------------------------------


def _conv_to(layer: QConv, prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    for name in ("weight", "bias", "multiplier", "shift", "weight_scale"):
        arrays[f"{prefix}.{name}"] = np.asarray(getattr(layer, name))
    return {
        "kind": layer.kind,
        "in_shape": list(layer.in_shape),
        "out_shape": list(layer.out_shape),
        "stride": layer.stride,
        "input": layer.input.to_dict(),
        "output": layer.output.to_dict(),
        "act_min": layer.act_min,
        "act_max": layer.act_max,
        "prefix": prefix,
    }


def _qp(data: Mapping[str, Any]) -> QParams:
    return QParams(scale=float(data["scale"]), zero_point=int(data["zero_point"]))


def _conv_from(data: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> QConv:
    p = str(data["prefix"])
    kind: Literal["dw", "pw", "dense"]
    kind = "dw" if data["kind"] == "dw" else ("pw" if data["kind"] == "pw" else "dense")
    return QConv(
        kind=kind,
        in_shape=tuple(int(v) for v in data["in_shape"]),
        out_shape=tuple(int(v) for v in data["out_shape"]),
        stride=int(data["stride"]),
        weight=np.asarray(arrays[f"{p}.weight"], dtype=np.int8),
        bias=np.asarray(arrays[f"{p}.bias"], dtype=np.int32),
        multiplier=np.asarray(arrays[f"{p}.multiplier"], dtype=np.int32),
        shift=np.asarray(arrays[f"{p}.shift"], dtype=np.int32),
        input=_qp(data["input"]),
        output=_qp(data["output"]),
        act_min=int(data["act_min"]),
        act_max=int(data["act_max"]),
        weight_scale=np.asarray(arrays[f"{p}.weight_scale"], dtype=np.float64),
    )


def quantized_to_dict(q: QuantizedStudent) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Plain (JSON) data and named arrays that :func:`quantized_from_dict` turns back into an
    identical :class:`QuantizedStudent`."""
    arrays: dict[str, np.ndarray] = {}
    stems = []
    for i, stem in enumerate(q.stems):
        p = stem.pool
        stems.append(
            {
                "key": stem.key,
                "kind": stem.kind,
                "input": stem.input.to_dict(),
                "input_shape": list(stem.input_shape),
                "layers": [
                    _conv_to(layer, f"s{i}.l{j}", arrays) for j, layer in enumerate(stem.layers)
                ],
                "pool": {
                    "in_shape": list(p.in_shape),
                    "count": p.count,
                    "multiplier": p.multiplier,
                    "shift": p.shift,
                    "input": p.input.to_dict(),
                    "output": p.output.to_dict(),
                },
            }
        )
    meta = {
        "stems": stems,
        "fused": q.fused.to_dict(),
        "head": None if q.head is None else _conv_to(q.head, "head", arrays),
        "output": q.output.to_dict(),
        "student_config": q.student_config,
    }
    return meta, arrays


def quantized_from_dict(
    meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> QuantizedStudent:
    stems = []
    for s in meta["stems"]:
        p = s["pool"]
        kind: Literal["raster", "timeseries"] = "raster" if s["kind"] == "raster" else "timeseries"
        stems.append(
            QStem(
                key=str(s["key"]),
                kind=kind,
                input=_qp(s["input"]),
                input_shape=tuple(int(v) for v in s["input_shape"]),
                layers=[_conv_from(layer, arrays) for layer in s["layers"]],
                pool=QPool(
                    in_shape=tuple(int(v) for v in p["in_shape"]),
                    count=int(p["count"]),
                    multiplier=int(p["multiplier"]),
                    shift=int(p["shift"]),
                    input=_qp(p["input"]),
                    output=_qp(p["output"]),
                ),
            )
        )
    head = meta.get("head")
    return QuantizedStudent(
        stems=stems,
        fused=_qp(meta["fused"]),
        head=None if head is None else _conv_from(head, arrays),
        output=_qp(meta["output"]),
        student_config=dict(meta.get("student_config", {})),
    )


# --- directories ---------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Any:
    """Yield a temporary folder beside ``path``; on success rename it to ``path`` (replacing an
    existing folder only then), on any error remove it, so no half folder is ever left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.{os.getpid()}.old"
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_student(bundle: StudentBundle, path: str | Path) -> Path:
    """Write a student directory atomically (see the module docstring) and return its path."""
    path = Path(path)
    q_meta, q_arrays = quantized_to_dict(bundle.quantized)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": bundle.student.config(),
        "specs": [s.to_dict() for s in bundle.specs.values()],
        "sensors": {k: list(v) for k, v in bundle.sensors.items()},
        "input_shapes": {k: list(v) for k, v in bundle.input_shapes.items()},
        "meta": bundle.meta,
        "int8": q_meta,
        "baseline": None,
    }
    states = {"student": bundle.student.state_dict()}
    with atomic_dir(path) as tmp:
        if bundle.baseline is not None:
            states["baseline"] = bundle.baseline.state_dict()
            doc["baseline"] = {"config": bundle.baseline.config()}
            if bundle.baseline_quantized is not None:
                b_meta, b_arrays = quantized_to_dict(bundle.baseline_quantized)
                doc["baseline"]["int8"] = b_meta
                np.savez(tmp / "baseline_int8.npz", **_any(b_arrays))
        torch.save(states, tmp / "weights.pt")
        np.savez(tmp / "student_int8.npz", **_any(q_arrays))
        (tmp / "student.json").write_text(json.dumps(doc, indent=2, default=_jsonable))
    return path


def _any(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    return dict(arrays)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def load_student(
    path: str | Path, *, expect: Mapping[str, SensorSpec] | Iterable[str] | None = None
) -> StudentBundle:
    """Read a student directory written by :func:`save_student`.

    Args:
        path: the directory.
        expect: sensor specs (or sensor names) the caller will feed; a student built for other
            sensors, streams or bands is refused.

    Raises:
        StudentStoreError: the directory is missing, incomplete or of another format.
        StudentSensorError: the student was built for other sensors than ``expect`` (both listed).
    """
    path = Path(path)
    doc_path = path / "student.json"
    if not doc_path.is_file():
        raise StudentStoreError(f"{path} is not a student directory (no student.json)")
    try:
        doc = json.loads(doc_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise StudentStoreError(f"cannot read {doc_path}: {err}") from err
    if doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
        raise StudentStoreError(
            f"{doc_path} has format {doc.get('format')!r} version {doc.get('format_version')!r}; "
            f"expected {FORMAT!r} version {FORMAT_VERSION}"
        )
    try:
        states = torch.load(path / "weights.pt", map_location="cpu", weights_only=True)
        student = Student.from_config(doc["config"])
        student.load_state_dict(states["student"])
        q = quantized_from_dict(doc["int8"], _npz(path / "student_int8.npz"))
        baseline = baseline_q = None
        if doc.get("baseline"):
            baseline = Student.from_config(doc["baseline"]["config"])
            baseline.load_state_dict(states["baseline"])
            baseline.eval()
            if doc["baseline"].get("int8"):
                baseline_q = quantized_from_dict(
                    doc["baseline"]["int8"], _npz(path / "baseline_int8.npz")
                )
        specs = {d["name"]: SensorSpec.from_dict(d, source=doc_path) for d in doc["specs"]}
    except (OSError, KeyError, RuntimeError, ValueError) as err:
        raise StudentStoreError(
            f"student directory {path} is incomplete or damaged: {err}"
        ) from err
    bundle = StudentBundle(
        student=student.eval(),
        quantized=q,
        specs=specs,
        input_shapes={k: tuple(int(v) for v in s) for k, s in doc["input_shapes"].items()},
        meta=dict(doc.get("meta", {})),
        baseline=baseline,
        baseline_quantized=baseline_q,
    )
    if expect is not None:
        bundle.check_sensors(expect)
    return bundle


def export_student(
    bundle: StudentBundle,
    out_dir: str | Path,
    fmt: str = "c",
    *,
    name: str = "fusion_student",
    policy: Any = None,
    calibration: Any = None,
) -> dict[str, Any]:
    """Export a student into ``out_dir`` atomically: everything is written into a temporary
    folder beside it, then renamed, so a failed export never leaves a half artefact.

    Args:
        bundle: the student.
        out_dir: the folder to create (an existing one is replaced once the new one is complete).
        fmt: ``"c"`` (portable C99, :func:`~fusion.deploy.c_export.export_c`) or ``"tflite"``
            (``fusion.deploy.tflite.export_tflite(student, calibration, <name>.tflite)``, when
            that module and the optional ``tflite`` extra are installed).
        name: base name (a C identifier) of the files.
        policy: a :class:`~fusion.deploy.power.PowerPolicy` to write into the C export.
        calibration: ``(inputs, present)`` pairs of normalised tensors (``.tflite`` only).

    Raises:
        DeployError: unknown format, or the tflite exporter is not available.
    """
    from fusion.deploy.c_export import export_c
    from fusion.deploy.errors import DeployError

    if fmt not in ("c", "tflite"):
        raise DeployError(f"unknown export format {fmt!r}; expected 'c' or 'tflite'")
    exporter = tflite_exporter() if fmt == "tflite" else None
    if exporter is not None and calibration is None:
        raise DeployError("a .tflite export needs calibration batches (normalised samples)")
    out = Path(out_dir)
    summary: dict[str, Any] = {"format": fmt, "out": str(out)}
    with atomic_dir(out) as tmp:
        if exporter is not None:
            result = exporter(bundle.student, calibration, tmp / f"{name}.tflite")
            to_dict = getattr(result, "to_dict", None)
            summary["tflite"] = to_dict() if callable(to_dict) else str(result)
        else:
            header = source = ""
            if policy is not None:
                header, source = policy.c_code(name)
            exp = export_c(
                bundle.quantized, tmp, name=name, extra_header=header, extra_source=source
            )
            summary.update(
                {
                    "files": [out / p.name for p in exp.files],
                    "arena_bytes": exp.arena.total_bytes,
                    "weight_bytes": exp.weight_bytes,
                    "power_policy": policy is not None,
                }
            )
        (tmp / "student_meta.json").write_text(
            json.dumps(
                {
                    "sensors": {k: list(v) for k, v in bundle.sensors.items()},
                    "streams": list(bundle.quantized.keys),
                    "input_shapes": {k: list(v) for k, v in bundle.input_shapes.items()},
                    "class_names": bundle.meta.get("class_names"),
                    "meta": bundle.meta,
                },
                indent=2,
                default=_jsonable,
            )
        )
    summary["files"] = [str(p) for p in summary.get("files", sorted(out.iterdir()))]
    return summary


def tflite_exporter() -> Any:
    """``fusion.deploy.tflite.export_tflite`` when that module and its optional dependencies
    (the ``tflite`` extra: litert-torch, tflite-micro) are installed.

    Raises:
        DeployError: saying what is missing and that ``--format c`` works without it.
    """
    import importlib

    from fusion.deploy.errors import DeployError

    try:
        gate = importlib.import_module("fusion.deploy.tflite_model")
        if not gate.tflite_available():
            raise DeployError(
                "the .tflite export needs the optional 'tflite' extra (litert-torch, "
                "tflite-micro): pip install 'fusion[tflite]'; or use --format c"
            )
        module = importlib.import_module("fusion.deploy.tflite")
    except ImportError as err:
        raise DeployError(
            f"the .tflite exporter (fusion.deploy.tflite) is not available ({err}); use --format c"
        ) from err
    exporter = getattr(module, "export_tflite", None)
    if exporter is None:
        raise DeployError("fusion.deploy.tflite has no export_tflite(); use --format c")
    return exporter
