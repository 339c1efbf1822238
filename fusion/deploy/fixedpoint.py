"""TFLite-compatible fixed-point requantisation (gemmlowp semantics), in numpy int64.

A real multiplier ``M > 0`` is written as ``M ≈ m · 2^(shift − 31)`` with ``m`` an int32 in
``[2^30, 2^31)`` (:func:`quantize_multiplier`, TFLite's ``QuantizeMultiplier``). An int32
accumulator ``x`` is rescaled by :func:`multiply_by_quantized_multiplier`::

    left  = max(shift, 0);  right = max(−shift, 0)
    y = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x · 2^left, m), right)

* ``SaturatingRoundingDoublingHighMul(a, b)`` = ``(a·b + nudge) / 2^31`` truncated toward zero,
  with ``nudge = 2^30`` when ``a·b ≥ 0`` and ``1 − 2^30`` otherwise: nearest, and a tie goes
  toward +∞ (``+0.5 → 1`` but ``−0.5 → 0``, ``−2.5 → −2``); ``a = b = −2^31`` saturates to
  ``2^31 − 1``.
* ``RoundingDivideByPOT(x, e)`` = ``x / 2^e`` rounded to nearest, ties away from zero
  (``remainder > threshold`` with ``threshold = (mask >> 1) + (x < 0)``).
* ``x · 2^left`` saturates to int32 (TFLite leaves the overflow undefined; our multipliers keep
  ``left`` at 0 in practice, and the C export does the same saturation).

Every function takes and returns numpy integer arrays (or Python ints) holding int32 values in
int64, so the C code, which computes in int32/int64, can match them bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from fusion.deploy.errors import QuantisationError

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "multiply_by_quantized_multiplier",
    "quantize_multiplier",
    "rounding_divide_by_pot",
    "rounding_mean",
    "saturating_rounding_doubling_high_mul",
]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def quantize_multiplier(real: float) -> tuple[int, int]:
    """``(m, shift)`` with ``real ≈ m · 2^(shift − 31)``, ``m`` in ``[2^30, 2^31)`` (TFLite's
    ``QuantizeMultiplier``): ``frexp``, then ``m = round(q · 2^31)`` with ties away from zero; a
    ``m`` that rounds up to ``2^31`` is halved and ``shift`` incremented; a multiplier below
    ``2^−32`` (``shift < −31``) becomes ``(0, 0)``.

    Raises:
        QuantisationError: ``real`` is negative, not finite, or so large that ``shift > 31``.
    """
    if not math.isfinite(real) or real < 0:
        raise QuantisationError(f"multiplier must be finite and ≥ 0, got {real}")
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)  # real = q · 2^shift, q in [0.5, 1)
    m = math.floor(q * 2.0**31 + 0.5)  # q > 0: floor(x + 0.5) is round-half-away-from-zero
    if m == 2**31:
        m //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 31:
        raise QuantisationError(f"multiplier {real} too large for a Q31 multiplier and shift")
    return int(m), int(shift)


def saturating_rounding_doubling_high_mul(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp's ``SaturatingRoundingDoublingHighMul`` on int32 values (elementwise)."""
    a64 = np.asarray(a, dtype=np.int64)
    b64 = np.asarray(b, dtype=np.int64)
    ab = a64 * b64  # |a·b| ≤ 2^62: exact in int64
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    s = ab + nudge
    # C integer division truncates toward zero; numpy's >> floors, so divide magnitudes.
    high = np.where(s >= 0, s >> 31, -((-s) >> 31))
    overflow = (a64 == b64) & (a64 == INT32_MIN)
    return np.where(overflow, np.int64(INT32_MAX), high)


def rounding_divide_by_pot(x: np.ndarray | int, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp's ``RoundingDivideByPOT``: ``x / 2^exponent``, nearest, ties away from zero,
    for int32 ``x`` and ``0 ≤ exponent ≤ 31`` (elementwise)."""
    x64 = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    if np.any((e < 0) | (e > 31)):
        raise QuantisationError("rounding_divide_by_pot needs 0 ≤ exponent ≤ 31")
    mask = (np.int64(1) << e) - 1
    remainder = x64 & mask  # two's complement low bits, as in int32 C code
    threshold = (mask >> 1) + (x64 < 0).astype(np.int64)
    return (x64 >> e) + (remainder > threshold).astype(np.int64)


def multiply_by_quantized_multiplier(
    x: np.ndarray | int, multiplier: np.ndarray | int, shift: np.ndarray | int
) -> np.ndarray:
    """TFLite's ``MultiplyByQuantizedMultiplier`` (double rounding) with the left shift
    saturated to int32 (elementwise, broadcasting)."""
    x64 = np.asarray(x, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    left = np.maximum(s, 0)
    right = np.maximum(-s, 0)
    shifted = np.clip(x64 * (np.int64(1) << left), INT32_MIN, INT32_MAX)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def rounding_mean(total: np.ndarray | int, count: np.ndarray | int) -> np.ndarray:
    """``total / count`` rounded to nearest, ties away from zero (``count ≥ 1``): the fusion mean.

    In C: ``t ≥ 0 ? (t + n/2) / n : −((−t + n/2) / n)`` with truncating division.
    """
    t = np.asarray(total, dtype=np.int64)
    n = np.asarray(count, dtype=np.int64)
    if np.any(n < 1):
        raise QuantisationError("rounding_mean needs count ≥ 1")
    mag = (np.abs(t) + n // 2) // n
    return np.where(t >= 0, mag, -mag)
