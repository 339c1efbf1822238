"""C99 runtime of an online-learning head (:mod:`fusion.deploy.online`) for the device.

:func:`export_online_c` writes ``<name>_online.h`` and ``<name>_online.c``: the head's state as
one static struct (the RAM :meth:`~fusion.deploy.online.OnlineHead.ram_bytes` counts, field by
field), its warm-started initial values as ``const`` tables (flash), and the per-sample update of
the Python head in float32, in the same order of operations: dequantise the int8 embedding with
the student's fused quantisation, update the running statistics, standardise, one SGD step, the
divergence guard with rollback. Given a :class:`~fusion.deploy.int8.QuantizedStudent` it also
writes the student without its head (:func:`~fusion.deploy.c_export.export_c`), whose
``<name>_invoke`` then returns the embedding the head takes.

API (classifier)::

    void    <name>_online_init(void);
    int32_t <name>_online_predict(const int8_t *embedding, float *scores /* or NULL */);
    int     <name>_online_update(const int8_t *embedding /* NULL: invalid sample */,
                                 int32_t label /* == n_classes: a new class */);
    int32_t <name>_online_add_class(void);

API (autoencoder): ``<name>_online_init``, ``float <name>_online_score(const int8_t *)`` (the
reconstruction error) and ``int <name>_online_update(const int8_t *)``.

``<name>_online_update`` returns 0 (learned), 1 (NULL embedding: skipped and counted), 2 (the loss
diverged: rolled back to the last good weights, learning rate lowered), −1 (label out of range),
−2 (no room for a new class), −3 (training gave up: the learning rate fell below its floor).
The code needs ``<stdint.h>`` and ``<math.h>`` (``expf``, ``logf``, ``sqrtf``, ``isfinite``;
link with ``-lm``), no ``malloc``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from fusion.deploy.c_export import CExport, _check_name, export_c
from fusion.deploy.errors import OnlineConfigError
from fusion.deploy.int8 import QParams, QuantizedStudent
from fusion.deploy.online import OnlineAutoencoder, OnlineClassifier, OnlineHead
from fusion.files import atomic_write

__all__ = ["OnlineCExport", "export_online_c"]

#: struct fields that are float32 scalars (the other scalars are int32).
_FLOAT_SCALARS = ("lr", "loss_ema", "loss_ref")


@dataclass(frozen=True)
class OnlineCExport:
    """What :func:`export_online_c` wrote: the online runtime, the RAM its state takes (bytes,
    the size of the C struct) and the headless student export, if one was written."""

    source: Path
    header: Path
    ram_bytes: int
    student: CExport | None = None

    @property
    def files(self) -> tuple[Path, ...]:
        extra = self.student.files if self.student is not None else ()
        return (self.source, self.header, *extra)


def _f(v: float | np.floating[Any]) -> str:
    """A float32 C literal that reads back to exactly ``np.float32(v)``."""
    x = np.float32(v)
    if not np.isfinite(x):
        raise OnlineConfigError(f"cannot export a non-finite value ({v}) to C")
    s = f"{float(x):.9g}"
    if not any(c in s for c in ".en"):
        s += ".0"
    return s + "f"


def _floats(name: str, values: np.ndarray, per_line: int = 6) -> str:
    flat = [_f(float(v)) for v in np.asarray(values, dtype=np.float32).reshape(-1)] or ["0.0f"]
    lines = [", ".join(flat[i : i + per_line]) for i in range(0, len(flat), per_line)]
    return f"static const float {name}[{len(flat)}] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


def _pad(a: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows, *a.shape[1:]), dtype=np.float32)
    out[: len(a)] = a
    return out


def _state_tables(head: OnlineHead) -> dict[str, np.ndarray]:
    """Initial values of the struct's array fields (the rest start at zero)."""
    snap = head.snapshot_
    if isinstance(head, OnlineClassifier):
        k = head.max_classes
        return {
            "w": _pad(head.coef_, k),
            "b": _pad(head.intercept_, k),
            "w_snap": _pad(snap["coef_"], k),
            "b_snap": _pad(snap["intercept_"], k),
            "mean": head.norm_.mean_,
            "var": head.norm_.var_,
        }
    assert isinstance(head, OnlineAutoencoder)
    return {
        "w": head.coef_,
        "b1": head.hidden_bias_,
        "b2": head.output_bias_,
        "w_snap": snap["coef_"],
        "b1_snap": snap["hidden_bias_"],
        "b2_snap": snap["output_bias_"],
        "mean": head.norm_.mean_,
        "var": head.norm_.var_,
    }


