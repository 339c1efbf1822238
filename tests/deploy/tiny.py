"""A tiny distilled student built without a teacher checkpoint: six IMU windows (accelerometer +
gyroscope), random "teacher" embeddings and labels, a few steps. Shared by the deploy tests."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fusion.data.sample import Sample
from fusion.data.specs import NormStats, SensorSpec
from fusion.deploy.distill import (
    DistillConfig,
    TensorData,
    distill,
    quantize_bundle,
    sensor_streams,
)
from fusion.deploy.student_io import StudentBundle

TINY = DistillConfig(steps=4, batch_size=6, widths=(8, 16), strides=(2, 1), calibration_rows=6)


def tensors(samples: Sequence[Sample], n_classes: int = 3) -> TensorData:
    """Stack already-normalised samples, labels cycling over ``n_classes``."""
    keys = sorted(samples[0].data)
    return TensorData(
        inputs={k: torch.stack([s.data[k] for s in samples]) for k in keys},
        present={k: torch.ones(len(samples), dtype=torch.bool) for k in keys},
        labels=torch.arange(len(samples)) % n_classes,
        streams={k: samples[0].streams[k] for k in keys},
    )


def specs_of(samples: Sequence[Sample]) -> dict[str, SensorSpec]:
    """Specs of the samples' sensors with identity statistics (the data is normalised)."""
    out = {}
    for stream in samples[0].streams.values():
        spec = SensorSpec(
            name=stream.sensor,
            kind="timeseries",
            bands=stream.bands,
        )
        n = len(stream.bands)
        out[stream.sensor] = spec.with_stats(NormStats((0.0,) * n, (1.0,) * n, (1,) * n))
    return out


def tiny_bundle(samples: Sequence[Sample], *, steps: int = 4, seed: int = 0) -> StudentBundle:
    data = tensors(samples)
    specs = specs_of(samples)
    sensors = sensor_streams(specs)
    cfg = DistillConfig(**{**TINY.__dict__, "steps": steps, "seed": seed})
    torch.manual_seed(seed)
    targets = torch.randn(len(data), 24)
    main = distill(data, targets, sensors, cfg, n_classes=3)
    base = distill(data, targets, sensors, cfg, n_classes=3, sensor_dropout=False)
    return StudentBundle(
        student=main.student,
        quantized=quantize_bundle(main.student, data, sensors, 6),
        specs=specs,
        input_shapes=data.shapes,
        meta={"task": "classification", "class_names": ["a", "b", "c"], "steps": steps},
        baseline=base.student,
        baseline_quantized=quantize_bundle(base.student, data, sensors, 6, zero_fill=True),
    )


def series_windows(n: int = 6) -> list[Sample]:
    """Six standardised 10 s windows of accelerometer + gyroscope at 10 Hz (as the deploy
    conftest's ``series_samples``), for tests outside tests/deploy."""
    from tests.deploy.conftest import standardise
    from tests.samples import random_walk_windows

    return standardise(random_walk_windows(n))
