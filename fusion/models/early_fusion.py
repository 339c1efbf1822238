"""CSF-style early-fusion baseline: upsample every stream to the finest grid and stack channels.

This is the comparison point for principle 1 of the design (native resolution). Every stream is
interpolated (bilinear for rasters, linear for series) to the finest grid, the channels are stacked
into one image in a fixed slot order, and that image goes through *one* stem of the same kind
:class:`~fusion.models.encoder.FusionEncoder` uses per stream, followed by the same trunk. Only the
place where the streams meet differs, so a cost benchmark compares like with like.

Like the original Contrastive Sensor Fusion (Swope et al. 2021), the baseline has fixed channel
slots and knows nothing of absence: an absent stream, a dropped band and an invalid pixel are all
fed as zeros (every slot is flagged present and every pixel valid). It is a baseline, not a model to
deploy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fusion.data.collate import Batch
from fusion.data.specs import Stream
from fusion.models.encoder import TokenEncoder
from fusion.models.errors import StreamMismatchError
from fusion.models.stems import BandSetStem, stage_strides
from fusion.models.streams import batch_size, check_known, check_matches, stream_kind

__all__ = ["ConvStem", "EarlyFusionEncoder", "early_fusion_baseline"]


class ConvStem(nn.Module):
    """CSF's kind of stem: a plain convolution over all stacked channels at the finest grid, then
    stride-2 stages down to the fusion stride, then average pooling to the token grid.

    Its first layer costs ``C_in × D × 9`` MACs per finest-grid pixel, so every upsampled coarse
    band is paid for at the finest resolution (what native-resolution stems avoid).
    """

    def __init__(self, in_ch: int, width: int, strides: tuple[int, ...], tokens: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, width, 3, padding=1), nn.GELU()]
        for s in strides:
            layers += [nn.Conv2d(width, width, s, stride=s), nn.GroupNorm(1, width), nn.GELU()]
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.GELU()]
        self.body = nn.Sequential(*layers)
        self.tokens = tokens

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → tokens ``(B, G*G, D)``."""
        # Channels-last: the layout CPU convolutions run fastest in (1.5× a training step here),
        # so that the cost benchmark compares against the baseline at its best.
        image = image.contiguous(memory_format=torch.channels_last)
        y = F.adaptive_avg_pool2d(self.body(image), self.tokens)
        return y.flatten(2).transpose(1, 2)


def _step(stream: Stream) -> float:
    """Metres per pixel or seconds per step."""
    if stream.resolution_m is not None:
        return stream.resolution_m
    assert stream.rate_hz is not None
    return 1.0 / stream.rate_hz


