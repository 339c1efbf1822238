"""Reading and checking a ``.tflite`` flatbuffer: its operators, its int8 input and output
tensors, the TFLite-Micro builtins a student may use; the ``.tflite`` error types and the gate on
the optional ``tflite`` extra (tflite-micro is imported lazily, never at module import time).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fusion.deploy.errors import DeployError
from fusion.deploy.int8 import QParams

__all__ = [
    "DEFAULT_ALLOWED_OPS",
    "INSTALL_HINT",
    "TensorInfo",
    "TfliteConversionError",
    "TfliteError",
    "TfliteOpError",
    "TfliteUnavailableError",
    "check_ops",
    "float_ops",
    "micro_runtime",
    "read_tflite",
    "strip_tensor_names",
    "tflite_available",
]

#: TFLite-Micro builtin operators with int8 reference kernels that a student graph may use (each
#: has a ``MicroMutableOpResolver::Add…`` method in tflite-micro's
#: ``tensorflow/lite/micro/micro_mutable_op_resolver.h``). The student itself lowers to
#: RESHAPE, TRANSPOSE, PAD, DEPTHWISE_CONV_2D, CONV_2D, MEAN, FULLY_CONNECTED and, to fuse the
#: streams, ADD and MUL (two) or CONCATENATION (three or more).
DEFAULT_ALLOWED_OPS: frozenset[str] = frozenset(
    {
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "DEQUANTIZE",
        "EXPAND_DIMS",
        "FULLY_CONNECTED",
        "MAX_POOL_2D",
        "MEAN",
        "MUL",
        "PACK",
        "PAD",
        "PADV2",
        "QUANTIZE",
        "RELU",
        "RELU6",
        "RESHAPE",
        "SOFTMAX",
        "SQUEEZE",
        "STRIDED_SLICE",
        "SUB",
        "SUM",
        "TRANSPOSE",
    }
)

INSTALL_HINT = "install the optional extra: pip install 'fusion[tflite]'"


# --- errors ------------------------------------------------------------------------------------


class TfliteError(DeployError):
    """Base class of the ``.tflite`` export errors."""


class TfliteUnavailableError(TfliteError):
    """litert-torch or tflite-micro (the ``tflite`` extra) is not installed."""


class TfliteConversionError(TfliteError):
    """torch.export, PT2E quantisation or the LiteRT conversion failed, or the converted model is
    not what was asked for (not full int8, inputs out of order)."""


class TfliteOpError(TfliteError):
    """The converted graph uses an operator outside the allowed TFLite-Micro builtins."""


# --- optional dependencies ---------------------------------------------------------------------


def tflite_available() -> bool:
    """Whether litert-torch and tflite-micro can be imported."""
    import importlib.util

    return all(
        importlib.util.find_spec(name) is not None for name in ("litert_torch", "tflite_micro")
    )


def _tflite_micro(module: str) -> Any:
    """``tflite_micro.<module>``, or :class:`TfliteUnavailableError` saying how to install it."""
    import importlib

    try:
        return importlib.import_module(f"tflite_micro.{module}")
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise TfliteUnavailableError(
            f"tflite-micro is not importable ({exc}); {INSTALL_HINT}"
        ) from exc


def micro_runtime() -> Any:
    """tflite-micro's Python runtime (interpreter and flatbuffer object API)."""
    return _tflite_micro("python.tflite_micro.runtime")


def _schema() -> Any:
    """tflite-micro's generated flatbuffer schema (operator codes)."""
    return _tflite_micro("tensorflow.lite.micro.python.schema_py_generated")


# --- tensors -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """An input or output tensor of the ``.tflite`` graph: ``real = scale · (q − zero_point)``.

    ``stream`` is the student stream an input carries (``None`` for the output).
    """

    name: str
    stream: str | None
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    @property
    def qparams(self) -> QParams:
        return QParams(self.scale, self.zero_point)

    def quantize(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Float → int8 with this tensor's parameters (the same rounding as the C export)."""
        return self.qparams.quantize(x)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return self.qparams.dequantize(q)


