"""`PatchGatedViT`: a mobile vision transformer whose MLPs are routed per patch token.

Architecture::

    per stream, at native resolution: BandSetStem (per-band patchify + FiLM by the band's metadata
        embedding, mean over present bands, depthwise-separable block, masked pooling to G×G
        tokens, or T tokens for series)
    + positional embedding (shared by all raster streams) + stream-type embedding (from the
        stream's present band embeddings, never from its key)
    → pack: each sample's *valid* tokens of its *present* streams, nothing else
    → depth × [x + MHSA(LN(x)) ; x + RoutedMLP(LN(x))]   (RoutedMLP: top-1 of K experts or skip)
    → LN → mean over the sample's tokens → (B, D)

The stems are the fusion encoder's (:class:`~fusion.models.stems.BandSetStem`), so tokens from every
sensor land in one width-D space at one ground stride and share the trunk's experts: one tower
for all sensors, told apart by their embeddings only. Tokens are packed, not padded per stream: a
sample without a sensor has fewer tokens (its attention is shorter, its MLPs route fewer tokens)
and a token whose cell saw no valid pixel does not exist. Padding exists only inside attention, to
batch samples with different token counts, and is masked out as keys.

With ``experts=1, skip=False`` there is no router: the *dense* variant (:meth:`dense_variant`) has
one MLP as wide as all K experts together, so both have the same parameters and width and differ
only in routing. MACs under routing are counted by :func:`average_macs`: only the expert a token
used is run (and counted); a skipping token costs 0 in the MLP.

Export to the int8 student path (:mod:`fusion.deploy.int8`, :mod:`fusion.deploy.golden`,
:mod:`fusion.deploy.c_export`). That path's integer kernels are: depthwise conv k3 (pad 1), 1×1
pointwise conv with ReLU as its output clamp, global average pool, mean fusion of pooled vectors
and a dense head, all with shapes fixed at export. Part by part:

* **Can**: every linear layer of the trunk applied per token: Q/K/V and output projections, the
  router's logits and each expert's two linears (1×1 convs over the token grid), and the classifier
  head (dense). Experts built with ``activation="relu"`` are exactly pw conv → clamp → pw conv and
  quantise with the existing per-channel scheme (``tests/models/test_gated_export.py`` runs one
  through :func:`~fusion.deploy.golden.run_conv` and compares with float). The router's top-1 on
  int8 logits is an argmax, which is monotone-invariant, so it needs no softmax to *choose*.
* **Cannot, and why**:

  - LayerNorm (every block) and the stems' masked GroupNorm: per-sample mean, variance and
    reciprocal square root at run time; the path only rescales by constants fixed at export.
  - Attention: ``Q·Kᵀ`` and ``A·V`` multiply two *activations* (both with zero points); every
    existing kernel multiplies an activation by constant weights. Softmax needs ``exp``.
  - The gate value ``p(choice)`` that scales an expert's output is a softmax probability (``exp``).
  - GELU (stems, default experts) has no kernel; ReLU is the only nonlinearity (a clamp).
  - Residual adds of two int8 tensors with different scales (needs a rescaling ADD kernel), and
    the positional/stream-type additions (constants, but still an ADD per token).
  - Routing itself: gather the tokens of expert e, run it, scale, scatter back. The token count of
    each expert changes per sample, so shapes are not compile-time constants; the C exporter sizes
    every layer and its arena buffer statically (:class:`~fusion.deploy.int8.ArenaPlan`). A
    worst-case buffer (all tokens to one expert) would work, so routing saves MACs on an MCU but
    not memory.
  - Packed tokens: a missing sensor shortens the sequence; same static-shape problem.
  - The stems' per-band patchify conv (kernel = stride = p) is not a k3 depthwise conv; it equals a
    space-to-depth reorder then a 1×1 conv (no new arithmetic), and the FiLM by a band's embedding
    is a per-band constant that folds into that conv. The partial-conv renormalisation by the
    valid-pixel fraction is a run-time division (drops out only when every pixel is valid).
    Pooling to a G×G grid instead of 1×1 is a small generalisation of the global pool.

  The "can" parts are islands between ops that cannot run, so nothing of the trunk exports end to
  end today. It would need new kernels (LayerNorm, int8 softmax, activation×activation matmul,
  rescaling add, argmax + gather/scatter with run-time counts, GELU table or ReLU everywhere): a
  new integer runtime rather than an extension of the conv-only student. A static-graph runtime
  (TFLite-Micro plans every tensor at conversion) cannot express run-time token counts either; the
  usual workaround, running every expert on every token and selecting, keeps the accuracy but
  gives up the MAC saving that routing is for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fusion.data.collate import Batch, collate_samples
from fusion.data.sample import Sample
from fusion.data.specs import Stream
from fusion.models.band_embedding import BandEmbedding
from fusion.models.cost import count_macs
from fusion.models.errors import NoDataError, StreamMismatchError
from fusion.models.routing import Activation, RoutedMLP
from fusion.models.stems import BandSetStem
from fusion.models.streams import (
    batch_size,
    check_known,
    check_matches,
    model_config,
    read_model_config,
    stream_kind,
)

__all__ = ["GatedBlock", "GatedClassifier", "PackedTokens", "PatchGatedViT", "average_macs"]

CONFIG_VERSION = 1


@dataclass
class PackedTokens:
    """The real tokens of a batch, flat: no padding, no absent stream, no empty cell.

    Args:
        values: ``(M, D)`` tokens, grouped by sample (stable: stream order, then cell order).
        sample: int64 ``(M,)``, the sample of each token.
        stream: int64 ``(M,)``, index into ``keys`` of each token's stream.
        keys: the stream keys of the batch, sorted.
        batch_size: B.
    """

    values: torch.Tensor
    sample: torch.Tensor
    stream: torch.Tensor
    keys: tuple[str, ...]
    batch_size: int

    def counts(self) -> torch.Tensor:
        """int64 ``(B,)``: tokens per sample."""
        return torch.bincount(self.sample, minlength=self.batch_size)


class GatedBlock(nn.Module):
    """Pre-norm transformer block on packed tokens: masked self-attention, then a routed MLP.

    Args:
        width: D.
        heads: attention heads (must divide D).
        hidden: hidden size of each expert.
        experts: K.
        skip: add the skip choice.
        activation: expert nonlinearity.
        drop_path: stochastic depth (Huang et al. 2016): in training, each sample's attention and
            MLP branches are dropped with this probability (and rescaled when kept).
    """

    def __init__(
        self,
        width: int,
        *,
        heads: int,
        hidden: int,
        experts: int,
        skip: bool,
        activation: Activation,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
        self.heads = heads
        self.drop_path = drop_path
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = RoutedMLP(width, hidden, experts=experts, skip=skip, activation=activation)

    def forward(
        self, x: torch.Tensor, sample: torch.Tensor, slot: torch.Tensor, keep: torch.Tensor
    ) -> torch.Tensor:
        """One block.

        Args:
            x: ``(M, D)`` packed tokens.
            sample: int64 ``(M,)`` sample of each token.
            slot: int64 ``(M,)`` position of each token within its sample.
            keep: bool ``(B, L)``, ``True`` at the ``(sample, slot)`` pairs that hold a token.

        Returns:
            ``(M, D)``.
        """
        b, length = keep.shape
        d = x.shape[1]
        # Projections run on real tokens only; padding appears just for the batched attention.
        qkv = self.qkv(self.norm1(x))
        padded = qkv.new_zeros((b, length, 3 * d)).index_put((sample, slot), qkv)
        q, k, v = padded.view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        att = att.transpose(1, 2).reshape(b, length, d)[sample, slot]
        x = x + self._drop(self.proj(att), sample, b)
        out: torch.Tensor = x + self._drop(self.mlp(self.norm2(x)), sample, b)
        return out

    def _drop(self, branch: torch.Tensor, sample: torch.Tensor, b: int) -> torch.Tensor:
        """Stochastic depth per sample on packed tokens (identity in eval or at rate 0); written
        here because timm's ``DropPath`` drops rows of a ``(B, …)`` tensor, not packed tokens."""
        if not self.training or self.drop_path == 0.0:
            return branch
        keep = (torch.rand(b, device=branch.device) >= self.drop_path).to(branch.dtype)
        return branch * (keep / (1.0 - self.drop_path))[sample].unsqueeze(1)