class EarlyFusionEncoder(TokenEncoder):
    """Early fusion on the finest grid (see the module docstring); ``forward(batch) → (B, D)``.

    Args:
        streams: stream key → Stream, all rasters or all series; their bands fill the stacked
            image's channel slots in sorted key order.
        width, depth, heads, token_grid, series_tokens, fusion_stride_m, series_stride_s,
        mlp_ratio, band_dim, dropout, quantity_buckets, pixel_channels: as for
            :class:`~fusion.models.encoder.FusionEncoder`.
    """

    def __init__(
        self,
        streams: Mapping[str, Stream],
        *,
        width: int = 64,
        depth: int = 2,
        heads: int = 4,
        token_grid: int = 4,
        series_tokens: int = 8,
        fusion_stride_m: float = 40.0,
        series_stride_s: float = 0.2,
        mlp_ratio: float = 4.0,
        band_dim: int | None = None,
        dropout: float = 0.0,
        quantity_buckets: int = 64,
        stem: str = "bandset",
        pixel_channels: int = 0,
    ) -> None:
        if not streams:
            raise ValueError("early fusion needs at least one stream")
        if stem not in ("bandset", "conv"):
            raise ValueError(f"stem must be 'bandset' or 'conv', got {stem!r}")
        kinds = {stream_kind(s) for s in streams.values()}
        super().__init__(
            width=width,
            depth=depth,
            heads=heads,
            token_grid=token_grid,
            series_tokens=series_tokens,
            mlp_ratio=mlp_ratio,
            band_dim=band_dim,
            dropout=dropout,
            quantity_buckets=quantity_buckets,
            kinds=kinds,
        )
        if len(kinds) != 1:
            raise ValueError("early fusion stacks streams of one kind; got rasters and series")
        self.kind = kinds.pop()
        self.streams: dict[str, Stream] = {k: streams[k] for k in sorted(streams)}
        self.finest_step = min(_step(s) for s in self.streams.values())
        bands = tuple(b for s in self.streams.values() for b in s.bands)
        names = [b.name for b in bands]
        if len(set(names)) != len(names):
            raise ValueError(f"stacked band names must be unique, got {names}")
        self.stacked = Stream(
            key="early_fusion",
            sensor="+".join(sorted({s.sensor for s in self.streams.values()})),
            bands=bands,
            resolution_m=self.finest_step if self.kind == "raster" else None,
            rate_hz=1.0 / self.finest_step if self.kind == "series" else None,
        )
        self.stem: BandSetStem | None = None
        self.conv_stem: ConvStem | None = None
        if stem == "conv":
            if self.kind != "raster":
                raise ValueError("the conv stem is for rasters")
            strides = stage_strides(self.finest_step, fusion_stride_m)
            self.conv_stem = ConvStem(len(bands), width, strides, token_grid)
        else:
            self.stem = self.make_stem(
                self.stacked,
                fusion_stride_m=fusion_stride_m,
                series_stride_s=series_stride_s,
                pixel_channels=pixel_channels,
            )

    def _target(self, batch: Batch) -> tuple[int, ...]:
        # Coarse grids may overhang the footprint (640 m at 60 m is 11 px = 660 m), so the finest
        # grid is the smallest upsampled extent, and every upsampled stream is cropped to it.
        sizes = [
            tuple(round(n * _step(self.streams[k]) / self.finest_step) for n in x.shape[2:])
            for k, x in batch.data.items()
        ]
        return tuple(min(s[i] for s in sizes) for i in range(len(sizes[0])))

    def _slots(self, key: str, batch: Batch, target: tuple[int, ...]) -> torch.Tensor:
        """Stream ``key`` in its channel slots on the finest grid, zeros where not present."""
        stream = self.streams[key]
        b = batch_size(batch)
        ref = next(iter(batch.data.values()))
        if key not in batch.data:
            return ref.new_zeros((b, len(stream.bands), *target))
        got, x = batch.streams[key], batch.data[key]
        check_matches(stream, got)
        try:
            order = [got.band_names.index(n) for n in stream.band_names]
        except ValueError:
            raise StreamMismatchError(
                f"stream {key!r} has bands {list(got.band_names)} in the batch; early fusion "
                f"has fixed slots {list(stream.band_names)}"
            ) from None
        keep = (batch.band_present[key] & batch.present[key].unsqueeze(1))[:, order]
        mask = batch.masks[key].unsqueeze(1)
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        x = torch.where(mask & keep.view(*keep.shape, *([1] * (x.dim() - 2))), x[:, order], zero)
        size = [round(n * _step(stream) / self.finest_step) for n in x.shape[2:]]
        mode = "bilinear" if self.kind == "raster" else "linear"
        up = F.interpolate(x, size=size, mode=mode, align_corners=False)
        crop = tuple(slice(0, n) for n in target)
        return up[(slice(None), slice(None), *crop)]

    def forward(self, batch: Batch) -> torch.Tensor:
        """Embed a batch: ``(B, D)``."""
        check_known(batch.data.keys(), self.streams.keys())
        b = batch_size(batch)
        target = self._target(batch)
        image = torch.cat([self._slots(k, batch, target) for k in self.streams], dim=1)
        dev = image.device
        mask = torch.ones((b, *target), dtype=torch.bool, device=dev)
        every = torch.ones((b, image.shape[1]), dtype=torch.bool, device=dev)
        if self.conv_stem is not None:
            t = self.conv_stem(image)
            keep = torch.ones(t.shape[:2], dtype=torch.bool, device=dev)
        else:
            assert self.stem is not None
            t, keep = self.stream_tokens(
                self.stem,
                self.stacked,
                image,
                mask,
                torch.ones(b, dtype=torch.bool, device=dev),
                every,
            )
        out: torch.Tensor = self.fusion(t, keep)
        return out

    def grid_size(self, batch: Batch) -> tuple[int, ...]:
        """The finest grid (pixels or steps) the batch is stacked on."""
        return self._target(batch)


def early_fusion_baseline(streams: Mapping[str, Stream], **kwargs: Any) -> EarlyFusionEncoder:
    """A CSF-style early-fusion encoder over ``streams`` (keyword arguments as for
    :class:`~fusion.models.encoder.FusionEncoder`)."""
    return EarlyFusionEncoder(streams, **kwargs)
