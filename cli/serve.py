"""`fusion serve`: an HTTP service answering predictions per site, with hot model swaps."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console

from cli.errors import reports_errors
from cli.registry import DEFAULT_REGISTRY, RegistryOption

console = Console()


class EngineChoice(StrEnum):
    int8 = "int8"
    float = "float"


@reports_errors
def serve_cmd(
    registry: RegistryOption = DEFAULT_REGISTRY,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    site: Annotated[
        list[str] | None,
        typer.Option(
            help="SITE=REF (repeatable), e.g. highway-3=imu@production; default: each site:SITE "
            "tag's most recently registered version."
        ),
    ] = None,
    engine: Annotated[
        EngineChoice, typer.Option(help="int8 (golden model, as on the device) or float.")
    ] = EngineChoice.int8,
    threads: Annotated[int, typer.Option(help="Torch intra-op threads per request.")] = 1,
) -> None:
    """Serve POST /predict/{site} (JSON sensor arrays → prediction and the version that
    answered) and POST /swap/{site} (load another version, then switch without failing a
    request); GET /health lists the sites."""
    import torch
    import uvicorn

    from fusion.registry import Registry, RegistryError
    from fusion.registry.serve import ModelServer, create_app, sites_from_tags

    torch.set_num_threads(max(1, threads))
    reg = Registry(registry)
    mapping = sites_from_tags(reg)
    for item in site or []:
        name, sep, ref = item.partition("=")
        if not sep or not name or not ref:
            raise RegistryError(f"--site {item!r} must be SITE=REF (e.g. highway-3=imu:1.2.0)")
        mapping[name] = ref
    server = ModelServer(reg, engine=engine.value)
    for name, ref in mapping.items():
        console.print(f"site {name}: {server.swap(name, ref)['to']}", highlight=False)
    if not mapping:
        console.print("no site yet: tag versions site:SITE or POST /swap/{site}", highlight=False)
    uvicorn.run(create_app(server), host=host, port=port, log_level="info")
