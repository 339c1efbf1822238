"""YAML config files: one reader for every job's config (CLI options and run configs alike)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from fusion.data.errors import ConfigError


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, keys normalised to ``snake_case`` (``chip-m`` → ``chip_m``).

    Raises:
        ConfigError: the file is unreadable or not a mapping.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read config: {err}", path=path) from err
    if not isinstance(data, dict):
        raise ConfigError("a config holds a mapping of keys to values", path=path)
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def check_keys(
    values: dict[str, Any], allowed: Iterable[str], *, path: str | Path | None, what: str = "config"
) -> None:
    """Raise :class:`ConfigError` naming every unknown key, the file and the keys allowed."""
    allowed = sorted(allowed)
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown {what} key(s) {unknown}; expected some of {allowed}", path=path)
