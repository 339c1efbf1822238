"""Distillation: subset sampling, the cosine loss going down, the student directory round trip,
and named errors for a teacher without sensor metadata and a student for other sensors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion.data.sample import Sample
from fusion.deploy.distill import (
    DistillConfig,
    distill,
    load_teacher,
    sample_sensor_subsets,
    sensor_streams,
    stream_presence,
)
from fusion.deploy.errors import StudentSensorError, StudentStoreError, TeacherError
from fusion.deploy.golden import golden_forward
from fusion.deploy.student_io import StudentBundle, load_student, save_student
from tests.deploy.tiny import specs_of, tensors, tiny_bundle


@pytest.fixture(scope="module")
def bundle(series_samples: list[Sample]) -> StudentBundle:
    return tiny_bundle(series_samples)


def test_subset_sampling_keeps_one_sensor_and_covers_every_count() -> None:
    gen = torch.Generator().manual_seed(0)
    on = sample_sensor_subsets(6000, 3, gen)
    assert on.any(1).all()  # never all off
    off = (~on).sum(1)
    counts = torch.bincount(off, minlength=3).double() / len(off)
    assert torch.allclose(counts, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.03)
    # given one sensor off, each sensor is the one equally often
    one = ~on[off == 1]
    share = one.double().mean(0)
    assert torch.allclose(share, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.05)


def test_stream_presence_skips_or_zero_fills(series_samples: list[Sample]) -> None:
    data = tensors(series_samples)
    sensors = sensor_streams(specs_of(series_samples))
    first = next(iter(sensors))
    inputs, present = stream_presence(data, sensors, [first])
    for name, keys in sensors.items():
        for k in keys:
            assert bool(present[k].all()) == (name == first)
    inputs, present = stream_presence(data, sensors, [first], zero_fill=True)
    for name, keys in sensors.items():
        for k in keys:
            assert bool(present[k].all())
            assert bool((inputs[k] == 0).all()) == (name != first)


def test_distillation_reduces_the_cosine_loss(series_samples: list[Sample]) -> None:
    data = tensors(series_samples)
    sensors = sensor_streams(specs_of(series_samples))
    torch.manual_seed(0)
    targets = torch.randn(len(data), 24)  # teacher D = 24 ≠ student D = 16: linear adapter
    cfg = DistillConfig(steps=40, batch_size=6, lr=1e-2, widths=(8, 16), strides=(2, 1))
    result = distill(data, targets, sensors, cfg, n_classes=3, log_every=5)
    assert result.cosine[-1] < result.cosine[0] - 0.05, result.cosine
    assert result.task and result.task[-1] < result.task[0]
    assert result.student.cfg.head_dim == 3 and not result.student.training


def test_save_load_round_trip(bundle: StudentBundle, tmp_path: Path) -> None:
    out = save_student(bundle, tmp_path / "student")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]  # no temporary left
    again = load_student(out, expect=bundle.specs)
    assert again.sensors == bundle.sensors and again.input_shapes == bundle.input_shapes
    assert again.meta["class_names"] == ["a", "b", "c"]
    x = {k: torch.randn(3, *s) for k, s in bundle.input_shapes.items()}
    with torch.no_grad():
        assert torch.equal(
            again.student.forward_tensors(x, {}), bundle.student.forward_tensors(x, {})
        )
    for a, b in (
        (bundle.quantized, again.quantized),
        (bundle.baseline_quantized, again.baseline_quantized),
    ):
        assert a is not None and b is not None
        qa, qb = a.quantize_inputs(x), b.quantize_inputs(x)
        np.testing.assert_array_equal(golden_forward(a, qa, {}), golden_forward(b, qb, {}))
    # saving again replaces the directory only once complete
    save_student(again, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]


def test_load_refuses_a_student_for_other_sensors(bundle: StudentBundle, tmp_path: Path) -> None:
    out = save_student(bundle, tmp_path / "student")
    with pytest.raises(StudentSensorError) as err:
        load_student(out, expect=["accelerometer", "magnetometer"])
    msg = str(err.value)
    for name in (*bundle.sensors, "magnetometer"):
        assert name in msg
    with pytest.raises(StudentStoreError, match=r"no student\.json"):
        load_student(tmp_path / "nowhere")


def test_teacher_without_sensor_metadata_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    del ckpt["fusion"]["specs"]
    bad = tmp_path / "no-specs.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(TeacherError, match="no sensor metadata"):
        load_teacher(bad)
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(TeacherError, match="not a fusion checkpoint"):
        load_teacher(plain)
    with pytest.raises(TeacherError, match="does not exist"):
        load_teacher(tmp_path / "missing.ckpt")
    teacher = load_teacher(checkpoint)
    assert set(teacher.specs) == {"syn_optical", "syn_sar", "syn_thermal"}
    assert os.path.exists(checkpoint)
