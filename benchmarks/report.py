"""Writing benchmark reports: JSON files written atomically (temporary file, then rename)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fusion.files import atomic_write

__all__ = ["atomic_write", "publish", "write_json"]


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
