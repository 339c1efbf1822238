"""Microcontroller budget of an int8 student: flash (weights + code) and SRAM (activation arena,
fusion accumulator, input and output buffers) against a named target, and MACs per inference.

Targets: ``m4-256k`` (Cortex-M4, 256 KB SRAM, 1 MB flash), ``m7-512k`` (Cortex-M7, 512 KB / 2 MB),
or user-defined as ``name:SRAM_KB:FLASH_KB`` or in a YAML file (``{name: {sram_kb, flash_kb}}``
or one ``{name, sram_kb, flash_kb}`` mapping). KB here is 1024 bytes.

What counts:

* **weights** (flash): int8 weights, int32 biases, int32 requantisation multipliers and int8
  shifts of every layer (:meth:`~fusion.deploy.int8.QuantizedStudent.weight_bytes`);
* **code** (flash), where measured: the ``.text`` of the exported C compiled with the host gcc
  (``-Os``; x86-64, an indication only) and, when ``arm-none-eabi-gcc`` is installed, for
  Cortex-M4 (``-mcpu=cortex-m4 -mthumb -Os``), read with ``size -A``;
* **arena** (SRAM): the static activation arena, int32 fusion accumulator and fused vector of the
  C export (:class:`~fusion.deploy.int8.ArenaPlan`); **inputs** and **output**: the caller's
  int8 buffers, which also live in SRAM.

A target is missed when SRAM (arena + inputs + output) or flash (weights + code; code counted
only when measured) exceeds it; the report says by how many bytes and what percentage.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusion.data.specs import Stream
from fusion.deploy.errors import BudgetExceededError, DeployError
from fusion.deploy.int8 import QuantizedStudent
from fusion.deploy.student import Student, StudentConfig, stem_shapes

__all__ = [
    "TARGETS",
    "BudgetReport",
    "CodeSize",
    "Estimate",
    "Target",
    "budget_report",
    "estimate",
    "fit_widths",
    "load_targets",
    "measure_code",
    "parse_target",
]

KB = 1024
#: Flash kept aside for code when a width is chosen before any code is measured.
CODE_ALLOWANCE = 8 * KB


@dataclass(frozen=True)
class Target:
    """A microcontroller: SRAM and flash in bytes."""

    name: str
    sram_bytes: int
    flash_bytes: int
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sram_bytes": self.sram_bytes,
            "flash_bytes": self.flash_bytes,
            "description": self.description,
        }


TARGETS: dict[str, Target] = {
    "m4-256k": Target("m4-256k", 256 * KB, 1024 * KB, "Cortex-M4, 256 KB SRAM, 1 MB flash"),
    "m7-512k": Target("m7-512k", 512 * KB, 2048 * KB, "Cortex-M7, 512 KB SRAM, 2 MB flash"),
}


def _target(name: str, data: Mapping[str, Any], where: str) -> Target:
    try:
        sram, flash = float(data["sram_kb"]), float(data["flash_kb"])
    except (KeyError, TypeError, ValueError) as err:
        raise DeployError(f"{where}: target {name!r} needs numbers sram_kb and flash_kb") from err
    if sram <= 0 or flash <= 0:
        raise DeployError(f"{where}: target {name!r} needs positive sram_kb and flash_kb")
    return Target(
        name, int(sram * KB), int(flash * KB), str(data.get("description", "user-defined"))
    )


def load_targets(path: str | Path) -> dict[str, Target]:
    """Targets of a YAML file: ``{name: {sram_kb, flash_kb[, description]}}`` or one mapping
    ``{name, sram_kb, flash_kb}``.

    Raises:
        DeployError: unreadable file or a target without positive sizes.
    """
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise DeployError(f"cannot read targets file {path}: {err}") from err
    if not isinstance(doc, dict):
        raise DeployError(f"{path}: a targets file holds a mapping")
    if "sram_kb" in doc:
        name = str(doc.get("name", path.stem))
        return {name: _target(name, doc, str(path))}
    out = {}
    for name, data in doc.get("targets", doc).items():
        if not isinstance(data, dict):
            raise DeployError(f"{path}: target {name!r} must be a mapping with sram_kb, flash_kb")
        out[str(name)] = _target(str(name), data, str(path))
    return out


def parse_target(spec: str | Target) -> Target:
    """A named target, ``name:SRAM_KB:FLASH_KB``, a YAML file of one target, or
    ``FILE.yaml:name``.

    Raises:
        DeployError: unknown name or malformed specification (listing the known targets).
    """
    if isinstance(spec, Target):
        return spec
    if spec in TARGETS:
        return TARGETS[spec]
    path, _, name = spec.partition(".yaml")
    if name.startswith(":") or (not name and spec.endswith(".yaml")) or spec.endswith(".yml"):
        file = Path(path + ".yaml") if spec.count(".yaml") else Path(spec)
        targets = load_targets(file)
        wanted = name.lstrip(":")
        if wanted:
            if wanted not in targets:
                raise DeployError(f"{file} defines targets {sorted(targets)}, not {wanted!r}")
            return targets[wanted]
        if len(targets) != 1:
            raise DeployError(f"{file} defines {sorted(targets)}; name one as {file}:NAME")
        return next(iter(targets.values()))
    parts = spec.split(":")
    if len(parts) == 3:
        return _target(parts[0], {"sram_kb": parts[1], "flash_kb": parts[2]}, "target")
    raise DeployError(
        f"unknown target {spec!r}; use one of {sorted(TARGETS)}, NAME:SRAM_KB:FLASH_KB or a "
        "YAML file"
    )


# --- estimates from the architecture -----------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """Sizes computed from the architecture and input shapes alone (before quantisation); equal
    to what the quantised student and its C export use."""

    weight_bytes: int
    arena_bytes: int
    input_bytes: int
    output_bytes: int
    macs: dict[str, int]

    @property
    def ram_bytes(self) -> int:
        return self.arena_bytes + self.input_bytes + self.output_bytes


def estimate(config: StudentConfig, input_shapes: Mapping[str, Sequence[int]]) -> Estimate:
    """Weights, SRAM and MACs of a student architecture for these per-sample input shapes."""
    student = Student(config)
    act = 1
    inputs = 0
    for stem in config.stems:
        shapes = stem_shapes(stem, input_shapes[stem.key])
        inputs += int(np.prod(shapes[0]))
        for i in range(1, len(shapes)):
            out = int(np.prod(shapes[i]))
            act = max(act, out + (int(np.prod(shapes[i - 1])) if i > 1 else 0))
    macs = student.macs(input_shapes)
    macs["total"] = sum(macs.values())
    return Estimate(
        weight_bytes=student.int8_weight_bytes(),
        arena_bytes=act + 4 * config.dim + config.dim,
        input_bytes=inputs,
        output_bytes=config.out_dim,
        macs=macs,
    )


def _scaled(widths: Sequence[int], scale: float) -> tuple[int, ...]:
    return tuple(max(4, round(w * scale / 4) * 4) for w in widths)


def fit_widths(
    streams: Mapping[str, Stream],
    shapes: Mapping[str, Sequence[int]],
    target: Target,
    widths: Sequence[int],
    strides: Sequence[int],
    *,
    head_dim: int | None = None,
    scales: Sequence[float] = (1.0, 0.75, 0.5, 0.375, 0.25),
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The widest stems (``widths`` scaled by the first of ``scales`` that fits) whose estimated
    SRAM and flash (weights + :data:`CODE_ALLOWANCE`) fit ``target``.

    Raises:
        BudgetExceededError: even the narrowest does not fit (saying by how much).
    """
    last = None
    for scale in scales:
        w = _scaled(widths, scale)
        cfg = Student.from_streams(streams, widths=w, strides=strides, head_dim=head_dim).cfg
        est = estimate(cfg, shapes)
        misses = _misses(target, est.ram_bytes, est.weight_bytes + CODE_ALLOWANCE)
        if not misses:
            return w, tuple(strides)
        last = misses
    assert last is not None
    raise BudgetExceededError(
        f"no student width fits {target.name} (narrowest tried: {list(_scaled(widths, scales[-1]))}"
        f"): " + "; ".join(last)
    )


