"""`fusion registry …`: register students, list and show versions, tag, promote, roll back, diff.

The registry folder comes from ``--registry`` (or ``$FUSION_REGISTRY``; default ``./registry``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.errors import reports_errors

if TYPE_CHECKING:
    from fusion.registry import ModelVersion, Registry
    from fusion.registry.records import AliasEvent

app = typer.Typer(
    help="Versioned students: immutable NAME:MAJOR.MINOR.PATCH versions, aliases, tags, lineage.",
    no_args_is_help=True,
)
console = Console()

RegistryOption = Annotated[
    Path,
    typer.Option(
        "--registry", envvar="FUSION_REGISTRY", help="Registry folder (SQLite + file store)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
DEFAULT_REGISTRY = Path("registry")


def _echo_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2, default=str))


def _open(root: Path, *, create: bool = False) -> Registry:
    from fusion.registry import Registry

    return Registry(root, create=create)


def _print_version(mv: ModelVersion) -> None:
    console.print(f"[bold]{mv.ref}[/]  registered {mv.created_at}", highlight=False)
    if mv.description:
        console.print(f"  {mv.description}", highlight=False)
    console.print(f"  parent: {mv.parent or '-'}", highlight=False)
    if mv.data:
        console.print(
            f"  data: {mv.data.get('source')} (sha256 {str(mv.data.get('sha256'))[:16]}…, "
            f"{mv.data.get('files')} files)",
            highlight=False,
        )
    sensors = "; ".join(f"{k} ({', '.join(v)})" for k, v in mv.sensors.items())
    console.print(f"  sensors: {sensors or '-'}", highlight=False)
    if mv.budget:
        fits = "fits" if mv.budget.get("fits") else "DOES NOT FIT"
        target = (mv.budget.get("target") or {}).get("name", "?")
        console.print(
            f"  budget {target}: {fits}; flash {mv.budget.get('flash_bytes')} B, SRAM "
            f"{mv.budget.get('ram_bytes')} B",
            highlight=False,
        )
    tags = ", ".join(f"{k}:{v}" for k, v in mv.tags.items())
    console.print(
        f"  tags: {tags or '-'}; aliases: {', '.join(mv.aliases) or '-'}", highlight=False
    )
    if mv.metrics:
        from fusion.registry.lineage import flatten

        for key, value in flatten(mv.metrics).items():
            console.print(f"  {key}: {value}", highlight=False)
    for path, (digest, size) in mv.files.items():
        console.print(f"  file {path}: {size} B sha256 {digest[:16]}…", highlight=False)


@app.command("register")
@reports_errors
def register_cmd(
    student: Annotated[Path, typer.Argument(help="A student directory (`fusion distill`).")],
    name: Annotated[str, typer.Option(help="Model name (lower case, digits, . _ -).")],
    version: Annotated[
        str | None,
        typer.Option(help="MAJOR.MINOR.PATCH (default: the next minor version of NAME)."),
    ] = None,
    parent: Annotated[
        str | None, typer.Option(help="The version it derives from (NAME:VERSION).")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="Data it was made from, to fingerprint (default: the student's)."),
    ] = None,
    metrics: Annotated[Path | None, typer.Option(help="A JSON file of metrics.")] = None,
    target: Annotated[str, typer.Option(help="MCU target of the budget fit.")] = "m4-256k",
    tag: Annotated[list[str] | None, typer.Option(help="KEY:VALUE tags (repeatable).")] = None,
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    registry: RegistryOption = DEFAULT_REGISTRY,
    as_json: JsonOption = False,
) -> None:
    """Register a student directory as an immutable version (creates the registry if needed)."""
    from fusion.registry import RegistryError, parse_tag
    from fusion.registry.students import register_student

    metrics_doc = None
    if metrics is not None:
        try:
            metrics_doc = json.loads(metrics.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise RegistryError(f"cannot read metrics {metrics}: {err}") from err
    tags = dict(parse_tag(t) for t in tag or [])
    mv = register_student(
        _open(registry, create=True),
        name,
        student,
        version=version,
        parent=parent,
        data=data,
        metrics=metrics_doc,
        target=target,
        description=description,
        tags=tags,
    )
    if as_json:
        _echo_json(mv.to_dict())
        return
    console.print(f"registered {mv.ref} in {registry}", highlight=False)


@app.command("list")
@reports_errors
def list_cmd(
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only versions with this KEY:VALUE tag.")] = None,
    registry: RegistryOption = DEFAULT_REGISTRY,
    as_json: JsonOption = False,
) -> None:
    """Every version (of NAME), with parent, tags, aliases and budget fit."""
    reg = _open(registry)
    versions = reg.find(tag, name) if tag else reg.versions(name)
    if as_json:
        _echo_json([mv.to_dict() for mv in versions])
        return
    table = Table(title=f"Registry {registry}")
    for col in ("version", "created", "parent", "tags", "aliases", "fits"):
        table.add_column(col)
    for mv in versions:
        fits = "-" if mv.budget is None else ("yes" if mv.budget.get("fits") else "NO")
        table.add_row(
            mv.ref,
            mv.created_at[:19],
            mv.parent or "-",
            ", ".join(f"{k}:{v}" for k, v in mv.tags.items()) or "-",
            ", ".join(mv.aliases) or "-",
            fits,
        )
    console.print(table)


@app.command("show")
@reports_errors
def show_cmd(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION, NAME@ALIAS or NAME (the highest).")],
    registry: RegistryOption = DEFAULT_REGISTRY,
    as_json: JsonOption = False,
) -> None:
    """One version: lineage, data fingerprint, metrics, budget, sensors, tags, aliases, files,
    and the model's alias history."""
    reg = _open(registry)
    mv = reg.resolve(ref)
    history = reg.history(mv.name)
    if as_json:
        _echo_json({**mv.to_dict(), "alias_history": [e.to_dict() for e in history]})
        return
    _print_version(mv)
    for e in history:
        undone = " (rolled back)" if e.undone else ""
        console.print(
            f"  {e.at[:19]} {e.action} {mv.name}@{e.alias} → {e.version} (was "
            f"{e.previous or '-'}){undone}",
            highlight=False,
        )


