"""Writing benchmark reports: JSON files written atomically (temporary file, then rename)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fusion.files import atomic_write

__all__ = ["atomic_write", "write_json"]


def write_json(path: Path, report: dict[str, Any]) -> None:
    """A report as indented JSON (non-JSON values as strings)."""
    atomic_write(path, lambda fh: fh.write(json.dumps(report, indent=2, default=str) + "\n"))
