"""YAML config files as the equivalent of command-line options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fusion.config import check_keys, read_mapping


def load_options(path: Path, allowed: set[str]) -> dict[str, Any]:
    """Read a YAML mapping of option names (``chip_m`` or ``chip-m``) to values.

    Raises:
        ConfigError: the file is unreadable, not a mapping, or names an unknown option.
    """
    options = read_mapping(path)
    check_keys(options, allowed, path=path, what="option")
    return options