@app.command("tag")
@reports_errors
def tag_cmd(
    ref: Annotated[str, typer.Argument(help="The version (NAME:VERSION or NAME@ALIAS).")],
    tag: Annotated[
        str, typer.Argument(help="KEY:VALUE (e.g. site:highway-3), or KEY with --delete.")
    ],
    delete: Annotated[bool, typer.Option("--delete", help="Remove the tag KEY.")] = False,
    registry: RegistryOption = DEFAULT_REGISTRY,
    as_json: JsonOption = False,
) -> None:
    """Set (or remove) a tag on a version; a key holds one value per version."""
    reg = _open(registry)
    mv = reg.delete_tag(ref, tag) if delete else reg.set_tag(ref, tag)
    if as_json:
        _echo_json(mv.to_dict())
        return
    tags = ", ".join(f"{k}:{v}" for k, v in mv.tags.items())
    console.print(f"{mv.ref} tags: {tags or '-'}", highlight=False)


@app.command("promote")
@reports_errors
def promote_cmd(
    ref: Annotated[str, typer.Argument(help="The version to point the alias at.")],
    alias: Annotated[str, typer.Argument(help="Alias name, e.g. production.")] = "production",
    registry: RegistryOption = DEFAULT_REGISTRY,
    as_json: JsonOption = False,
) -> None:
    """Move an alias of a model to a version (its earlier target is kept for rollback)."""
    event = _open(registry).promote(ref, alias)
    _report_move(event, as_json, f"was {event.previous or '-'}")


@app.command("rollback")
@reports_errors
def rollback_cmd(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias name.")] = "production",
    registry: RegistryOption = DEFAULT_REGISTRY,
    as_json: JsonOption = False,
) -> None:
    """Move an alias back to where it pointed before its latest promotion (history kept)."""
    event = _open(registry).rollback(name, alias)
    _report_move(event, as_json, f"rolled back from {event.previous}")


def _report_move(event: AliasEvent, as_json: bool, note: str) -> None:
    """An alias move, as JSON or as one line ``NAME@ALIAS → VERSION (note)``."""
    if as_json:
        _echo_json(event.to_dict())
        return
    console.print(f"{event.name}@{event.alias} → {event.version} ({note})", highlight=False)


@app.command("diff")
@reports_errors
def diff_cmd(
    a: Annotated[str, typer.Argument(help="First version (NAME:VERSION, NAME@ALIAS).")],
    b: Annotated[str, typer.Argument(help="Second version.")],
    registry: RegistryOption = DEFAULT_REGISTRY,
    as_json: JsonOption = False,
) -> None:
    """What differs from A to B: metrics (with b − a), sensors, budget fit, lineage, tags."""
    from fusion.registry import diff_versions

    reg = _open(registry)
    d = diff_versions(reg.resolve(a), reg.resolve(b))
    if as_json:
        _echo_json(d)
        return
    console.print(f"[bold]{d['a']} → {d['b']}[/]", highlight=False)
    for section in ("metrics", "budget", "tags"):
        for key, row in d[section].items():
            delta = f" ({row['delta']:+.4g})" if "delta" in row else ""
            console.print(f"  {section} {key}: {row['a']} → {row['b']}{delta}", highlight=False)
    s = d["sensors"]
    for label in ("added", "removed"):
        if s[label]:
            console.print(f"  sensors {label}: {', '.join(s[label])}", highlight=False)
    for n, row in s["changed"].items():
        console.print(f"  sensor {n}: {row['a']} → {row['b']}", highlight=False)
    lineage = d["lineage"]
    console.print(
        f"  parent: {lineage['parent']['a'] or '-'} → {lineage['parent']['b'] or '-'}; "
        f"same data: {'yes' if lineage['same_data'] else 'no'}",
        highlight=False,
    )
    console.print(f"  files changed: {', '.join(d['files_changed']) or 'none'}", highlight=False)
