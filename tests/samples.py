"""Small real-format samples the model and deploy tests share (no files needed)."""

from __future__ import annotations

import numpy as np

from fusion.data.align import align
from fusion.data.readers.ts_file import case_to_sources
from fusion.data.sample import Sample
from fusion.data.sampling import ChipDataset
from fusion.data.synthetic import make_scene
from fusion.data.timeseries import align_series


def synthetic_chips(n: int = 4) -> list[Sample]:
    """``n`` (≤ 9) 640 m chips of the synthetic scene of seed 0: syn_optical_10m (4,64,64),
    syn_optical_20m (2,32,32), syn_sar (2,64,64), syn_thermal (2,11,11); the optical streams
    have cloud-masked pixels. Physical values."""
    scene = align(make_scene(0, size_m=1920).sources)
    ds = ChipDataset.gridded([scene], 640)
    return [ds[i] for i in range(min(n, len(ds)))]


def random_walk_windows(n: int) -> list[Sample]:
    """``n`` 10 s windows of accelerometer + gyroscope (3 + 3 channels) at 10 Hz, random walks
    of a fixed seed."""
    rng = np.random.default_rng(3)
    out = []
    for _ in range(n):
        values = np.cumsum(rng.normal(size=(6, 100)), axis=1)
        aligned = align_series(case_to_sources(values, rate_hz=10.0))
        out.append(aligned.window(aligned.start_s, aligned.duration_s))
    return out
