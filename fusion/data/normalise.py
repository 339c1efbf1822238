"""Normalisation statistics computed in one streaming pass, stored with the sensor spec.

Per-band mean and variance are merged batch by batch with Chan et al.'s parallel update (float64),
so the pass needs memory for three numbers per band whatever the dataset size, and partial results
from several workers combine exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from fusion.data.errors import SpecError
from fusion.data.sample import Sample
from fusion.data.specs import NormStats, SensorSpec


@dataclass
class RunningStats:
    """Count, mean and sum of squared deviations of a stream of values, per band."""

    count: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    m2: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def update(self, values: np.ndarray, valid: np.ndarray) -> None:
        """Add a batch: ``values`` ``(C, N)``, ``valid`` bool ``(N,)``."""
        x = values[:, valid].astype(np.float64)
        n_b = np.full(x.shape[0], x.shape[1], dtype=np.float64)
        if x.shape[1] == 0:
            return
        mean_b = x.mean(axis=1)
        m2_b = ((x - mean_b[:, None]) ** 2).sum(axis=1)
        if self.count.size == 0:
            self.count, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        self.merge(RunningStats(n_b, mean_b, m2_b))

    def merge(self, other: RunningStats) -> None:
        """Fold another partial result into this one (exact)."""
        if other.count.size == 0:
            return
        if self.count.size == 0:
            self.count, self.mean, self.m2 = other.count, other.mean, other.m2
            return
        n = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * other.count / n
        self.m2 = self.m2 + other.m2 + delta**2 * self.count * other.count / n
        self.count = n

    @property
    def std(self) -> np.ndarray:
        out: np.ndarray = np.sqrt(self.m2 / np.maximum(self.count - 1, 1))
        return out


def compute_stats(
    samples: Iterable[Sample], specs: Mapping[str, SensorSpec]
) -> dict[str, SensorSpec]:
    """One pass over ``samples``; returns each sensor's spec with :class:`NormStats` attached.

    Only valid pixels (mask ``True``) count. Bands never seen get mean 0, std 1 and count 0.
    """
    running: dict[tuple[str, str], RunningStats] = {}
    for sample in samples:
        for key, x in sample.data.items():
            stream = sample.streams[key]
            valid = sample.masks[key].reshape(-1).numpy()
            values = x.reshape(x.shape[0], -1).numpy()
            for i, name in enumerate(stream.band_names):
                rs = running.setdefault((stream.sensor, name), RunningStats())
                rs.update(values[i : i + 1], valid)
    out = {}
    for sensor, spec in specs.items():
        mean, std, count = [], [], []
        for band in spec.bands:
            seen = running.get((sensor, band.name))
            if seen is None or seen.count.size == 0:
                mean.append(0.0)
                std.append(1.0)
                count.append(0)
                continue
            mean.append(float(seen.mean[0]))
            std.append(float(max(seen.std[0], 1e-12)))
            count.append(int(seen.count[0]))
        out[sensor] = spec.with_stats(NormStats(tuple(mean), tuple(std), tuple(count)))
    return out


class Normaliser:
    """``Sample → Sample`` standardising each band with its spec's statistics.

    Invalid pixels stay 0. Values are never clipped (standardised data has no fixed range).

    Raises:
        SpecError: a sensor in the sample has no spec or no statistics.
    """

    def __init__(self, specs: Mapping[str, SensorSpec]) -> None:
        self.specs = dict(specs)

    def __call__(self, sample: Sample) -> Sample:
        return self._map(sample, invert=False)

    def invert(self, sample: Sample) -> Sample:
        """Physical values back from standardised ones (invalid pixels stay 0)."""
        return self._map(sample, invert=True)

    def _map(self, sample: Sample, *, invert: bool) -> Sample:
        data = {}
        for key, x in sample.data.items():
            stream = sample.streams[key]
            spec = self.specs.get(stream.sensor)
            if spec is None or spec.stats is None:
                raise SpecError(
                    "no normalisation statistics for this sensor; run compute_stats first",
                    sensor=stream.sensor,
                )
            idx = [spec.band_index(n) for n in stream.band_names]
            shape = (-1,) + (1,) * (x.dim() - 1)
            mean = torch.tensor([spec.stats.mean[i] for i in idx], dtype=torch.float32).view(shape)
            std = torch.tensor([spec.stats.std[i] for i in idx], dtype=torch.float32).view(shape)
            y = x * std + mean if invert else (x - mean) / std
            data[key] = y * sample.masks[key].unsqueeze(0)
        return Sample(
            data,
            dict(sample.masks),
            dict(sample.streams),
            sample.meta,
            sample.label,
            dict(sample.band_present),
        )
