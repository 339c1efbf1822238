"""Integer-only reference inference of a :class:`~fusion.deploy.int8.QuantizedStudent`.

This is the specification the exported C code matches bit for bit. Every value is an integer;
accumulators are int64 here and checked to stay inside int32 (the C code accumulates in int32).

Per stem (stream present), on int8 input ``x`` with zero point ``z_in``:

* depthwise conv k3, pad 1, stride s: ``acc[c, o] = bias[c] + Σ_k (x[c, o·s + k − 1] − z_in) ·
  w[c, k]`` over taps inside the input (padding contributes 0 = a real zero);
* pointwise: ``acc[o, n] = bias[o] + Σ_c (x[c, n] − z_in) · w[o, c]``;
* then ``y = clamp(MBQM(acc, m[c], shift[c]) + z_out, act_min, act_max)``, MBQM being
  :func:`~fusion.deploy.fixedpoint.multiply_by_quantized_multiplier`;
* average pool: ``p[c] = clamp(MBQM(Σ_n (x[c, n] − z_in), m, shift) + z_pool, −128, 127)``.

Fusion over the present set P: ``f[c] = clamp(rounding_mean(Σ_{k∈P} (p_k[c] − z_pool), |P|) +
z_pool, −128, 127)``; then the dense head (as pointwise, clamp ``[−128, 127]``) or ``f`` itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fusion.deploy.errors import NoStreamPresentError, QuantisationError, StudentInputError
from fusion.deploy.fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    multiply_by_quantized_multiplier,
    rounding_mean,
)
from fusion.deploy.int8 import QConv, QPool, QStem, QuantizedStudent

__all__ = ["golden_forward", "golden_invoke", "run_conv", "run_pool"]


def _check_int32(acc: np.ndarray, what: str) -> None:
    if acc.size and (int(acc.min()) < INT32_MIN or int(acc.max()) > INT32_MAX):
        raise QuantisationError(f"int32 accumulator overflow in {what}")


def _requant(acc: np.ndarray, layer: QConv, channel_axis: int) -> np.ndarray:
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    m = layer.multiplier.astype(np.int64).reshape(shape)
    s = layer.shift.astype(np.int64).reshape(shape)
    y = multiply_by_quantized_multiplier(acc, m, s) + layer.output.zero_point
    out: np.ndarray = np.clip(y, layer.act_min, layer.act_max).astype(np.int8)
    return out


def run_conv(x: np.ndarray, layer: QConv) -> np.ndarray:
    """One int8 layer on a batch ``(B, C, ...)`` (``(B, C)`` for dense) → int8."""
    xo = x.astype(np.int64) - layer.input.zero_point
    b = layer.bias.astype(np.int64)
    w = layer.weight.astype(np.int64)
    if layer.kind == "dw":
        s = layer.stride
        spatial = layer.out_shape[1:]
        pad = np.pad(xo, [(0, 0), (0, 0)] + [(1, 1)] * len(spatial))
        acc = np.zeros((x.shape[0], *layer.out_shape), dtype=np.int64)
        acc += b.reshape(1, -1, *([1] * len(spatial)))
        if len(spatial) == 1:
            (to,) = spatial
            for k in range(3):
                tap = pad[:, :, k : k + s * (to - 1) + 1 : s]
                acc += tap * w[None, :, k, None]
        else:
            ho, wo = spatial
            for i in range(3):
                for j in range(3):
                    tap = pad[:, :, i : i + s * (ho - 1) + 1 : s, j : j + s * (wo - 1) + 1 : s]
                    acc += tap * w[None, :, i, j, None, None]
        _check_int32(acc, "a depthwise conv")
        return _requant(acc, layer, 1)
    if layer.kind == "pw":
        flat = xo.reshape(x.shape[0], x.shape[1], -1)
        acc = np.matmul(w, flat) + b[None, :, None]
        _check_int32(acc, "a pointwise conv")
        return _requant(acc, layer, 1).reshape(x.shape[0], *layer.out_shape)
    acc = xo @ w.T + b[None, :]
    _check_int32(acc, "the dense head")
    return _requant(acc, layer, 1)


def run_pool(x: np.ndarray, pool: QPool) -> np.ndarray:
    """Global average pool of ``(B, C, ...)`` int8 → ``(B, C)`` int8 in the pooled quantisation."""
    acc = (x.astype(np.int64) - pool.input.zero_point).reshape(x.shape[0], x.shape[1], -1).sum(2)
    _check_int32(acc, "the average pool")
    y = multiply_by_quantized_multiplier(acc, pool.multiplier, pool.shift)
    out: np.ndarray = np.clip(y + pool.output.zero_point, -128, 127).astype(np.int8)
    return out


def run_stem(x: np.ndarray, stem: QStem) -> np.ndarray:
    """A stem on int8 ``(B, C, ...)`` → pooled int8 ``(B, D)``."""
    for layer in stem.layers:
        x = run_conv(x, layer)
    return run_pool(x, stem.pool)


def _check_input(stem: QStem, x: np.ndarray, batched: bool) -> None:
    if x.dtype != np.int8:
        raise StudentInputError(f"stream {stem.key!r}: dtype {x.dtype}, expected int8")
    shape = tuple(x.shape[1:]) if batched else tuple(x.shape)
    if shape != stem.input_shape:
        raise StudentInputError(
            f"stream {stem.key!r}: shape {shape}, the export expects {stem.input_shape}"
        )


def golden_forward(
    q: QuantizedStudent,
    inputs: Mapping[str, np.ndarray],
    present: Mapping[str, np.ndarray | Sequence[bool]],
) -> np.ndarray:
    """Batched integer inference: int8 inputs ``(B, C, ...)`` per stream and bool ``(B,)``
    present flags per stream → int8 ``(B, out_dim)``. A stream missing from ``inputs`` is
    absent; each stem runs only on its present rows.

    Raises:
        NoStreamPresentError: some row has no present stream.
        StudentInputError: an unknown stream, wrong dtype or shape.
    """
    unknown = set(inputs) - set(q.keys)
    if unknown:
        raise StudentInputError(f"streams {sorted(unknown)} are not in {list(q.keys)}")
    if not inputs:
        raise NoStreamPresentError("no input stream given")
    n = int(next(iter(inputs.values())).shape[0])
    total = np.zeros((n, q.dim), dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    zp = q.fused.zero_point
    for stem in q.stems:
        x = inputs.get(stem.key)
        if x is None:
            continue
        _check_input(stem, x, batched=True)
        p = present.get(stem.key)
        rows = np.ones(n, dtype=bool) if p is None else np.asarray(p, dtype=bool)
        if not rows.any():
            continue
        pooled = run_stem(x[rows], stem)
        total[rows] += pooled.astype(np.int64) - zp
        count[rows] += 1
    if np.any(count == 0):
        raise NoStreamPresentError(
            f"{int((count == 0).sum())} sample(s) have no present stream; the integer path "
            "needs at least one"
        )
    fused: np.ndarray = np.clip(rounding_mean(total, count[:, None]) + zp, -128, 127).astype(
        np.int8
    )
    if q.head is None:
        return fused
    return run_conv(fused, q.head)


def golden_invoke(
    q: QuantizedStudent, inputs: Sequence[np.ndarray | None], present_mask: int
) -> np.ndarray:
    """One sample, as the C API takes it: int8 inputs in stream order (``None`` allowed where
    the bit is 0) and a present bitmask → int8 ``(out_dim,)``.

    Raises:
        NoStreamPresentError: the mask names no stream (bits beyond the streams are an error).
    """
    if present_mask <= 0 or present_mask >> len(q.stems):
        raise NoStreamPresentError(
            f"present mask {present_mask:#x} must be non-zero and within {len(q.stems)} bits"
        )
    if len(inputs) != len(q.stems):
        raise StudentInputError(f"{len(inputs)} inputs for {len(q.stems)} streams")
    batch: dict[str, np.ndarray] = {}
    for i, stem in enumerate(q.stems):
        if present_mask >> i & 1:
            x = inputs[i]
            if x is None:
                raise StudentInputError(f"stream {stem.key!r} is flagged present but has no data")
            _check_input(stem, x, batched=False)
            batch[stem.key] = x[None]
    out: np.ndarray = golden_forward(q, batch, {})[0]
    return out