def _scalars(head: OnlineHead) -> dict[str, float | int]:
    out: dict[str, float | int] = {
        "lr": float(head.lr_),
        "loss_ema": float(head.loss_ema_),
        "loss_ref": float(head.loss_ref_),
        "count": min(head.norm_.count_, 2**31 - 1),
        "n_updates": head.n_updates_,
        "n_skipped": head.n_skipped_,
        "n_rollbacks": head.n_rollbacks_,
        "since_snapshot": head.since_snapshot_,
        "frozen": 0,
    }
    if isinstance(head, OnlineClassifier):
        out["n_classes"] = head.n_classes
    return out


def _header(head: OnlineHead, name: str, qp: QParams) -> str:
    up = f"{name.upper()}_ONLINE"
    lines = [
        f"/* {name}_online.h: on-device learning head, generated by fusion.deploy.online_c. */\n",
        f"#ifndef {up}_H\n#define {up}_H\n\n#include <stdint.h>\n\n",
        f"#define {up}_FEATURES {head.n_features}\n",
    ]
    if isinstance(head, OnlineClassifier):
        lines.append(f"#define {up}_MAX_CLASSES {head.max_classes}\n")
    else:
        assert isinstance(head, OnlineAutoencoder)
        lines.append(f"#define {up}_HIDDEN {head.hidden}\n")
    lines += [
        "/* the student's embedding: real = SCALE * (q - ZERO_POINT) */\n",
        f"#define {up}_EMBEDDING_SCALE {_f(qp.scale)}\n",
        f"#define {up}_EMBEDDING_ZERO_POINT ({qp.zero_point})\n",
        f"/* RAM of the state below: {head.ram_breakdown()} */\n",
        f"#define {up}_RAM_BYTES {head.ram_bytes()}\n\n",
        "typedef struct {\n",
    ]
    for field, (part, n) in head.ram_layout().items():
        if part == "scalars":
            ctype = "float" if field in _FLOAT_SCALARS else "int32_t"
            lines.append(f"    {ctype} {field};\n")
        else:
            lines.append(f"    float {field}[{n}]; /* {part} */\n")
    lines += [
        f"}} {name}_online_t;\n\n",
        f"extern {name}_online_t {name}_online;\n\n",
        f"void {name}_online_init(void);\n",
    ]
    if isinstance(head, OnlineClassifier):
        lines += [
            "/* Returns the predicted class; scores (may be NULL) receive n_classes logits. */\n",
            f"int32_t {name}_online_predict(const int8_t *embedding, float *scores);\n",
            "/* 0 learned, 1 skipped (NULL), 2 rolled back, -1 bad label, -2 full, -3 frozen. */\n",
            f"int {name}_online_update(const int8_t *embedding, int32_t label);\n",
            "/* Grows a zero row; returns its class index, or -1 when the head is full. */\n",
            f"int32_t {name}_online_add_class(void);\n",
        ]
    else:
        lines += [
            "/* Mean squared reconstruction error of the standardised embedding. */\n",
            f"float {name}_online_score(const int8_t *embedding);\n",
            "/* 0 learned, 1 skipped (NULL), 2 rolled back, -3 frozen. */\n",
            f"int {name}_online_update(const int8_t *embedding);\n",
        ]
    lines.append(f"\n#endif /* {up}_H */\n")
    return "".join(lines)


