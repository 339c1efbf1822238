"""Masked building blocks for rasters (2-D) and series (1-D): invalid cells never contribute.

Every block takes features ``(N, C, *S)`` and a bool validity mask ``(N, 1, *S)`` and returns
features that are exactly zero where the output mask is ``False``. Inputs are selected with
``torch.where`` rather than multiplied by the mask, so even NaN or infinite values under the mask
cannot leak into the result.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MaskedGroupNorm",
    "PartialConv",
    "conv_nd",
    "masked_adaptive_pool",
    "masked_fill",
    "pad_to_stride",
    "renormaliser",
    "zero_invalid",
]

Dims = Literal[1, 2]


def masked_fill(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` where ``mask`` is ``True`` and 0 elsewhere (``mask`` broadcasts over channels)."""
    return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))


def zero_invalid(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:func:`masked_fill` for a *finite* ``x`` (a product by the mask: several times faster than
    ``torch.where`` on CPU, but ``NaN · 0`` is ``NaN``, so only for values computed from already
    filled inputs, never for raw data)."""
    return x * mask.to(x.dtype)


def conv_nd(
    dims: Dims,
    in_ch: int,
    out_ch: int,
    kernel: int,
    *,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
    bias: bool = True,
) -> nn.Conv1d | nn.Conv2d:
    """A ``Conv1d`` or ``Conv2d`` with the same arguments."""
    cls = nn.Conv1d if dims == 1 else nn.Conv2d
    return cls(in_ch, out_ch, kernel, stride=stride, padding=padding, groups=groups, bias=bias)


def _avg_pool(dims: Dims, x: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    if dims == 1:
        return F.avg_pool1d(x, kernel, stride, padding, count_include_pad=True)
    return F.avg_pool2d(x, kernel, stride, padding, count_include_pad=True)


class PartialConv(nn.Module):
    """Partial convolution (Liu et al. 2018): convolve valid inputs only and renormalise.

    ``y = W * (x·m) · |window| / |valid in window| + b``; the output is valid where its window saw
    at least one valid input. Strided layers use ``kernel == stride`` (non-overlapping patches, so
    each output is a re-weighted average of its patch); inputs whose size is not a multiple of the
    stride are padded with invalid cells so the border is kept rather than cropped.

    Args:
        dims: 1 (series) or 2 (rasters).
        in_ch: input channels.
        out_ch: output channels.
        kernel: kernel size (odd for ``stride == 1``; equal to ``stride`` otherwise).
        stride: stride.
        groups: convolution groups (``in_ch`` for depthwise).
        bias: add a learned bias.
    """

    def __init__(
        self,
        dims: Dims,
        in_ch: int,
        out_ch: int,
        kernel: int,
        *,
        stride: int = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if stride == 1 and kernel % 2 == 0:
            raise ValueError(f"stride-1 partial convolutions need an odd kernel, got {kernel}")
        if stride > 1 and kernel != stride:
            raise ValueError(f"strided partial convolutions need kernel == stride, got {kernel}")
        self.dims: Dims = dims
        self.kernel = kernel
        self.stride = stride
        self.padding = kernel // 2 if stride == 1 else 0
        self.conv = conv_nd(
            dims,
            in_ch,
            out_ch,
            kernel,
            stride=stride,
            padding=self.padding,
            groups=groups,
            bias=False,
        )
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        *,
        filled: bool = False,
        within: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Convolve.

        Args:
            x: ``(N, C_in, *S)``.
            mask: bool ``(N, 1, *S)``.
            filled: ``x`` is already finite and exactly zero where ``mask`` is ``False`` (skips
                one pass over the input).
            within: bool ``(N, 1, *S')``: keep only these output cells (e.g. the input's own
                mask for a stride-1 layer, whose outputs are otherwise valid on a dilated mask);
                cheaper than zeroing the result afterwards.

        Returns:
            ``(y, mask_out)``: ``(N, C_out, *S')`` and bool ``(N, 1, *S')`` (``within`` when given).
        """
        x, mask = pad_to_stride(x, mask, self.stride)
        y = self.conv(x if filled else masked_fill(x, mask))
        scale, valid = renormaliser(mask, self.kernel, self.stride, self.padding, y.dtype)
        if within is not None:
            scale, valid = scale * within.to(scale.dtype), within
        # An output whose window saw no valid input is exactly 0 (its inputs were zero-filled), so
        # one product both renormalises and keeps invalid outputs at 0.
        y = y * scale
        if self.bias is not None:
            y = torch.addcmul(y, valid.to(y.dtype), self.bias.view(1, -1, *([1] * self.dims)))
        return y, valid


def pad_to_stride(
    x: torch.Tensor, mask: torch.Tensor, stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad ``x`` and its mask at the far end of each spatial axis to a multiple of ``stride``
    with invalid (zero, ``False``) cells, so a strided layer keeps the border instead of cropping
    it. Unchanged when ``stride`` is 1 or the sizes already fit."""
    if stride <= 1:
        return x, mask
    pad: list[int] = []
    for size in reversed(x.shape[2:]):
        pad += [0, (-size) % stride]
    if not any(pad):
        return x, mask
    return F.pad(x, pad), F.pad(mask, pad, value=False)


def renormaliser(
    mask: torch.Tensor, kernel: int, stride: int, padding: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Partial-convolution weights of a mask: ``|window| / |valid in window|`` and validity.

    Args:
        mask: bool ``(N, 1, *S)``.
        kernel, stride, padding: the convolution's (padding counts as invalid cells).
        dtype: of the returned scale.

    Returns:
        ``(scale, valid)``: ``(N, 1, *S')`` float, 0 where no input of the window is valid, and
        bool ``(N, 1, *S')``.
    """
    dims: Dims = 1 if mask.dim() == 3 else 2
    frac = _avg_pool(dims, mask.to(dtype), kernel, stride, padding)
    valid = frac > 0
    return torch.where(valid, frac.reciprocal(), torch.zeros_like(frac)), valid


class MaskedGroupNorm(nn.Module):
    """GroupNorm whose statistics are taken over valid cells only.

    Plain GroupNorm would mix the zeros under the mask into the mean and variance, so the share of
    invalid pixels would shift every valid feature. Statistics are per sample, so results do not
    depend on which other samples share the batch.

    Args:
        channels: C.
        groups: number of groups (must divide C).
        eps: added to the variance.
    """

    def __init__(self, channels: int, groups: int = 8, eps: float = 1e-5) -> None:
        super().__init__()
        groups = math.gcd(channels, groups)
        self.groups = groups
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, *, filled: bool = False) -> torch.Tensor:
        """Normalise ``x`` ``(N, C, *S)`` over valid cells of ``mask`` ``(N, 1, *S)``.

        ``filled``: ``x`` is already finite and zero where ``mask`` is ``False`` (skips a pass).
        Works in any memory layout (channels-last rasters stay channels-last).
        """
        n, c = x.shape[:2]
        g = self.groups
        dims = tuple(range(2, x.dim()))
        m = mask.to(x.dtype)
        xm = x if filled else masked_fill(x, mask)
        count = (m.sum(dim=dims) * (c // g)).clamp(min=1.0)  # (N, 1) valid values per group
        mean = xm.sum(dim=dims).view(n, g, -1).sum(-1) / count  # (N, G)
        sq = (xm * xm).sum(dim=dims).view(n, g, -1).sum(-1) / count
        rstd = torch.rsqrt((sq - mean * mean).clamp(min=0.0) + self.eps)
        # Per-channel affine y = x·a + b with the group statistics folded in: one pass over x.
        a = rstd.repeat_interleave(c // g, dim=1) * self.weight
        b = self.bias - mean.repeat_interleave(c // g, dim=1) * a
        shape = (n, c, *([1] * len(dims)))
        return zero_invalid(torch.addcmul(b.view(shape), xm, a.view(shape)), mask)


def masked_adaptive_pool(
    x: torch.Tensor, mask: torch.Tensor, size: tuple[int, ...], *, filled: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive average pooling over valid cells only.

    Args:
        x: ``(N, C, *S)``.
        mask: bool ``(N, 1, *S)``.
        size: output size, ``(T,)`` for series or ``(G, G)`` for rasters.
        filled: ``x`` is already finite and zero where ``mask`` is ``False`` (skips a pass).

    Returns:
        ``(pooled, valid)``: ``(N, C, *size)`` (zero in bins without a valid cell) and bool
        ``(N, *size)``.
    """

    def pool(t: torch.Tensor) -> torch.Tensor:
        if len(size) == 1:
            return F.adaptive_avg_pool1d(t, size[0])
        return F.adaptive_avg_pool2d(t, (size[0], size[1]))

    num = pool(x if filled else masked_fill(x, mask))
    den = pool(mask.to(x.dtype))
    valid = den > 0
    out = zero_invalid(num / torch.where(valid, den, torch.ones_like(den)), valid)
    return out, valid.squeeze(1)
