"""Running a ``.tflite`` model in the TFLite-Micro Python interpreter and finding the smallest
tensor arena it needs.

TFLite-Micro's tensor arena holds the activations *and* the interpreter's own structures (tensor
and node structs, persistent buffers); the latter are pointer-sized, so a 32-bit MCU needs less
than this 64-bit host (about 20 % less on the MLPerf Tiny models). The interpreter can crash the
process (SIGSEGV) when the arena is too small, so every probe runs in a child process.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fusion.deploy.tflite_model import TfliteError, micro_runtime

__all__ = [
    "ARENA_MAX_BYTES",
    "ARENA_MIN_BYTES",
    "TfliteArenaError",
    "find_arena",
    "invoke",
    "micro_interpreter",
    "probe_arena",
    "run_tflite",
]

#: Default bisection bounds of the tensor arena (bytes).
ARENA_MIN_BYTES = 1024
ARENA_MAX_BYTES = 1 << 20


class TfliteArenaError(TfliteError):
    """The model does not run in TFLite-Micro with any arena up to the upper bound."""


def micro_interpreter(data: bytes, arena_bytes: int) -> Any:
    return micro_runtime().Interpreter.from_bytes(bytes(data), arena_size=int(arena_bytes))


def invoke(interpreter: Any, inputs: Sequence[np.ndarray]) -> np.ndarray:
    for i, x in enumerate(inputs):
        interpreter.set_input(np.ascontiguousarray(x), i)
    interpreter.invoke()
    out: np.ndarray = np.array(interpreter.get_output(0), copy=True)
    return out


def run_tflite(data: bytes, inputs: Sequence[np.ndarray], arena_bytes: int) -> np.ndarray:
    """Invoke the model once in the TFLite-Micro Python interpreter (in this process: use an
    arena that :func:`probe_arena` accepted) and return the raw output tensor."""
    return invoke(micro_interpreter(data, arena_bytes), inputs)


# The probe runs in a child process: TFLite-Micro may SIGSEGV on a too-small arena. It bisects
# between LO (fails or untested) and HI (runs or untested), printing "try N" before and
# "res N 0|1" after each probe; with "alloc N" it prints the allocator's breakdown to stderr.
_PROBE = r"""
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime

path, mode = sys.argv[1], sys.argv[2]
with open(path, "rb") as fh:
    data = fh.read()
model = runtime.convert_bytearray_to_object(bytearray(data))
graph = model.subgraphs[0]
inputs = [np.zeros([int(v) for v in graph.tensors[i].shape], np.int8) for i in graph.inputs]

def build(n):
    it = runtime.Interpreter.from_bytes(data, arena_size=n)
    for i, x in enumerate(inputs):
        it.set_input(x, i)
    it.invoke()
    return it

def ok(n):
    print("try", n, flush=True)
    try:
        build(n)
        good = True
    except RuntimeError:
        good = False
    print("res", n, int(good), flush=True)
    return good

if mode == "alloc":
    build(int(sys.argv[3])).print_allocations()
else:
    lo, hi = int(sys.argv[3]), int(sys.argv[4])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
"""


def _probe(path: Path, *args: object, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-c", _PROBE, str(path), *(str(a) for a in args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TfliteArenaError(f"an arena probe took longer than {timeout:.0f} s") from exc


def _results(stdout: str) -> tuple[dict[int, bool], int | None]:
    """Probe results, and the size being tried when the child died (if it did)."""
    res: dict[int, bool] = {}
    pending: int | None = None
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "try":
            pending = int(parts[1])
        elif len(parts) == 3 and parts[0] == "res":
            res[int(parts[1])] = parts[2] == "1"
            pending = None
    return res, pending


def probe_arena(path: str | Path, arena_bytes: int) -> bool:
    """Whether TFLite-Micro allocates and invokes the model with this arena (child process; a
    crash counts as no)."""
    proc = _probe(Path(path), "bisect", int(arena_bytes) - 1, int(arena_bytes) + 1)
    res, _ = _results(proc.stdout)
    return res.get(int(arena_bytes), False)


def find_arena(
    path: str | Path, lo: int = ARENA_MIN_BYTES, hi: int = ARENA_MAX_BYTES
) -> tuple[int, int | None, int | None]:
    """Smallest arena (bytes, within ``[lo, hi]``) with which the model allocates and invokes,
    by bisection in child processes, and TFLite-Micro's head/tail breakdown at that size.

    A probe that crashes counts as failing and the bisection goes on in a new child. If ``lo``
    itself runs, ``lo`` is returned (the true minimum is then at most ``lo``).

    Raises:
        TfliteArenaError: the model does not run even with ``hi`` bytes, or a probe cannot run.
    """
    path = Path(path)
    if not probe_arena(path, hi):
        proc = _probe(path, "alloc", hi)
        raise TfliteArenaError(
            f"the model does not run in TFLite-Micro with a {hi}-byte arena: "
            f"{proc.stderr.strip()[-800:]}"
        )
    low, high = lo - 1, hi  # invariant: `low` fails (or is below the range), `high` runs
    while high - low > 1:
        proc = _probe(path, "bisect", low, high)
        res, crashed = _results(proc.stdout)
        if crashed is not None:
            res[crashed] = False
        if not res:
            raise TfliteArenaError(f"the arena probe did not run: {proc.stderr.strip()[-800:]}")
        for n, good in res.items():
            if good and n < high:
                high = n
            elif not good and n > low:
                low = n
    proc = _probe(path, "alloc", high)
    found = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"Arena allocation (head|tail) (\d+) bytes", proc.stderr)
    }
    return high, found.get("head"), found.get("tail")