_COMMON = r"""
#define OL_D {d}
#define OL_WINDOW {window}
#define OL_EPS {eps}
#define OL_SCALE {scale}
#define OL_ZP ({zp})
#define OL_L2 {l2}
#define OL_BETA {beta}
#define OL_EXPLODE {explode}
#define OL_FLOOR {floor}
#define OL_SNAP_EVERY {snap_every}
#define OL_LR_DROP {lr_drop}
#define OL_MIN_LR {min_lr}

{name}_online_t {name}_online;

static void ol_copy(float *dst, const float *src, int32_t n)
{{
    int32_t i;
    for (i = 0; i < n; ++i) {{
        dst[i] = src[i];
    }}
}}

static float ol_dequantize(int8_t q)
{{
    return (float)((int32_t)q - OL_ZP) * OL_SCALE;
}}

static void ol_standardise(const int8_t *e, int update)
{{
    /* running statistics (Welford in exponential form, time constant OL_WINDOW), then z */
    {name}_online_t *s = &{name}_online;
    int32_t j;
    float a = 0.0f;
    if (update) {{
        if (s->count < 2147483647) {{
            s->count += 1;
        }}
        a = 1.0f / (float)(s->count < OL_WINDOW ? s->count : OL_WINDOW);
    }}
    for (j = 0; j < OL_D; ++j) {{
        const float x = ol_dequantize(e[j]);
        if (update) {{
            const float d = x - s->mean[j];
            s->mean[j] = s->mean[j] + a * d;
            s->var[j] = (1.0f - a) * (s->var[j] + a * d * d);
        }}
        s->z[j] = (x - s->mean[j]) / sqrtf(s->var[j] + OL_EPS);
    }}
}}

static float ol_ref(void)
{{
    const float ref = {name}_online.loss_ref;
    return ref > OL_FLOOR ? ref : OL_FLOOR;
}}

static float ol_running_loss(float loss)
{{
    return {name}_online.loss_ema + OL_BETA * (loss - {name}_online.loss_ema);
}}

static int ol_diverged(float loss)
{{
    /* a non-finite loss, or a running loss that exploded against the last good one */
    return !isfinite(loss) || ol_running_loss(loss) > OL_EXPLODE * ol_ref();
}}

static void ol_snapshot(void);
static void ol_restore(void);

static int ol_rollback(void)
{{
    {name}_online_t *s = &{name}_online;
    ol_restore();
    s->lr = s->lr * OL_LR_DROP;
    s->n_rollbacks += 1;
    s->since_snapshot = 0;
    s->loss_ema = s->loss_ref;
    if (s->lr < OL_MIN_LR) {{
        s->frozen = 1;
        return -3;
    }}
    return 2;
}}

static void ol_after_update(float loss)
{{
    /* called after the weights moved; snapshots only a healthy head */
    {name}_online_t *s = &{name}_online;
    const float ref = ol_ref();
    s->loss_ema = ol_running_loss(loss);
    s->n_updates += 1;
    s->since_snapshot += 1;
    if (s->since_snapshot >= OL_SNAP_EVERY && s->loss_ema <= 2.0f * ref) {{
        ol_snapshot();
        s->loss_ref = s->loss_ema;
        s->since_snapshot = 0;
    }}
}}
"""

_CLASSIFIER = r"""
#define OL_K {k}

static void ol_snapshot(void)
{{
    ol_copy({name}_online.w_snap, {name}_online.w, OL_K * OL_D);
    ol_copy({name}_online.b_snap, {name}_online.b, OL_K);
}}

static void ol_restore(void)
{{
    ol_copy({name}_online.w, {name}_online.w_snap, OL_K * OL_D);
    ol_copy({name}_online.b, {name}_online.b_snap, OL_K);
}}

static void ol_logits(void)
{{
    {name}_online_t *s = &{name}_online;
    int32_t k, j;
    for (k = 0; k < s->n_classes; ++k) {{
        float acc = 0.0f;
        for (j = 0; j < OL_D; ++j) {{
            acc += s->w[k * OL_D + j] * s->z[j];
        }}
        s->g[k] = acc + s->b[k];
    }}
}}

int32_t {name}_online_add_class(void)
{{
    {name}_online_t *s = &{name}_online;
    int32_t j;
    const int32_t k = s->n_classes;
    if (k >= OL_K) {{
        return -1;
    }}
    for (j = 0; j < OL_D; ++j) {{
        s->w[k * OL_D + j] = 0.0f;
        s->w_snap[k * OL_D + j] = 0.0f;
    }}
    s->b[k] = 0.0f;
    s->b_snap[k] = 0.0f;
    s->n_classes = k + 1;
    return k;
}}

int32_t {name}_online_predict(const int8_t *embedding, float *scores)
{{
    {name}_online_t *s = &{name}_online;
    int32_t k, best = 0;
    if (embedding == 0 || s->n_classes == 0) {{
        return -1;
    }}
    ol_standardise(embedding, 0);
    ol_logits();
    for (k = 0; k < s->n_classes; ++k) {{
        if (scores != 0) {{
            scores[k] = s->g[k];
        }}
        if (s->g[k] > s->g[best]) {{
            best = k;
        }}
    }}
    return best;
}}

int {name}_online_update(const int8_t *embedding, int32_t label)
{{
    {name}_online_t *s = &{name}_online;
    int32_t k, j;
    float m, sum, ly, loss, lr;
    if (s->frozen) {{
        return -3;
    }}
    if (embedding == 0) {{
        s->n_skipped += 1;
        return 1;
    }}
    if (label < 0 || label > s->n_classes) {{
        return -1;
    }}
    if (label == s->n_classes && {name}_online_add_class() < 0) {{
        return -2;
    }}
    ol_standardise(embedding, 1);
    ol_logits();
    m = s->g[0];
    for (k = 1; k < s->n_classes; ++k) {{
        m = s->g[k] > m ? s->g[k] : m;
    }}
    ly = s->g[label];
    sum = 0.0f;
    for (k = 0; k < s->n_classes; ++k) {{
        s->g[k] = expf(s->g[k] - m);
        sum += s->g[k];
    }}
    loss = logf(sum) - (ly - m);
    if (ol_diverged(loss)) {{
        return ol_rollback();
    }}
    for (k = 0; k < s->n_classes; ++k) {{
        s->g[k] = s->g[k] / sum; /* softmax; minus the one-hot target below */
    }}
    s->g[label] -= 1.0f;
    lr = s->lr;
    for (k = 0; k < s->n_classes; ++k) {{
        for (j = 0; j < OL_D; ++j) {{
            const int32_t i = k * OL_D + j;
            s->w[i] = s->w[i] - lr * (s->g[k] * s->z[j] + OL_L2 * s->w[i]);
        }}
        s->b[k] = s->b[k] - lr * s->g[k];
    }}
    ol_after_update(loss);
    return 0;
}}
"""

