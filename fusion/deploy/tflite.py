"""Full-int8 ``.tflite`` export of a :class:`~fusion.deploy.student.Student`, validated with the
TFLite-Micro Python interpreter.

Needs the optional ``tflite`` extra (``pip install 'fusion[tflite]'``: litert-torch and the
tflite-micro nightly; no TensorFlow). Nothing here imports them at module import time.

Pipeline, per exported graph::

    folded Student ─► _SubsetModule (one int8 input tensor per present stream, batch 1)
      ─► torch.export ─► PT2E quantiser (per-channel symmetric weights, static activations)
      ─► calibrate on real samples ─► convert_pt2e ─► litert_torch.convert(quant_config=…)
      ─► checks (int8 I/O, op coverage, smallest arena by bisection, agreement with the float
         student) ─► atomic write (temporary file beside the target, then rename)

**One graph per present set.** A ``.tflite`` graph is static: it has one input per stream it
uses, and the fusion mean divides by a constant. :func:`export_tflite` therefore exports the
student for a *fixed* set of present streams (all of them by default), and
:func:`export_tflite_subsets` exports several files (by default all streams plus every set with
one stream switched off). The portable C export (:mod:`fusion.deploy.c_export`) is the artefact
that handles an arbitrary present bitmask at run time; the ``.tflite`` files cover the chosen
subsets only.

Reading and checking the flatbuffer lives in :mod:`fusion.deploy.tflite_model`, running it and
finding the smallest arena in :mod:`fusion.deploy.tflite_arena`.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fusion.data.collate import Batch
from fusion.deploy.errors import QuantisationError, StudentInputError
from fusion.deploy.student import Stem, Student, stem_shapes
from fusion.deploy.tflite_arena import (
    ARENA_MAX_BYTES,
    ARENA_MIN_BYTES,
    TfliteArenaError,
    find_arena,
    invoke,
    micro_interpreter,
    probe_arena,
)
from fusion.deploy.tflite_model import (
    DEFAULT_ALLOWED_OPS,
    INSTALL_HINT,
    TensorInfo,
    TfliteConversionError,
    TfliteError,
    TfliteUnavailableError,
    check_ops,
    float_ops,
    read_tflite,
    strip_tensor_names,
)
from fusion.files import atomic_write

__all__ = [
    "Agreement",
    "TfliteReport",
    "default_subsets",
    "export_tflite",
    "export_tflite_subsets",
]


@contextlib.contextmanager
def _quiet_litert(verbose: bool) -> Iterator[None]:
    """litert-torch prints a progress tree unless LITERT_TORCH_SHOW_PROGRESS is off."""
    name = "LITERT_TORCH_SHOW_PROGRESS"
    before = os.environ.get(name)
    if not verbose:
        os.environ[name] = "n"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


# --- report ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """The ``.tflite`` model under TFLite-Micro against the float (BatchNorm-folded) student.

    Attributes:
        samples: how many samples were compared.
        on: ``"calibration"`` or ``"held_out"``.
        max_abs_steps: largest ``|dequantised int8 output − float output|`` in output
            quantisation steps (the output scale).
        mean_abs_steps: the mean of the same.
        cosine_mean, cosine_min: per-sample cosine similarity of the output vectors.
        argmax_agreement: fraction of samples whose argmax agrees (only with a task head).
    """

    samples: int
    on: str
    max_abs_steps: float
    mean_abs_steps: float
    cosine_mean: float
    cosine_min: float
    argmax_agreement: float | None


@dataclass(frozen=True)
class TfliteReport:
    """What :func:`export_tflite` wrote and measured.

    Attributes:
        path: the ``.tflite`` file.
        bytes: its size.
        present: the streams the graph takes, in input order.
        ops: operators in execution order (builtin names; ``CUSTOM:<name>`` for custom ops).
        arena_bytes: smallest tensor arena with which TFLite-Micro allocates and invokes the
            model (bisection; this 64-bit host).
        arena_head_bytes, arena_tail_bytes: TFLite-Micro's own breakdown at that size: the head
            holds the planned activations (inputs and output included), the tail the
            interpreter's persistent structures.
        inputs, output: tensor types and quantisation parameters.
        int8_io: whether every input and the output are int8.
        float_ops: operators that read or write a float tensor (empty for full int8).
        names_stripped: whether internal tensor names were removed (only when the stripped
            model gave bit-identical outputs on every calibration sample).
        agreement: comparison with the float student.
    """

    path: Path
    bytes: int
    present: tuple[str, ...]
    ops: tuple[str, ...]
    arena_bytes: int
    arena_head_bytes: int | None
    arena_tail_bytes: int | None
    inputs: tuple[TensorInfo, ...]
    output: TensorInfo
    int8_io: bool
    float_ops: tuple[str, ...]
    names_stripped: bool
    agreement: Agreement

    @property
    def op_set(self) -> tuple[str, ...]:
        """Distinct operators (what a firmware's ``MicroMutableOpResolver`` must register)."""
        return tuple(sorted(set(self.ops)))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        out["op_set"] = list(self.op_set)
        return out


# --- the exported module -----------------------------------------------------------------------


class _SubsetModule(nn.Module):
    """The student for a fixed set of present streams: ``forward(x_0, …, x_{k−1}) → (1, out)``.

    Each stem pools with a mean over its spatial axes (the student's ``flatten(2).mean(2)``
    written without the reshape), the fused vector is the mean of the ``k`` pooled vectors
    (ADD and MUL for two streams, CONCATENATION and MEAN for more), then the head if any.
    """

    def __init__(self, student: Student, keys: Sequence[str]) -> None:
        super().__init__()
        index = [student.keys.index(k) for k in keys]
        self.stems = nn.ModuleList([student.stems[i] for i in index])
        self.head = student.head

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        pooled = []
        for stem, x in zip(self.stems, xs, strict=True):
            assert isinstance(stem, Stem)
            y: torch.Tensor = stem.blocks(x)
            pooled.append(y.mean(dim=tuple(range(2, y.dim()))))
        if len(pooled) == 1:
            total = pooled[0]
        elif len(pooled) == 2:
            # one int8 ADD and MUL: more precise than CONCATENATION, which forces both pooled
            # vectors onto one shared quantisation
            total = (pooled[0] + pooled[1]) * 0.5
        else:
            # a chain of ADDs (a + b + c) leaves the inner sums unquantised (float ADD and
            # DEQUANTIZE ops in the graph); stacking then averaging stays int8
            total = torch.stack(pooled, dim=1).mean(dim=1)
        return self.head(total) if self.head is not None else total


# --- calibration samples -----------------------------------------------------------------------

#: A calibration or check item: a Batch, or ``(inputs, present)`` tensors keyed by stream.
_Item = Batch | tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]]


