"""Cortex-M builds of the C export, run under QEMU against the golden model (skipped, with the
reason, where gcc-arm-none-eabi or qemu-system-arm is not installed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from fusion.deploy import QuantizedStudent, cortex_m
from fusion.deploy.cortex_m import STACK_BYTES, build_firmware, run_firmware
from fusion.deploy.errors import DeployError, ToolchainMissingError

needs_arm = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="gcc-arm-none-eabi / qemu-system-arm not installed (apt-get install them)",
)


@needs_arm
@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m7"])
def test_series_student_is_bit_exact_on_the_core(
    series_q: QuantizedStudent, tmp_path: Path, cpu: str
) -> None:
    firmware = build_firmware(series_q, tmp_path, cpu=cpu, cases=6)
    run = run_firmware(firmware)
    assert run.passed, run.output
    assert run.mismatches == 0 and run.cases == 6
    # the model's flash holds at least its weights; RAM its arena and the stack
    assert firmware.model_flash_bytes >= firmware.export.weight_bytes
    assert firmware.ram_bytes >= firmware.export.arena.total_bytes + STACK_BYTES
    assert firmware.test_vector_bytes > 0


@needs_arm
def test_raster_student_with_mixed_subsets(raster_q: QuantizedStudent, tmp_path: Path) -> None:
    n = len(raster_q.stems)
    firmware = build_firmware(raster_q, tmp_path, cases=(1 << n) - 1)  # every subset once
    run = run_firmware(firmware)
    assert run.passed, run.output


@needs_arm
def test_a_wrong_output_is_counted_and_fails(
    series_q: QuantizedStudent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = cortex_m.golden_invoke

    def off_by_one(q: QuantizedStudent, inputs: list, mask: int) -> np.ndarray:  # type: ignore[type-arg]
        out = real(q, inputs, mask).astype(np.int16)
        out[0] = out[0] + 1 if out[0] < 127 else out[0] - 1
        return out.astype(np.int8)

    monkeypatch.setattr(cortex_m, "golden_invoke", off_by_one)
    run = run_firmware(build_firmware(series_q, tmp_path, cases=3))
    assert not run.passed
    assert run.mismatches == 3 and run.returncode == 3


def test_unknown_cpu_and_missing_toolchain_are_named(
    series_q: QuantizedStudent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DeployError, match="unknown CPU 'cortex-m0'"):
        build_firmware(series_q, tmp_path, cpu="cortex-m0")
    monkeypatch.setattr(cortex_m.shutil, "which", lambda name: None)
    with pytest.raises(ToolchainMissingError, match="apt-get install gcc-arm-none-eabi"):
        build_firmware(series_q, tmp_path)
