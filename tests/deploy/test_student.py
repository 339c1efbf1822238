"""The float student on real batches: any subset of streams, absent = not computed, config round
trip, BatchNorm folding, cost figures and named input errors."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from fusion.data.collate import Batch, collate_samples
from fusion.data.sample import Sample
from fusion.data.synthetic import SYN_OPTICAL, SYN_SAR
from fusion.deploy import Student, StudentConfigError, StudentInputError
from fusion.deploy.student import StudentConfig


def _subsets(keys: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [c for r in range(1, len(keys) + 1) for c in itertools.combinations(keys, r)]


@pytest.mark.parametrize("which", ["raster", "series"])
def test_any_subset_runs_and_equals_the_subset_alone(
    which: str,
    raster_student: Student,
    series_student: Student,
    raster_batch: Batch,
    series_batch: Batch,
) -> None:
    student, batch = (
        (raster_student, raster_batch) if which == "raster" else (series_student, series_batch)
    )
    n = len(batch)
    with torch.no_grad():
        for subset in _subsets(student.keys):
            inputs = {k: batch.data[k] for k in subset}
            out = student.forward_tensors(inputs, {})
            assert out.shape == (n, student.cfg.out_dim)
            assert torch.isfinite(out).all()
            # The same subset through `present` flags, the other streams filled with garbage.
            present = {k: torch.full((n,), k in subset) for k in student.keys}
            noisy = {
                k: v if k in subset else torch.randn_like(v) * 1e3 for k, v in batch.data.items()
            }
            flagged = student.forward_tensors(noisy, present)
            torch.testing.assert_close(flagged, out, rtol=1e-5, atol=1e-6)


def test_mixed_presence_per_row(raster_student: Student, raster_samples: list[Sample]) -> None:
    """Rows of one batch with different streams present equal each row run on its own."""
    keys = raster_student.keys
    drops = [(), (keys[0],), (keys[1], keys[2]), (keys[0], keys[1], keys[3])]
    samples = [s.without() for s in raster_samples]
    for s, drop in zip(samples, drops, strict=True):
        for k in drop:
            del s.data[k], s.masks[k], s.streams[k]
    batch = collate_samples(samples)
    with torch.no_grad():
        out = raster_student(batch)
        for i, s in enumerate(samples):
            alone = raster_student(collate_samples([s]))
            torch.testing.assert_close(out[i : i + 1], alone, rtol=1e-4, atol=1e-5)


def test_stem_not_run_for_absent_rows(raster_student: Student, raster_batch: Batch) -> None:
    key = raster_student.keys[0]
    seen: list[int] = []
    stem = raster_student.stems[0]
    handle = stem.register_forward_hook(lambda m, a, o: seen.append(int(a[0].shape[0])))
    try:
        present = dict(raster_batch.present)
        present[key] = torch.tensor([True, False, False, True])
        with torch.no_grad():
            raster_student.forward_tensors(raster_batch.data, present)
            present[key] = torch.zeros(4, dtype=torch.bool)
            raster_student.forward_tensors(raster_batch.data, present)
    finally:
        handle.remove()
    assert seen == [2]


def test_no_stream_present_gives_zero_fusion(series_student: Student, series_batch: Batch) -> None:
    present = {k: torch.zeros(len(series_batch), dtype=torch.bool) for k in series_student.keys}
    with torch.no_grad():
        out = series_student.forward_tensors(series_batch.data, present)
        assert series_student.head is not None
        expected = series_student.head(torch.zeros(1, series_student.cfg.dim))
    torch.testing.assert_close(out, expected.expand_as(out))


def test_config_round_trip(series_student: Student, series_batch: Batch) -> None:
    cfg = series_student.config()
    again = Student.from_config(cfg)
    assert again.config() == cfg
    again.load_state_dict(series_student.state_dict())
    again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(series_batch), series_student(series_batch))


def test_from_specs_makes_one_stem_per_stream() -> None:
    student = Student.from_specs([SYN_OPTICAL, SYN_SAR], head_dim=3)
    assert student.keys == tuple(
        sorted(s.key for spec in (SYN_OPTICAL, SYN_SAR) for s in spec.streams())
    )
    assert all(s.kind == "raster" for s in student.cfg.stems)


def test_folding_batchnorm_is_exact_and_leaves_only_conv_relu_linear(
    raster_student: Student, raster_batch: Batch
) -> None:
    folded = raster_student.folded()
    kinds = {type(m) for m in folded.modules()}
    assert not any(issubclass(k, nn.modules.batchnorm._BatchNorm) for k in kinds)
    with torch.no_grad():
        torch.testing.assert_close(
            folded(raster_batch), raster_student(raster_batch), rtol=1e-4, atol=1e-5
        )


def test_cost_figures(
    raster_student: Student, series_student: Student, raster_batch: Batch
) -> None:
    folded = raster_student.folded()
    assert raster_student.param_count() == sum(p.numel() for p in folded.parameters())
    assert raster_student.param_count(folded=False) > raster_student.param_count()
    macs = raster_student.macs({k: tuple(v.shape[1:]) for k, v in raster_batch.data.items()})
    # syn_thermal (2, 11, 11), default widths (16, 32, 64, 64), strides (2, 2, 2, 1):
    # 11 → 6 → 3 → 2 → 2; dw 2·9·36 + pw 2·16·36, dw 16·9·9 + pw 16·32·9, ...
    thermal = (
        (2 * 9 * 36 + 2 * 16 * 36)
        + (16 * 9 * 9 + 16 * 32 * 9)
        + (32 * 9 * 4 + 32 * 64 * 4)
        + (64 * 9 * 4 + 64 * 64 * 4)
    )
    assert macs["syn_thermal"] == thermal
    assert macs["head"] == 0
    series_macs = series_student.macs({"accelerometer": (3, 100), "gyroscope": (3, 100)})
    assert series_macs["head"] == 32 * 4
    assert series_macs["accelerometer"] == series_macs["gyroscope"]


def test_config_errors() -> None:
    with pytest.raises(StudentConfigError, match="one stride per block"):
        StudentConfig.from_dict(
            {
                "stems": [
                    {"key": "a", "kind": "raster", "bands": ["x"], "widths": [8, 8], "strides": [1]}
                ]
            }
        )
    with pytest.raises(StudentConfigError, match="same width"):
        StudentConfig.from_dict(
            {
                "stems": [
                    {"key": "a", "kind": "raster", "bands": ["x"], "widths": [8], "strides": [1]},
                    {
                        "key": "b",
                        "kind": "timeseries",
                        "bands": ["y"],
                        "widths": [4],
                        "strides": [1],
                    },
                ]
            }
        )
    with pytest.raises(StudentConfigError, match="unknown student config"):
        StudentConfig.from_dict({"stems": [], "depth": 3})


def test_input_errors(series_student: Student, series_batch: Batch) -> None:
    acc = series_batch.data["accelerometer"]
    with pytest.raises(StudentInputError, match="not ones the student"):
        series_student.forward_tensors({"magnetometer": acc}, {})
    with pytest.raises(StudentInputError, match="channels"):
        series_student.forward_tensors({"accelerometer": acc[:, :2]}, {})
    with pytest.raises(StudentInputError, match="does not fit"):
        series_student.forward_tensors({"accelerometer": acc[:, :, None]}, {})
    with pytest.raises(StudentInputError, match="dtype"):
        series_student.forward_tensors({"accelerometer": acc.to(torch.int8)}, {})
    with pytest.raises(StudentInputError, match="present"):
        series_student.forward_tensors({"accelerometer": acc}, {"accelerometer": torch.ones(2)})
