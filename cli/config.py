"""YAML config files as the equivalent of command-line options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fusion.data.errors import SpecError


def load_options(path: Path, allowed: set[str]) -> dict[str, Any]:
    """Read a YAML mapping of option names (``chip_m`` or ``chip-m``) to values.

    Raises:
        SpecError: the file is unreadable, not a mapping, or names an unknown option.
    """
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise SpecError(f"cannot read config: {err}", path=path) from err
    if not isinstance(data, dict):
        raise SpecError("a config file holds a mapping of option names to values", path=path)
    options = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = set(options) - allowed
    if unknown:
        raise SpecError(
            f"unknown option(s) {sorted(unknown)}; expected {sorted(allowed)}", path=path
        )
    return options
