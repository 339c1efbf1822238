"""Real batches for the deploy tests (normalised, as a student sees them), students with settled
BatchNorm statistics, their int8 forms, and the host C compiler."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from fusion.data.collate import Batch, collate_samples
from fusion.data.labelled import load_labelled
from fusion.data.sample import Sample
from fusion.deploy import QuantizedStudent, Student, quantize_student
from tests.deploy.c_harness import CompiledStudent, compile_student
from tests.samples import random_walk_windows, synthetic_chips
from tests.threads import one_thread


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread: None) -> None:
    """Every test module here runs with one intra-op thread."""


def standardise(samples: Sequence[Sample]) -> list[Sample]:
    """Per-stream, per-band standardisation over the valid values of these samples (what the
    library's Normaliser does with spec statistics)."""
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key in sorted({k for s in samples for k in s.data}):
        xs = [s.data[key].flatten(1)[:, s.masks[key].flatten()] for s in samples if key in s.data]
        x = torch.cat(xs, dim=1)
        stats[key] = (x.mean(dim=1), x.std(dim=1).clamp(min=1e-6))
    out = []
    for s in samples:
        data = {}
        for key, x in s.data.items():
            mean, std = stats[key]
            shape = (-1,) + (1,) * (x.dim() - 1)
            data[key] = (x - mean.view(shape)) / std.view(shape) * s.masks[key].unsqueeze(0)
        out.append(Sample(data, dict(s.masks), dict(s.streams), s.meta, s.label))
    return out


def settle(student: Student, batch: Batch, steps: int = 5) -> Student:
    """Give BatchNorm running statistics from real data (stands in for training), then eval."""
    student.train()
    with torch.no_grad():
        for _ in range(steps):
            student(batch)
    return student.eval()


@pytest.fixture(scope="session")
def raster_samples() -> list[Sample]:
    """Nine 640 m synthetic chips, three sensors, four streams: syn_optical_10m (4,64,64),
    syn_optical_20m (2,32,32), syn_sar (2,64,64), syn_thermal (2,11,11)."""
    return standardise(synthetic_chips(9))


@pytest.fixture(scope="session")
def series_samples() -> list[Sample]:
    """Six 10 s windows of accelerometer + gyroscope (3 + 3 channels) at 10 Hz."""
    return standardise(random_walk_windows(6))


@pytest.fixture
def raster_batch(raster_samples: list[Sample]) -> Batch:
    return collate_samples(raster_samples)


@pytest.fixture
def series_batch(series_samples: list[Sample]) -> Batch:
    return collate_samples(series_samples)


@pytest.fixture(scope="session")
def raster_student(raster_samples: list[Sample]) -> Student:
    """Default widths/strides, embedding output (no head)."""
    torch.manual_seed(0)
    batch = collate_samples(raster_samples)
    with one_thread():
        return settle(Student.from_streams(batch.streams), batch)


@pytest.fixture(scope="session")
def series_student(series_samples: list[Sample]) -> Student:
    """Narrower stems and a 4-way task head (signed logits)."""
    torch.manual_seed(1)
    batch = collate_samples(series_samples)
    student = Student.from_streams(
        batch.streams, widths=(16, 32, 32), strides=(2, 2, 1), head_dim=4
    )
    with one_thread():
        return settle(student, batch)


@pytest.fixture(scope="session")
def raster_q(raster_student: Student, raster_samples: list[Sample]) -> QuantizedStudent:
    with one_thread():
        return quantize_student(raster_student, [collate_samples(raster_samples)])


@pytest.fixture(scope="session")
def series_q(series_student: Student, series_samples: list[Sample]) -> QuantizedStudent:
    with one_thread():
        return quantize_student(series_student, [collate_samples(series_samples)])


@pytest.fixture(scope="session")
def gcc() -> str:
    path = shutil.which("gcc")
    if path is None:
        pytest.skip("host gcc is absent: the C export cannot be compiled here")
    return path


@pytest.fixture(scope="session")
def raster_c(
    gcc: str, raster_q: QuantizedStudent, tmp_path_factory: pytest.TempPathFactory
) -> CompiledStudent:
    return compile_student(raster_q, tmp_path_factory.mktemp("c-raster"), gcc=gcc)


@pytest.fixture(scope="session")
def series_c(
    gcc: str, series_q: QuantizedStudent, tmp_path_factory: pytest.TempPathFactory
) -> CompiledStudent:
    return compile_student(series_q, tmp_path_factory.mktemp("c-series"), gcc=gcc, name="imu")


@pytest.fixture(scope="session")
def basicmotions(shared_data: Path) -> list[Sample]:
    """The 80 real BasicMotions recordings (accelerometer + gyroscope, 3 × 100 each): the 40 of
    the published train split, then the 40 of the test split, standardised together."""
    data = load_labelled(shared_data / "imu" / "BasicMotions_TRAIN.ts")
    return standardise([*data.train, *data.test])  # type: ignore[misc]
