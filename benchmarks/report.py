"""Writing benchmark reports: the command and machine that produced them, JSON files written
atomically (temporary file, then rename), markdown and plots."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from fusion.files import atomic_write

__all__ = ["atomic_write", "command_line", "cpu_model", "machine", "publish", "write_json"]


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The command that produced a report, as one shell line."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join([".venv/bin/python", "-m", module, *args])


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what :mod:`platform` says): speed
    ratios between kernels differ from one CPU family to another."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Where a report was measured: CPU model and count, threads, versions, CUDA device."""
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_json(path: Path, report: dict[str, Any]) -> None:
    """A report as indented JSON (non-JSON values as strings)."""
    atomic_write(path, lambda fh: fh.write(json.dumps(report, indent=2, default=str) + "\n"))


def publish(
    report: dict[str, Any],
    markdown: Callable[[dict[str, Any]], str],
    json_path: Path | None,
    plot_path: Path | None,
    plot: Callable[[dict[str, Any], Path], object],
) -> dict[str, Any]:
    """Print the report's markdown table, write its JSON and PNG where asked; return it."""
    print(markdown(report))
    if json_path:
        write_json(json_path, report)
    if plot_path:
        plot(report, plot_path)
    return report
