"""Real test batches for the models: synthetic rasters and IMU-like series (no files needed)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from fusion.data.align import align
from fusion.data.collate import Batch, collate_samples
from fusion.data.readers.ts_file import case_to_sources
from fusion.data.sample import Sample
from fusion.data.sampling import ChipDataset
from fusion.data.synthetic import make_scene
from fusion.data.timeseries import align_series

WIDTH = 16  # small, so every test runs in well under a second


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def raster_samples() -> list[Sample]:
    """Four 640 m chips: syn_optical_10m (4,64,64), _20m (2,32,32), syn_sar (2,64,64),
    syn_thermal (2,11,11); the optical streams have cloud-masked pixels."""
    scene = align(make_scene(0, size_m=1920).sources)
    ds = ChipDataset.gridded([scene], 640)
    return [ds[i] for i in range(4)]


@pytest.fixture(scope="session")
def series_samples() -> list[Sample]:
    """Four 10 s windows of accelerometer + gyroscope at 10 Hz (random walks)."""
    rng = np.random.default_rng(3)
    out = []
    for _ in range(4):
        values = np.cumsum(rng.normal(size=(6, 100)), axis=1)
        aligned = align_series(case_to_sources(values, rate_hz=10.0))
        out.append(aligned.window(aligned.start_s, aligned.duration_s))
    return out


@pytest.fixture
def raster_batch(raster_samples: list[Sample]) -> Batch:
    return collate_samples(raster_samples)


@pytest.fixture
def series_batch(series_samples: list[Sample]) -> Batch:
    return collate_samples(series_samples)


BatchEdit = Callable[[Batch], None]