def _samples(
    student: Student, data: Iterable[_Item], keys: Sequence[str], what: str
) -> list[tuple[torch.Tensor, ...]]:
    """One tuple of ``(1, C, …)`` float32 tensors per row where every stream of ``keys`` is
    present."""
    out: list[tuple[torch.Tensor, ...]] = []
    shapes: dict[str, tuple[int, ...]] = {}
    for item in data:
        inputs, present = (item.data, item.present) if isinstance(item, Batch) else item
        missing = [k for k in keys if k not in inputs]
        if missing:
            continue
        n = int(inputs[keys[0]].shape[0])
        mask = torch.ones(n, dtype=torch.bool)
        for key in keys:
            x = inputs[key]
            cfg = student.cfg.stems[student.keys.index(key)]
            shape = tuple(int(v) for v in x.shape[1:])
            stem_shapes(cfg, shape)  # named error on a wrong shape
            if not torch.is_floating_point(x):
                raise StudentInputError(f"stream {key!r} has dtype {x.dtype}, expected float")
            if int(x.shape[0]) != n:
                raise StudentInputError(f"{what}: streams disagree on the batch size")
            if shapes.setdefault(key, shape) != shape:
                raise StudentInputError(
                    f"{what}: stream {key!r} has shape {shape}, earlier {shapes[key]}; a .tflite "
                    "graph has one fixed input shape"
                )
            p = present.get(key)
            if p is not None:
                mask &= p.detach().cpu().bool()
        for row in torch.nonzero(mask).flatten().tolist():
            out.append(
                tuple(
                    inputs[k][row : row + 1].detach().cpu().to(torch.float32).contiguous()
                    for k in keys
                )
            )
    return out


# --- conversion --------------------------------------------------------------------------------


