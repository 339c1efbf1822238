"""Model names, semantic versions, tags and references (``NAME:1.4.0``, ``NAME@production``).

A reference names one registered version:

* ``NAME:MAJOR.MINOR.PATCH`` — that version;
* ``NAME@ALIAS`` — the version the alias points to now (``production``, ``staging`` …);
* ``NAME`` — the highest version of the model.

Tags are ``KEY:VALUE`` (or ``KEY=VALUE``) pairs on a version, e.g. ``site:highway-3``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from fusion.registry.errors import BadReferenceError

__all__ = ["ModelRef", "SemVer", "check_alias", "check_name", "parse_ref", "parse_tag"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_TAG_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")


def check_name(name: str) -> str:
    """Return ``name`` if it is a model name (lower case, digits, ``. _ -``; ≤ 64 characters).

    Raises:
        BadReferenceError: it is not.
    """
    if not _NAME.match(name):
        raise BadReferenceError(
            f"model name {name!r} must be lower-case letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit, at most 64 characters)"
        )
    return name


def check_alias(alias: str) -> str:
    """Return ``alias`` if it is an alias name (a letter, then letters, digits, ``. _ -``).

    Raises:
        BadReferenceError: it is not (e.g. it looks like a version).
    """
    if not _ALIAS.match(alias):
        raise BadReferenceError(
            f"alias {alias!r} must start with a letter and hold only letters, digits, '.', '_' "
            "or '-'"
        )
    return alias


@dataclass(frozen=True, order=True)
class SemVer:
    """A semantic version ``MAJOR.MINOR.PATCH`` (ordered numerically: 1.10.0 > 1.9.0)."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> SemVer:
        """Raises:
        BadReferenceError: ``text`` is not ``MAJOR.MINOR.PATCH`` (no leading zeros)."""
        m = _SEMVER.match(text.strip())
        if m is None:
            raise BadReferenceError(
                f"version {text!r} is not MAJOR.MINOR.PATCH (e.g. 1.4.0, no leading zeros)"
            )
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)))

    def bump(self, part: Literal["major", "minor", "patch"]) -> SemVer:
        """The next version: ``major`` → X+1.0.0, ``minor`` → X.Y+1.0, ``patch`` → X.Y.Z+1."""
        if part == "major":
            return SemVer(self.major + 1, 0, 0)
        if part == "minor":
            return SemVer(self.major, self.minor + 1, 0)
        return SemVer(self.major, self.minor, self.patch + 1)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference: exactly one of ``version`` and ``alias`` is set, or neither (the
    highest version)."""

    name: str
    version: SemVer | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def parse_ref(text: str) -> ModelRef:
    """Parse ``NAME:VERSION``, ``NAME@ALIAS`` or ``NAME`` (see the module docstring).

    Raises:
        BadReferenceError: saying which part is malformed.
    """
    text = text.strip()
    if "@" in text:
        name, _, alias = text.partition("@")
        return ModelRef(check_name(name), alias=check_alias(alias))
    if ":" in text:
        name, _, version = text.partition(":")
        return ModelRef(check_name(name), version=SemVer.parse(version))
    return ModelRef(check_name(text))


def parse_tag(text: str) -> tuple[str, str]:
    """``KEY:VALUE`` or ``KEY=VALUE`` → ``(key, value)`` (split at the first separator).

    Raises:
        BadReferenceError: no separator, an empty value or a malformed key.
    """
    cut = min((i for i in (text.find(":"), text.find("=")) if i >= 0), default=-1)
    if cut < 0:
        raise BadReferenceError(f"tag {text!r} must be KEY:VALUE or KEY=VALUE (site:highway-3)")
    key, value = text[:cut].strip(), text[cut + 1 :].strip()
    if not _TAG_KEY.match(key) or not value:
        raise BadReferenceError(
            f"tag {text!r}: the key must start with a letter (letters, digits, '.', '_', '-') "
            "and the value must not be empty"
        )
    return key, value