# --- reading -----------------------------------------------------------------------------------


_NUMPY_TYPES = {9: "int8", 0: "float32", 2: "int32", 3: "uint8", 7: "int16", 4: "int64"}


def read_tflite(data: bytes) -> tuple[tuple[str, ...], tuple[TensorInfo, ...], TensorInfo]:
    """Operators (execution order) and the input and output tensors of a one-subgraph
    ``.tflite`` flatbuffer (read with tflite-micro's generated schema)."""
    runtime, fb = micro_runtime(), _schema()
    model = runtime.convert_bytearray_to_object(bytearray(data))
    if len(model.subgraphs) != 1:
        raise TfliteConversionError(f"expected one subgraph, found {len(model.subgraphs)}")
    graph = model.subgraphs[0]
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    ops = []
    for op in graph.operators or []:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = runtime.get_builtin_code_from_operator_code(code)
        if builtin == fb.BuiltinOperator.CUSTOM:
            custom = code.customCode
            ops.append(f"CUSTOM:{custom.decode() if isinstance(custom, bytes) else custom}")
        else:
            ops.append(names.get(builtin, f"BUILTIN_{builtin}"))

    def info(index: int) -> TensorInfo:
        t = graph.tensors[index]
        q = t.quantization
        scales = [] if q is None or q.scale is None else list(q.scale)
        zps = [] if q is None or q.zeroPoint is None else list(q.zeroPoint)
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        return TensorInfo(
            name=name,
            stream=None,
            shape=tuple(int(v) for v in t.shape),
            dtype=_NUMPY_TYPES.get(int(t.type), f"type{t.type}"),
            scale=float(scales[0]) if len(scales) == 1 else math.nan,
            zero_point=int(zps[0]) if len(zps) == 1 else 0,
        )

    if len(graph.outputs) != 1:
        raise TfliteConversionError(f"expected one output tensor, found {len(graph.outputs)}")
    return tuple(ops), tuple(info(int(i)) for i in graph.inputs), info(int(graph.outputs[0]))


def float_ops(data: bytes) -> tuple[str, ...]:
    """``"<index>:<OP>"`` for every operator that reads or writes a float tensor (a graph that
    is full int8 inside has none; a leftover DEQUANTIZE → float op → QUANTIZE shows here)."""
    ops, _, _ = read_tflite(data)
    model = micro_runtime().convert_bytearray_to_object(bytearray(data))
    graph = model.subgraphs[0]
    floats = {0, 1, 10, 16}  # FLOAT32, FLOAT16, FLOAT64, BFLOAT16
    out = []
    for k, (name, op) in enumerate(zip(ops, graph.operators or [], strict=True)):
        tensors = [int(i) for i in (*op.inputs, *op.outputs) if int(i) >= 0]
        if any(int(graph.tensors[i].type) in floats for i in tensors):
            out.append(f"{k}:{name}")
    return tuple(out)


def check_ops(ops: Iterable[str], allowed: Iterable[str] = DEFAULT_ALLOWED_OPS) -> None:
    """Raise :class:`TfliteOpError` naming every operator outside ``allowed``."""
    allowed = frozenset(allowed)
    bad = sorted(set(ops) - allowed)
    if bad:
        raise TfliteOpError(
            f"the graph uses operators outside the allowed TFLite-Micro builtins: {bad} "
            f"(allowed: {sorted(allowed)})"
        )


def strip_tensor_names(data: bytes) -> bytes:
    """The model with every tensor name emptied except those of the inputs and outputs.

    litert-torch names each tensor after its module path; on a small student those strings are
    about a third of the file. The flatbuffer is rebuilt with tflite-micro's generated object
    API (fields unknown to that schema would be dropped, so callers check the result).
    """
    import flatbuffers

    runtime = micro_runtime()
    model = runtime.convert_bytearray_to_object(bytearray(data))
    for graph in model.subgraphs:
        keep = {int(i) for i in (*graph.inputs, *graph.outputs)}
        for i, tensor in enumerate(graph.tensors):
            if i not in keep:
                tensor.name = b""
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
