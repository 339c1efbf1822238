"""The C99 export, compiled with the host gcc (-std=c99 -Wall -Wextra -Werror -pedantic -O2),
is bit-exact with the numpy golden model for every present mask."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion.data.collate import Batch, collate_samples
from fusion.data.sample import Sample
from fusion.deploy import (
    DeployError,
    QuantizedStudent,
    Student,
    export_c,
    golden_invoke,
    quantize_student,
)
from tests.deploy.c_harness import CompiledStudent, compile_student
from tests.deploy.conftest import settle


def _cases(q: QuantizedStudent, batch: Batch) -> list[tuple[int, list[np.ndarray | None]]]:
    """Every non-empty mask for every sample; absent streams passed as None (NULL in C)."""
    qin = q.quantize_inputs(batch.data)
    cases = []
    for mask in range(1, 1 << len(q.stems)):
        for i in range(len(batch)):
            inputs: list[np.ndarray | None] = [
                qin[k][i] if mask >> j & 1 else None for j, k in enumerate(q.keys)
            ]
            cases.append((mask, inputs))
    return cases


def _check_bit_exact(compiled: CompiledStudent, batch: Batch) -> int:
    q = compiled.q
    cases = _cases(q, batch)
    rc, out = compiled.run(cases)
    assert (rc == 0).all()
    expected = np.stack([golden_invoke(q, inputs, mask) for mask, inputs in cases])
    mismatch = np.argwhere(out != expected)
    assert mismatch.size == 0, f"first mismatches (case, channel): {mismatch[:5].tolist()}"
    return len(cases)


def test_raster_bit_exact_every_mask(raster_c: CompiledStudent, raster_batch: Batch) -> None:
    """4 streams (3 sensors) × 15 masks × 4 chips, single sensors included."""
    assert _check_bit_exact(raster_c, raster_batch) == 15 * 4


def test_series_bit_exact_every_mask(series_c: CompiledStudent, series_batch: Batch) -> None:
    assert _check_bit_exact(series_c, series_batch) == 3 * 6


def test_basicmotions_bit_exact(gcc: str, basicmotions: list[Sample], tmp_path: Path) -> None:
    """The default student (embedding out) on real BasicMotions accelerometer + gyroscope."""
    batch = collate_samples(basicmotions[:40])
    torch.manual_seed(2)
    student = settle(Student.from_streams(batch.streams), batch)
    q = quantize_student(student, [batch])
    compiled = compile_student(q, tmp_path, gcc=gcc, name="basicmotions")
    assert _check_bit_exact(compiled, collate_samples(basicmotions[40:52])) == 3 * 12


def test_unrounded_inputs_and_extreme_values(raster_c: CompiledStudent) -> None:
    """Random int8 inputs over the full range (saturating every clamp) stay bit-exact."""
    q = raster_c.q
    rng = np.random.default_rng(5)
    cases: list[tuple[int, list[np.ndarray | None]]] = []
    for mask in (1, 2, 4, 8, 0b1111, 0b1010):
        inputs: list[np.ndarray | None] = [
            rng.integers(-128, 128, s.input_shape).astype(np.int8) for s in q.stems
        ]
        cases.append((mask, inputs))
    cases.append((0b1111, [np.full(s.input_shape, 127, np.int8) for s in q.stems]))
    cases.append((0b1111, [np.full(s.input_shape, -128, np.int8) for s in q.stems]))
    rc, out = raster_c.run(cases)
    assert (rc == 0).all()
    for (mask, inputs), got in zip(cases, out, strict=True):
        assert np.array_equal(got, golden_invoke(q, inputs, mask))


def test_return_codes(series_c: CompiledStudent) -> None:
    q = series_c.q
    x = [np.zeros(s.input_shape, np.int8) for s in q.stems]
    rc, _ = series_c.run([(0, x), (0b100, x), (0b11, x), (0b11, x)], null_masks=[0, 0, 0b10, 0])
    assert rc.tolist() == [-1, -1, -2, 0]


def test_export_files_and_figures(raster_c: CompiledStudent, raster_q: QuantizedStudent) -> None:
    ex = raster_c.export
    assert {p.name for p in ex.files} == {
        "fusion_student.c",
        "fusion_student.h",
        "fusion_student_weights.h",
    }
    header = ex.header.read_text()
    plan = raster_q.arena_plan()
    assert f"#define FUSION_STUDENT_ARENA_BYTES {plan.total_bytes}" in header
    assert f"#define FUSION_STUDENT_WEIGHT_BYTES {raster_q.weight_bytes()['total']}" in header
    code = re.sub(r"/\*.*?\*/", "", ex.source.read_text() + ex.weights.read_text(), flags=re.S)
    for banned in ("float", "double", "malloc", "<math.h>", "<stdlib.h>"):
        assert banned not in code
    # The default synthetic student fits the targets: ≤ 64 KB weights, ≤ 32 KB arena.
    assert raster_q.weight_bytes()["total"] <= 64 * 1024
    assert plan.total_bytes <= 32 * 1024
    leftovers = [p for p in os.listdir(ex.source.parent) if p.endswith(".tmp")]
    assert not leftovers


def test_bad_name_refused(series_q: QuantizedStudent, tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="C identifier"):
        export_c(series_q, tmp_path, name="fusion-student")
    assert not list(tmp_path.iterdir())


def test_failed_write_keeps_the_old_file(
    series_q: QuantizedStudent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export_c(series_q, tmp_path, name="s")
    before = (tmp_path / "s.c").read_text()
    import fusion.deploy.c_export as c_export

    def boom(q: QuantizedStudent, name: str, plan: object) -> str:
        raise RuntimeError("disk full")

    monkeypatch.setattr(c_export, "_source", boom)
    with pytest.raises(RuntimeError):
        export_c(series_q, tmp_path, name="s")
    assert (tmp_path / "s.c").read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
