"""Fixtures of the registry tests: generated general and site IMU data (see ``site_data.py``),
a small general student distilled on the general data (class prototypes stand in for a
teacher's embeddings), and a registry holding it as ``imu:1.0.0``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fusion.data.labelled import load_labelled
from fusion.data.normalise import Normaliser, compute_stats
from fusion.deploy.distill import (
    DistillConfig,
    distill,
    quantize_bundle,
    sensor_streams,
    tensor_data,
)
from fusion.deploy.student_io import StudentBundle
from tests.registry.site_data import CLASS_NAMES, GENERAL, HIGHWAY, write_site
from tests.threads import one_thread


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread: None) -> None:
    """Every test module here runs with one intra-op thread."""


@pytest.fixture(scope="session")
def site_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sites")


@pytest.fixture(scope="session")
def general_data(site_root: Path) -> Path:
    """The general population: 20 training and 12 test cases per class."""
    return write_site(site_root / "general", "General", GENERAL, seed=0, n_train=20, n_test=12)


@pytest.fixture(scope="session")
def highway_data(site_root: Path) -> Path:
    """One site, its watch mounted differently: 8 training and 12 test cases per class."""
    return write_site(site_root / "highway", "Highway", HIGHWAY, seed=7)


def train_student(data: Path, *, seed: int = 0, steps: int = 150) -> StudentBundle:
    """A small student (stems 8 → 16) with a task head, statistics of ``data``'s train split."""
    labelled = load_labelled(data)
    names = list(labelled.class_names or CLASS_NAMES)
    train = [labelled.train[i] for i in range(len(labelled.train))]  # type: ignore[arg-type]
    specs = compute_stats(train, labelled.specs)
    tensors, _ = tensor_data(train, Normaliser(specs))
    assert tensors.labels is not None
    sensors = sensor_streams(specs)
    gen = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(len(names), 16, generator=gen)
    targets = prototypes[tensors.labels] + 0.1 * torch.randn(len(tensors), 16, generator=gen)
    cfg = DistillConfig(
        steps=steps, batch_size=24, widths=(8, 16), strides=(2, 1), calibration_rows=24, seed=seed
    )
    with one_thread():
        result = distill(tensors, targets, sensors, cfg, n_classes=len(names))
        q = quantize_bundle(result.student, tensors, sensors, 24)
    return StudentBundle(
        student=result.student,
        quantized=q,
        specs=specs,
        input_shapes=tensors.shapes,
        meta={
            "task": "classification",
            "class_names": names,
            "data": str(data),
            "steps": steps,
            "toolkit_version": "0.1.0",
        },
    )


@pytest.fixture(scope="session")
def general_student(general_data: Path) -> StudentBundle:
    return train_student(general_data)
