"""Power policy: which sensors to keep on for a power budget.

Input: each sensor's power draw in mW (a YAML file, see ``configs/power_*.yaml``) and the task
accuracy of every non-empty sensor subset (the degradation table). The power of a subset is the
sum of its sensors' draws plus an optional constant ``mcu_mw`` (the microcontroller itself).

* :func:`pareto_front`: the subsets no other subset beats on both axes (at most the power and at
  least the accuracy, one strictly), most power first; along it, accuracy falls as power falls.
* :func:`switch_off_order`: as the battery drains and the budget falls, the subset to keep is the
  first front entry whose power fits; each step says which sensors go off (and, since the front
  need not be nested, which come back on).
* :meth:`PowerPolicy.c_code`: the same front as a C table the firmware looks up
  (``{power_mw_x10, present_mask, accuracy_permille}``, most power first) and
  ``<name>_policy_mask(budget_mw_x10)``, which returns the stream mask to pass to
  ``<name>_invoke`` (0 when even the cheapest subset does not fit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusion.deploy.errors import PowerConfigError

__all__ = [
    "PolicyEntry",
    "PowerModel",
    "PowerPolicy",
    "load_power",
    "pareto_front",
    "power_policy",
    "switch_off_order",
]

#: The C table stores power in tenths of a milliwatt in a uint16.
MAX_MW_X10 = 65535


@dataclass(frozen=True)
class PowerModel:
    """Sensor power draws.

    Args:
        sensors: sensor name → mW while on.
        mcu_mw: constant draw added to every subset (the MCU running inference).
        source: where the figures come from (file path).
        notes: sensor → provenance of the figure.
    """

    sensors: dict[str, float]
    mcu_mw: float = 0.0
    source: str = ""
    notes: dict[str, str] = field(default_factory=dict)

    def power(self, subset: Iterable[str]) -> float:
        """mW of a subset of sensors (plus ``mcu_mw``).

        Raises:
            PowerConfigError: a sensor has no figure.
        """
        total = self.mcu_mw
        for name in subset:
            if name not in self.sensors:
                raise PowerConfigError(
                    f"no power figure for sensor {name!r} in {self.source or 'the power model'}; "
                    f"it lists {sorted(self.sensors)}"
                )
            total += self.sensors[name]
        return total

    def check(self, sensors: Iterable[str]) -> None:
        """Refuse a model that lacks a figure for one of ``sensors``."""
        missing = sorted(set(sensors) - set(self.sensors))
        if missing:
            raise PowerConfigError(
                f"{self.source or 'the power model'} has no power figure for sensors {missing}; "
                f"it lists {sorted(self.sensors)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "sensors_mw": dict(self.sensors),
            "mcu_mw": self.mcu_mw,
            "source": self.source,
            "notes": dict(self.notes),
        }


def load_power(path: str | Path) -> PowerModel:
    """Read a power file::

        mcu_mw: 10.0            # optional
        sensors:
          accelerometer: 0.6    # mW, or {mw: 0.6, note: "BMI160 datasheet ..."}
          gyroscope: {mw: 2.8, note: "..."}

    Raises:
        PowerConfigError: unreadable file, missing ``sensors`` or a figure that is not a
            non-negative number.
    """
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise PowerConfigError(f"cannot read power file {path}: {err}") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("sensors"), dict) or not doc["sensors"]:
        raise PowerConfigError(f"{path}: a power file holds 'sensors: {{name: mW, ...}}'")
    sensors, notes = {}, {}
    for name, value in doc["sensors"].items():
        mw: Any = value.get("mw") if isinstance(value, dict) else value
        if isinstance(value, dict) and value.get("note"):
            notes[str(name)] = str(value["note"])
        try:
            mw_f = float(mw)
        except (TypeError, ValueError):
            raise PowerConfigError(f"{path}: power of {name!r} is not a number: {mw!r}") from None
        if not mw_f >= 0:
            raise PowerConfigError(f"{path}: power of {name!r} must be ≥ 0 mW, got {mw_f}")
        sensors[str(name)] = mw_f
    try:
        mcu = float(doc.get("mcu_mw", 0.0) or 0.0)
    except (TypeError, ValueError):
        raise PowerConfigError(f"{path}: mcu_mw is not a number") from None
    return PowerModel(sensors, mcu, str(path), notes)


@dataclass(frozen=True)
class PolicyEntry:
    """One sensor subset: its power, task accuracy and C stream mask."""

    sensors: tuple[str, ...]
    power_mw: float
    accuracy: float
    mask: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "sensors": list(self.sensors),
            "power_mw": round(self.power_mw, 4),
            "accuracy": self.accuracy,
            "present_mask": self.mask,
        }


def pareto_front(entries: Sequence[PolicyEntry]) -> list[PolicyEntry]:
    """Entries not dominated by another (≤ power and ≥ accuracy, one strictly), most power
    first. Of entries equal on both axes the one with fewer sensors (then the first) is kept."""
    ordered = sorted(entries, key=lambda e: (e.power_mw, -e.accuracy, len(e.sensors)))
    front: list[PolicyEntry] = []
    best = float("-inf")
    for e in ordered:  # cheapest first: keep an entry only if it beats every cheaper one
        if e.accuracy > best:
            front.append(e)
            best = e.accuracy
    return front[::-1]


def switch_off_order(front: Sequence[PolicyEntry]) -> list[dict[str, Any]]:
    """For the front (most power first): while the budget is at least ``min_budget_mw``, keep
    ``keep``; each step lists the sensors switched off (and back on) from the step before."""
    steps = []
    prev: set[str] | None = None
    for e in front:
        keep = set(e.sensors)
        steps.append(
            {
                "min_budget_mw": round(e.power_mw, 4),
                "keep": list(e.sensors),
                "switch_off": sorted(prev - keep) if prev is not None else [],
                "switch_on": sorted(keep - prev) if prev is not None else [],
                "accuracy": e.accuracy,
            }
        )
        prev = keep
    return steps


@dataclass
class PowerPolicy:
    """Every subset with its power and accuracy, the Pareto front and the switch-off order."""

    model: PowerModel
    entries: list[PolicyEntry]
    front: list[PolicyEntry]

    @property
    def order(self) -> list[dict[str, Any]]:
        return switch_off_order(self.front)

    def choose(self, budget_mw: float) -> PolicyEntry | None:
        """The subset to keep within ``budget_mw`` (``None``: nothing fits)."""
        for e in self.front:
            if e.power_mw <= budget_mw:
                return e
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "power": self.model.to_dict(),
            "subsets": [e.to_dict() for e in self.entries],
            "pareto_front": [e.to_dict() for e in self.front],
            "switch_off_order": self.order,
        }

    def c_code(self, name: str) -> tuple[str, str]:
        """``(header, source)`` C99 text of the lookup table and ``<name>_policy_mask``.

        Raises:
            PowerConfigError: a power above 6553.5 mW does not fit the uint16 table.
        """
        up = name.upper()
        rows = []
        for e in self.front:
            p = round(e.power_mw * 10)
            if p > MAX_MW_X10:
                raise PowerConfigError(
                    f"subset {'+'.join(e.sensors)} draws {e.power_mw} mW; the C table holds at "
                    f"most {MAX_MW_X10 / 10} mW"
                )
            acc = round(1000 * min(max(e.accuracy, 0.0), 1.0))
            rows.append(f"    {{{p}u, 0x{e.mask:08X}u, {acc}u}}, /* {'+'.join(e.sensors)} */")
        header = (
            "/* Power policy: the Pareto front of task accuracy against sensor power, most power\n"
            " * first. Keep the first entry whose power fits the budget: pass its present_mask\n"
            f" * to {name}_invoke. Power in 0.1 mW, accuracy in 1/1000. */\n"
            "typedef struct {\n    uint16_t power_mw_x10;\n    uint32_t present_mask;\n"
            f"    uint16_t accuracy_permille;\n}} {name}_power_entry;\n"
            f"#define {up}_POWER_POLICY_SIZE {len(rows)}\n"
            f"extern const {name}_power_entry {name}_power_policy[{up}_POWER_POLICY_SIZE];\n"
            "/* The present mask to use within budget_mw_x10 (0.1 mW); 0 if nothing fits. */\n"
            f"uint32_t {name}_policy_mask(uint32_t budget_mw_x10);\n\n"
        )
        source = (
            f"\n/* ---- power policy ({self.model.source or 'power model'}) ---- */\n"
            f"const {name}_power_entry {name}_power_policy[{up}_POWER_POLICY_SIZE] = {{\n"
            + "\n".join(rows)
            + "\n};\n\n"
            f"uint32_t {name}_policy_mask(uint32_t budget_mw_x10)\n{{\n"
            "    uint32_t i;\n"
            f"    for (i = 0u; i < (uint32_t){up}_POWER_POLICY_SIZE; ++i) {{\n"
            f"        if ((uint32_t){name}_power_policy[i].power_mw_x10 <= budget_mw_x10) {{\n"
            f"            return {name}_power_policy[i].present_mask;\n"
            "        }\n    }\n    return 0u;\n}\n"
        )
        return header, source


def power_policy(
    model: PowerModel,
    accuracy: Mapping[tuple[str, ...], float],
    mask_of: Callable[[Sequence[str]], int] | None = None,
) -> PowerPolicy:
    """Power policy of a degradation table (sensor subset → accuracy).

    Args:
        model: sensor power draws (must cover every sensor of the table).
        accuracy: sensor subset → task accuracy (every non-empty subset, usually).
        mask_of: sensor subset → the C present mask (stream bits); default: bit i = i-th sensor
            in sorted order.

    Raises:
        PowerConfigError: a sensor of the table has no power figure.
    """
    sensors = sorted({s for subset in accuracy for s in subset})
    model.check(sensors)

    def default_mask(subset: Sequence[str]) -> int:
        return sum(1 << sensors.index(s) for s in subset)

    mask = mask_of or default_mask
    entries = [
        PolicyEntry(tuple(sorted(subset)), model.power(subset), float(acc), mask(subset))
        for subset, acc in accuracy.items()
    ]
    entries.sort(key=lambda e: (-e.power_mw, e.sensors))
    return PowerPolicy(model, entries, pareto_front(entries))