def _positions(n: int, width: int) -> nn.Parameter:
    table = nn.Parameter(torch.zeros(n, width))
    nn.init.trunc_normal_(table, std=0.02)
    return table


class PatchGatedViT(nn.Module):
    """Multi-sensor mobile ViT trunk with per-token routed MLPs (see the module docstring).

    Args:
        streams: stream key → :class:`~fusion.data.specs.Stream` the model accepts (a batch may
            hold any non-empty subset; band order and band subsets may differ).
        width: token and embedding size D.
        depth: transformer blocks.
        heads: attention heads.
        token_grid: G, raster streams give ``G × G`` tokens.
        series_tokens: tokens per time-series stream.
        fusion_stride_m: ground stride (m) the stems bring rasters to before pooling to G×G.
        series_stride_s: time stride (s) for series streams.
        mlp_ratio: total MLP hidden size / D, shared by the K experts (each has
            ``mlp_ratio · D / K``, unless ``expert_hidden`` is given).
        experts: K; ``1`` with ``skip=False`` is the dense variant (no router).
        skip: let the router send a token past the MLP (0 MACs).
        expert_hidden: hidden size of each expert (overrides the ``mlp_ratio`` split).
        activation: expert nonlinearity (``"relu"`` keeps experts int8-exportable).
        band_dim: band embedding size E (default D).
        quantity_buckets: rows of the hashed quantity table.
        pixel_channels: K > 0 gives each stem a native-resolution pixel stage (band-conditioned
            1×1 mixing of the present bands, depthwise 3×3, 1×1; see
            :class:`~fusion.models.stems.BandSetStem`) before patchifying; 0 patchifies each band
            alone and mixes bands only after their mean.
        drop_path: stochastic-depth rate of every block in training (a regulariser for small
            labelled sets; 0 turns it off).
        stem_blocks: residual blocks in each stem after its band mean (spatial context at the
            fusion stride before the tokens are pooled).

    Attributes:
        embed_dim: D, the size of the embedding :meth:`forward` returns.
    """

    def __init__(
        self,
        streams: Mapping[str, Stream],
        *,
        width: int = 64,
        depth: int = 4,
        heads: int = 4,
        token_grid: int = 4,
        series_tokens: int = 8,
        fusion_stride_m: float = 80.0,
        series_stride_s: float = 0.2,
        mlp_ratio: float = 4.0,
        experts: int = 4,
        skip: bool = True,
        expert_hidden: int | None = None,
        activation: Activation = "gelu",
        band_dim: int | None = None,
        quantity_buckets: int = 64,
        pixel_channels: int = 0,
        drop_path: float = 0.0,
        stem_blocks: int = 1,
    ) -> None:
        super().__init__()
        if not streams:
            raise ValueError("a PatchGatedViT needs at least one stream")
        self.streams: dict[str, Stream] = {k: streams[k] for k in sorted(streams)}
        hidden = expert_hidden or max(1, round(width * mlp_ratio / experts))
        self._hparams: dict[str, Any] = {
            "width": width,
            "depth": depth,
            "heads": heads,
            "token_grid": token_grid,
            "series_tokens": series_tokens,
            "fusion_stride_m": fusion_stride_m,
            "series_stride_s": series_stride_s,
            "mlp_ratio": mlp_ratio,
            "experts": experts,
            "skip": skip,
            "expert_hidden": hidden,
            "activation": activation,
            "band_dim": band_dim,
            "quantity_buckets": quantity_buckets,
            "pixel_channels": pixel_channels,
            "drop_path": drop_path,
            "stem_blocks": stem_blocks,
        }
        self.embed_dim = width
        self.band_dim = band_dim or width
        self.band_embedding = BandEmbedding(self.band_dim, quantity_buckets=quantity_buckets)
        self.stream_type = nn.Sequential(
            nn.Linear(self.band_dim, width), nn.GELU(), nn.Linear(width, width)
        )
        kinds = {stream_kind(s) for s in self.streams.values()}
        # Only the kinds present get a table (a parameter without gradient breaks DDP).
        self.raster_pos = _positions(token_grid**2, width) if "raster" in kinds else None
        self.series_pos = _positions(series_tokens, width) if "series" in kinds else None
        self.stems = nn.ModuleDict(
            {
                k: BandSetStem(
                    s,
                    width=width,
                    band_dim=self.band_dim,
                    tokens=(token_grid, token_grid)
                    if stream_kind(s) == "raster"
                    else (series_tokens,),
                    fusion_step=fusion_stride_m if stream_kind(s) == "raster" else series_stride_s,
                    pixel_channels=pixel_channels,
                    blocks=stem_blocks,
                )
                for k, s in self.streams.items()
            }
        )
        self.blocks = nn.ModuleList(
            GatedBlock(
                width,
                heads=heads,
                hidden=hidden,
                experts=experts,
                skip=skip,
                activation=activation,
                drop_path=drop_path,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)

    @property
    def routed(self) -> bool:
        """Whether the MLPs are routed (``False`` for the dense variant)."""
        return any(self._mlp(i).routed for i in range(len(self.blocks)))

    def _mlp(self, i: int) -> RoutedMLP:
        block = self.blocks[i]
        assert isinstance(block, GatedBlock)
        return block.mlp

    def _stem(self, key: str) -> BandSetStem:
        stem = self.stems[key]
        assert isinstance(stem, BandSetStem)
        return stem

    def tokens(self, batch: Batch) -> PackedTokens:
        """Embedded tokens of the batch's present streams, packed (see :class:`PackedTokens`).

        Raises:
            UnknownStreamError: the batch holds a stream the model was not built for.
            StreamMismatchError: a stream's resolution, rate or data layout does not match.
            NoDataError: a sample has no valid token (no present stream or no valid pixel).
        """
        check_known(batch.data.keys(), self.stems.keys())
        b = batch_size(batch)
        keys = tuple(sorted(batch.data))
        values, samples, streams = [], [], []
        for index, key in enumerate(keys):
            stream, x, stem = batch.streams[key], batch.data[key], self._stem(key)
            check_matches(stem.stream, stream)
            if x.dim() != stem.dims + 2 or x.shape[1] != len(stream.bands):
                raise StreamMismatchError(
                    f"stream {key!r} data has shape {tuple(x.shape)}, expected "
                    f"{stem.dims + 2} dims with C = {len(stream.bands)} bands"
                )
            bp = batch.band_present[key] & batch.present[key].unsqueeze(1)
            rows = bp.any(dim=1).nonzero().flatten()
            if rows.numel() == 0:
                continue
            # Only rows carrying the stream run through its stem; absent rows are never read.
            be = self.band_embedding(stream)
            t, valid = stem(x[rows], batch.masks[key][rows], bp[rows], be)
            pos = self.raster_pos if stem.kind == "raster" else self.series_pos
            assert pos is not None
            w = bp[rows].to(be.dtype)
            kind = self.stream_type((w @ be) / w.sum(dim=1, keepdim=True).clamp(min=1.0))
            t = t + pos.unsqueeze(0) + kind.unsqueeze(1)
            values.append(t[valid])
            samples.append(rows.unsqueeze(1).expand_as(valid)[valid])
            streams.append(torch.full_like(samples[-1], index))
        sample = torch.cat(samples) if samples else torch.zeros(0, dtype=torch.int64)
        counts = torch.bincount(sample, minlength=b)
        if bool((counts == 0).any()):
            empty = (counts == 0).nonzero().flatten().tolist()
            raise NoDataError(
                f"sample(s) {empty} have no valid token: no present stream with a present band "
                f"and a valid pixel (streams in the batch: {list(keys)})"
            )
        order = torch.argsort(sample, stable=True)
        return PackedTokens(
            values=torch.cat(values)[order],
            sample=sample[order],
            stream=torch.cat(streams)[order],
            keys=keys,
            batch_size=b,
        )

    def forward(self, batch: Batch) -> torch.Tensor:
        """Embed a batch.

        Args:
            batch: any non-empty subset of the model's streams; each sample needs at least one
                present stream with a present band and a valid pixel or step.

        Returns:
            ``(B, D)`` embeddings (mean of the final tokens of each sample).

        Raises:
            UnknownStreamError, StreamMismatchError, NoDataError: see :meth:`tokens`.
        """
        packed = self.tokens(batch)
        sample, counts = packed.sample, packed.counts()
        start = torch.cumsum(counts, 0) - counts
        slot = torch.arange(sample.numel(), device=sample.device) - start[sample]
        keep = torch.arange(int(counts.max()), device=sample.device) < counts.unsqueeze(1)
        x = packed.values
        for block in self.blocks:
            x = block(x, sample, slot, keep)
        x = self.norm(x)
        pooled = x.new_zeros((packed.batch_size, x.shape[1])).index_add(0, sample, x)
        out: torch.Tensor = pooled / counts.unsqueeze(1).to(x.dtype)
        return out

    def balance_loss(self) -> torch.Tensor:
        """Mean over blocks of the Switch load-balancing loss of the latest forward (1 when
        balanced; 0 for the dense variant). Add ``α ·`` this to the task loss (Switch: α = 0.01)."""
        if not self.routed:
            return self.norm.weight.new_zeros(())
        losses = [self._mlp(i).last_balance_loss for i in range(len(self.blocks))]
        return torch.stack(losses).mean()

    def routing_fractions(self) -> torch.Tensor:
        """``(depth, K + skip)``: share of the latest forward's tokens sent to each expert (the
        skip choice last), per block."""
        counts = torch.stack(
            [self._mlp(i).last_counts.float().cpu() for i in range(len(self.blocks))]
        )
        out: torch.Tensor = counts / counts.sum(dim=1, keepdim=True).clamp(min=1.0)
        return out

    def dense_variant(self) -> PatchGatedViT:
        """An untrained model of the same width, depth and parameter budget with routing off: one
        MLP per block as wide as all K experts together."""
        cfg = self.config()
        cfg["expert_hidden"] = cfg["expert_hidden"] * cfg["experts"]
        cfg["experts"], cfg["skip"] = 1, False
        return PatchGatedViT.from_config(cfg)

    def config(self) -> dict[str, Any]:
        """Plain-data description (JSON/YAML-safe) that :meth:`from_config` rebuilds from."""
        return model_config("PatchGatedViT", CONFIG_VERSION, self.streams, self._hparams)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> PatchGatedViT:
        """Rebuild an (untrained) model from :meth:`config`; load the ``state_dict`` after.

        Raises:
            ValueError: the config is for another model or a newer format.
        """
        streams, hparams, _ = read_model_config(cfg, "PatchGatedViT", CONFIG_VERSION)
        hparams.setdefault("pixel_channels", 0)  # configs written before the pixel stage
        hparams.setdefault("drop_path", 0.0)  # and before stochastic depth
        hparams.setdefault("stem_blocks", 1)  # and before deeper stems
        return cls(streams, **hparams)


class GatedClassifier(nn.Module):
    """A :class:`PatchGatedViT` with a linear head: the student-sized classifier.

    Args:
        encoder: the trunk.
        num_classes: logits per sample.
    """

    def __init__(self, encoder: PatchGatedViT, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.embed_dim, num_classes)

    def forward(self, batch: Batch) -> torch.Tensor:
        """``(B, num_classes)`` logits."""
        out: torch.Tensor = self.head(self.encoder(batch))
        return out

    def balance_loss(self) -> torch.Tensor:
        """The encoder's load-balancing loss of the latest forward."""
        return self.encoder.balance_loss()


def average_macs(model: nn.Module, samples: Sequence[Sample]) -> float:
    """Mean multiply-accumulates per sample, each sample run alone.

    One sample per forward, so the count is that sample's own: its routing decisions (only the
    experts its tokens used; skipped tokens cost 0 in the MLP), its present streams and valid
    tokens, and no attention padding from other samples. Counted by
    :func:`~fusion.models.cost.count_macs` in eval mode (the train/eval mode is restored).

    Args:
        model: a module whose ``forward`` takes a :class:`~fusion.data.collate.Batch`.
        samples: Samples to average over (at least one).
    """
    if not samples:
        raise ValueError("average_macs needs at least one sample")
    was_training = model.training
    model.eval()
    try:
        total = sum(count_macs(model, collate_samples([s])) for s in samples)
    finally:
        model.train(was_training)
    return total / len(samples)
