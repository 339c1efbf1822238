"""TFLite/gemmlowp fixed-point helpers: hand-worked cases, exact rational references, and the
generated C helpers against the numpy ones."""

from __future__ import annotations

import math
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from fusion.deploy import QuantisationError, QuantizedStudent, export_c
from fusion.deploy.fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_divide_by_pot,
    rounding_mean,
    saturating_rounding_doubling_high_mul,
)
from tests.deploy.c_harness import CFLAGS

M_HALF = 1 << 30  # 0.5 in Q31


@pytest.mark.parametrize(
    ("real", "expected"),
    [
        (0.5, (1 << 30, 0)),
        (1.0, (1 << 30, 1)),
        (0.75, (1610612736, 0)),
        (0.1, (1717986918, -3)),  # 0.8 · 2^31 = 1717986918.4 → 1717986918, 0.1 = 0.8 · 2^-3
        (0.3, (1288490189, -1)),  # 0.6 · 2^31 = 1288490188.8 → 1288490189
        (2.0, (1 << 30, 2)),
        (1.0 - 2.0**-40, (1 << 30, 1)),  # rounds up to 2^31: halved, shift + 1
        (2.0**-32, (1 << 30, -31)),  # the smallest shift kept
        (2.0**-33, (0, 0)),  # shift −32 < −31 → zero multiplier
        (0.0, (0, 0)),
    ],
)
def test_quantize_multiplier_hand_cases(real: float, expected: tuple[int, int]) -> None:
    assert quantize_multiplier(real) == expected


def test_quantize_multiplier_is_close_and_in_range() -> None:
    rng = np.random.default_rng(0)
    for real in 10.0 ** rng.uniform(-8, 1, size=500):
        m, shift = quantize_multiplier(float(real))
        assert 2**30 <= m < 2**31
        assert abs(m * 2.0 ** (shift - 31) - real) <= real * 2.0**-31


@pytest.mark.parametrize("bad", [-0.5, math.inf, math.nan, 2.0**31])
def test_quantize_multiplier_refuses(bad: float) -> None:
    with pytest.raises(QuantisationError):
        quantize_multiplier(bad)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (M_HALF, M_HALF, 1 << 29),  # 0.5 · 0.5 in Q31
        (1, M_HALF, 1),  # exact 0.5: tie goes up
        (-1, M_HALF, 0),  # exact −0.5: tie goes up (toward +∞), not away from zero
        (3, M_HALF, 2),  # 1.5 → 2
        (-3, M_HALF, -1),  # −1.5 → −1
        (-5, M_HALF, -2),  # −2.5 → −2
        (-7, M_HALF, -3),  # −3.5 → −3
        (5, -M_HALF, -2),  # sign of the product, not of a
        (INT32_MIN, INT32_MIN, INT32_MAX),  # the one overflow: saturates
        (INT32_MIN, INT32_MAX, -2147483647),
        (INT32_MAX, INT32_MAX, 2147483646),
        (0, INT32_MIN, 0),
    ],
)
def test_srdhm_hand_cases(a: int, b: int, expected: int) -> None:
    assert int(saturating_rounding_doubling_high_mul(a, b)) == expected


@pytest.mark.parametrize(
    ("x", "e", "expected"),
    [
        (5, 1, 3),  # 2.5 → 3
        (-5, 1, -3),  # −2.5 → −3: ties away from zero
        (4, 1, 2),
        (-4, 1, -2),
        (3, 2, 1),  # 0.75
        (-3, 2, -1),
        (6, 2, 2),  # 1.5
        (-6, 2, -2),
        (-2, 2, -1),  # −0.5 → −1
        (2, 2, 1),
        (-1, 2, 0),  # −0.25
        (7, 0, 7),  # exponent 0: identity
        (-7, 0, -7),
        (INT32_MIN, 31, -1),
        (INT32_MAX, 31, 1),
        (1 << 30, 31, 1),  # exactly 0.5
        (-(1 << 30), 31, -1),  # exactly −0.5
        ((1 << 30) - 1, 31, 0),
    ],
)
def test_rounding_divide_by_pot_hand_cases(x: int, e: int, expected: int) -> None:
    assert int(rounding_divide_by_pot(x, e)) == expected


@pytest.mark.parametrize("e", [-1, 32])
def test_rounding_divide_by_pot_refuses_exponent(e: int) -> None:
    with pytest.raises(QuantisationError):
        rounding_divide_by_pot(1, e)


def _nearest(v: Fraction, *, ties_up: bool) -> int:
    lo = math.floor(v)
    frac = v - lo
    if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and (ties_up or v > 0)):
        return lo + 1
    return lo


