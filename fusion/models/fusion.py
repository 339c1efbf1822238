"""Fusion over present streams: masked self-attention over all tokens, masked mean pooling."""

from __future__ import annotations

import torch
from torch import nn

from fusion.models.errors import NoDataError

__all__ = ["TokenFusion"]


class TokenFusion(nn.Module):
    """Shared transformer trunk over the concatenated tokens of every stream.

    Tokens flagged not kept (their stream is absent for that sample, or they saw no valid pixel)
    are excluded as attention keys and from the pooled mean, so an absent stream changes nothing:
    a batch where it is absent for some samples gives those samples the same embedding as a batch
    built without it.

    Args:
        width: token size D.
        depth: number of transformer layers.
        heads: attention heads (must divide D).
        mlp_ratio: feed-forward width as a multiple of D.
        dropout: dropout inside the transformer layers.
    """

    def __init__(
        self, width: int, *, depth: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        layer = nn.TransformerEncoderLayer(
            width,
            heads,
            dim_feedforward=round(width * mlp_ratio),
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # Pre-norm layers need a final norm; nested tensors are off because pre-norm layers cannot
        # use them anyway (and torch warns when asked).
        self.trunk = nn.TransformerEncoder(
            layer, depth, norm=nn.LayerNorm(width), enable_nested_tensor=False
        )

    def forward(self, tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Fuse.

        Args:
            tokens: ``(B, N, D)``.
            keep: bool ``(B, N)``, ``True`` for tokens that carry data.

        Returns:
            ``(B, D)``: mean of the trunk's outputs over kept tokens.

        Raises:
            NoDataError: a sample keeps no token.
        """
        empty = (~keep.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise NoDataError(f"sample(s) {empty} have no valid token to fuse")
        out = self.trunk(tokens, src_key_padding_mask=~keep)
        w = keep.unsqueeze(-1)
        zero = torch.zeros((), dtype=out.dtype, device=out.device)
        pooled: torch.Tensor = torch.where(w, out, zero).sum(dim=1) / w.sum(dim=1).to(out.dtype)
        return pooled
