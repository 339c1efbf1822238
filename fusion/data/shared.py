"""Where the real sample data lives: ``$FUSION_SHARED_DATA``, default ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """The folder of real sensor data used by tests, the demo and benchmarks (may not exist)."""
    env = os.environ.get("FUSION_SHARED_DATA")
    return Path(env) if env else (_REPO_ROOT.parent / "shared" / "data")
