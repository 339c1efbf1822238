"""`.tflite` export through litert-torch, validated with the TFLite-Micro Python interpreter.

Skipped unless the optional ``tflite`` extra (litert-torch, tflite-micro) is installed. One
conversion of the small IMU student (about 10 s) is shared by the tests of this module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch", reason="the optional `tflite` extra (litert-torch) is absent")
pytest.importorskip("tflite_micro", reason="the optional `tflite` extra (tflite-micro) is absent")

from fusion.data.collate import Batch, collate_samples
from fusion.data.sample import Sample
from fusion.deploy import StemConfig, Student, StudentConfig
from fusion.deploy.errors import QuantisationError, StudentInputError
from fusion.deploy.tflite import (
    TfliteReport,
    default_subsets,
    export_tflite,
    export_tflite_subsets,
)
from fusion.deploy.tflite_arena import probe_arena, run_tflite
from fusion.deploy.tflite_model import (
    DEFAULT_ALLOWED_OPS,
    TfliteConversionError,
    TfliteOpError,
    check_ops,
    read_tflite,
)
from tests.threads import one_thread

# The IMU student (3 + 3 channels × 100 steps, widths 16-32-32, head 4) holds 2 × 1 868 + 132
# parameters. Measured: ≈ 4.8 KB of weights and int32 biases, ≈ 6.8 KB of per-channel quantisation
# parameters (float32 scale + int64 zero point each), the tensor and operator tables: ≈ 20 KB with
# internal tensor names stripped (≈ 30 KB with them).
MAX_BYTES = 24 * 1024
# TFLite-Micro's arena on a 64-bit host: ≈ 2 KB of activations + ≈ 8.5 KB of interpreter structs.
MAX_ARENA = 32 * 1024


@pytest.fixture(scope="module")
def series_tflite(
    series_student: Student, series_samples: list[Sample], tmp_path_factory: pytest.TempPathFactory
) -> TfliteReport:
    out = tmp_path_factory.mktemp("tflite") / "imu.tflite"
    with one_thread():
        return export_tflite(series_student, [collate_samples(series_samples)], out)


def test_file_is_full_int8_and_small(series_tflite: TfliteReport) -> None:
    r = series_tflite
    assert r.path.is_file() and r.path.stat().st_size == r.bytes
    assert r.bytes <= MAX_BYTES
    assert r.present == ("accelerometer", "gyroscope")
    assert r.int8_io and r.float_ops == () and r.names_stripped
    assert [t.stream for t in r.inputs] == ["accelerometer", "gyroscope"]
    assert all(t.dtype == "int8" and t.shape == (1, 3, 100) for t in r.inputs)
    assert r.output.dtype == "int8" and r.output.shape == (1, 4)
    assert all(t.scale > 0 and -128 <= t.zero_point <= 127 for t in (*r.inputs, r.output))
    # the file on disk says the same as the report
    ops, inputs, output = read_tflite(r.path.read_bytes())
    assert ops == r.ops and output.shape == r.output.shape
    assert [t.scale for t in inputs] == [t.scale for t in r.inputs]


def test_ops_are_tflite_micro_builtins(series_tflite: TfliteReport) -> None:
    assert set(series_tflite.ops) <= DEFAULT_ALLOWED_OPS
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED"} <= set(series_tflite.ops)
    check_ops(series_tflite.ops)
    with pytest.raises(TfliteOpError, match="DEPTHWISE_CONV_2D"):
        check_ops(series_tflite.ops, DEFAULT_ALLOWED_OPS - {"DEPTHWISE_CONV_2D"})


def test_arena_is_the_smallest_that_runs(series_tflite: TfliteReport) -> None:
    r = series_tflite
    assert 1024 < r.arena_bytes <= MAX_ARENA
    assert probe_arena(r.path, r.arena_bytes)
    assert not probe_arena(r.path, r.arena_bytes - 1)
    assert r.arena_head_bytes is not None and r.arena_tail_bytes is not None
    # the planned activations hold at least both inputs (2 × 300 int8)
    assert r.arena_head_bytes >= 600


def test_outputs_agree_with_the_float_student(
    series_tflite: TfliteReport, series_student: Student, series_batch: Batch
) -> None:
    a = series_tflite.agreement
    assert a.on == "calibration" and a.samples == 6
    # Calibrated on these very samples: the int8 output is within a few output steps.
    assert a.max_abs_steps <= 4.0
    assert a.cosine_min >= 0.99
    assert a.argmax_agreement == 1.0
    # the same check by hand, against the original (BatchNorm) student
    r = series_tflite
    with torch.no_grad():
        want = series_student.eval()(series_batch).double().numpy()
    for i in range(want.shape[0]):
        xs = [t.quantize(series_batch.data[t.stream or ""][i : i + 1]) for t in r.inputs]
        got = r.output.dequantize(run_tflite(r.path.read_bytes(), xs, r.arena_bytes))[0]
        assert np.abs(got - want[i]).max() <= 4.0 * r.output.scale


def test_failed_conversion_leaves_no_file(
    series_student: Student,
    series_samples: list[Sample],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import litert_torch

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("lowering failed")

    monkeypatch.setattr(litert_torch, "convert", broken)
    out = tmp_path / "imu.tflite"
    with pytest.raises(TfliteConversionError, match="lowering failed"):
        export_tflite(series_student, [collate_samples(series_samples)], out)
    assert list(tmp_path.iterdir()) == []


def test_late_failures_leave_no_file(
    series_tflite: TfliteReport,
    series_student: Student,
    series_samples: list[Sample],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Everything after the conversion is real; the conversion hands back the fixture's model."""
    import fusion.deploy.tflite as tfl

    converted = series_tflite.path.read_bytes()
    monkeypatch.setattr(tfl, "_convert", lambda *args: converted)
    cal = [collate_samples(series_samples)]
    with pytest.raises(TfliteOpError, match="CONV_2D"):
        export_tflite(
            series_student,
            cal,
            tmp_path / "imu.tflite",
            allowed_ops=DEFAULT_ALLOWED_OPS - {"CONV_2D"},
        )
    # several graphs: the second fails (a two-input model for one stream), so none is written
    with pytest.raises(TfliteConversionError, match="2 inputs for 1 streams"):
        export_tflite_subsets(
            series_student,
            cal,
            tmp_path,
            subsets=[("accelerometer", "gyroscope"), ("accelerometer",)],
        )
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_are_named(
    series_student: Student, series_samples: list[Sample], tmp_path: Path
) -> None:
    batch = collate_samples(series_samples)
    out = tmp_path / "x.tflite"
    with pytest.raises(StudentInputError, match="magnetometer"):
        export_tflite(series_student, [batch], out, present=["magnetometer"])
    wrong = (
        {k: v[:, :, :50] if k == "gyroscope" else v for k, v in batch.data.items()},
        dict(batch.present),
    )
    with pytest.raises(StudentInputError):
        export_tflite(series_student, [batch, wrong], out)
    nobody = (dict(batch.data), {k: torch.zeros_like(v) for k, v in batch.present.items()})
    with pytest.raises(QuantisationError, match="no calibration sample"):
        export_tflite(series_student, [nobody], out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_three_streams_stay_int8(tmp_path: Path) -> None:
    """Fusing three or more streams with chained ADDs left float ADD/DEQUANTIZE ops behind;
    the stack-then-mean fusion keeps the whole graph int8."""
    stems = tuple(
        StemConfig(k, "timeseries", ("x", "y", "z"), (8, 16), (2, 1)) for k in ("a", "b", "c")
    )
    torch.manual_seed(0)
    student = Student(StudentConfig(stems, head_dim=3)).eval()
    data = {k: torch.randn(8, 3, 40) for k in ("a", "b", "c")}
    with one_thread():
        r = export_tflite(student, [(data, {})], tmp_path / "three.tflite")
    assert r.float_ops == () and "CONCATENATION" in r.ops
    assert r.agreement.cosine_min >= 0.99 and r.agreement.argmax_agreement == 1.0


def test_default_subsets() -> None:
    assert default_subsets(("a", "b", "c")) == [("a", "b", "c"), ("b", "c"), ("a", "c"), ("a", "b")]
    assert default_subsets(("a",)) == [("a",)]
