"""Turning library errors into one red line and a non-zero exit, without a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from fusion.data.errors import FusionDataError

P = ParamSpec("P")
R = TypeVar("R")
err_console = Console(stderr=True)


def user_errors() -> tuple[type[Exception], ...]:
    """Error types that mean bad input rather than a bug: data, model input, probe, deploy and
    registry errors.

    Modules are looked up only if a command already imported them, so that commands which never
    touch torch do not pay for importing it here.
    """
    found: list[type[Exception]] = [FusionDataError]
    for module, name in (
        ("fusion.models.errors", "ModelInputError"),
        ("fusion.probe.errors", "ProbeError"),
        ("fusion.deploy.errors", "DeployError"),
        ("fusion.datatest.errors", "DataTestError"),
        ("fusion.registry.errors", "RegistryError"),
    ):
        mod = sys.modules.get(module)
        if mod is not None:
            found.append(getattr(mod, name))
    return tuple(found)


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator for commands: a :func:`user_errors` error exits with status 2 and its message."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except Exception as err:
            if not isinstance(err, user_errors()):
                raise
            # escape: messages end in "[file=…, sensor=…]", which rich would take for markup
            err_console.print(
                f"[bold red]error[/] ({type(err).__name__}): {escape(str(err))}", highlight=False
            )
            raise typer.Exit(code=2) from None

    return wrapper