_AUTOENCODER = r"""
#define OL_H {h}

static void ol_snapshot(void)
{{
    ol_copy({name}_online.w_snap, {name}_online.w, OL_H * OL_D);
    ol_copy({name}_online.b1_snap, {name}_online.b1, OL_H);
    ol_copy({name}_online.b2_snap, {name}_online.b2, OL_D);
}}

static void ol_restore(void)
{{
    ol_copy({name}_online.w, {name}_online.w_snap, OL_H * OL_D);
    ol_copy({name}_online.b1, {name}_online.b1_snap, OL_H);
    ol_copy({name}_online.b2, {name}_online.b2_snap, OL_D);
}}

static float ol_reconstruct(void)
{{
    /* h = W z + b1, error r - z (r = W^T h + b2) into g_r; returns the mean squared error */
    {name}_online_t *s = &{name}_online;
    int32_t i, j;
    float sum = 0.0f;
    for (i = 0; i < OL_H; ++i) {{
        float acc = 0.0f;
        for (j = 0; j < OL_D; ++j) {{
            acc += s->w[i * OL_D + j] * s->z[j];
        }}
        s->h[i] = acc + s->b1[i];
    }}
    for (j = 0; j < OL_D; ++j) {{
        float acc = 0.0f;
        for (i = 0; i < OL_H; ++i) {{
            acc += s->w[i * OL_D + j] * s->h[i];
        }}
        s->g_r[j] = (acc + s->b2[j]) - s->z[j];
        sum += s->g_r[j] * s->g_r[j];
    }}
    return sum / (float)OL_D;
}}

float {name}_online_score(const int8_t *embedding)
{{
    ol_standardise(embedding, 0);
    return ol_reconstruct();
}}

int {name}_online_update(const int8_t *embedding)
{{
    {name}_online_t *s = &{name}_online;
    int32_t i, j;
    float loss, lr;
    if (s->frozen) {{
        return -3;
    }}
    if (embedding == 0) {{
        s->n_skipped += 1;
        return 1;
    }}
    ol_standardise(embedding, 1);
    loss = ol_reconstruct();
    if (ol_diverged(loss)) {{
        return ol_rollback();
    }}
    for (j = 0; j < OL_D; ++j) {{
        s->g_r[j] = (2.0f / (float)OL_D) * s->g_r[j];
    }}
    for (i = 0; i < OL_H; ++i) {{
        float acc = 0.0f;
        for (j = 0; j < OL_D; ++j) {{
            acc += s->w[i * OL_D + j] * s->g_r[j];
        }}
        s->g_h[i] = acc;
    }}
    lr = s->lr;
    for (i = 0; i < OL_H; ++i) {{
        for (j = 0; j < OL_D; ++j) {{
            /* W is the encoder and the (transposed) decoder: both gradients add */
            const int32_t n = i * OL_D + j;
            s->w[n] = s->w[n] - lr * (s->h[i] * s->g_r[j] + s->g_h[i] * s->z[j] + OL_L2 * s->w[n]);
        }}
        s->b1[i] = s->b1[i] - lr * s->g_h[i];
    }}
    for (j = 0; j < OL_D; ++j) {{
        s->b2[j] = s->b2[j] - lr * s->g_r[j];
    }}
    ol_after_update(loss);
    return 0;
}}
"""


