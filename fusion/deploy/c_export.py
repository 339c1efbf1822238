"""Portable C99 export of a :class:`~fusion.deploy.int8.QuantizedStudent`.

Three files, each written atomically:

* ``<name>_weights.h``: ``static const`` int8 weights, int32 biases and multipliers, int8 shifts
  and the zero points and clamps of every layer (included by ``<name>.c`` only);
* ``<name>.h``: the API, stream order, input shapes and quantisation, output size and
  quantisation, arena size;
* ``<name>.c``: the integer-only kernels (depthwise conv 1-D/2-D, pointwise conv, average pool,
  mean fusion, dense) and ``<name>_invoke``.

The C code matches :mod:`fusion.deploy.golden` bit for bit; it needs only ``<stdint.h>``, uses no
floating point, no ``malloc`` and no recursion, and its static buffers are sized at export
(:class:`~fusion.deploy.int8.ArenaPlan`). A stream whose bit in ``present_mask`` is 0 is not
read and its stem is not run; its input pointer may be ``NULL``.

Return codes of ``<name>_invoke``: 0 on success, −1 when the mask is 0 or has bits beyond the
streams, −2 when ``output`` or a present stream's input is ``NULL``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from fusion.deploy.errors import DeployError
from fusion.deploy.int8 import ArenaPlan, QConv, QuantizedStudent
from fusion.files import atomic_write

__all__ = ["CExport", "export_c"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class CExport:
    """What :func:`export_c` wrote and the static memory it reserved."""

    source: Path
    header: Path
    weights: Path
    arena: ArenaPlan
    weight_bytes: int

    @property
    def files(self) -> tuple[Path, Path, Path]:
        return self.source, self.header, self.weights


def _int(v: int) -> str:
    v = int(v)
    return "(-2147483647 - 1)" if v == -(2**31) else str(v)


def _array(ctype: str, name: str, values: np.ndarray, per_line: int = 16) -> str:
    flat = [_int(v) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(flat[i : i + per_line]) for i in range(0, len(flat), per_line)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{len(flat)}] = {{\n    {body}\n}};\n"


_KERNELS = r"""
/* ---- fixed-point helpers: TFLite / gemmlowp semantics (see fusion/deploy/fixedpoint.py) ---- */

