"""Full-int8 quantisation and the numpy golden model against the float student."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fusion.data.collate import Batch, collate_samples
from fusion.data.sample import Sample
from fusion.deploy import (
    NoStreamPresentError,
    QParams,
    QuantisationError,
    QuantizedStudent,
    Student,
    StudentInputError,
    golden_forward,
    golden_invoke,
    quantize_student,
)


def _subsets(keys: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [c for r in range(1, len(keys) + 1) for c in itertools.combinations(keys, r)]


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out: np.ndarray = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return out


def test_qparams_from_range() -> None:
    q = QParams.from_range(0.0, 2.55)  # a ReLU output: zero point at the bottom
    assert q.zero_point == -128 and q.scale == pytest.approx(0.01)
    q = QParams.from_range(-1.0, 1.0)
    assert q.zero_point == 0  # −128 − (−1/(2/255)) = −0.5 → 0 (ties away from zero)
    q = QParams.from_range(0.5, 3.0)  # widened to hold 0
    assert q.dequantize(np.array([q.zero_point]))[0] == 0.0
    assert q.quantize(np.array([0.0]))[0] == q.zero_point
    assert QParams.from_range(0.0, 0.0).scale > 0
    q = QParams(0.5, 3)
    assert q.quantize(np.array([0.25, -0.25, 0.75, 1000.0, -1000.0])).tolist() == [
        4,
        2,
        5,
        127,
        -128,
    ]


def test_quantised_tables(raster_q: QuantizedStudent, raster_student: Student) -> None:
    for stem in raster_q.stems:
        for layer in stem.layers:
            assert layer.weight.dtype == np.int8 and layer.bias.dtype == np.int32
            assert (
                np.abs(layer.weight.astype(int)).max(axis=tuple(range(1, layer.weight.ndim))).min()
                == 127
            )
            assert (layer.multiplier >= 2**30).all() and (layer.multiplier < 2**31).all()
            assert layer.act_min == max(layer.output.zero_point, -128)  # ReLU in the clamp
        assert stem.pool.output == raster_q.fused  # every stem pools into one quantisation
    assert raster_q.weight_bytes()["total"] == raster_student.int8_weight_bytes()
    shapes = {s.key: s.input_shape for s in raster_q.stems}
    expected = raster_student.macs(shapes)
    assert {k: v for k, v in raster_q.macs().items() if k != "total"} == expected


@pytest.mark.parametrize("which", ["raster", "series"])
def test_golden_agrees_with_float_for_every_subset(
    which: str,
    raster_student: Student,
    raster_q: QuantizedStudent,
    raster_batch: Batch,
    series_student: Student,
    series_q: QuantizedStudent,
    series_batch: Batch,
) -> None:
    """In-sample (calibration data): measured max error 1.1 output steps (raster, embedding) and
    0.9 (series, 4-way head) over every subset; asserted ≤ 2 steps and cosine > 0.999."""
    student, q, batch = (
        (raster_student, raster_q, raster_batch)
        if which == "raster"
        else (series_student, series_q, series_batch)
    )
    qin = q.quantize_inputs(batch.data)
    for subset in _subsets(student.keys):
        with torch.no_grad():
            y = student.forward_tensors({k: batch.data[k] for k in subset}, {}).double().numpy()
        out = golden_forward(q, {k: qin[k] for k in subset}, {})
        assert out.dtype == np.int8 and out.shape == y.shape
        deq = q.dequantize_output(out)
        assert np.abs(deq - y).max() <= 2 * q.output.scale, subset
        assert _cosine(deq, y).min() > 0.999, subset


def test_trained_classifier_keeps_its_decisions(basicmotions_split: tuple[Batch, Batch]) -> None:
    """A student trained briefly on real BasicMotions (train split, one stream dropped on two
    steps of three), calibrated on the train split, judged on the test split. Measured: float and
    int8 both 100 % accurate, argmax agreement 100 %, cosine ≥ 0.991 for every subset."""
    train, test = basicmotions_split
    torch.manual_seed(0)
    student = Student.from_streams(train.streams, head_dim=4)
    opt = torch.optim.Adam(student.parameters(), 3e-3)
    assert train.labels is not None and test.labels is not None
    for step in range(150):
        student.train()
        present = {k: torch.ones(len(train), dtype=torch.bool) for k in student.keys}
        if step % 3:
            present[student.keys[step % 3 - 1]][:] = False
        loss = F.cross_entropy(student.forward_tensors(train.data, present), train.labels)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    student.eval()
    q = quantize_student(student, [train])
    qin = q.quantize_inputs(test.data)
    labels = test.labels.numpy()
    for subset in _subsets(student.keys):
        with torch.no_grad():
            y = student.forward_tensors({k: test.data[k] for k in subset}, {}).numpy()
        out = q.dequantize_output(golden_forward(q, {k: qin[k] for k in subset}, {}))
        agree = (out.argmax(1) == y.argmax(1)).mean()
        assert agree >= 0.95, subset
        assert (out.argmax(1) == labels).mean() >= (y.argmax(1) == labels).mean() - 0.05
        assert _cosine(out, y.astype(np.float64)).min() > 0.98, subset


@pytest.fixture(scope="module")
def basicmotions_split(basicmotions: list[Sample]) -> tuple[Batch, Batch]:
    return collate_samples(basicmotions[:40]), collate_samples(basicmotions[40:])


def test_rows_with_different_subsets(series_q: QuantizedStudent, series_batch: Batch) -> None:
    """Batched golden with per-row presence equals golden_invoke per sample."""
    qin = series_q.quantize_inputs(series_batch.data)
    n = len(series_batch)
    present = {
        "accelerometer": np.array([True, True, False, True, False, True]),
        "gyroscope": np.array([True, False, True, True, True, False]),
    }
    out = golden_forward(series_q, qin, present)
    for i in range(n):
        mask = sum(1 << j for j, k in enumerate(series_q.keys) if present[k][i])
        inputs = [qin[k][i] if present[k][i] else None for k in series_q.keys]
        assert np.array_equal(golden_invoke(series_q, inputs, mask), out[i])


def test_golden_errors(series_q: QuantizedStudent, series_batch: Batch) -> None:
    qin = series_q.quantize_inputs(series_batch.data)
    one = [qin[k][0] for k in series_q.keys]
    with pytest.raises(NoStreamPresentError):
        golden_invoke(series_q, one, 0)
    with pytest.raises(NoStreamPresentError):
        golden_invoke(series_q, one, 0b100)
    with pytest.raises(StudentInputError, match="no data"):
        golden_invoke(series_q, [None, one[1]], 0b11)
    with pytest.raises(StudentInputError, match="int8"):
        golden_invoke(series_q, [one[0].astype(np.int16), one[1]], 0b11)
    with pytest.raises(StudentInputError, match="expects"):
        golden_invoke(series_q, [one[0][:, :50], one[1]], 0b01)
    with pytest.raises(NoStreamPresentError):
        golden_forward(series_q, qin, {k: np.zeros(len(series_batch), bool) for k in qin})


def test_calibration_must_see_every_stream(series_student: Student, series_batch: Batch) -> None:
    with pytest.raises(QuantisationError, match="gyroscope"):
        only_acc: dict[str, torch.Tensor] = {"accelerometer": series_batch.data["accelerometer"]}
        quantize_student(series_student, [(only_acc, {})])


def test_calibration_shapes_must_agree(series_student: Student, series_batch: Batch) -> None:
    short = {k: v[:, :, :50] for k, v in series_batch.data.items()}
    with pytest.raises(StudentInputError, match="calibration shape"):
        quantize_student(series_student, [(series_batch.data, {}), (short, {})])
