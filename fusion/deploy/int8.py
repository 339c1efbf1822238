"""Post-training full-int8 quantisation of a :class:`~fusion.deploy.student.Student`.

Scheme (TFLite's int8 spec, so the same numbers can later feed a ``.tflite``):

* **Weights**: per output channel, symmetric, zero point 0: ``s_w[c] = max|w[c]| / 127``,
  ``q = clamp(round(w / s_w), −127, 127)``. A depthwise conv's channel is its output channel.
* **Biases**: int32, scale ``s_in · s_w[c]``, zero point 0.
* **Activations**: per tensor, asymmetric int8 from the calibration min/max, widened to hold 0:
  ``s = (max − min) / 255``, ``z = clamp(round(−128 − min / s), −128, 127)``.
* **Requantisation** of an int32 accumulator to the output: the real multiplier
  ``M = s_in · s_w[c] / s_out`` as a Q31 multiplier and shift
  (:func:`~fusion.deploy.fixedpoint.quantize_multiplier`), applied by
  :func:`~fusion.deploy.fixedpoint.multiply_by_quantized_multiplier`, plus ``z_out``, clamped to
  ``[act_min, act_max]``. The ReLU after each conv is that clamp: ``act_min = max(z_out, −128)``.
* **Average pool**: int32 sum over positions of ``(q − z_in)``, requantised with
  ``M = s_in / (N · s_pool)``. Every stem pools into the *same* quantisation ``(s_pool, z_pool)``
  (calibrated over all streams), so pooled vectors can be added.
* **Fusion mean**: int32 sum of ``(q_k − z_pool)`` over the present streams, divided by their
  count with round-half-away-from-zero (:func:`~fusion.deploy.fixedpoint.rounding_mean`), plus
  ``z_pool``; the fused vector keeps ``(s_pool, z_pool)`` (a mean cannot leave the range of its
  terms, so nothing saturates).
* **Linear head**: as a 1×1 conv (per-row weight scales), no ReLU (clamp ``[−128, 127]``); its
  output range is calibrated over *every* non-empty subset of streams so that single-sensor
  outputs do not saturate.
* **Inputs**: per stream, ``q = clamp(round(x / s) + z, −128, 127)`` with ties away from zero;
  ``x`` is the normalised stream tensor.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from fusion.data.collate import Batch
from fusion.deploy.errors import QuantisationError, StudentInputError
from fusion.deploy.fixedpoint import quantize_multiplier
from fusion.deploy.student import Student, StudentConfig, stem_shapes

__all__ = [
    "QConv",
    "QParams",
    "QPool",
    "QStem",
    "QuantizedStudent",
    "make_conv",
    "quantize_student",
]

#: Subsets of at most this many streams are all calibrated for the head; beyond, only the full
#: set and single streams.
MAX_EXHAUSTIVE_STREAMS = 10


@dataclass(frozen=True)
class QParams:
    """Affine int8 quantisation of one tensor: ``real = scale · (q − zero_point)``."""

    scale: float
    zero_point: int

    @classmethod
    def from_range(cls, lo: float, hi: float) -> QParams:
        """Asymmetric int8 parameters for ``[lo, hi]`` widened to include 0."""
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise QuantisationError(f"calibration range [{lo}, {hi}] is not finite")
        scale = (hi - lo) / 255.0
        if scale <= 0.0:
            scale = 1.0 / 255.0  # an all-zero tensor: any scale represents it
        zp = int(np.clip(np.floor(-128.0 - lo / scale + 0.5), -128, 127))
        return cls(scale=float(scale), zero_point=zp)

    def quantize(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """``clamp(round(x / scale) + zero_point, −128, 127)``, ties away from zero."""
        v = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x)
        r = v.astype(np.float64) / self.scale
        q = np.sign(r) * np.floor(np.abs(r) + 0.5) + self.zero_point
        out: np.ndarray = np.clip(q, -128, 127).astype(np.int8)
        return out

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        out: np.ndarray = (q.astype(np.float64) - self.zero_point) * self.scale
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "zero_point": self.zero_point}


@dataclass
class QConv:
    """An int8 convolution or linear layer with its requantisation.

    Args:
        kind: ``"dw"`` (depthwise k3, pad 1; weight ``(C, 3)`` or ``(C, 3, 3)``), ``"pw"``
            (pointwise 1×1; weight ``(C_out, C_in)``) or ``"dense"`` (weight ``(out, in)``).
        in_shape, out_shape: per-sample activation shapes, channels first.
        stride: depthwise stride (1 otherwise).
        weight: int8 weights; bias: int32 ``(C_out,)``.
        multiplier, shift: int32 ``(C_out,)``, ``M[c] ≈ multiplier · 2^(shift − 31)``.
        input, output: quantisation of the input and output tensors.
        act_min, act_max: the output clamp (ReLU folded in).
        weight_scale: float64 ``(C_out,)`` per-channel weight scales (for reference).
    """

    kind: Literal["dw", "pw", "dense"]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    stride: int
    weight: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    input: QParams
    output: QParams
    act_min: int
    act_max: int
    weight_scale: np.ndarray

    @property
    def macs(self) -> int:
        """Multiply-accumulates: every weight once per output position (dw, pw and dense)."""
        positions = int(np.prod(self.out_shape[1:])) if len(self.out_shape) > 1 else 1
        return int(self.weight.size) * positions

    @property
    def table_bytes(self) -> int:
        """int8 weights + int32 bias + int32 multiplier + int8 shift per output channel."""
        return int(self.weight.size) + int(self.bias.size) * (4 + 4 + 1)


@dataclass
class QPool:
    """Global average pool: int32 sum of ``(q − z_in)`` over ``count`` positions, requantised
    with one multiplier/shift into the shared pooled quantisation."""

    in_shape: tuple[int, ...]
    count: int
    multiplier: int
    shift: int
    input: QParams
    output: QParams


@dataclass
class QStem:
    """One stream: its input quantisation and shape, its convs (dw, pw, …) and its pool."""

    key: str
    kind: Literal["raster", "timeseries"]
    input: QParams
    input_shape: tuple[int, ...]
    layers: list[QConv]
    pool: QPool

    @property
    def input_size(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)


@dataclass
class QuantizedStudent:
    """Everything the integer-only inference needs (see the module docstring for the scheme).

    Stream ``i`` of :attr:`stems` is bit ``i`` of a present mask.
    """

    stems: list[QStem]
    fused: QParams
    head: QConv | None
    output: QParams
    student_config: dict[str, Any] = field(default_factory=dict)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.stems)

    @property
    def dim(self) -> int:
        return self.stems[0].pool.in_shape[0]

    @property
    def out_dim(self) -> int:
        return self.dim if self.head is None else self.head.out_shape[0]

    def quantize_inputs(
        self, inputs: Mapping[str, np.ndarray | torch.Tensor]
    ) -> dict[str, np.ndarray]:
        """Float (normalised) stream tensors → int8, per stream (batched or not)."""
        out = {}
        for stem in self.stems:
            if stem.key in inputs:
                out[stem.key] = stem.input.quantize(inputs[stem.key])
        unknown = set(inputs) - set(self.keys)
        if unknown:
            raise StudentInputError(f"streams {sorted(unknown)} are not in {list(self.keys)}")
        return out

    def dequantize_output(self, q: np.ndarray) -> np.ndarray:
        return self.output.dequantize(q)

    def present_mask(self, keys: Iterable[str]) -> int:
        """The bitmask of these stream keys (bit ``i`` = stream ``i``)."""
        mask = 0
        for key in keys:
            if key not in self.keys:
                raise StudentInputError(f"stream {key!r} is not in {list(self.keys)}")
            mask |= 1 << self.keys.index(key)
        return mask

    def weight_bytes(self) -> dict[str, int]:
        """Bytes of the constant tables per stream and for the head (int8 weights, int32
        biases and multipliers, int8 shifts), and ``"total"``."""
        out = {s.key: sum(layer.table_bytes for layer in s.layers) for s in self.stems}
        out["head"] = self.head.table_bytes if self.head is not None else 0
        out["total"] = sum(out.values())
        return out

    def macs(self) -> dict[str, int]:
        """Multiply-accumulates per stream, for the head, and ``"total"`` (all streams on)."""
        out = {s.key: s.macs for s in self.stems}
        out["head"] = self.head.macs if self.head is not None else 0
        out["total"] = sum(out.values())
        return out

    def arena_plan(self) -> ArenaPlan:
        return ArenaPlan.of(self)


@dataclass(frozen=True)
class ArenaPlan:
    """Static activation memory of the C inference.

    Within a stem, layer ``i`` writes at the start of the activation arena when ``i`` is even and
    at its end when ``i`` is odd, reading the previous layer's output at the other end (layer 0
    reads the caller's input buffer). The arena is therefore ``max_i (in_i + out_i)`` bytes over
    layers ``i ≥ 1`` (and ≥ every output); stems run one after another and share it. Beside it:
    the int32 fusion accumulator (``4·D`` bytes) and the int8 fused vector (``D`` bytes).
    """

    activation_bytes: int
    offsets: dict[str, tuple[int, ...]]
    accumulator_bytes: int
    fused_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.activation_bytes + self.accumulator_bytes + self.fused_bytes

    @classmethod
    def of(cls, q: QuantizedStudent) -> ArenaPlan:
        size = 1
        for stem in q.stems:
            for i, layer in enumerate(stem.layers):
                out = int(np.prod(layer.out_shape))
                need = out + (int(np.prod(layer.in_shape)) if i > 0 else 0)
                size = max(size, need)
        offsets = {}
        for stem in q.stems:
            offs = []
            for i, layer in enumerate(stem.layers):
                out = int(np.prod(layer.out_shape))
                offs.append(0 if i % 2 == 0 else size - out)
            offsets[stem.key] = tuple(offs)
        return cls(size, offsets, 4 * q.dim, q.dim)


# --- calibration -------------------------------------------------------------------------------


class _Range:
    def __init__(self) -> None:
        self.lo = np.inf
        self.hi = -np.inf

    def update(self, x: torch.Tensor) -> None:
        if x.numel():
            self.lo = min(self.lo, float(x.min()))
            self.hi = max(self.hi, float(x.max()))

    def params(self, what: str) -> QParams:
        if not np.isfinite(self.lo):
            raise QuantisationError(f"no calibration data reached {what}")
        return QParams.from_range(self.lo, self.hi)


def _conv_float(
    x: torch.Tensor, weight: np.ndarray, bias: np.ndarray, kind: str, stride: int, ndim: int
) -> torch.Tensor:
    w = torch.from_numpy(weight)
    b = torch.from_numpy(bias)
    conv = F.conv2d if ndim == 2 else F.conv1d
    if kind == "dw":
        c = w.shape[0]
        return conv(x, w.reshape(c, 1, *w.shape[1:]), b, stride=stride, padding=1, groups=c)
    return conv(x, w.reshape(*w.shape, *([1] * ndim)), b)


def _as_pairs(
    data: Iterable[Batch] | Iterable[tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]]],
) -> Iterable[tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]]]:
    for item in data:
        if isinstance(item, Batch):
            yield item.data, item.present
        else:
            yield item


def _subsets(n: int) -> list[tuple[int, ...]]:
    if n <= MAX_EXHAUSTIVE_STREAMS:
        return [c for r in range(1, n + 1) for c in itertools.combinations(range(n), r)]
    return [(i,) for i in range(n)] + [tuple(range(n))]


def _quant_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = w.reshape(w.shape[0], -1)
    amax = np.abs(flat).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    q = np.clip(np.round(flat / scale[:, None]), -127, 127).astype(np.int8)
    return q.reshape(w.shape), scale


def make_conv(
    kind: Literal["dw", "pw", "dense"],
    weight: np.ndarray,
    bias: np.ndarray,
    stride: int,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    qin: QParams,
    qout: QParams,
    relu: bool,
) -> QConv:
    """Quantise one float layer: per-output-channel symmetric int8 weights, int32 bias at
    ``input scale × weight scale``, fixed-point requantisation to ``qout`` (ReLU folded into the
    clamp when ``relu``).

    Raises:
        QuantisationError: a bias or multiplier the integer path cannot represent.
    """
    qw, sw = _quant_weights(weight)
    bscale = qin.scale * sw
    qb = np.round(bias / bscale)
    if np.any(np.abs(qb) > 2**31 - 1):
        raise QuantisationError(f"a {kind} bias does not fit int32 at scale s_in·s_w")
    mults, shifts = zip(*(quantize_multiplier(float(m)) for m in bscale / qout.scale), strict=True)
    return QConv(
        kind=kind,
        in_shape=in_shape,
        out_shape=out_shape,
        stride=stride,
        weight=qw,
        bias=qb.astype(np.int32),
        multiplier=np.asarray(mults, dtype=np.int32),
        shift=np.asarray(shifts, dtype=np.int32),
        input=qin,
        output=qout,
        act_min=max(qout.zero_point, -128) if relu else -128,
        act_max=127,
        weight_scale=sw,
    )


def quantize_student(
    student: Student,
    calibration: Iterable[Batch]
    | Iterable[tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]]],
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> QuantizedStudent:
    """Full-int8 post-training quantisation calibrated on real batches (normalised inputs).

    Args:
        student: the float student (BatchNorm is folded with its running statistics).
        calibration: :class:`~fusion.data.collate.Batch` objects or ``(inputs, present)`` pairs;
            only the rows where a stream is present count towards its ranges.
        input_shapes: per-sample input shape per stream (fixed at export); by default the shape
            seen in calibration.

    Raises:
        QuantisationError: a stream never appears in the calibration data, or a tensor cannot be
            represented.
        StudentInputError: calibration shapes disagree with each other or with ``input_shapes``.
    """
    cfg: StudentConfig = student.cfg
    convs = {key: student.folded_stem(key) for key in cfg.keys}
    head = student.folded_head()
    n_streams = len(cfg.stems)
    in_ranges = [_Range() for _ in cfg.stems]
    act_ranges = [[_Range() for _ in convs[k]] for k in cfg.keys]
    pool_range, head_range = _Range(), _Range()
    shapes: dict[str, tuple[int, ...]] = {
        k: tuple(int(v) for v in s) for k, s in (input_shapes or {}).items()
    }
    subsets = _subsets(n_streams)
    with torch.no_grad():
        for inputs, present in _as_pairs(calibration):
            pooled: dict[int, torch.Tensor] = {}
            rows: dict[int, torch.Tensor] = {}
            n = max(int(x.shape[0]) for x in inputs.values())
            for i, stem_cfg in enumerate(cfg.stems):
                x = inputs.get(stem_cfg.key)
                if x is None:
                    continue
                shape = tuple(int(v) for v in x.shape[1:])
                if shapes.setdefault(stem_cfg.key, shape) != shape:
                    raise StudentInputError(
                        f"stream {stem_cfg.key!r}: calibration shape {shape} differs from "
                        f"{shapes[stem_cfg.key]}"
                    )
                stem_shapes(stem_cfg, shape)
                p = present.get(stem_cfg.key)
                mask = torch.ones(n, dtype=torch.bool) if p is None else p.bool().cpu()
                if not bool(mask.any()):
                    continue
                y = x.detach().cpu().double()[mask]
                in_ranges[i].update(y)
                for j, conv in enumerate(convs[stem_cfg.key]):
                    y = torch.relu(
                        _conv_float(y, conv.weight, conv.bias, conv.kind, conv.stride, conv.ndim)
                    )
                    act_ranges[i][j].update(y)
                v = y.flatten(2).mean(dim=2)
                pool_range.update(v)
                full = torch.zeros(n, v.shape[1], dtype=torch.float64)
                full[mask] = v
                pooled[i], rows[i] = full, mask
            if head is not None:
                w, b = (torch.from_numpy(a) for a in head)
                for subset in subsets:
                    if not all(i in pooled for i in subset):
                        continue
                    both = torch.stack([rows[i] for i in subset]).all(dim=0)
                    if not bool(both.any()):
                        continue
                    fused = torch.stack([pooled[i][both] for i in subset]).mean(dim=0)
                    head_range.update(fused @ w.T + b)

    stems: list[QStem] = []
    pool_q = pool_range.params("the pooled vectors")
    for i, stem_cfg in enumerate(cfg.stems):
        key = stem_cfg.key
        if key not in shapes:
            raise QuantisationError(f"stream {key!r} never appears in the calibration data")
        qin = in_ranges[i].params(f"the input of stream {key!r}")
        acts = stem_shapes(stem_cfg, shapes[key])
        layers = []
        q_prev = qin
        for j, conv in enumerate(convs[key]):
            q_out = act_ranges[i][j].params(f"layer {j} of stream {key!r}")
            layers.append(
                make_conv(
                    conv.kind,
                    conv.weight,
                    conv.bias,
                    conv.stride,
                    acts[j],
                    acts[j + 1],
                    q_prev,
                    q_out,
                    relu=True,
                )
            )
            q_prev = q_out
        last = acts[-1]
        count = int(np.prod(last[1:]))
        m, s = quantize_multiplier(q_prev.scale / (count * pool_q.scale))
        pool = QPool(last, count, m, s, q_prev, pool_q)
        kind: Literal["raster", "timeseries"] = stem_cfg.kind
        stems.append(QStem(key, kind, qin, shapes[key], layers, pool))
    qhead = None
    out_q = pool_q
    if head is not None:
        out_q = head_range.params("the head output")
        hw, hb = head
        qhead = make_conv(
            "dense", hw, hb, 1, (hw.shape[1],), (hw.shape[0],), pool_q, out_q, relu=False
        )
    return QuantizedStudent(
        stems=stems, fused=pool_q, head=qhead, output=out_q, student_config=cfg.to_dict()
    )