def test_helpers_match_exact_rational_rounding() -> None:
    rng = np.random.default_rng(1)
    xs = np.concatenate([rng.integers(INT32_MIN, INT32_MAX, 300), rng.integers(-5000, 5000, 300)])
    es = rng.integers(0, 32, xs.size)
    got = rounding_divide_by_pot(xs, es)
    for x, e, g in zip(xs.tolist(), es.tolist(), got.tolist(), strict=True):
        assert g == _nearest(Fraction(x, 2**e), ties_up=False), (x, e)
    bs = rng.integers(INT32_MIN, INT32_MAX, xs.size)
    got = saturating_rounding_doubling_high_mul(xs, bs)
    for a, b, g in zip(xs.tolist(), bs.tolist(), got.tolist(), strict=True):
        assert g == _nearest(Fraction(a * b, 2**31), ties_up=True), (a, b)


@pytest.mark.parametrize(
    ("x", "real", "expected"),
    [
        (100, 0.5, 50),
        (5, 0.5, 3),  # 2.5: the high-mul tie goes up
        (-5, 0.5, -2),  # −2.5: the high-mul tie goes up too
        (5, 0.25, 2),  # double rounding: 5 · 0.5 → 3, then 3 / 2 → 2 (exact 1.25)
        (-5, 0.25, -1),  # −2.5 → −2, then −2 / 2 → −1
        (3, 2.0, 6),  # left shift 2, multiplier 0.5
        (1 << 30, 4.0, 1 << 30),  # 2^30 · 2^3 saturates at the left shift; then · 0.5
        (-(1 << 30), 4.0, -(1 << 30)),
        (12345, 2.0**-33, 0),  # multiplier below 2^−32 is zero
    ],
)
def test_multiply_by_quantized_multiplier_hand_cases(x: int, real: float, expected: int) -> None:
    m, shift = quantize_multiplier(real)
    assert int(multiply_by_quantized_multiplier(x, m, shift)) == expected


@pytest.mark.parametrize(
    ("total", "count", "expected"),
    [
        (3, 2, 2),
        (-3, 2, -2),
        (1, 3, 0),
        (2, 3, 1),
        (-2, 3, -1),
        (5, 4, 1),
        (6, 4, 2),
        (-6, 4, -2),
        (-5, 4, -1),
        (0, 3, 0),
        (-127, 1, -127),
        (254, 4, 64),
    ],
)
def test_rounding_mean_hand_cases(total: int, count: int, expected: int) -> None:
    assert int(rounding_mean(total, count)) == expected


def test_rounding_mean_refuses_zero_count() -> None:
    with pytest.raises(QuantisationError):
        rounding_mean(1, 0)


_C_CHECK = r"""
#include <stdio.h>
#include "{name}.c"
int main(void)
{{
    int32_t x, m, s, n;
    while (scanf("%d %d %d %d", &x, &m, &s, &n) == 4) {{
        printf("%d %d %d %d\n", (int)fs_mbqm(x, m, s), (int)fs_srdhm(x, m),
               (int)fs_rdbpot(x, n), (int)fs_rounding_mean(x, n + 1));
    }}
    (void)fusion_student_invoke;
    return 0;
}}
"""


def test_c_helpers_match_numpy(gcc: str, series_q: QuantizedStudent, tmp_path: Path) -> None:
    """The generated C helpers against the numpy ones on random and edge-case operands."""
    export_c(series_q, tmp_path, name="fusion_student")
    src = tmp_path / "check.c"
    src.write_text(_C_CHECK.format(name="fusion_student"))
    subprocess.run(
        [gcc, *CFLAGS, "-o", str(tmp_path / "check"), str(src)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    rng = np.random.default_rng(2)
    n = 3000
    edges = np.array([INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX, 1 << 30, -(1 << 30)])
    x = np.concatenate([rng.integers(INT32_MIN, INT32_MAX, n), rng.integers(-300, 300, n), edges])
    m = np.concatenate([rng.integers(1 << 30, INT32_MAX, x.size - edges.size), edges])
    m = np.where(m == INT32_MIN, INT32_MIN, m)
    shift = rng.integers(-31, 4, x.size)
    e = rng.integers(0, 32, x.size)
    lines = "\n".join(f"{a} {b} {c} {d}" for a, b, c, d in zip(x, m, shift, e, strict=True))
    res = subprocess.run(
        [str(tmp_path / "check")], input=lines.encode(), capture_output=True, check=True
    )
    got = np.loadtxt(res.stdout.decode().splitlines(), dtype=np.int64).reshape(-1, 4)
    m_pos = np.maximum(m, 0)  # fs_mbqm is only fed non-negative multipliers
    assert np.array_equal(got[:, 1], saturating_rounding_doubling_high_mul(x, m))
    assert np.array_equal(got[:, 2], rounding_divide_by_pot(x, e))
    assert np.array_equal(got[:, 3], rounding_mean(x, e + 1))
    mb = multiply_by_quantized_multiplier(x, m, shift)
    assert np.array_equal(got[:, 0][m >= 0], mb[m_pos == m])
