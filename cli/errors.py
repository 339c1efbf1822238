"""Turning library errors into one red line and a non-zero exit, without a traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from fusion.data.errors import FusionDataError

P = ParamSpec("P")
R = TypeVar("R")
err_console = Console(stderr=True)


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator for commands: a :class:`FusionDataError` exits with status 2 and its message."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except FusionDataError as err:
            err_console.print(f"[bold red]error[/] ({type(err).__name__}): {err}", highlight=False)
            raise typer.Exit(code=2) from None

    return wrapper
