"""Compute cost of a forward pass in multiply-accumulates, for the cost benchmark."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fusion.data.collate import Batch

__all__ = ["count_macs"]


# On CPU, scaled-dot-product attention dispatches to a kernel the flop counter has no formula for
# (it would count the attention matrix products as zero); give it the generic SDPA formula.
def _sdpa_flops(
    query_shape: tuple[int, ...],
    key_shape: tuple[int, ...],
    value_shape: tuple[int, ...],
    *args: Any,
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    # (b, h, s_q, d) @ (b, h, d, s_k), then (b, h, s_q, s_k) @ (b, h, s_k, d_v); 2 FLOPs per MAC
    b, h, s_q, d = query_shape
    s_k, d_v = key_shape[2], value_shape[3]
    return 2 * b * h * s_q * s_k * (d + d_v)


_EXTRA_FORMULAS: dict[Any, Any] = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops,
}


def count_macs(model: nn.Module, batch: Batch) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on the whole ``batch``.

    Counts matrix products, convolutions and attention (``FlopCounterMode`` FLOPs / 2);
    elementwise operations, normalisation, pooling and interpolation are not counted. PyTorch's
    fused transformer fast path is switched off while counting, since its single fused kernel
    would be counted as zero. Runs without gradients and leaves the model's train/eval mode as
    it is.

    Args:
        model: a module whose ``forward`` takes a :class:`~fusion.data.collate.Batch`.
        batch: the input.

    Returns:
        MACs for the batch (divide by ``len(batch)`` for a per-sample figure).
    """
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)
        with torch.no_grad(), counter:
            model(batch)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return int(counter.get_total_flops()) // 2