def _convert(
    module: nn.Module, samples: Sequence[tuple[torch.Tensor, ...]], verbose: bool
) -> bytes:
    try:
        import litert_torch
        from litert_torch.quantize.pt2e_quantizer import (
            PT2EQuantizer,
            get_symmetric_quantization_config,
        )
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e import move_exported_model_to_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError as exc:
        raise TfliteUnavailableError(
            f"litert-torch is not importable ({exc}); {INSTALL_HINT}"
        ) from exc

    args = samples[0]
    try:
        with torch.no_grad():
            graph = torch.export.export(module, args).module()
            quantizer = PT2EQuantizer().set_global(
                get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
            )
            prepared = prepare_pt2e(graph, quantizer)
            for sample in samples:
                prepared(*sample)
            converted = convert_pt2e(prepared, fold_quantize=False)
            # The graph has no train/eval-dependent op (BatchNorm is folded, no dropout); an
            # exported module refuses .eval(), so say it directly or litert-torch warns.
            move_exported_model_to_eval(converted)
            converted.training = False
            with _quiet_litert(verbose):
                model = litert_torch.convert(
                    converted, args, quant_config=QuantConfig(pt2e_quantizer=quantizer)
                )
            data = model.model_content()
    except TfliteError:
        raise
    except Exception as exc:
        raise TfliteConversionError(
            f"conversion to .tflite failed: {type(exc).__name__}: {exc}"
        ) from exc
    return bytes(data)


# --- agreement ---------------------------------------------------------------------------------


def _agreement(
    data: bytes,
    arena: int,
    reference: Student,
    keys: Sequence[str],
    samples: Sequence[tuple[torch.Tensor, ...]],
    inputs: Sequence[TensorInfo],
    output: TensorInfo,
    head: bool,
    on: str,
) -> Agreement:
    interpreter = micro_interpreter(data, arena)
    errs, cosines, same = [], [], []
    with torch.no_grad():
        for sample in samples:
            ref = reference.forward_tensors(dict(zip(keys, sample, strict=True)), {})
            want = ref.double().numpy().reshape(-1)
            xs = [info.quantize(x) for info, x in zip(inputs, sample, strict=True)]
            got = output.dequantize(invoke(interpreter, xs)).reshape(-1)
            errs.append(np.abs(got - want) / output.scale)
            denom = float(np.linalg.norm(got) * np.linalg.norm(want))
            cosines.append(
                float(got @ want) / denom if denom > 0 else float(np.allclose(got, want))
            )
            same.append(int(np.argmax(got)) == int(np.argmax(want)))
    err = np.concatenate(errs)
    return Agreement(
        samples=len(samples),
        on=on,
        max_abs_steps=float(err.max()),
        mean_abs_steps=float(err.mean()),
        cosine_mean=float(np.mean(cosines)),
        cosine_min=float(np.min(cosines)),
        argmax_agreement=float(np.mean(same)) if head else None,
    )


# --- export ------------------------------------------------------------------------------------


def _present_keys(student: Student, present: Iterable[str] | None) -> tuple[str, ...]:
    if present is None:
        return student.keys
    chosen = set(present)
    unknown = chosen - set(student.keys)
    if unknown:
        raise StudentInputError(
            f"streams {sorted(unknown)} are not ones the student was built for {list(student.keys)}"
        )
    if not chosen:
        raise StudentInputError("a .tflite graph needs at least one present stream")
    return tuple(k for k in student.keys if k in chosen)  # student order


@dataclass
class _Built:
    data: bytes
    keys: tuple[str, ...]
    ops: tuple[str, ...]
    inputs: tuple[TensorInfo, ...]
    output: TensorInfo
    arena: int
    head: int | None
    tail: int | None
    stripped: bool
    agreement: Agreement


