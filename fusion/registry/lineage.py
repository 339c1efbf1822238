"""Lineage of a version: the fingerprint of its data, and what differs between two versions."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fusion.registry.blobs import sha256_file
from fusion.registry.records import ModelVersion

__all__ = ["data_files", "data_fingerprint", "diff_versions", "flatten"]


def data_files(source: str | Path) -> list[Path]:
    """The files a data source consists of: a file (and, for a UEA ``*_TRAIN.ts``, its
    ``*_TEST.ts`` sibling) or every file under a folder, sorted."""
    path = Path(source)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    files = [path]
    if path.name.endswith("_TRAIN.ts"):
        test = path.with_name(path.name.replace("_TRAIN", "_TEST"))
        if test.is_file():
            files.append(test)
    return files


def data_fingerprint(source: str | Path) -> dict[str, Any]:
    """sha256 over the names and contents of a data source's files.

    A source that is not a path (``"synthetic"``: data generated from a name and a seed) is
    fingerprinted by its name, and says so.

    Returns:
        ``{"source", "sha256", "files", "bytes"}`` (plus ``"generated": True`` for named
        sources).
    """
    path = Path(source)
    digest = hashlib.sha256()
    if not path.exists():
        digest.update(f"generated:{source}".encode())
        return {
            "source": str(source),
            "sha256": digest.hexdigest(),
            "files": 0,
            "bytes": 0,
            "generated": True,
        }
    files = data_files(path)
    base = path if path.is_dir() else path.parent
    total = 0
    for f in files:
        # The relative name takes part: renaming a class folder changes the labels.
        digest.update(f.relative_to(base).as_posix().encode() + b"\0")
        digest.update(sha256_file(f).encode() + b"\n")
        total += f.stat().st_size
    return {"source": str(path), "sha256": digest.hexdigest(), "files": len(files), "bytes": total}


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts → ``{"a.b.c": leaf}`` (lists stay leaves)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Keys whose values differ: ``{"a", "b"}`` and ``"delta"`` (b − a) when both are numbers."""
    fa, fb = flatten(a), flatten(b)
    out: dict[str, Any] = {}
    for key in sorted(set(fa) | set(fb)):
        va, vb = fa.get(key), fb.get(key)
        if va == vb:
            continue
        row: dict[str, Any] = {"a": va, "b": vb}
        na, nb = _number(va), _number(vb)
        if na is not None and nb is not None:
            row["delta"] = nb - na
        out[key] = row
    return out


_BUDGET_KEYS = ("fits", "flash_bytes", "ram_bytes", "arena_bytes", "weight_bytes", "target")


def diff_versions(a: ModelVersion, b: ModelVersion) -> dict[str, Any]:
    """What differs from version ``a`` to version ``b``: metrics, sensors, budget fit, lineage
    and tags (each section lists only the keys that differ; ``delta`` is b − a)."""
    sensors_a, sensors_b = a.sensors, b.sensors
    budget_a = {k: v for k, v in (a.budget or {}).items() if k in _BUDGET_KEYS}
    budget_b = {k: v for k, v in (b.budget or {}).items() if k in _BUDGET_KEYS}
    same_data = (a.data or {}).get("sha256") == (b.data or {}).get("sha256")
    return {
        "a": a.ref,
        "b": b.ref,
        "metrics": _changes(a.metrics, b.metrics),
        "sensors": {
            "added": sorted(set(sensors_b) - set(sensors_a)),
            "removed": sorted(set(sensors_a) - set(sensors_b)),
            "changed": {
                n: {"a": sensors_a[n], "b": sensors_b[n]}
                for n in sorted(set(sensors_a) & set(sensors_b))
                if sensors_a[n] != sensors_b[n]
            },
        },
        "budget": _changes(budget_a, budget_b),
        "lineage": {
            "parent": {"a": a.parent, "b": b.parent},
            "same_data": same_data,
            "data": {"a": a.data, "b": b.data},
        },
        "tags": _changes(a.tags, b.tags),
        "files_changed": sorted(
            p for p in set(a.files) | set(b.files) if a.files.get(p) != b.files.get(p)
        ),
    }
