"""Shared fixtures: the real data folder (skipped, with the reason, when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusion.data.shared import shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"real data folder {root} is absent (set FUSION_SHARED_DATA)")
    return root
