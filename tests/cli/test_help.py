"""`fusion --help` and each command's help: summaries flow as sentences at any terminal width."""

from __future__ import annotations

import inspect

from typer.testing import CliRunner

from cli.help_text import reflowed
from cli.main import app


def _commands(typer_app):  # type: ignore[no-untyped-def]
    yield from typer_app.registered_commands
    for group in typer_app.registered_groups:
        yield from _commands(group.typer_instance)


def test_every_command_help_is_its_docstring_reflowed() -> None:
    infos = list(_commands(app))
    assert len(infos) > 20  # every command, sub-apps included
    for info in infos:
        doc = inspect.getdoc(info.callback)
        assert doc, f"{info.name or info.callback.__name__} has no docstring"
        assert info.help == reflowed(doc)
        assert all("\n" not in p for p in info.help.split("\n\n"))


def test_reflowed_keeps_paragraphs() -> None:
    text = "One line\n  broken.\n\nSecond\nparagraph."
    assert reflowed(text) == "One line broken.\n\nSecond paragraph."


def test_top_level_help_joins_a_summary_broken_in_the_source() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exit_code == 0
    # The calibrate docstring breaks its first sentence after "task head by"; at 200 columns the
    # summary is one line.
    assert "and task head by default), report the held-out site accuracy" in result.output
