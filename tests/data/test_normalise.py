from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion.data.catalog import S1_GRD
from fusion.data.errors import SpecError
from fusion.data.normalise import Normaliser, RunningStats, compute_stats
from fusion.data.sample import Sample


def _samples(seed: int, n: int) -> list[Sample]:
    rng = np.random.default_rng(seed)
    (stream,) = S1_GRD.streams()
    out = []
    for _ in range(n):
        x = rng.normal([[[-12.0]], [[-19.0]]], [[[3.0]], [[4.0]]], size=(2, 16, 16))
        valid = rng.random((16, 16)) > 0.2
        x[:, ~valid] = 0.0
        out.append(
            Sample(
                {"s1_grd": torch.tensor(x, dtype=torch.float32)},
                {"s1_grd": torch.from_numpy(valid)},
                {"s1_grd": stream},
            )
        )
    return out


def test_streaming_stats_match_the_two_pass_result() -> None:
    samples = _samples(0, 40)
    spec = compute_stats(iter(samples), {"s1_grd": S1_GRD})["s1_grd"]
    assert spec.stats is not None
    values = np.concatenate(
        [s.data["s1_grd"].numpy()[:, s.masks["s1_grd"].numpy()] for s in samples], axis=1
    )
    np.testing.assert_allclose(spec.stats.mean, values.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(spec.stats.std, values.std(axis=1, ddof=1), rtol=1e-5)
    assert spec.stats.count[0] == values.shape[1]
    assert abs(spec.stats.mean[0] + 12) < 0.1  # invalid zeros did not leak in


def test_partial_results_merge_exactly() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(5, 2, size=(3, 1000))
    ok = np.ones(1000, dtype=bool)
    whole, a, b = RunningStats(), RunningStats(), RunningStats()
    whole.update(x, ok)
    a.update(x[:, :300], ok[:300])
    b.update(x[:, 300:], ok[300:])
    a.merge(b)
    np.testing.assert_allclose(a.mean, whole.mean)
    np.testing.assert_allclose(a.std, whole.std)


def test_normaliser_standardises_valid_pixels_without_clipping() -> None:
    samples = _samples(2, 20)
    specs = compute_stats(samples, {"s1_grd": S1_GRD})
    out = Normaliser(specs)(samples[0])
    valid = out.masks["s1_grd"]
    assert abs(float(out.data["s1_grd"][0][valid].mean())) < 0.3
    assert float(out.data["s1_grd"].abs().max()) > 2.5  # tails are kept
    assert (out.data["s1_grd"][:, ~valid] == 0).all()


def test_normaliser_without_stats_names_the_sensor() -> None:
    with pytest.raises(SpecError, match="compute_stats") as info:
        Normaliser({"s1_grd": S1_GRD})(_samples(0, 1)[0])
    assert info.value.sensor == "s1_grd"
