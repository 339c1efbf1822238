"""Budget report: estimates equal the quantised student's tables and arena, named and user
targets, and a miss says by how many bytes and what percentage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fusion.data.collate import Batch
from fusion.deploy import QuantizedStudent, Student
from fusion.deploy.budget import (
    TARGETS,
    budget_report,
    estimate,
    fit_widths,
    parse_target,
)
from fusion.deploy.errors import BudgetExceededError, DeployError


def test_estimate_matches_the_quantised_student(
    series_student: Student, series_q: QuantizedStudent
) -> None:
    shapes = {s.key: s.input_shape for s in series_q.stems}
    est = estimate(series_student.cfg, shapes)
    assert est.weight_bytes == series_q.weight_bytes()["total"]
    assert est.arena_bytes == series_q.arena_plan().total_bytes
    assert est.macs["total"] == series_q.macs()["total"]


def test_fits_the_m4_with_macs_per_sensor(series_q: QuantizedStudent) -> None:
    report = budget_report(series_q, "m4-256k", sensors={"imu": series_q.keys}, measure=False)
    assert report.fits and report.failures == []
    assert report.macs_per_sensor["imu"] + report.macs_per_sensor["head"] == report.macs["total"]
    d = report.to_dict()
    assert d["target"]["sram_bytes"] == 256 * 1024 and d["code_bytes"] is None
    report.require()


def test_a_miss_says_by_how_much(series_q: QuantizedStudent) -> None:
    report = budget_report(series_q, "tiny:1:2", measure=False)
    assert not report.fits
    ram, flash = report.ram_bytes, report.flash_bytes
    sram_msg = next(m for m in report.failures if m.startswith("SRAM"))
    over = ram - 1024
    assert f"{ram:,} B" in sram_msg and f"over by {over:,} B" in sram_msg
    assert f"({100 * over / 1024:.1f} %)" in sram_msg
    assert any(m.startswith("flash") and f"{flash:,} B" in m for m in report.failures)
    with pytest.raises(BudgetExceededError, match="does not fit tiny"):
        report.require()


def test_targets_by_name_spec_and_yaml(tmp_path: Path) -> None:
    assert parse_target("m7-512k") == TARGETS["m7-512k"]
    t = parse_target("board:96:384")
    assert (t.name, t.sram_bytes, t.flash_bytes) == ("board", 96 * 1024, 384 * 1024)
    f = tmp_path / "boards.yaml"
    f.write_text("a: {sram_kb: 64, flash_kb: 256}\nb: {sram_kb: 32, flash_kb: 128}\n")
    assert parse_target(f"{f}:b").sram_bytes == 32 * 1024
    one = tmp_path / "one.yaml"
    one.write_text("name: nrf\nsram_kb: 128\nflash_kb: 512\n")
    assert parse_target(str(one)).name == "nrf"
    with pytest.raises(DeployError, match="m4-256k"):
        parse_target("m3")
    with pytest.raises(DeployError, match="name one"):
        parse_target(str(f))


def test_fit_widths_narrows_then_refuses(series_batch: Batch, series_q: QuantizedStudent) -> None:
    streams = series_batch.streams
    shapes = {s.key: s.input_shape for s in series_q.stems}
    wide = fit_widths(streams, shapes, TARGETS["m4-256k"], (64, 128), (2, 1))
    assert wide[0] == (64, 128)
    w, _ = fit_widths(streams, shapes, parse_target("tight:16:24"), (64, 128), (2, 1))
    assert w[-1] < 128
    with pytest.raises(BudgetExceededError, match="no student width fits"):
        fit_widths(streams, shapes, parse_target("nothing:1:1"), (64, 128), (2, 1))


def test_code_size_measured_with_gcc(series_q: QuantizedStudent) -> None:
    if shutil.which("gcc") is None or shutil.which("size") is None:
        pytest.skip("host gcc/size absent")
    report = budget_report(series_q, "m4-256k")
    assert report.code_bytes is not None and report.code_bytes > 200
    assert report.flash_bytes == report.weight_bytes["total"] + report.code_bytes
