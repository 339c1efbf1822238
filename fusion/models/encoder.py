"""`FusionEncoder`: per-stream stems at native resolution, fused over present streams.

Each stream of a :class:`~fusion.data.collate.Batch` is encoded by its own stem at its native
resolution or rate into a few tokens at a shared ground stride (rasters) or time stride (series).
Tokens get a learned positional embedding (shared by every raster stream, since their token grids
cover the same footprint, and by every series stream) and a stream-type embedding computed from the
stream's present band embeddings, never from its key. A transformer trunk attends over the tokens
of the streams present in each sample and their masked mean is the embedding.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import torch
from torch import nn

from fusion.data.collate import Batch
from fusion.data.specs import Stream
from fusion.models.band_embedding import BandEmbedding
from fusion.models.errors import NoDataError, StreamMismatchError
from fusion.models.fusion import TokenFusion
from fusion.models.stems import BandSetStem
from fusion.models.streams import (
    StreamKind,
    batch_size,
    check_known,
    check_matches,
    model_config,
    read_model_config,
    stream_kind,
)

__all__ = ["FusionEncoder", "TokenEncoder"]

CONFIG_VERSION = 2


def _positions(n: int, width: int) -> nn.Parameter:
    table = nn.Parameter(torch.zeros(n, width))
    nn.init.trunc_normal_(table, std=0.02)
    return table


class TokenEncoder(nn.Module):
    """What the fusion encoder and the early-fusion baseline share: band and stream-type
    embeddings, positional embeddings, the transformer trunk and the per-stream token step.

    Args:
        width: token and embedding size D.
        depth: transformer layers.
        heads: attention heads.
        token_grid: raster tokens per side G (``G * G`` tokens per raster stream).
        series_tokens: tokens per series stream.
        mlp_ratio: transformer feed-forward width / D.
        band_dim: band embedding size E (default D).
        dropout: transformer dropout.
        quantity_buckets: rows of the hashed quantity table.
        kinds: the stream kinds the model holds (``"raster"``, ``"series"``).
    """

    def __init__(
        self,
        *,
        width: int,
        depth: int,
        heads: int,
        token_grid: int,
        series_tokens: int,
        mlp_ratio: float,
        band_dim: int | None,
        dropout: float,
        quantity_buckets: int,
        kinds: Collection[StreamKind],
    ) -> None:
        super().__init__()
        self.embed_dim = width
        self.band_dim = band_dim or width
        self.token_grid = token_grid
        self.series_tokens = series_tokens
        self.band_embedding = BandEmbedding(self.band_dim, quantity_buckets=quantity_buckets)
        self.stream_type = nn.Sequential(
            nn.Linear(self.band_dim, width), nn.GELU(), nn.Linear(width, width)
        )
        # Only the kinds the model holds get a table: a parameter that never receives a gradient
        # makes DistributedDataParallel fail.
        self.raster_pos = _positions(token_grid * token_grid, width) if "raster" in kinds else None
        self.series_pos = _positions(series_tokens, width) if "series" in kinds else None
        self.fusion = TokenFusion(
            width, depth=depth, heads=heads, mlp_ratio=mlp_ratio, dropout=dropout
        )

    def make_stem(
        self,
        stream: Stream,
        *,
        fusion_stride_m: float,
        series_stride_s: float,
        pixel_channels: int = 0,
    ) -> BandSetStem:
        """A stem for ``stream`` with this encoder's width, band size and token grid."""
        raster = stream_kind(stream) == "raster"
        return BandSetStem(
            stream,
            width=self.embed_dim,
            band_dim=self.band_dim,
            tokens=(self.token_grid, self.token_grid) if raster else (self.series_tokens,),
            fusion_step=fusion_stride_m if raster else series_stride_s,
            pixel_channels=pixel_channels,
        )

    def stream_type_embedding(self, stream: Stream, band_present: torch.Tensor) -> torch.Tensor:
        """Stream-type embedding from the mean embedding of the present bands.

        Args:
            stream: band metadata (order as in the data) and resolution or rate.
            band_present: bool ``(N, C)``, at least one ``True`` per row.

        Returns:
            ``(N, D)``; two streams with the same bands and resolution get the same embedding
            whatever their keys or band order.
        """
        return self._stream_type(self.band_embedding(stream), band_present)

    def _stream_type(
        self, band_embeddings: torch.Tensor, band_present: torch.Tensor
    ) -> torch.Tensor:
        w = band_present.to(band_embeddings.dtype)
        mean = (w @ band_embeddings) / w.sum(dim=1, keepdim=True).clamp(min=1.0)
        out: torch.Tensor = self.stream_type(mean)
        return out

    def stream_tokens(
        self,
        stem: BandSetStem,
        stream: Stream,
        x: torch.Tensor,
        mask: torch.Tensor,
        active: torch.Tensor,
        band_present: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens of one stream for a whole batch; rows not ``active`` are left out (not zeros).

        Args:
            stem: the stream's stem.
            stream: its metadata as the batch holds it.
            x: ``(B, C, H, W)`` or ``(B, C, T)``.
            mask: bool ``(B, H, W)`` / ``(B, T)``.
            active: bool ``(B,)``: rows that carry the stream with at least one band.
            band_present: bool ``(B, C)``.

        Returns:
            ``(tokens, keep)``: ``(B, n_tokens, D)`` (zeros for inactive rows) and bool
            ``(B, n_tokens)`` (``False`` for inactive rows and cells without valid data).
        """
        b, n_tok = x.shape[0], stem.num_tokens
        tokens = x.new_zeros((b, n_tok, self.embed_dim))
        keep = torch.zeros((b, n_tok), dtype=torch.bool, device=x.device)
        rows = active.nonzero().flatten()
        if rows.numel() == 0:
            return tokens, keep
        # Only the rows that carry the stream run through the stem: absent samples are never fed
        # (as zeros or otherwise), and they cost nothing.
        bp = band_present[rows]
        be = self.band_embedding(stream)
        t, valid = stem(x[rows], mask[rows], bp, be)
        pos = self.raster_pos if stem.kind == "raster" else self.series_pos
        assert pos is not None, f"no positional table for {stem.kind} streams"
        t = t + pos.unsqueeze(0) + self._stream_type(be, bp).unsqueeze(1)
        return tokens.index_put((rows,), t), keep.index_put((rows,), valid)


def _check_stream_data(key: str, stem: BandSetStem, stream: Stream, x: torch.Tensor) -> None:
    check_matches(stem.stream, stream)
    if x.dim() != stem.dims + 2 or x.shape[1] != len(stream.bands):
        layout = "(B, C, H, W)" if stem.dims == 2 else "(B, C, T)"
        raise StreamMismatchError(
            f"stream {key!r} data has shape {tuple(x.shape)}, expected {layout} with "
            f"C = {len(stream.bands)} bands {list(stream.band_names)}"
        )


class FusionEncoder(TokenEncoder):
    """Multi-sensor encoder: a stem per stream at native resolution, fusion over present streams.

    Args:
        streams: stream key → :class:`~fusion.data.specs.Stream`, the streams the model accepts
            (a batch may hold any non-empty subset; band order and band subsets may differ, the
            resolution or rate may not).
        width: embedding size D (also the stems' and trunk's width).
        depth: transformer layers in the trunk.
        heads: attention heads.
        token_grid: G, raster streams are pooled to ``G × G`` tokens.
        series_tokens: tokens per time-series stream.
        fusion_stride_m: ground stride (m) raster streams are brought to before pooling
            (10 m → ×4 downsampling, 20 m → ×2, 60 m → none).
        series_stride_s: time stride (s) series streams are brought to before pooling.
        mlp_ratio: transformer feed-forward width / D.
        band_dim: band embedding size E (default D).
        dropout: transformer dropout.
        quantity_buckets: rows of the hashed quantity table.
        pixel_channels: K, channels of the stems' native-resolution pixel stage (band-conditioned
            mixing of the present bands, depthwise 3×3, 1×1) before patch merging to the fusion
            stride; 0 patchifies each band straight to the fusion stride (version-1 encoders).

    Attributes:
        embed_dim: D, the size of the embedding :meth:`forward` returns.
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
        pixel_channels: int = 0,
    ) -> None:
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
            kinds={stream_kind(s) for s in streams.values()},
        )
        if not streams:
            raise ValueError("a FusionEncoder needs at least one stream")
        bad = [k for k in streams if not k or "." in k]
        if bad:
            raise ValueError(f"stream keys must be non-empty and free of '.', got {bad}")
        self.streams: dict[str, Stream] = {k: streams[k] for k in sorted(streams)}
        self._hparams: dict[str, Any] = {
            "width": width,
            "depth": depth,
            "heads": heads,
            "token_grid": token_grid,
            "series_tokens": series_tokens,
            "fusion_stride_m": fusion_stride_m,
            "series_stride_s": series_stride_s,
            "mlp_ratio": mlp_ratio,
            "band_dim": band_dim,
            "dropout": dropout,
            "quantity_buckets": quantity_buckets,
            "pixel_channels": pixel_channels,
        }
        self.stems = nn.ModuleDict(
            {
                k: self.make_stem(
                    s,
                    fusion_stride_m=fusion_stride_m,
                    series_stride_s=series_stride_s,
                    pixel_channels=pixel_channels,
                )
                for k, s in self.streams.items()
            }
        )

    def stem_for(self, key: str) -> BandSetStem:
        """The stem of stream ``key`` (:class:`~fusion.models.errors.UnknownStreamError` if
        there is none)."""
        check_known([key], self.stems.keys())
        stem = self.stems[key]
        assert isinstance(stem, BandSetStem)
        return stem

    def forward(self, batch: Batch) -> torch.Tensor:
        """Embed a batch.

        Args:
            batch: any non-empty subset of the model's streams; per sample, at least one stream
                must be present with at least one band.

        Returns:
            ``(B, D)`` embeddings.

        Raises:
            UnknownStreamError: the batch holds a stream the model was not built for.
            StreamMismatchError: a stream's resolution, rate or data layout does not match.
            NoDataError: some sample has no present stream or no valid data at all.
        """
        check_known(batch.data.keys(), self.stems.keys())
        batch_size(batch)
        tokens, keeps = [], []
        carried: torch.Tensor | None = None
        for key in sorted(batch.data):
            stream, x, stem = batch.streams[key], batch.data[key], self.stem_for(key)
            _check_stream_data(key, stem, stream, x)
            bp = batch.band_present[key] & batch.present[key].unsqueeze(1)
            active = bp.any(dim=1)
            carried = active if carried is None else carried | active
            t, k = self.stream_tokens(stem, stream, x, batch.masks[key], active, bp)
            tokens.append(t)
            keeps.append(k)
        assert carried is not None  # batch_size() refused an empty batch
        if not bool(carried.all()):
            empty = (~carried).nonzero().flatten().tolist()
            raise NoDataError(
                f"sample(s) {empty} have no present stream (streams in the batch: "
                f"{sorted(batch.data)}); every sample needs at least one present stream with at "
                "least one band"
            )
        out: torch.Tensor = self.fusion(torch.cat(tokens, dim=1), torch.cat(keeps, dim=1))
        return out

    def config(self) -> dict[str, Any]:
        """Plain-data description (JSON/YAML-safe) that :meth:`from_config` rebuilds from."""
        return model_config("FusionEncoder", CONFIG_VERSION, self.streams, self._hparams)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> FusionEncoder:
        """Rebuild an (untrained) encoder from :meth:`config`; load the ``state_dict`` after.

        Raises:
            ValueError: the config is for another model or a newer format.
        """
        streams, hparams, version = read_model_config(cfg, "FusionEncoder", CONFIG_VERSION)
        if version < 2:  # version 1 encoders patchified each band first (no pixel stage)
            hparams.setdefault("pixel_channels", 0)
        return cls(streams, **hparams)
