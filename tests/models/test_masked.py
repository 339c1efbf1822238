"""Masked layers: values under the mask never reach the output."""

from __future__ import annotations

import pytest
import torch

from fusion.models.masked import MaskedGroupNorm, PartialConv, masked_adaptive_pool
from fusion.models.stems import stage_strides


def _mask(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.rand(shape) > 0.3


@pytest.mark.parametrize(("dims", "kernel", "stride"), [(2, 3, 1), (2, 2, 2), (1, 3, 1), (1, 2, 2)])
def test_partial_conv_ignores_invalid_values(dims: int, kernel: int, stride: int) -> None:
    conv = PartialConv(dims, 3, 5, kernel, stride=stride)  # type: ignore[arg-type]
    size = (9, 7)[:dims]  # odd sizes: the strided layer pads with invalid cells
    x = torch.randn(2, 3, *size)
    m = _mask((2, 1, *size))
    y, ym = conv(x, m)
    y2, _ = conv(torch.where(m, x, torch.full_like(x, float("nan"))), m)
    torch.testing.assert_close(y, y2)
    assert tuple(ym.shape[2:]) == tuple(-(-n // stride) for n in size)
    assert (y[~ym.expand_as(y)] == 0).all()


def test_partial_conv_renormalises_a_constant() -> None:
    conv = PartialConv(2, 1, 1, 2, stride=2, bias=False)
    torch.nn.init.constant_(conv.conv.weight, 0.25)  # a 2×2 mean
    x = torch.full((1, 1, 4, 4), 3.0)
    m = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    m[..., 0, 0] = True  # one valid pixel out of four in the first patch
    with torch.no_grad():
        y, ym = conv(x, m)
    assert float(y[0, 0, 0, 0]) == pytest.approx(3.0)
    assert ym[0, 0].tolist() == [[True, False], [False, False]]


def test_masked_group_norm_uses_valid_cells_only() -> None:
    norm = MaskedGroupNorm(4, groups=2)
    x = torch.randn(1, 4, 6, 6)
    m = _mask((1, 1, 6, 6))
    y = norm(x, m)
    y2 = norm(torch.where(m, x, torch.full_like(x, 1e6)), m)
    torch.testing.assert_close(y, y2)
    valid = y.detach()[0, :2][m[0].expand(2, 6, 6)]
    assert float(valid.mean()) == pytest.approx(0.0, abs=1e-5)


def test_masked_pool_flags_empty_bins() -> None:
    x = torch.randn(1, 2, 8, 8)
    m = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    m[..., :4, :4] = True
    pooled, valid = masked_adaptive_pool(x, m, (2, 2))
    assert valid[0].tolist() == [[True, False], [False, False]]
    torch.testing.assert_close(pooled[0, :, 0, 0], x[0, :, :4, :4].mean(dim=(-2, -1)))
    assert (pooled[0, :, 1, 1] == 0).all()


def test_stage_strides_follow_resolution() -> None:
    assert stage_strides(10.0, 40.0) == (2, 2)
    assert stage_strides(20.0, 40.0) == (2,)
    assert stage_strides(60.0, 40.0) == ()
    assert stage_strides(10.0, 30.0) == (2,)  # never coarser than the fusion stride
    assert stage_strides(0.1, 0.2) == (2,)  # 10 Hz series to 0.2 s


def test_partial_conv_within_keeps_only_the_given_cells() -> None:
    conv = PartialConv(2, 3, 4, 3)
    torch.nn.init.normal_(conv.bias)  # type: ignore[arg-type]
    x, m = torch.randn(2, 3, 6, 6), _mask((2, 1, 6, 6))
    y, ym = conv(x, m)
    y_in, ym_in = conv(x, m, within=m)
    assert bool((ym | ~m).all()) and bool((ym & ~m).any())  # stride 1 dilates the mask
    torch.testing.assert_close(y_in, y * m)
    assert torch.equal(ym_in, m)


def test_masked_layers_agree_in_channels_last_layout() -> None:
    x, m = torch.randn(2, 8, 6, 6), _mask((2, 1, 6, 6))
    x = torch.where(m, x, torch.zeros(()))
    xc = x.contiguous(memory_format=torch.channels_last)
    norm, conv = MaskedGroupNorm(8, groups=4), PartialConv(2, 8, 8, 3, groups=8)
    torch.testing.assert_close(norm(xc, m, filled=True), norm(x, m))
    torch.testing.assert_close(conv(xc, m, filled=True)[0], conv(x, m)[0])
    pooled, _ = masked_adaptive_pool(xc, m, (2, 2), filled=True)
    torch.testing.assert_close(pooled, masked_adaptive_pool(x, m, (2, 2))[0])
