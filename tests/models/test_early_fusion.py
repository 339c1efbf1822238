"""CSF-style early-fusion baseline and the cost comparison with the fusion encoder."""

from __future__ import annotations

import torch
from torch import nn

from fusion.data.collate import Batch, collate_samples
from fusion.data.sample import Sample
from fusion.models import TokenFusion, count_macs, early_fusion_baseline
from tests.models.conftest import WIDTH


def test_early_fusion_shapes(raster_batch: Batch, series_batch: Batch) -> None:
    model = early_fusion_baseline(raster_batch.streams, width=WIDTH).eval()
    assert model.grid_size(raster_batch) == (64, 64)  # 60 m: 11 px → 66, cropped to 64
    assert len(model.stacked.bands) == 10
    assert model(raster_batch).shape == (4, WIDTH)
    series = early_fusion_baseline(series_batch.streams, width=WIDTH).eval()
    assert series(series_batch).shape == (4, WIDTH)


def test_early_fusion_zero_fills_absent_streams(raster_samples: list[Sample]) -> None:
    full = collate_samples(raster_samples)
    model = early_fusion_baseline(full.streams, width=WIDTH).eval()
    mixed = collate_samples(
        [s if i % 2 == 0 else s.without("syn_sar") for i, s in enumerate(raster_samples)]
    )
    zeros = dict(full.data)
    zeros["syn_sar"] = full.data["syn_sar"].clone()
    zeros["syn_sar"][1::2] = 0
    with torch.no_grad():
        a = model(mixed)
        b = model(Batch(**{**full.__dict__, "data": zeros}))
    # CSF's behaviour: an absent sensor is the same as a sensor reading zeros
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


class _MatMul(nn.Module):
    def __init__(self, key: str, n_in: int, n_out: int) -> None:
        super().__init__()
        self.key = key
        self.w = nn.Parameter(torch.randn(n_in, n_out))

    def forward(self, batch: Batch) -> torch.Tensor:
        return batch.data[self.key].flatten(1) @ self.w


def test_count_macs_counts_products_and_attention(raster_batch: Batch) -> None:
    x = raster_batch.data["syn_thermal"]
    n_in = x[0].numel()
    assert count_macs(_MatMul("syn_thermal", n_in, 3), raster_batch) == 4 * n_in * 3

    b, n, d, hidden = 2, 5, 8, 16

    class Trunk(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fusion = TokenFusion(d, depth=1, heads=2, mlp_ratio=hidden / d).eval()

        def forward(self, batch: Batch) -> torch.Tensor:
            out: torch.Tensor = self.fusion(
                torch.randn(b, n, d), torch.ones(b, n, dtype=torch.bool)
            )
            return out

    expected = b * n * (4 * d * d + 2 * d * hidden) + b * 2 * n * n * d  # projections, MLP, QK, AV
    assert count_macs(Trunk(), raster_batch) == expected
