"""The band-set stem's batched forward against a plain per-sample, per-band reference.

The stem folds FiLM's gain into each band's patch weights, unfolds patches instead of running a
convolution, averages bands with index_add and runs channels-last: this checks that all of it
computes exactly what the module's documented layers compute one band at a time.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fusion.data.collate import Batch
from fusion.models.masked import masked_adaptive_pool
from fusion.models.stems import BandSetStem


def _reference(
    stem: BandSetStem,
    x: torch.Tensor,
    mask: torch.Tensor,
    present: torch.Tensor,
    emb: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: φ(band) for each present band through the stem's own conv modules, mean,
    residual block, masked pooling."""
    ones = (1,) * stem.dims
    tokens, valids = [], []
    for i in range(x.shape[0]):
        feats = []
        m = mask[i : i + 1].unsqueeze(1)
        cm = m
        for c in present[i].nonzero().flatten().tolist():
            h, cm = stem.embed(x[i : i + 1, c : c + 1], m)
            gamma, beta = stem.film(emb[c]).chunk(2)
            h = F.gelu(h * (1 + gamma.view(1, -1, *ones)) + beta.view(1, -1, *ones))
            feats.append(F.gelu(stem.band_mlp(h)) * cm)
        feat = stem.block(torch.stack(feats).mean(dim=0), cm)
        pooled, valid = masked_adaptive_pool(feat, cm, stem.tokens)
        tokens.append(pooled.flatten(2).transpose(1, 2))
        valids.append(valid.flatten(1))
    return torch.cat(tokens), torch.cat(valids)


@pytest.mark.parametrize("key", ["syn_optical_10m", "syn_optical_20m", "syn_thermal"])
def test_raster_stem_matches_the_per_band_reference(raster_batch: Batch, key: str) -> None:
    stream = raster_batch.streams[key]
    stem = BandSetStem(stream, width=16, band_dim=8, tokens=(4, 4), fusion_step=40.0)
    x, mask = raster_batch.data[key], raster_batch.masks[key].clone()
    mask[2, :5] = False  # a masked strip (the optical chips also carry cloud-masked pixels)
    present = torch.ones(x.shape[:2], dtype=torch.bool)
    present[0, 0] = present[1, 1:] = False  # dropped bands, one sample down to a single band
    x = torch.where(mask.unsqueeze(1), x, torch.full_like(x, float("nan")))  # never read
    emb = torch.randn(x.shape[1], 8)
    tokens, valid = stem(x, mask, present, emb)
    ref_tokens, ref_valid = _reference(stem, torch.nan_to_num(x), mask, present, emb)
    torch.testing.assert_close(tokens, ref_tokens, rtol=1e-4, atol=1e-5)
    assert torch.equal(valid, ref_valid)


def test_series_stem_matches_the_per_band_reference(series_batch: Batch) -> None:
    key = sorted(series_batch.data)[0]
    stem = BandSetStem(
        series_batch.streams[key], width=16, band_dim=8, tokens=(5,), fusion_step=0.2
    )
    x, mask = series_batch.data[key], series_batch.masks[key].clone()
    mask[0, :7] = False
    present = torch.ones(x.shape[:2], dtype=torch.bool)
    present[2, :2] = False
    emb = torch.randn(x.shape[1], 8)
    tokens, valid = stem(x, mask, present, emb)
    ref_tokens, ref_valid = _reference(stem, x * mask.unsqueeze(1), mask, present, emb)
    torch.testing.assert_close(tokens, ref_tokens, rtol=1e-4, atol=1e-5)
    assert torch.equal(valid, ref_valid)
