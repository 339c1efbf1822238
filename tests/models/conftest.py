"""Real test batches for the models: synthetic rasters and IMU-like series (no files needed)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from fusion.data.collate import Batch, collate_samples
from fusion.data.sample import Sample
from tests.samples import random_walk_windows, synthetic_chips

WIDTH = 16  # small, so every test runs in well under a second


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def raster_samples() -> list[Sample]:
    """Four 640 m chips: syn_optical_10m (4,64,64), _20m (2,32,32), syn_sar (2,64,64),
    syn_thermal (2,11,11); the optical streams have cloud-masked pixels."""
    return synthetic_chips(4)


@pytest.fixture(scope="session")
def series_samples() -> list[Sample]:
    """Four 10 s windows of accelerometer + gyroscope at 10 Hz (random walks)."""
    return random_walk_windows(4)


@pytest.fixture
def raster_batch(raster_samples: list[Sample]) -> Batch:
    return collate_samples(raster_samples)


@pytest.fixture
def series_batch(series_samples: list[Sample]) -> Batch:
    return collate_samples(series_samples)


BatchEdit = Callable[[Batch], None]