def _source(head: OnlineHead, name: str, qp: QParams) -> str:
    tables = _state_tables(head)
    scalars = _scalars(head)
    out = [
        f"/* {name}_online.c: on-device learning head, generated by fusion.deploy.online_c.\n",
        " * float32, C99, no malloc; the same update as fusion.deploy.online. */\n",
        f'#include "{name}_online.h"\n\n#include <math.h>\n',
        _COMMON.format(
            name=name,
            d=head.n_features,
            window=head.norm_window,
            eps=_f(head.eps),
            scale=_f(qp.scale),
            zp=qp.zero_point,
            l2=_f(head.l2),
            beta=_f(head.loss_momentum),
            explode=_f(head.explode_factor),
            floor=_f(head.loss_floor),
            snap_every=head.snapshot_every,
            lr_drop=_f(head.lr_drop),
            min_lr=_f(head.min_lr),
        ),
    ]
    if isinstance(head, OnlineClassifier):
        out.append(_CLASSIFIER.format(name=name, k=head.max_classes))
    else:
        assert isinstance(head, OnlineAutoencoder)
        out.append(_AUTOENCODER.format(name=name, h=head.hidden))
    out.append("\n/* the warm-started state (flash), copied into RAM by init */\n")
    for field, values in tables.items():
        out.append(_floats(f"ol_init_{field}", values))
    out.append(f"\nvoid {name}_online_init(void)\n{{\n    {name}_online_t *s = &{name}_online;\n")
    for field, values in tables.items():
        out.append(f"    ol_copy(s->{field}, ol_init_{field}, {values.size});\n")
    for field, (part, n) in head.ram_layout().items():
        if part in ("gradients", "workspace"):
            out.append(f"    ol_copy(s->{field}, ol_init_zero, {n});\n")
    for field, value in scalars.items():
        literal = _f(value) if field in _FLOAT_SCALARS else str(int(value))
        out.append(f"    s->{field} = {literal};\n")
    out.append("}\n")
    biggest = max(n for part, n in head.ram_layout().values() if part in ("gradients", "workspace"))
    zero = f"static const float ol_init_zero[{biggest}] = {{0.0f}};\n"
    text = "".join(out)
    marker = "\n/* the warm-started state"
    return text.replace(marker, "\n" + zero + marker, 1)


def export_online_c(
    head: OnlineHead,
    embedding: QuantizedStudent | QParams,
    out_dir: str | Path,
    name: str = "fusion_student",
) -> OnlineCExport:
    """Write ``<name>_online.h`` and ``<name>_online.c`` (atomically, file by file) holding the
    head's current state as its initial state; with a quantised student, also the student
    without its head (``<name>.c``, ``<name>.h``, ``<name>_weights.h``).

    Args:
        head: a (warm-started) :class:`~fusion.deploy.online.OnlineClassifier` or
            :class:`~fusion.deploy.online.OnlineAutoencoder`.
        embedding: the student (its fused quantisation is the embedding's) or that
            quantisation itself.
        out_dir: folder to write.
        name: C identifier prefix.

    Raises:
        DeployError: ``name`` is not a C identifier.
        OnlineConfigError: the head's feature count is not the embedding size, or a state
            value is not finite.
    """
    _check_name(name)
    student = None
    if isinstance(embedding, QuantizedStudent):
        if embedding.dim != head.n_features:
            raise OnlineConfigError(
                f"the head takes {head.n_features} features; the student's embedding has "
                f"{embedding.dim}"
            )
        student = export_c(
            dataclasses.replace(embedding, head=None, output=embedding.fused), out_dir, name
        )
        qp = embedding.fused
    else:
        qp = embedding
    out = Path(out_dir)
    texts = {
        f"{name}_online.h": _header(head, name, qp),
        f"{name}_online.c": _source(head, name, qp),
    }
    paths = {}
    for fname, text in texts.items():

        def write(fh: TextIO, text: str = text) -> None:
            fh.write(text)

        paths[fname] = atomic_write(out / fname, write)
    return OnlineCExport(
        source=paths[f"{name}_online.c"],
        header=paths[f"{name}_online.h"],
        ram_bytes=head.ram_bytes(),
        student=student,
    )
