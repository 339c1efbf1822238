"""Per-stream stems: native-resolution rasters or series → a fixed number of tokens.

A stem treats its stream's bands as a *set*. Every present band map goes through the same small
network φ, conditioned on the band's metadata embedding (FiLM), and the results are averaged over
the present bands, cell by cell. Band order and band count therefore never matter, a dropped band
costs nothing, and an unseen band is encoded through its physical description.

φ patchifies its band from the native step (metres per pixel or seconds per step) straight to the
shared fusion step (patch = the product of :func:`stage_strides`), so the per-band work runs on the
coarse grid; after the band mean one residual block adds context and masked adaptive pooling gives
a fixed token grid. Every layer is masked: invalid pixels or steps never contribute. Rasters run
channels-last, the layout CPU convolutions are fastest in; the result does not depend on layout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fusion.data.specs import Stream
from fusion.models.masked import (
    Dims,
    MaskedGroupNorm,
    PartialConv,
    conv_nd,
    masked_adaptive_pool,
    masked_fill,
    pad_to_stride,
    renormaliser,
    zero_invalid,
)
from fusion.models.streams import stream_kind

__all__ = ["BandSetStem", "ResidualBlock", "stage_strides"]


def stage_strides(native_step: float, fusion_step: float) -> tuple[int, ...]:
    """Stride-2 stages that bring a native step to (at most) the fusion step.

    Args:
        native_step: metres per pixel (rasters) or seconds per step (series).
        fusion_step: the shared step the streams meet at, same unit.

    Returns:
        ``(2,) * n`` with ``n = floor(log2(fusion_step / native_step))`` (0 for streams already at
        or coarser than the fusion step). A leftover factor below 2 (e.g. 10 m → 30 m) is absorbed
        by the final adaptive pooling; no stream is ever made coarser than the fusion step.
    """
    if native_step <= 0 or fusion_step <= 0:
        raise ValueError(f"steps must be > 0, got native {native_step}, fusion {fusion_step}")
    ratio = fusion_step / native_step
    return (2,) * max(0, math.floor(math.log2(ratio) + 1e-9))


class ResidualBlock(nn.Module):
    """Masked depthwise-separable residual block: dw 3×3 partial conv, GroupNorm, 1×1, GELU."""

    def __init__(self, dims: Dims, width: int) -> None:
        super().__init__()
        self.dw = PartialConv(dims, width, width, 3, groups=width)
        self.norm = MaskedGroupNorm(width)
        self.pw = conv_nd(dims, width, width, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(N, D, *S)`` with bool ``(N, 1, *S)`` → same shape, zero where invalid.

        ``x`` must be finite and zero where ``mask`` is ``False`` (what every stem stage returns).
        """
        y, _ = self.dw(x, mask, filled=True, within=mask)
        y = F.gelu(self.pw(self.norm(y, mask, filled=True)))
        return torch.addcmul(x, y, mask.to(y.dtype))  # x + y where valid, 0 elsewhere