def _build(
    folded: Student,
    keys: tuple[str, ...],
    calibration: Sequence[_Item],
    held_out: Sequence[_Item] | None,
    allowed_ops: Iterable[str],
    arena_bounds: tuple[int, int],
    require_full_int8: bool,
    strip_names: bool,
    verbose: bool,
) -> _Built:
    cal = _samples(folded, calibration, keys, "calibration")
    if not cal:
        raise QuantisationError(f"no calibration sample has every stream of {list(keys)} present")
    if held_out is not None:
        check = _samples(folded, held_out, keys, "held-out data")
        on = "held_out"
        if not check:
            raise StudentInputError(f"no held-out sample has every stream of {list(keys)} present")
    else:
        check, on = cal, "calibration"
    module = _SubsetModule(folded, keys).eval()
    data = _convert(module, cal, verbose)
    ops, inputs, output = read_tflite(data)
    if len(inputs) != len(keys):
        raise TfliteConversionError(
            f"the converted graph has {len(inputs)} inputs for {len(keys)} streams"
        )
    for i, (info, x) in enumerate(zip(inputs, cal[0], strict=True)):
        if info.shape != tuple(x.shape):
            raise TfliteConversionError(
                f"input {i} ({info.name}) has shape {info.shape}, stream {keys[i]!r} is "
                f"{tuple(x.shape)}"
            )
        if not info.name.endswith(f"args_{i}"):
            raise TfliteConversionError(
                f"input {i} is {info.name!r}; expected the {i}-th positional argument"
            )
    inputs = tuple(
        TensorInfo(t.name, k, t.shape, t.dtype, t.scale, t.zero_point)
        for t, k in zip(inputs, keys, strict=True)
    )
    int8_io = all(t.dtype == "int8" for t in (*inputs, output))
    floating = float_ops(data)
    if require_full_int8 and (not int8_io or floating):
        raise TfliteConversionError(
            "the converted model is not full int8: "
            f"inputs {[t.dtype for t in inputs]}, output {output.dtype}, "
            f"operators on float tensors {list(floating)}"
        )
    check_ops(ops, allowed_ops)
    stripped = strip_names and _same_outputs(
        data, strip_tensor_names(data), cal, inputs, arena_bounds[1]
    )
    if stripped:
        data = strip_tensor_names(data)
    with tempfile.TemporaryDirectory(prefix="fusion-tflite-") as tmp:
        probe_path = Path(tmp) / "model.tflite"
        probe_path.write_bytes(data)
        arena, head, tail = find_arena(probe_path, *arena_bounds)
    agreement = _agreement(
        data, arena, folded, keys, check, inputs, output, folded.head is not None, on
    )
    return _Built(data, keys, ops, inputs, output, arena, head, tail, stripped, agreement)


def _same_outputs(
    a: bytes,
    b: bytes,
    samples: Sequence[tuple[torch.Tensor, ...]],
    inputs: Sequence[TensorInfo],
    arena: int,
) -> bool:
    """Whether two models give bit-identical int8 outputs on these samples (a child process
    first checks that ``a`` runs in ``arena`` bytes: TFLite-Micro may crash otherwise)."""
    with tempfile.TemporaryDirectory(prefix="fusion-tflite-") as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(a)
        if not probe_arena(path, arena):
            raise TfliteArenaError(f"the model does not run in TFLite-Micro with {arena} bytes")
    run_a, run_b = micro_interpreter(a, arena), micro_interpreter(b, arena)
    for sample in samples:
        xs = [info.quantize(x) for info, x in zip(inputs, sample, strict=True)]
        if not np.array_equal(invoke(run_a, xs), invoke(run_b, xs)):
            return False
    return True


def _write(path: Path, data: bytes) -> Path:
    """Temporary file beside ``path``, then rename: never a half-written model."""

    def write(fh: Any) -> None:
        fh.write(data)

    return atomic_write(path, write, mode="wb")


def _report(built: _Built, path: Path) -> TfliteReport:
    return TfliteReport(
        path=path,
        bytes=len(built.data),
        present=built.keys,
        ops=built.ops,
        arena_bytes=built.arena,
        arena_head_bytes=built.head,
        arena_tail_bytes=built.tail,
        inputs=built.inputs,
        output=built.output,
        int8_io=all(t.dtype == "int8" for t in (*built.inputs, built.output)),
        float_ops=float_ops(built.data),
        names_stripped=built.stripped,
        agreement=built.agreement,
    )


