"""Students in the registry: register a student directory with its lineage, load one back.

A registered student version holds exactly the files of a student directory
(:func:`~fusion.deploy.student_io.save_student`: ``student.json``, ``weights.pt``,
``student_int8.npz`` and, when trained, ``baseline_int8.npz``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from fusion.data.specs import SensorSpec
from fusion.deploy.student_io import StudentBundle, load_student, save_student
from fusion.registry.errors import VersionExistsError
from fusion.registry.lineage import data_fingerprint
from fusion.registry.records import ModelVersion
from fusion.registry.store import Registry

__all__ = ["load_registered", "register_student"]

#: Tries of a default (next free) version when concurrent writers take it first.
_NEXT_VERSION_TRIES = 5


def register_student(
    registry: Registry,
    name: str,
    student: str | Path | StudentBundle,
    *,
    version: str | None = None,
    bump: Literal["major", "minor", "patch"] = "minor",
    parent: str | None = None,
    data: str | Path | None = None,
    metrics: Mapping[str, Any] | None = None,
    target: str = "m4-256k",
    description: str = "",
    tags: Mapping[str, str] | None = None,
) -> ModelVersion:
    """Register a student (a directory or an in-memory bundle) as ``name:version``.

    Args:
        registry: the registry.
        name: model name.
        student: a student directory or a :class:`StudentBundle` (saved to a temporary folder).
        version: ``MAJOR.MINOR.PATCH``; ``None`` takes the next free one (``bump`` of the
            highest, ``1.0.0`` for a new name), retrying if another writer takes it first.
        bump: which part a default version increments.
        parent: the version this one derives from.
        data: the data source it was trained or calibrated on (default: the one the student
            names), fingerprinted with :func:`~fusion.registry.lineage.data_fingerprint`.
        metrics: JSON metrics.
        target: MCU target of the recorded budget fit (weights and arena; code not measured).
        description: free text.
        tags: initial tags.

    Raises:
        VersionExistsError: ``version`` is given and already registered.
        StudentStoreError: the directory is not a readable student.
    """
    from fusion.deploy.budget import budget_report

    with tempfile.TemporaryDirectory(prefix="fusion-register-") as tmp:
        if isinstance(student, StudentBundle):
            bundle = student
            folder = save_student(bundle, Path(tmp) / "student")
        else:
            folder = Path(student)
            bundle = load_student(folder)
        source = data if data is not None else bundle.meta.get("data")
        report = budget_report(bundle.quantized, target, sensors=bundle.sensors, measure=False)
        fields: dict[str, Any] = {
            "parent": parent,
            "data": data_fingerprint(source) if source is not None else None,
            "metrics": metrics,
            "budget": report.to_dict(),
            "sensors": {k: list(v) for k, v in bundle.sensors.items()},
            "description": description,
            "tags": tags,
        }
        if version is not None:
            return registry.register(name, version, folder, **fields)
        for attempt in range(_NEXT_VERSION_TRIES):
            try:
                return registry.register(name, registry.next_version(name, bump), folder, **fields)
            except VersionExistsError:
                if attempt + 1 == _NEXT_VERSION_TRIES:
                    raise
    raise AssertionError("unreachable")  # pragma: no cover


def load_registered(
    registry: Registry,
    ref: str | ModelVersion,
    *,
    expect: Mapping[str, SensorSpec] | Iterable[str] | None = None,
) -> tuple[ModelVersion, StudentBundle]:
    """The version ``ref`` names and its student, read from files checked against their sha256.

    Raises:
        UnknownModelError, UnknownVersionError, UnknownAliasError: the reference names nothing.
        RegistryCorruptError: a stored file is missing or altered.
        StudentSensorError: the student was built for other sensors than ``expect``.
    """
    mv = ref if isinstance(ref, ModelVersion) else registry.resolve(ref)
    with tempfile.TemporaryDirectory(prefix="fusion-checkout-") as tmp:
        folder = registry.checkout(mv, Path(tmp) / "student")
        bundle = load_student(folder, expect=expect)  # reads every file into memory
    bundle.meta = {**bundle.meta, "registry_ref": mv.ref}
    return mv, bundle
