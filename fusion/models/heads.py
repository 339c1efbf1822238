"""Heads on top of the encoder's embedding (from lightly, per principle 4 of the design)."""

from __future__ import annotations

from lightly.models.modules import SimCLRProjectionHead

__all__ = ["projection_head"]


def projection_head(embed_dim: int, hidden: int, out: int) -> SimCLRProjectionHead:
    """SimCLR projection head: Linear(embed_dim → hidden), BatchNorm, ReLU, Linear(→ out).

    Args:
        embed_dim: size of the encoder embedding (``FusionEncoder.embed_dim``).
        hidden: hidden size.
        out: size of the projections the contrastive loss compares.
    """
    return SimCLRProjectionHead(input_dim=embed_dim, hidden_dim=hidden, output_dim=out)
