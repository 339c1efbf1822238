"""Command help as the terminal shows it: docstring paragraphs reflowed to the terminal's width.

Typer's rich help keeps a docstring's single line breaks (kept under 100 columns for the source),
so a summary broke mid-sentence in ``fusion --help`` and again at the terminal's width. Each
paragraph is joined into one line here and rich wraps it once; paragraphs stay apart.
"""

from __future__ import annotations

import inspect

import typer

__all__ = ["reflow_help"]


def reflowed(doc: str) -> str:
    """``doc`` with each paragraph's lines joined by single spaces, paragraphs kept."""
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n"))


def reflow_help(app: typer.Typer) -> None:
    """Give every command of ``app`` and its sub-apps (without an explicit ``help=``) its
    docstring, reflowed, as help."""
    for info in app.registered_commands:
        doc = inspect.getdoc(info.callback) if info.callback is not None else None
        if info.help is None and doc:
            info.help = reflowed(doc)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            reflow_help(group.typer_instance)