static int32_t fs_srdhm(int32_t a, int32_t b)
{
    /* SaturatingRoundingDoublingHighMul: (a*b + nudge) / 2^31, truncating, ties away from 0 */
    int64_t ab;
    int64_t nudge;
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

static int32_t fs_asr(int32_t x, int32_t e)
{
    /* arithmetic shift right, portable (floor division by 2^e) */
    return x < 0 ? ~(~x >> e) : x >> e;
}

static int32_t fs_rdbpot(int32_t x, int32_t exponent)
{
    /* RoundingDivideByPOT: x / 2^exponent, nearest, ties away from zero (0 <= exponent <= 31) */
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return fs_asr(x, exponent) + (remainder > threshold ? 1 : 0);
}

static int32_t fs_mbqm(int32_t x, int32_t multiplier, int32_t shift)
{
    /* MultiplyByQuantizedMultiplier with the left shift saturated to int32 */
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    int64_t v = (int64_t)x * ((int64_t)1 << left);
    if (v > INT32_MAX) {
        v = INT32_MAX;
    } else if (v < INT32_MIN) {
        v = INT32_MIN;
    }
    return fs_rdbpot(fs_srdhm((int32_t)v, multiplier), right);
}

static int8_t fs_clamp(int32_t v, int32_t lo, int32_t hi)
{
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

typedef struct {
    const int8_t *w;
    const int32_t *bias;
    const int32_t *mult;
    const int8_t *shift;
    int32_t in_zp;
    int32_t out_zp;
    int32_t act_min;
    int32_t act_max;
} fs_layer;

/*@dw1d*/
static void fs_dw1d(const int8_t *in, int8_t *out, int32_t c_n, int32_t t_in, int32_t t_out,
                    int32_t stride, const fs_layer *l)
{
    int32_t c, o, k;
    for (c = 0; c < c_n; ++c) {
        const int8_t *x = in + c * t_in;
        const int8_t *w = l->w + c * 3;
        for (o = 0; o < t_out; ++o) {
            int32_t acc = l->bias[c];
            for (k = 0; k < 3; ++k) {
                const int32_t t = o * stride + k - 1;
                if (t >= 0 && t < t_in) {
                    acc += ((int32_t)x[t] - l->in_zp) * (int32_t)w[k];
                }
            }
            acc = fs_mbqm(acc, l->mult[c], (int32_t)l->shift[c]) + l->out_zp;
            out[c * t_out + o] = fs_clamp(acc, l->act_min, l->act_max);
        }
    }
}

/*@dw2d*/
static void fs_dw2d(const int8_t *in, int8_t *out, int32_t c_n, int32_t h_in, int32_t w_in,
                    int32_t h_out, int32_t w_out, int32_t stride, const fs_layer *l)
{
    int32_t c, oy, ox, ky, kx;
    for (c = 0; c < c_n; ++c) {
        const int8_t *x = in + c * h_in * w_in;
        const int8_t *w = l->w + c * 9;
        for (oy = 0; oy < h_out; ++oy) {
            for (ox = 0; ox < w_out; ++ox) {
                int32_t acc = l->bias[c];
                for (ky = 0; ky < 3; ++ky) {
                    const int32_t y = oy * stride + ky - 1;
                    if (y < 0 || y >= h_in) {
                        continue;
                    }
                    for (kx = 0; kx < 3; ++kx) {
                        const int32_t xx = ox * stride + kx - 1;
                        if (xx >= 0 && xx < w_in) {
                            acc += ((int32_t)x[y * w_in + xx] - l->in_zp) * (int32_t)w[ky * 3 + kx];
                        }
                    }
                }
                acc = fs_mbqm(acc, l->mult[c], (int32_t)l->shift[c]) + l->out_zp;
                out[(c * h_out + oy) * w_out + ox] = fs_clamp(acc, l->act_min, l->act_max);
            }
        }
    }
}

/*@pointwise*/
static void fs_pointwise(const int8_t *in, int8_t *out, int32_t c_in, int32_t c_out, int32_t n,
                         const fs_layer *l)
{
    /* 1x1 conv on channels-first (C, N); a dense layer is the case n == 1 */
    int32_t o, c, p;
    for (o = 0; o < c_out; ++o) {
        const int8_t *w = l->w + o * c_in;
        for (p = 0; p < n; ++p) {
            int32_t acc = l->bias[o];
            for (c = 0; c < c_in; ++c) {
                acc += ((int32_t)in[c * n + p] - l->in_zp) * (int32_t)w[c];
            }
            acc = fs_mbqm(acc, l->mult[o], (int32_t)l->shift[o]) + l->out_zp;
            out[o * n + p] = fs_clamp(acc, l->act_min, l->act_max);
        }
    }
}

static void fs_pool_accumulate(const int8_t *in, int32_t c_n, int32_t n, int32_t in_zp,
                               int32_t mult, int32_t shift, int32_t pool_zp, int32_t *fuse_acc)
{
    /* global average pool (int32 sum, requantised), added to the fusion accumulator */
    int32_t c, p;
    for (c = 0; c < c_n; ++c) {
        int32_t acc = 0;
        int32_t q;
        for (p = 0; p < n; ++p) {
            acc += (int32_t)in[c * n + p] - in_zp;
        }
        q = (int32_t)fs_clamp(fs_mbqm(acc, mult, shift) + pool_zp, -128, 127);
        fuse_acc[c] += q - pool_zp;
    }
}

static int32_t fs_rounding_mean(int32_t total, int32_t count)
{
    /* total / count, nearest, ties away from zero (count >= 1); int64 so no step overflows */
    const int64_t t = total;
    const int64_t half = count / 2;
    return (int32_t)(t >= 0 ? (t + half) / count : -((-t + half) / count));
}
"""


def _kernels(used: set[str]) -> str:
    """The kernel source, keeping only the optional kernels in ``used`` (``-Wunused-function``)."""
    parts = re.split(r"/\*@(\w+)\*/\n", _KERNELS)
    out = [parts[0]]
    for tag, body in zip(parts[1::2], parts[2::2], strict=True):
        head, sep, rest = body.partition("\n}\n")
        out.append(head + sep if tag in used else "")
        out.append(rest)
    return "".join(out)


def _check_name(name: str) -> None:
    if not _IDENT.match(name):
        raise DeployError(f"export name {name!r} is not a C identifier")


def _layer_struct(prefix: str, layer: QConv) -> str:
    return (
        f"static const fs_layer {prefix} = {{{prefix}_w, {prefix}_b, {prefix}_m, {prefix}_s, "
        f"{layer.input.zero_point}, {layer.output.zero_point}, {layer.act_min}, "
        f"{layer.act_max}}};\n"
    )


def _weights_header(q: QuantizedStudent, name: str) -> str:
    guard = f"{name.upper()}_WEIGHTS_H"
    out = [
        f"/* {name}_weights.h: int8 student tables, generated by fusion.deploy.c_export. */\n",
        "/* Include from the generated source only (it needs fs_layer). */\n",
        f"#ifndef {guard}\n#define {guard}\n\n",
    ]

    def tables(prefix: str, layer: QConv) -> None:
        out.append(
            f"/* {layer.kind} {layer.in_shape} -> {layer.out_shape}, stride "
            f"{layer.stride}, in (s={layer.input.scale:.6g}, z={layer.input.zero_point})"
            f", out (s={layer.output.scale:.6g}, z={layer.output.zero_point}) */\n"
        )
        out.append(_array("int8_t", f"{prefix}_w", layer.weight))
        out.append(_array("int32_t", f"{prefix}_b", layer.bias, 8))
        out.append(_array("int32_t", f"{prefix}_m", layer.multiplier, 6))
        out.append(_array("int8_t", f"{prefix}_s", layer.shift))
        out.append(_layer_struct(prefix, layer))
        out.append("\n")

    for i, stem in enumerate(q.stems):
        out.append(
            f"/* ---- stream {i}: {stem.key} ({stem.kind}, input {stem.input_shape}) ---- */\n"
        )
        for j, layer in enumerate(stem.layers):
            tables(f"fs_s{i}_l{j}", layer)
        p = stem.pool
        out.append(
            f"#define FS_S{i}_POOL_MULT ({_int(p.multiplier)})\n#define FS_S{i}_POOL_SHIFT "
            f"({p.shift})\n#define FS_S{i}_POOL_IN_ZP ({p.input.zero_point})\n\n"
        )
    out.append(f"#define FS_POOL_ZP ({q.fused.zero_point})\n\n")
    if q.head is not None:
        tables("fs_head", q.head)
    out.append(f"#endif /* {guard} */\n")
    return "".join(out)


def _api_header(q: QuantizedStudent, name: str, plan: ArenaPlan, weight_bytes: int) -> str:
    up = name.upper()
    guard = f"{up}_H"
    lines = [
        f"/* {name}.h: int8 fusion student, generated by fusion.deploy.c_export. */\n",
        f"#ifndef {guard}\n#define {guard}\n\n#include <stdint.h>\n\n",
        "/* Stream i is bit i of present_mask and inputs[i]. Inputs are int8, channels first\n",
        " * ((C, T) or (C, H, W), row-major), quantised from the normalised values x by\n",
        " * q = clamp(round(x / SCALE) + ZERO_POINT, -128, 127), ties away from zero. */\n",
        f"#define {up}_NUM_STREAMS {len(q.stems)}\n",
    ]
    for i, stem in enumerate(q.stems):
        dims = "x".join(str(d) for d in stem.input_shape)
        lines.append(f"/* stream {i}: {stem.key} ({stem.kind}, {dims}) */\n")
        lines.append(f'#define {up}_STREAM_{i}_KEY "{stem.key}"\n')
        lines.append(f"#define {up}_STREAM_{i}_SIZE {stem.input_size}\n")
        lines.append(f"#define {up}_STREAM_{i}_SCALE {stem.input.scale!r}\n")
        lines.append(f"#define {up}_STREAM_{i}_ZERO_POINT ({stem.input.zero_point})\n")
    lines += [
        f"#define {up}_OUTPUT_SIZE {q.out_dim}\n",
        "/* real output = SCALE * (q - ZERO_POINT) */\n",
        f"#define {up}_OUTPUT_SCALE {q.output.scale!r}\n",
        f"#define {up}_OUTPUT_ZERO_POINT ({q.output.zero_point})\n",
        f"/* static RAM: activations {plan.activation_bytes} B + fusion accumulator "
        f"{plan.accumulator_bytes} B + fused vector {plan.fused_bytes} B */\n",
        f"#define {up}_ARENA_BYTES {plan.total_bytes}\n",
        f"#define {up}_WEIGHT_BYTES {weight_bytes}\n\n",
        "/* Returns 0 on success, -1 if present_mask is 0 or has bits beyond the streams,\n",
        " * -2 if output or a present stream's input is NULL. An absent stream is not read. */\n",
        f"int {name}_invoke(const int8_t *const inputs[], uint32_t present_mask, "
        "int8_t *output);\n\n",
        f"#endif /* {guard} */\n",
    ]
    return "".join(lines)


def _used_kernels(q: QuantizedStudent) -> set[str]:
    used = {"pointwise"}
    for stem in q.stems:
        used |= {
            "dw1d" if len(layer.in_shape) == 2 else "dw2d"
            for layer in stem.layers
            if layer.kind == "dw"
        }
    return used


def _source(q: QuantizedStudent, name: str, plan: ArenaPlan) -> str:
    up = name.upper()
    out = [
        f"/* {name}.c: int8 fusion student inference, generated by fusion.deploy.c_export.\n",
        " * Integer-only, C99, no malloc; matches fusion.deploy.golden bit for bit. */\n",
        f'#include "{name}.h"\n\n',
        _kernels(_used_kernels(q)),
        f'\n#include "{name}_weights.h"\n\n',
        f"static int8_t fs_arena[{plan.activation_bytes}];\n",
        f"static int32_t fs_fuse_acc[{q.dim}];\n",
        f"static int8_t fs_fused[{q.dim}];\n\n",
    ]
    for i, stem in enumerate(q.stems):
        offs = plan.offsets[stem.key]
        out.append(f"static void fs_stem_{i}(const int8_t *in)\n{{\n")
        src = "in"
        for j, layer in enumerate(stem.layers):
            dst = f"fs_arena + {offs[j]}"
            lp = f"&fs_s{i}_l{j}"
            if layer.kind == "dw" and len(layer.in_shape) == 2:
                c, t = layer.in_shape
                out.append(
                    f"    fs_dw1d({src}, {dst}, {c}, {t}, {layer.out_shape[1]}, "
                    f"{layer.stride}, {lp});\n"
                )
            elif layer.kind == "dw":
                c, h, w = layer.in_shape
                ho, wo = layer.out_shape[1:]
                out.append(
                    f"    fs_dw2d({src}, {dst}, {c}, {h}, {w}, {ho}, {wo}, {layer.stride}, {lp});\n"
                )
            else:
                n = int(np.prod(layer.in_shape[1:]))
                out.append(
                    f"    fs_pointwise({src}, {dst}, {layer.in_shape[0]}, "
                    f"{layer.out_shape[0]}, {n}, {lp});\n"
                )
            src = dst
        p = stem.pool
        out.append(
            f"    fs_pool_accumulate({src}, {p.in_shape[0]}, {p.count}, FS_S{i}_POOL_IN_ZP, "
            f"FS_S{i}_POOL_MULT, FS_S{i}_POOL_SHIFT, FS_POOL_ZP, fs_fuse_acc);\n}}\n\n"
        )
    n = len(q.stems)
    all_bits = (1 << n) - 1
    out += [
        f"int {name}_invoke(const int8_t *const inputs[], uint32_t present_mask, "
        "int8_t *output)\n{\n",
        "    int32_t c;\n    int32_t count = 0;\n",
        f"    if (present_mask == 0u || (present_mask & ~(uint32_t){all_bits}u) != 0u) {{\n",
        "        return -1;\n    }\n",
        "    if (output == 0 || inputs == 0) {\n        return -2;\n    }\n",
    ]
    for i in range(n):
        out.append(
            f"    if ((present_mask >> {i}) & 1u) {{\n        if (inputs[{i}] == 0) {{\n"
            "            return -2;\n        }\n    }\n"
        )
    out.append(f"    for (c = 0; c < {q.dim}; ++c) {{\n        fs_fuse_acc[c] = 0;\n    }}\n")
    for i in range(n):
        out.append(
            f"    if ((present_mask >> {i}) & 1u) {{\n        fs_stem_{i}(inputs[{i}]);\n"
            "        ++count;\n    }\n"
        )
    out.append(
        f"    for (c = 0; c < {q.dim}; ++c) {{\n"
        "        fs_fused[c] = fs_clamp(fs_rounding_mean(fs_fuse_acc[c], count) + FS_POOL_ZP, "
        "-128, 127);\n    }\n"
    )
    if q.head is not None:
        out.append(f"    fs_pointwise(fs_fused, output, {q.dim}, {q.out_dim}, 1, &fs_head);\n")
    else:
        out.append(
            f"    for (c = 0; c < {q.dim}; ++c) {{\n        output[c] = fs_fused[c];\n    }}\n"
        )
    out.append(f"    return 0;\n}}\n\n/* {up} */\n")
    return "".join(out)


def export_c(
    q: QuantizedStudent,
    out_dir: str | Path,
    name: str = "fusion_student",
    *,
    extra_header: str = "",
    extra_source: str = "",
) -> CExport:
    """Write ``<name>.c``, ``<name>.h`` and ``<name>_weights.h`` into ``out_dir`` (atomically,
    file by file) and return their paths, the static memory plan and the table bytes.

    ``extra_header`` is inserted into ``<name>.h`` before its closing ``#endif`` (declarations,
    e.g. the power-policy table of :mod:`fusion.deploy.power`) and ``extra_source`` appended to
    ``<name>.c`` (their definitions); both empty by default.

    Raises:
        DeployError: ``name`` is not a C identifier.
    """
    _check_name(name)
    plan = q.arena_plan()
    weight_bytes = q.weight_bytes()["total"]
    out = Path(out_dir)
    header = _api_header(q, name, plan, weight_bytes)
    if extra_header:
        closing = f"#endif /* {name.upper()}_H */\n"
        header = header[: -len(closing)] + extra_header + closing
    texts = {
        f"{name}_weights.h": _weights_header(q, name),
        f"{name}.h": header,
        f"{name}.c": _source(q, name, plan) + extra_source,
    }
    paths = {}
    for fname, text in texts.items():

        def write(fh: TextIO, text: str = text) -> None:
            fh.write(text)

        paths[fname] = atomic_write(out / fname, write)
    return CExport(
        source=paths[f"{name}.c"],
        header=paths[f"{name}.h"],
        weights=paths[f"{name}_weights.h"],
        arena=plan,
        weight_bytes=weight_bytes,
    )
