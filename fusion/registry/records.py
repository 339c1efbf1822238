"""What the registry returns: a registered version and one move of an alias."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fusion.registry.refs import SemVer

__all__ = ["AliasEvent", "ModelVersion"]


@dataclass(frozen=True)
class ModelVersion:
    """One registered version and everything known about it.

    Args:
        name: the model name.
        version: its semantic version.
        created_at: ISO 8601 UTC time of registration.
        parent: ``NAME:VERSION`` it was derived from (calibration, fine-tuning), or ``None``.
        data: fingerprint of the data it was made from (``{"source", "sha256", "files"}``).
        metrics: free-form JSON metrics (e.g. site accuracy before and after calibration).
        budget: the budget report (``fits``, ``flash_bytes``, ``ram_bytes`` …) or ``None``.
        sensors: sensor → stream keys it expects.
        description: free text.
        files: relative path → ``(sha256, size in bytes)``.
        tags: key → value (mutable metadata).
        aliases: the aliases pointing at this version now.
    """

    name: str
    version: SemVer
    created_at: str
    parent: str | None
    data: dict[str, Any] | None
    metrics: dict[str, Any]
    budget: dict[str, Any] | None
    sensors: dict[str, list[str]]
    description: str
    files: dict[str, tuple[str, int]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        """``NAME:VERSION``."""
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "name": self.name,
            "version": str(self.version),
            "created_at": self.created_at,
            "parent": self.parent,
            "data": self.data,
            "metrics": self.metrics,
            "budget": self.budget,
            "sensors": self.sensors,
            "description": self.description,
            "files": {p: {"sha256": d, "size": s} for p, (d, s) in self.files.items()},
            "tags": self.tags,
            "aliases": list(self.aliases),
        }


@dataclass(frozen=True)
class AliasEvent:
    """One move of an alias: ``promote`` (to ``version`` from ``previous``) or ``rollback``."""

    name: str
    alias: str
    action: str
    version: str
    previous: str | None
    at: str
    undone: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alias": self.alias,
            "action": self.action,
            "version": self.version,
            "previous": self.previous,
            "at": self.at,
            "undone": self.undone,
        }
