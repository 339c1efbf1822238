"""Cross-compile the C export for a Cortex-M and run it under QEMU against the golden model.

:func:`build_firmware` writes the C export (:func:`~fusion.deploy.c_export.export_c`), a test
harness and a bare-metal start-up (vector table, ``.data``/``.bss`` set-up, semihosting) for an
MPS2 board, links it with ``arm-none-eabi-gcc`` and reads the sections with
``arm-none-eabi-size -A``. The harness carries test vectors — seeded random int8 inputs for every
non-empty sensor subset in turn, and the outputs :func:`~fusion.deploy.golden.golden_invoke`
gives for them — in a section of their own, so the flash the *model* needs is reported apart
from the vectors. :func:`run_firmware` boots the ELF in ``qemu-system-arm`` (``-semihosting``);
the firmware prints one line and exits with the number of mismatching cases through the
semihosting call ``SYS_EXIT_EXTENDED`` (newlib's plain ``exit`` reports 0 under QEMU whatever
the status).

Why a start-up of our own rather than newlib's ``rdimon`` crt0: the exported C needs nothing
from a C library (``<stdint.h>`` only), and without newlib the flash and RAM figures are the
model's and the harness's alone. QEMU counts no cycles, so no timing is reported.

Install the tools with ``apt-get install gcc-arm-none-eabi qemu-system-arm``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from fusion.deploy.c_export import CExport, export_c
from fusion.deploy.errors import DeployError, ToolchainMissingError
from fusion.deploy.golden import golden_invoke
from fusion.deploy.int8 import QuantizedStudent
from fusion.files import atomic_write

__all__ = ["CPUS", "Cpu", "Firmware", "QemuRun", "build_firmware", "run_firmware"]


@dataclass(frozen=True)
class Cpu:
    """A Cortex-M core and the QEMU MPS2 board that emulates it (code memory at 0x0, SRAM at
    0x2000_0000, 4 MiB each on these boards)."""

    name: str
    flags: tuple[str, ...]
    machine: str


CPUS = {
    "cortex-m4": Cpu("cortex-m4", ("-mcpu=cortex-m4", "-mthumb"), "mps2-an386"),
    "cortex-m7": Cpu("cortex-m7", ("-mcpu=cortex-m7", "-mthumb"), "mps2-an500"),
}

#: Stack reserved by the linker script (bytes); counted in the RAM figure.
STACK_BYTES = 4096

#: The sections the linker script places in memory.
_LOADED = (".vectors", ".text", ".rodata", ".testvectors", ".data", ".bss", ".stack")

_CFLAGS = ("-std=c99", "-O2", "-ffreestanding", "-Wall", "-Wextra", "-ffunction-sections")

_LINKER_SCRIPT = """/* MPS2 (AN386 / AN500) memory map as QEMU models it. */
MEMORY
{
  FLASH (rx)  : ORIGIN = 0x00000000, LENGTH = 4M
  RAM   (rwx) : ORIGIN = 0x20000000, LENGTH = 4M
}
ENTRY(fs_reset)
SECTIONS
{
  .vectors : { KEEP(*(.vectors)) } > FLASH
  .text : { *(.text*) } > FLASH
  .rodata : { *(.rodata*) } > FLASH
  .testvectors : { KEEP(*(.testvectors)) } > FLASH
  .data : { _sdata = .; *(.data*) . = ALIGN(4); _edata = .; } > RAM AT > FLASH
  _sidata = LOADADDR(.data);
  .bss (NOLOAD) : { _sbss = .; *(.bss*) *(COMMON) . = ALIGN(4); _ebss = .; } > RAM
  .stack (NOLOAD) : { . = ALIGN(8); . += %(stack)d; _estack = .; } > RAM
  /DISCARD/ : { *(.ARM.exidx*) *(.ARM.extab*) *(.comment) }
}
"""

_STARTUP = """/* Bare-metal start-up and semihosting for QEMU's MPS2 boards (generated). */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);

static int fs_semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void fs_puts(const char *s)
{
    (void)fs_semihost(0x04, s); /* SYS_WRITE0 */
}

void fs_put_uint(uint32_t v)
{
    char buf[11];
    int i = 10;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0u && i > 0);
    fs_puts(buf + i);
}

static void fs_exit(uint32_t code)
{
    /* SYS_EXIT_EXTENDED: {ADP_Stopped_ApplicationExit, status}; QEMU exits with status. */
    static uint32_t block[2];
    block[0] = 0x20026u;
    block[1] = code;
    (void)fs_semihost(0x20, block);
    for (;;) {
    }
}

void fs_reset(void)
{
    uint32_t *src = &_sidata;
    uint32_t *dst = &_sdata;
    while (dst < &_edata) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss; ++dst) {
        *dst = 0u;
    }
    fs_exit((uint32_t)main());
}