def export_tflite(
    student: Student,
    calibration: Iterable[_Item],
    out_path: str | Path,
    *,
    present: Iterable[str] | None = None,
    held_out: Iterable[_Item] | None = None,
    allowed_ops: Iterable[str] = DEFAULT_ALLOWED_OPS,
    arena_bounds: tuple[int, int] = (ARENA_MIN_BYTES, ARENA_MAX_BYTES),
    require_full_int8: bool = True,
    strip_names: bool = True,
    verbose: bool = False,
) -> TfliteReport:
    """Export the student for one fixed set of present streams as a full-int8 ``.tflite`` and
    validate it with TFLite-Micro.

    The graph takes one int8 tensor per present stream, shape ``(1, C, T)`` or ``(1, C, H, W)``
    (the normalised stream quantised with that input's scale and zero point, see
    :attr:`TfliteReport.inputs`), in student stream order, and returns int8 ``(1, out_dim)``.

    Args:
        student: the float student (BatchNorm is folded with its running statistics).
        calibration: :class:`~fusion.data.collate.Batch` objects or ``(inputs, present)`` pairs
            of normalised tensors; the rows where every stream of ``present`` is present are
            calibration samples (and, without ``held_out``, the agreement check).
        out_path: the ``.tflite`` file; written only once every check has passed.
        present: the streams the graph takes (default: all of them).
        held_out: data for the agreement check instead of the calibration samples.
        allowed_ops: TFLite-Micro builtins the graph may use.
        arena_bounds: bisection range of the tensor arena in bytes.
        require_full_int8: fail unless every input, the output and every tensor between
            operators is int8/int32 (no float operator left by the quantiser).
        strip_names: empty the internal tensor names (about a third of a small model's file),
            kept only if the stripped model's outputs are bit-identical on the calibration
            samples.
        verbose: show litert-torch's progress output.

    Raises:
        TfliteUnavailableError: the ``tflite`` extra is not installed.
        StudentInputError: unknown stream, wrong shape or dtype, shapes that vary.
        QuantisationError: no calibration sample has the chosen streams present.
        TfliteConversionError, TfliteOpError, TfliteArenaError: see their docstrings.
    """
    folded = student.folded()
    keys = _present_keys(folded, present)
    built = _build(
        folded,
        keys,
        list(calibration),
        None if held_out is None else list(held_out),
        allowed_ops,
        arena_bounds,
        require_full_int8,
        strip_names,
        verbose,
    )
    path = _write(Path(out_path), built.data)
    return _report(built, path)


def default_subsets(keys: Sequence[str]) -> list[tuple[str, ...]]:
    """Every stream, then every set with one stream switched off (none if only one stream)."""
    keys = tuple(keys)
    out = [keys]
    if len(keys) > 1:
        out += [tuple(k for k in keys if k != off) for off in keys]
    return out


def _file_name(prefix: str, keys: Sequence[str], all_keys: Sequence[str]) -> str:
    if tuple(keys) == tuple(all_keys):
        tag = "all"
    else:
        tag = "+".join(re.sub(r"[^A-Za-z0-9_.-]", "_", k) for k in keys)
    return f"{prefix}_{tag}.tflite"


def export_tflite_subsets(
    student: Student,
    calibration: Iterable[_Item],
    out_dir: str | Path,
    *,
    subsets: Iterable[Iterable[str]] | None = None,
    prefix: str = "student",
    held_out: Iterable[_Item] | None = None,
    allowed_ops: Iterable[str] = DEFAULT_ALLOWED_OPS,
    arena_bounds: tuple[int, int] = (ARENA_MIN_BYTES, ARENA_MAX_BYTES),
    require_full_int8: bool = True,
    strip_names: bool = True,
    verbose: bool = False,
) -> dict[tuple[str, ...], TfliteReport]:
    """Export one ``.tflite`` per present set (default :func:`default_subsets`: all streams and
    each single stream off) into ``out_dir`` as ``<prefix>_all.tflite``,
    ``<prefix>_<key>+<key>.tflite``, …

    Every graph is converted and validated before any file is written, so a failure leaves no
    file behind; each file is then written atomically. Arguments as :func:`export_tflite`.
    """
    folded = student.folded()
    cal = list(calibration)
    held = None if held_out is None else list(held_out)
    chosen = [
        _present_keys(folded, s)
        for s in (default_subsets(folded.keys) if subsets is None else subsets)
    ]
    built = {
        keys: _build(
            folded,
            keys,
            cal,
            held,
            allowed_ops,
            arena_bounds,
            require_full_int8,
            strip_names,
            verbose,
        )
        for keys in dict.fromkeys(chosen)
    }
    out: dict[tuple[str, ...], TfliteReport] = {}
    for keys, b in built.items():
        path = Path(out_dir) / _file_name(prefix, keys, folded.keys)
        out[keys] = _report(b, _write(path, b.data))
    return out
