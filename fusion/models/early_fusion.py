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

from fusion.data.collate import Batch
from fusion.data.specs import Stream
from fusion.models.encoder import TokenEncoder
from fusion.models.errors import StreamMismatchError
from fusion.models.stems import BandSetStem
from fusion.models.streams import batch_size, check_known, check_matches, stream_kind

__all__ = ["EarlyFusionEncoder", "early_fusion_baseline"]


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
        mlp_ratio, band_dim, dropout, quantity_buckets: as for
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
    ) -> None:
        if not streams:
            raise ValueError("early fusion needs at least one stream")
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
        self.stem: BandSetStem = self.make_stem(
            self.stacked, fusion_stride_m=fusion_stride_m, series_stride_s=series_stride_s
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
        t, keep = self.stream_tokens(
            self.stem, self.stacked, image, mask, torch.ones(b, dtype=torch.bool, device=dev), every
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