static void fs_fault(void)
{
    fs_puts("fault\\n");
    fs_exit(255u);
}

__attribute__((section(".vectors"), used)) static void (*const fs_vectors[16])(void) = {
    (void (*)(void))(&_estack), fs_reset, fs_fault, fs_fault, fs_fault, fs_fault, fs_fault,
    0, 0, 0, 0, fs_fault, fs_fault, 0, fs_fault, fs_fault,
};
"""


@dataclass(frozen=True)
class Firmware:
    """A linked test firmware and its sections (bytes, from ``arm-none-eabi-size -A``).

    ``model_flash_bytes``: code, constants and initialised data without the test vectors;
    ``ram_bytes``: initialised data, zeroed data (the arena lives here) and the stack.
    """

    cpu: Cpu
    elf: Path
    export: CExport
    cases: int
    sections: dict[str, int]
    warnings: str = ""

    @property
    def model_flash_bytes(self) -> int:
        s = self.sections
        return sum(s.get(k, 0) for k in (".vectors", ".text", ".rodata", ".data"))

    @property
    def test_vector_bytes(self) -> int:
        return self.sections.get(".testvectors", 0)

    @property
    def ram_bytes(self) -> int:
        return sum(self.sections.get(k, 0) for k in (".data", ".bss", ".stack"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu": self.cpu.name,
            "machine": self.cpu.machine,
            "elf": str(self.elf),
            "cases": self.cases,
            "sections": dict(self.sections),
            "model_flash_bytes": self.model_flash_bytes,
            "test_vector_bytes": self.test_vector_bytes,
            "ram_bytes": self.ram_bytes,
            "stack_bytes": STACK_BYTES,
            "weight_bytes": self.export.weight_bytes,
            "arena_bytes": self.export.arena.total_bytes,
            "warnings": self.warnings,
        }


@dataclass(frozen=True)
class QemuRun:
    """The outcome of booting a firmware: exit status (mismatching cases; 255 a fault) and
    what it printed."""

    returncode: int
    output: str
    cases: int
    mismatches: int | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and self.mismatches == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "returncode": self.returncode,
            "output": self.output,
            "cases": self.cases,
            "mismatches": self.mismatches,
            "passed": self.passed,
            "seconds": round(self.seconds, 2),
        }


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolchainMissingError(
            f"{name} is not on PATH; install it with `apt-get install {package}`"
        )
    return path


def _c_bytes(values: np.ndarray) -> str:
    return ", ".join(str(int(v)) for v in values.reshape(-1))


def _test_vectors(q: QuantizedStudent, cases: int, seed: int) -> str:
    """The harness' test vectors: seeded int8 inputs, masks cycling over every non-empty
    subset of streams, and the golden outputs."""
    rng = np.random.default_rng(seed)
    n = len(q.stems)
    masks = [1 + k % ((1 << n) - 1) for k in range(cases)]
    lines = ["/* test vectors: seeded int8 inputs and golden outputs (generated by fusion) */\n"]
    ptrs, expected = [], []
    for k, mask in enumerate(masks):
        inputs: list[np.ndarray | None] = []
        row = []
        for i, stem in enumerate(q.stems):
            if mask >> i & 1:
                x = rng.integers(-128, 128, size=stem.input_shape, dtype=np.int8)
                lines.append(
                    f'__attribute__((section(".testvectors"))) static const int8_t '
                    f"fs_in_{k}_{i}[{x.size}] = {{{_c_bytes(x)}}};\n"
                )
                inputs.append(x)
                row.append(f"fs_in_{k}_{i}")
            else:
                inputs.append(None)
                row.append("0")
        ptrs.append("{" + ", ".join(row) + "}")
        expected.append("{" + _c_bytes(golden_invoke(q, inputs, mask)) + "}")
    lines += [
        f"#define FS_CASES {cases}\n",
        '__attribute__((section(".testvectors"))) static const uint32_t '
        f"fs_masks[FS_CASES] = {{{', '.join(f'{m}u' for m in masks)}}};\n",
        f'__attribute__((section(".testvectors"))) static const int8_t *const '
        f"fs_inputs[FS_CASES][{n}] = {{{', '.join(ptrs)}}};\n",
        f'__attribute__((section(".testvectors"))) static const int8_t '
        f"fs_expected[FS_CASES][{q.out_dim}] = {{{', '.join(expected)}}};\n",
    ]
    return "".join(lines)


def _harness(name: str, vectors: str) -> str:
    up = name.upper()
    return f"""/* Runs every test vector through {name}_invoke and counts mismatches (generated). */
#include <stdint.h>
#include "{name}.h"

void fs_puts(const char *s);
void fs_put_uint(uint32_t v);