def _miss(what: str, need: int, have: int, target: str) -> str | None:
    if need <= have:
        return None
    over = need - have
    return (
        f"{what} needs {need:,} B but {target} has {have:,} B: over by {over:,} B "
        f"({100.0 * over / have:.1f} %)"
    )


def _misses(target: Target, ram: int, flash: int) -> list[str]:
    out = [
        _miss("SRAM", ram, target.sram_bytes, target.name),
        _miss("flash", flash, target.flash_bytes, target.name),
    ]
    return [m for m in out if m is not None]


# --- code size ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeSize:
    """Section sizes of the compiled export (``size -A``): machine code, constant tables,
    zero-initialised static RAM."""

    toolchain: str
    text: int
    rodata: int
    data: int
    bss: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "toolchain": self.toolchain,
            "text": self.text,
            "rodata": self.rodata,
            "data": self.data,
            "bss": self.bss,
        }


def _sections(size_tool: str, obj: Path) -> dict[str, int]:
    out = subprocess.run(
        [size_tool, "-A", str(obj)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    sections: dict[str, int] = {}
    for line in out.splitlines():
        m = re.match(r"^(\.\S+)\s+(\d+)\s+", line)
        if m:
            sections[m.group(1)] = sections.get(m.group(1), 0) + int(m.group(2))
    return sections


def _compile_size(cc: str, size_tool: str, flags: Sequence[str], q: QuantizedStudent) -> CodeSize:
    from fusion.deploy.c_export import export_c

    with tempfile.TemporaryDirectory(prefix="fusion-size-") as tmp:
        exp = export_c(q, tmp)
        obj = Path(tmp) / "student.o"
        subprocess.run(
            [cc, "-std=c99", "-Os", *flags, "-c", str(exp.source), "-o", str(obj)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        sec = _sections(size_tool, obj)

    def total(prefix: str) -> int:
        return sum(v for k, v in sec.items() if k == prefix or k.startswith(prefix + "."))

    return CodeSize(
        toolchain=Path(cc).name + (" " + " ".join(flags) if flags else ""),
        text=total(".text"),
        rodata=total(".rodata"),
        data=total(".data"),
        bss=total(".bss"),
    )


def measure_code(q: QuantizedStudent) -> list[CodeSize]:
    """Compile the C export with each available toolchain (host gcc; Cortex-M4 with
    ``arm-none-eabi-gcc``) and read the section sizes; an empty list when none is installed or
    compiling fails."""
    out = []
    tools: list[tuple[str, str, tuple[str, ...]]] = [("gcc", "size", ())]
    tools.append(("arm-none-eabi-gcc", "arm-none-eabi-size", ("-mcpu=cortex-m4", "-mthumb")))
    for cc, sz, flags in tools:
        cc_path, sz_path = shutil.which(cc), shutil.which(sz)
        if cc_path is None or sz_path is None:
            continue
        try:
            out.append(_compile_size(cc_path, sz_path, flags, q))
        except (OSError, subprocess.SubprocessError):
            continue
    return out


# --- the report --------------------------------------------------------------------------------


@dataclass
class BudgetReport:
    """A quantised student against a target.

    ``code_bytes`` is the ``.text`` of the Cortex-M build when measured, else of the host build
    (an indication), else ``None`` (then flash counts weights only, and the report says so).
    """

    target: Target
    weight_bytes: dict[str, int]
    arena_bytes: int
    activation_bytes: int
    accumulator_bytes: int
    fused_bytes: int
    input_bytes: int
    output_bytes: int
    macs: dict[str, int]
    macs_per_sensor: dict[str, int]
    code: list[CodeSize] = field(default_factory=list)

    @property
    def code_bytes(self) -> int | None:
        arm = [c for c in self.code if c.toolchain.startswith("arm-")]
        chosen = arm or self.code
        return chosen[0].text if chosen else None

    @property
    def ram_bytes(self) -> int:
        return self.arena_bytes + self.input_bytes + self.output_bytes

    @property
    def flash_bytes(self) -> int:
        return self.weight_bytes["total"] + (self.code_bytes or 0)

    @property
    def failures(self) -> list[str]:
        return _misses(self.target, self.ram_bytes, self.flash_bytes)

    @property
    def fits(self) -> bool:
        return not self.failures

    def require(self) -> BudgetReport:
        """Raise :class:`BudgetExceededError` with the numbers when the student does not fit."""
        if not self.fits:
            raise BudgetExceededError(
                f"the student does not fit {self.target.name}: " + "; ".join(self.failures)
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.to_dict(),
            "fits": self.fits,
            "failures": self.failures,
            "weight_bytes": self.weight_bytes,
            "code_bytes": self.code_bytes,
            "code": [c.to_dict() for c in self.code],
            "flash_bytes": self.flash_bytes,
            "flash_note": "weights + code"
            if self.code_bytes is not None
            else "weights only (no compiler found to measure code)",
            "arena_bytes": self.arena_bytes,
            "activation_bytes": self.activation_bytes,
            "accumulator_bytes": self.accumulator_bytes,
            "fused_bytes": self.fused_bytes,
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "ram_bytes": self.ram_bytes,
            "macs": self.macs,
            "macs_per_sensor": self.macs_per_sensor,
        }

    def lines(self) -> list[str]:
        """A human-readable summary."""
        t = self.target
        out = [
            f"target {t.name}: {t.sram_bytes // KB} KB SRAM, {t.flash_bytes // KB} KB flash",
            f"weights {self.weight_bytes['total']:,} B (int8 weights + int32 bias + requant)",
            (
                f"code {self.code_bytes:,} B ({', '.join(c.toolchain for c in self.code)})"
                if self.code_bytes is not None
                else "code: not measured (no compiler)"
            ),
            f"arena {self.arena_bytes:,} B (activations {self.activation_bytes:,} + "
            f"accumulator {self.accumulator_bytes} + fused {self.fused_bytes}); inputs "
            f"{self.input_bytes:,} B, output {self.output_bytes} B",
            f"SRAM {self.ram_bytes:,} / {t.sram_bytes:,} B; flash {self.flash_bytes:,} / "
            f"{t.flash_bytes:,} B",
            f"MACs per inference {self.macs['total']:,} ("
            + ", ".join(f"{k} {v:,}" for k, v in self.macs_per_sensor.items())
            + ")",
        ]
        out.append("fits" if self.fits else "DOES NOT FIT: " + "; ".join(self.failures))
        return out


def budget_report(
    q: QuantizedStudent,
    target: Target | str,
    *,
    sensors: Mapping[str, Sequence[str]] | None = None,
    measure: bool = True,
) -> BudgetReport:
    """Budget of a quantised student on a target (see the module docstring).

    Args:
        q: the int8 student.
        target: a :class:`Target` or a target specification (:func:`parse_target`).
        sensors: sensor → stream keys, to report MACs per sensor (default: per stream).
        measure: compile the C export to measure code size when a compiler is present.
    """
    t = parse_target(target)
    plan = q.arena_plan()
    macs = q.macs()
    groups = dict(sensors) if sensors is not None else {k: (k,) for k in q.keys}
    per_sensor = {name: sum(macs.get(k, 0) for k in keys) for name, keys in groups.items()}
    per_sensor["head"] = macs["head"]
    return BudgetReport(
        target=t,
        weight_bytes=q.weight_bytes(),
        arena_bytes=plan.total_bytes,
        activation_bytes=plan.activation_bytes,
        accumulator_bytes=plan.accumulator_bytes,
        fused_bytes=plan.fused_bytes,
        input_bytes=sum(s.input_size for s in q.stems),
        output_bytes=q.out_dim,
        macs=macs,
        macs_per_sensor=per_sensor,
        code=measure_code(q) if measure else [],
    )
