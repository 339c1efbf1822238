"""Degradation maths on a hand-made table, per-sensor drops against the baseline, and a report on
a tiny student (float and int8 for every subset, JSON and PNG)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fusion.data.sample import Sample
from fusion.deploy.degradation import (
    DegradationReport,
    SubsetScore,
    curve,
    degradation_report,
    single_sensor_drops,
    subsets_of,
)
from fusion.deploy.errors import StudentConfigError
from tests.deploy.tiny import tensors, tiny_bundle

#: Three sensors a, b, c: accuracy of every non-empty subset.
TABLE = {
    ("a", "b", "c"): 0.90,
    ("a", "b"): 0.85,
    ("a", "c"): 0.80,
    ("b", "c"): 0.60,
    ("a",): 0.70,
    ("b",): 0.50,
    ("c",): 0.30,
}


def test_curve_mean_min_max_and_area() -> None:
    c = curve(TABLE, ["c", "a", "b"])
    assert c.off == [0, 1, 2]
    assert c.mean == pytest.approx([0.90, 0.75, 0.50])
    assert c.min == pytest.approx([0.90, 0.60, 0.30])
    assert c.max == pytest.approx([0.90, 0.85, 0.70])
    # trapezoid over k = 0..2: (0.90 + 0.75) / 2 + (0.75 + 0.50) / 2 = 1.45; / (2 · 0.90)
    assert c.area == pytest.approx(1.45 / 1.8)
    assert c.all_sensors == 0.90
    flat = curve({k: 0.8 for k in TABLE}, "abc")
    assert flat.area == pytest.approx(1.0)
    assert curve({("a",): 0.4}, ["a"]).area == 1.0


def test_curve_needs_every_count() -> None:
    with pytest.raises(StudentConfigError, match="every sensor on"):
        curve({("a",): 0.5, ("b",): 0.5}, ["a", "b"])
    with pytest.raises(StudentConfigError, match="1 sensor"):
        curve({("a", "b", "c"): 0.9, ("a",): 0.5}, ["a", "b", "c"])


def _scores(table: dict[tuple[str, ...], float]) -> list[SubsetScore]:
    return [SubsetScore(k, 3 - len(k), 10, v, v) for k, v in table.items()]


def test_single_sensor_drops_against_the_baseline() -> None:
    student = _scores(TABLE)
    baseline = _scores({**TABLE, ("a", "b"): 0.80, ("a", "c"): 0.40, ("b", "c"): 0.30})
    rows = {r["sensor_off"]: r for r in single_sensor_drops(student, baseline)}
    # c off: student 0.90 → 0.85 (0.05), baseline 0.90 → 0.80 (0.10): exactly half, pass
    assert rows["c"]["student_drop"] == pytest.approx(0.05)
    assert rows["c"]["baseline_drop"] == pytest.approx(0.10) and rows["c"]["pass"]
    # b off: 0.10 vs 0.50 pass; a off: 0.30 vs 0.60 pass (exactly half)
    assert rows["b"]["pass"] and rows["a"]["pass"]
    worse = _scores({**TABLE, ("a", "b"): 0.80})
    rows = {r["sensor_off"]: r for r in single_sensor_drops(worse, baseline)}
    assert not rows["c"]["pass"]  # 0.10 drop vs baseline 0.10: more than half
    report = DegradationReport(["a", "b", "c"], student, baseline)
    t = report.targets()
    assert t["single_sensor_off"]["pass"] and t["int8_within_1pt"]["pass"]
    assert report.curves()["baseline_int8"].mean[1] == pytest.approx((0.8 + 0.4 + 0.3) / 3)


def test_subsets_of_lists_every_non_empty_subset_largest_first() -> None:
    subs = subsets_of(["a", "b", "c"])
    assert len(subs) == 7 and subs[0] == ("a", "b", "c") and subs[-1] == ("c",)


def test_report_on_a_tiny_student(series_samples: list[Sample], tmp_path: Path) -> None:
    bundle = tiny_bundle(series_samples)
    report = degradation_report(bundle, tensors(series_samples), info={"data": "six windows"})
    n = len(bundle.sensors)
    assert len(report.student) == 2**n - 1 and report.baseline is not None
    for s in [*report.student, *report.baseline]:
        assert 0 <= s.acc_float <= 1 and s.acc_int8 is not None and 0 <= s.acc_int8 <= 1
        assert s.n == len(series_samples)
    d = json.loads(json.dumps(report.to_dict()))
    assert set(d["curves"]) == {"student_float", "student_int8", "baseline_float", "baseline_int8"}
    assert not math.isnan(d["curves"]["student_int8"]["normalised_area"])
    png = report.plot(tmp_path / "deg.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any("student_int8" in line for line in report.lines())