class BandSetStem(nn.Module):
    """Stem of one stream: per-band φ, masked mean over present bands, stages, block, tokens.

    Args:
        stream: the stream this stem was built for (its resolution or rate fixes the strides).
        width: feature size D.
        band_dim: size E of the band embeddings the forward pass receives.
        tokens: output token grid, ``(G, G)`` for rasters or ``(T_tok,)`` for series.
        fusion_step: shared step, metres (rasters) or seconds (series).
        pixel_channels: K > 0 adds a native-resolution pixel stage (see below); 0 patchifies
            each band alone.
        blocks: residual blocks after the band mean, at the fusion step (more give each token
            more spatial context before pooling).
    """

    def __init__(
        self,
        stream: Stream,
        *,
        width: int,
        band_dim: int,
        tokens: tuple[int, ...],
        fusion_step: float,
        pixel_channels: int = 0,
        blocks: int = 1,
    ) -> None:
        super().__init__()
        if pixel_channels < 0:
            raise ValueError(f"pixel_channels must be >= 0, got {pixel_channels}")
        if blocks < 1:
            raise ValueError(f"a stem needs at least 1 residual block, got {blocks}")
        self.kind = stream_kind(stream)
        self.dims: Dims = 2 if self.kind == "raster" else 1
        if len(tokens) != self.dims:
            raise ValueError(f"a {self.kind} stem needs a {self.dims}-D token grid, got {tokens}")
        self.stream = stream
        self.width = width
        self.tokens = tokens
        native = stream.resolution_m if self.kind == "raster" else 1.0 / float(stream.rate_hz or 1)
        assert native is not None
        self.strides = stage_strides(native, fusion_step)
        # φ: one band patchified straight to the fusion step (kernel = stride, partial conv),
        # FiLM by the band embedding, GELU, 1×1, GELU. Patchifying first keeps the per-band cost
        # at `width` MACs per native pixel; the 1×1 (width² MACs) runs on the coarse grid. The
        # second nonlinearity matters: a linear last layer would commute with the band mean.
        self.patch = math.prod(self.strides)
        self.pixel_channels = pixel_channels
        if pixel_channels > 0:
            # Pixel-first: a band-conditioned 1×1 mixing of the present bands into K channels
            # (weights and biases computed from each band's metadata embedding, averaged over the
            # present bands), GELU, a masked depthwise 3×3 for texture and a 1×1, all at the
            # native grid, then one patch-merging layer K → D to the fusion step. Cross-band,
            # per-pixel nonlinear features (spectral indices, sub-patch class mixtures) are thus
            # formed before any downsampling, at K + K² + 9K + K·D MACs per native pixel.
            k = pixel_channels
            self.mix = nn.Linear(band_dim, 2 * k)
            self.pixel_dw = conv_nd(self.dims, k, k, 3, padding=1, groups=k, bias=False)
            self.pixel_pw = conv_nd(self.dims, k, k, 1)
            kernel = self.patch if self.patch > 1 else 1
            self.merge = PartialConv(self.dims, k, width, kernel, stride=self.patch)
            self.merge_norm = MaskedGroupNorm(width)
        else:
            kernel = self.patch if self.patch > 1 else 3
            self.embed = PartialConv(self.dims, 1, width, kernel, stride=self.patch, bias=False)
            self.film = nn.Linear(band_dim, 2 * width)
            self.band_mlp = conv_nd(self.dims, width, width, 1)
        self.block = ResidualBlock(self.dims, width)
        # Further blocks live apart so that one-block stems keep their state_dict keys.
        self.more_blocks = nn.ModuleList(ResidualBlock(self.dims, width) for _ in range(blocks - 1))

    @property
    def num_tokens(self) -> int:
        return math.prod(self.tokens)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        band_present: torch.Tensor,
        band_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode the rows of a batch that carry this stream.

        Args:
            x: ``(N, C, H, W)`` or ``(N, C, T)`` values at native resolution.
            mask: bool ``(N, H, W)`` / ``(N, T)``, ``True`` where valid.
            band_present: bool ``(N, C)``; rows need not have every band.
            band_embeddings: ``(C, E)``, row ``c`` for band slot ``c``.

        Returns:
            ``(tokens, valid)``: ``(N, n_tokens, D)`` and bool ``(N, n_tokens)``; a token is valid
            when its cell saw at least one valid pixel or step of a present band.
        """
        if self.pixel_channels > 0:
            return self._forward_pixel(x, mask, band_present, band_embeddings)
        n = x.shape[0]
        m = mask.unsqueeze(1)
        bi, ci = band_present.nonzero(as_tuple=True)
        # Only present bands are encoded: dropped channels cost nothing and are never read.
        cols, scale, valid = self._band_patches(masked_fill(x[bi, ci].unsqueeze(1), m[bi]), m)
        # φ per band: patch embedding, FiLM, GELU, 1×1, GELU — on (bands, cells, D) rows, so the
        # 1×1 is one matrix product. FiLM's gain is folded into each band's patch weights
        # ((x ⋆ W)(1 + γ) = x ⋆ (W(1 + γ)), a (k^d, D) matrix per band rather than a pass over the
        # features) and one fused multiply-add applies the partial-conv renormalisation and the
        # FiLM shift (invalid cells get weight 0, as the convolution would give them).
        gamma, beta = self.film(band_embeddings[ci]).chunk(2, dim=-1)
        weight = self.embed.conv.weight.view(self.width, -1).t()
        h = torch.bmm(cols, weight.unsqueeze(0) * (1 + gamma).unsqueeze(1))
        h = F.gelu(torch.addcmul(beta.unsqueeze(1), h, scale.flatten(2).transpose(1, 2)[bi]))
        h = F.gelu(F.linear(h, self.band_mlp.weight.flatten(1), self.band_mlp.bias))
        # Mean over each sample's present bands: a sum by sample index, linear in the batch and
        # without an (N, C, D, cells) scatter buffer. index_add is deterministic on CPU, and on
        # CUDA under torch.use_deterministic_algorithms (Lightning's `deterministic=True`).
        count = band_present.sum(dim=1)
        summed = h.new_zeros((n, *h.shape[1:])).index_add(0, bi, h)
        spatial = tuple(scale.shape[2:])
        cm = valid & (count > 0).view(n, *((1,) * (self.dims + 1)))
        # One product divides by the band count and zeroes cells without valid data; the view
        # back to (N, D, *S) is channels-last for rasters, the layout the convolutions below run
        # fastest in on CPU.
        per_cell = cm.flatten(2).transpose(1, 2) / count.clamp(min=1).to(h.dtype).view(n, 1, 1)
        feat = (summed * per_cell).view(n, *spatial, self.width).movedim(-1, 1)
        feat = self._blocks(feat, cm)
        pooled, ok = masked_adaptive_pool(feat, cm, self.tokens, filled=True)
        return pooled.flatten(2).transpose(1, 2), ok.flatten(1)

    def _blocks(self, feat: torch.Tensor, cm: torch.Tensor) -> torch.Tensor:
        feat = self.block(feat, cm)
        for block in self.more_blocks:
            feat = block(feat, cm)
        return feat

    def _band_patches(
        self, xb: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unfold zero-filled band maps into the embedding's windows.

        Args:
            xb: ``(B, 1, *S)``, one present band per row, zero where invalid.
            mask: bool ``(N, 1, *S)``, per sample (the same for every band of a sample).

        Returns:
            ``(cols, scale, valid)``: ``(B, cells, k^d)`` windows, the per-sample partial-conv
            weights ``(N, 1, *S')`` and bool validity ``(N, 1, *S')``.
        """
        conv = self.embed
        k, stride, padding = conv.kernel, conv.stride, conv.padding
        xb, mask = pad_to_stride(xb, mask, stride)
        scale, valid = renormaliser(mask, k, stride, padding, xb.dtype)
        b = xb.shape[0]
        if stride == k and self.dims == 1:  # non-overlapping windows of a series: a view
            return xb.view(b, -1, k), scale, valid
        if stride == k:  # non-overlapping patches: one reshaping copy (cheaper than im2col)
            h, w = xb.shape[2] // k, xb.shape[3] // k
            cols = xb.view(b, h, k, w, k).permute(0, 1, 3, 2, 4).reshape(b, h * w, k * k)
            return cols, scale, valid
        if self.dims == 1:  # a series is a one-row image to unfold
            cols = F.unfold(xb.unsqueeze(2), (1, k), padding=(0, padding), stride=(1, stride))
        else:
            cols = F.unfold(xb, k, padding=padding, stride=stride)
        return cols.transpose(1, 2), scale, valid

    def _forward_pixel(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        band_present: torch.Tensor,
        band_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel-first path (``pixel_channels > 0``), same contract as :meth:`forward`."""
        n = x.shape[0]
        m = mask.unsqueeze(1)
        # Per band c: weight a_c and bias d_c in R^K from its embedding. The mix is the mean of
        # (a_c x_c + d_c) over present bands: absent bands are never read, any order or subset of
        # bands works, and the present-band set is visible through the mean of the biases.
        a, d = self.mix(band_embeddings).chunk(2, dim=-1)
        w = band_present.to(x.dtype)
        w = w / w.sum(dim=1, keepdim=True).clamp(min=1.0)
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        keep = band_present.view(*band_present.shape, *((1,) * self.dims)) & m
        xs = torch.where(keep, x, zero).flatten(2)  # (N, C, P); NaN under a mask cannot leak
        weight = w.unsqueeze(-1) * a  # (N, C, K)
        # (N, P, K) in one pass, then viewed as (N, K, *S): channels-last for rasters.
        h = torch.baddbmm((w @ d).unsqueeze(1), xs.transpose(1, 2), weight)
        h = h.view(n, *x.shape[2:], -1).movedim(-1, 1)
        h = zero_invalid(F.gelu(h), m)
        # Texture at the native grid: depthwise 3×3 over zero-filled invalid cells, 1×1, GELU,
        # residual. (No partial-conv renormalisation here: it would cost four more passes over
        # the finest grid; the patch merge below renormalises by valid cells.)
        h = torch.addcmul(h, F.gelu(self.pixel_pw(self.pixel_dw(h))), m.to(h.dtype))
        feat, cm = self.merge(h, m, filled=True)
        feat = zero_invalid(F.gelu(self.merge_norm(feat, cm, filled=True)), cm)
        feat = self._blocks(feat, cm)
        pooled, valid = masked_adaptive_pool(feat, cm, self.tokens, filled=True)
        return pooled.flatten(2).transpose(1, 2), valid.flatten(1)
