"""Slices: which test samples a data unit test scores, and which of their sensors it switches off.

A slice is a conjunction of conditions over sample fields (:mod:`fusion.datatest.fields`),
written in a suite as ``field: condition``:

- ``site: 3`` or ``label: water``: equality; ``season: [winter, spring]``: membership.
- ``cloud_fraction: {"<": 0.2}``; a bin: ``cloud_fraction: {">=": 0.2, "<": 0.5}``.
- operators: ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not_in``.

For a list-valued field (``sensors``, a multi-label ``label``) ``==`` and ``in`` mean "holds
(any of)", ``!=`` and ``not_in`` "holds none of": ``sensors: syn_thermal`` selects the samples
that carry the thermal sensor, ``sensors: {not_in: [syn_thermal]}`` those that do not.

Switching a sensor *off* is different from selecting samples without it: the slice keeps the
samples that carry the sensor and something else, and removes the sensor from them, so the same
scenes are scored with and without it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fusion.data.sample import Sample
from fusion.datatest.errors import SuiteError

__all__ = ["OPERATORS", "Condition", "Slice", "parse_where"]

_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
#: Every operator a condition may use.
OPERATORS = ("==", "!=", *_ORDER, "in", "not_in")


def _comparable(a: Any, b: Any) -> bool:
    """Both numbers (bools excluded) or both strings (ISO times order as text)."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    return numbers or (isinstance(a, str) and isinstance(b, str))


def _values(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _equal(a: Any, b: Any) -> bool:
    # YAML reads ``site: 3`` as an int while a reader may store "3": compare as text then.
    return bool(a == b) or (not isinstance(a, bool) and str(a) == str(b))


@dataclass(frozen=True)
class Condition:
    """One test of one field: ``field op value``.

    Args:
        field: the field name.
        op: one of :data:`OPERATORS`.
        value: what to compare with (a list for ``in`` and ``not_in``).
    """

    field: str
    op: str
    value: Any

    def __call__(self, fields: Mapping[str, Any]) -> bool:
        """Whether a sample with these fields satisfies the condition (never, if it lacks the
        field)."""
        if self.field not in fields:
            return False
        have = fields[self.field]
        if self.op in _ORDER:
            if isinstance(have, list):
                return False
            return _comparable(have, self.value) and _ORDER[self.op](have, self.value)
        wanted = self.value if self.op in ("in", "not_in") else [self.value]
        held = have if isinstance(have, list) else [have]
        hit = any(_equal(h, w) for h in held for w in wanted)
        return hit if self.op in ("==", "in") else not hit

    def describe(self) -> str:
        """``cloud_fraction < 0.2``, ``season in ['winter']``."""
        return f"{self.field} {self.op} {self.value!r}"


def _conditions(name: str, spec: Any, *, test: str) -> list[Condition]:
    if isinstance(spec, list):
        return [Condition(name, "in", spec)]
    if not isinstance(spec, Mapping):
        return [Condition(name, "==", spec)]
    out = []
    for op, value in spec.items():
        if op not in OPERATORS:
            raise SuiteError(
                f"test {test!r}: unknown operator {op!r} on {name!r}; expected one of "
                f"{list(OPERATORS)}"
            )
        if op in ("in", "not_in") and not isinstance(value, list):
            value = [value]
        if op in _ORDER and (isinstance(value, bool) or not isinstance(value, int | float | str)):
            raise SuiteError(
                f"test {test!r}: {name} {op} needs a number (or an ISO time), got {value!r}"
            )
        out.append(Condition(name, str(op), value))
    if not out:
        raise SuiteError(f"test {test!r}: an empty condition on {name!r}")
    return out


def parse_where(where: Any, *, test: str) -> tuple[Condition, ...]:
    """Conditions of a suite's ``where:`` mapping (``None``: every sample).

    Raises:
        SuiteError: ``where`` is not a mapping, or an operator is unknown or misused.
    """
    if where is None:
        return ()
    if not isinstance(where, Mapping):
        raise SuiteError(
            f"test {test!r}: 'where' maps field names to conditions, got {type(where).__name__}"
        )
    return tuple(c for name, spec in where.items() for c in _conditions(str(name), spec, test=test))


@dataclass(frozen=True)
class Slice:
    """The test samples a data unit test scores.

    Args:
        conditions: all must hold (none: every test sample).
        off: sensors switched off (removed from the selected samples).
    """

    conditions: tuple[Condition, ...] = ()
    off: tuple[str, ...] = field(default_factory=tuple)

    @property
    def fields(self) -> list[str]:
        """Fields the conditions read."""
        return sorted({c.field for c in self.conditions})

    def mask(self, table: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Bool ``(N,)``: which samples (rows of a field table) the slice selects.

        With sensors switched off, only samples that carry one of them and keep another
        are selected: a sample without them would be scored unchanged, and one with nothing
        left cannot be embedded.
        """
        keep = np.array([all(c(row) for c in self.conditions) for row in table], dtype=bool)
        if self.off:
            off = set(self.off)
            keep &= np.array(
                [
                    bool(off & set(row["sensors"])) and bool(set(row["sensors"]) - off)
                    for row in table
                ],
                dtype=bool,
            )
        return keep

    def explain_empty(self, table: Sequence[Mapping[str, Any]], *, shown: int = 8) -> str:
        """Why nothing matches: how many samples each condition keeps alone, and the values
        the data holds for fields with few of them (a misspelt class name shows up here)."""
        parts = []
        for c in self.conditions:
            hits = sum(c(row) for row in table)
            seen = sorted(
                {str(v) for row in table if c.field in row for v in _values(row[c.field])}
            )
            values = f"; values: {seen}" if 0 < len(seen) <= shown else ""
            parts.append(f"{c.describe()} keeps {hits}{values}")
        if self.off:
            parts.append(
                f"samples with {' or '.join(self.off)} and another sensor: "
                f"{int(Slice(off=self.off).mask(table).sum())}"
            )
        return "; ".join(parts)

    def apply(self, sample: Sample) -> Sample:
        """The sample as this slice scores it (its switched-off sensors removed)."""
        return sample.without(*self.off) if self.off else sample

    def describe(self) -> str:
        """Human-readable: ``cloud_fraction >= 0.2 and syn_thermal off``."""
        parts = [c.describe() for c in self.conditions]
        parts += [f"{s} off" for s in self.off]
        return " and ".join(parts) or "all test samples"