{vectors}
static int8_t fs_out[{up}_OUTPUT_SIZE];

int main(void)
{{
    uint32_t k, c, bad = 0u;
    for (k = 0u; k < FS_CASES; ++k) {{
        int rc = {name}_invoke(fs_inputs[k], fs_masks[k], fs_out);
        int same = rc == 0;
        for (c = 0u; c < {up}_OUTPUT_SIZE; ++c) {{
            same = same && fs_out[c] == fs_expected[k][c];
        }}
        bad += same ? 0u : 1u;
    }}
    fs_puts("cases ");
    fs_put_uint(FS_CASES);
    fs_puts(" mismatches ");
    fs_put_uint(bad);
    fs_puts("\\n");
    return (int)bad;
}}
"""


def _write_text(path: Path, text: str) -> None:
    def write(fh: TextIO) -> None:
        fh.write(text)

    atomic_write(path, write)


def _sections(size_tool: str, elf: Path) -> dict[str, int]:
    text = subprocess.run(
        [size_tool, "-A", str(elf)], capture_output=True, text=True, check=True
    ).stdout
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\.\S+)\s+(\d+)\s+\d+", line)
        if m and m.group(1) in _LOADED:  # not the debug sections libgcc brings
            out[m.group(1)] = int(m.group(2))
    return out


def build_firmware(
    q: QuantizedStudent,
    out_dir: str | Path,
    *,
    cpu: str = "cortex-m4",
    cases: int = 16,
    seed: int = 0,
    name: str = "fusion_student",
) -> Firmware:
    """Export ``q`` as C into ``out_dir`` and link a QEMU test firmware for ``cpu``.

    Args:
        q: the quantised student.
        out_dir: folder for the C export, the harness, the linker script and the ELF.
        cpu: a key of :data:`CPUS`.
        cases: test vectors (masks cycle over every non-empty subset of streams).
        seed: seed of the random int8 inputs.
        name: base name of the C export.

    Raises:
        ToolchainMissingError: ``arm-none-eabi-gcc`` or ``-size`` is not installed.
        DeployError: an unknown CPU, or the build failed (the compiler's message).
    """
    if cpu not in CPUS:
        raise DeployError(f"unknown CPU {cpu!r}; expected one of {sorted(CPUS)}")
    if cases < 1:
        raise DeployError(f"cases must be at least 1, got {cases}")
    core = CPUS[cpu]
    cc = _tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    size_tool = _tool("arm-none-eabi-size", "gcc-arm-none-eabi")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    export = export_c(q, out, name)
    vectors = _test_vectors(q, cases, seed)
    files = {
        "fs_startup.c": _STARTUP,
        "fs_harness.c": _harness(name, vectors),
        "fs_mps2.ld": _LINKER_SCRIPT % {"stack": STACK_BYTES},
    }
    for file, text in files.items():
        _write_text(out / file, text)
    elf = out / f"{name}_{core.name}.elf"
    cmd = [
        cc,
        *core.flags,
        *_CFLAGS,
        "-nostdlib",
        "-Wl,--gc-sections",
        "-T",
        str(out / "fs_mps2.ld"),
        "-I",
        str(out),
        str(export.source),
        str(out / "fs_startup.c"),
        str(out / "fs_harness.c"),
        "-lgcc",  # 64-bit multiply and division helpers of the requantisation
        "-o",
        str(elf),
    ]
    built = subprocess.run(cmd, capture_output=True, text=True)
    if built.returncode != 0:
        raise DeployError(f"{core.name} build failed:\n{built.stderr.strip()}")
    return Firmware(core, elf, export, cases, _sections(size_tool, elf), built.stderr.strip())


def run_firmware(firmware: Firmware, *, timeout_s: float = 120.0) -> QemuRun:
    """Boot ``firmware`` in ``qemu-system-arm`` and read its verdict.

    Raises:
        ToolchainMissingError: ``qemu-system-arm`` is not installed.
        DeployError: QEMU did not finish within ``timeout_s`` seconds.
    """
    qemu = _tool("qemu-system-arm", "qemu-system-arm")
    cmd = [
        qemu,
        "-M",
        firmware.cpu.machine,
        "-nographic",
        "-monitor",
        "none",
        "-semihosting-config",
        "enable=on,target=native",
        "-kernel",
        str(firmware.elf),
    ]
    t0 = time.perf_counter()
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as err:
        raise DeployError(
            f"{firmware.elf.name} did not finish under {firmware.cpu.machine} in {timeout_s} s"
        ) from err
    seconds = time.perf_counter() - t0
    output = (done.stdout + done.stderr).strip()
    m = re.search(r"cases (\d+) mismatches (\d+)", output)
    mismatches = int(m.group(2)) if m else None
    return QemuRun(done.returncode, output, firmware.cases, mismatches, seconds)
