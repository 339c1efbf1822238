"""A small HTTP service answering predictions per site, whose models are swapped to another
registered version without dropping or failing a request.

Endpoints (FastAPI, served by uvicorn)::

    GET  /health           {"status": "ok", "sites": {site: "NAME:VERSION"}}
    POST /predict/{site}   {"inputs": {stream: [[...], ...]}}  → prediction + "model" that answered
    POST /swap/{site}      {"ref": "NAME:VERSION" | "NAME@ALIAS"} → {"site", "from", "to"}

**Hot swap.** Each site maps to an immutable :class:`~fusion.registry.predict.Predictor`. A swap
first loads the new version completely (files checked against their sha256, student read,
pre- and post-processing built) while the old one keeps answering; only then is the site's
reference replaced, under a lock. A request takes the site's reference once, at its start, and
computes its whole answer with it: in-flight requests finish on the old model, later ones use
the new one, and no answer mixes two versions. A failed swap (unknown version, damaged files,
other sensors) changes nothing.

Sites come from ``site:SITE`` tags in the registry (each site's most recently registered
version) unless given explicitly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from fusion.deploy.errors import DeployError
from fusion.registry.errors import (
    RegistryError,
    UnknownAliasError,
    UnknownModelError,
    UnknownSiteError,
    UnknownVersionError,
)
from fusion.registry.predict import Engine, Predictor
from fusion.registry.store import Registry
from fusion.registry.students import load_registered

__all__ = [
    "ModelServer",
    "PredictRequest",
    "SwapRequest",
    "create_app",
    "serve_in_thread",
    "sites_from_tags",
]


def sites_from_tags(registry: Registry) -> dict[str, str]:
    """Site → ``NAME:VERSION`` of the most recently registered version tagged ``site:SITE``."""
    return {site: versions[-1].ref for site, versions in registry.tagged("site").items()}


class ModelServer:
    """Site → loaded predictor, with atomic swaps (see the module docstring).

    Args:
        registry: where versions are loaded from.
        engine: ``"int8"`` (golden model, as on the device) or ``"float"``.
    """

    def __init__(self, registry: Registry, *, engine: Engine = "int8") -> None:
        self.registry = registry
        self.engine = engine
        self._models: dict[str, Predictor] = {}
        self._lock = threading.Lock()  # guards the site → predictor mapping only
        self._swapping = threading.Lock()  # one load-and-swap at a time (keeps memory bounded)

    def load(self, ref: str) -> Predictor:
        """A predictor for a registered version, fully loaded and checked."""
        mv, bundle = load_registered(self.registry, ref)
        return Predictor(bundle, mv.ref, self.engine)

    def swap(self, site: str, ref: str) -> dict[str, Any]:
        """Serve ``site`` with the version ``ref`` names from now on.

        Returns:
            ``{"site", "from", "to", "load_s"}`` (``from`` is ``None`` for a new site).

        Raises:
            RegistryError, DeployError: the version cannot be loaded (nothing changes).
        """
        with self._swapping:
            start = time.perf_counter()
            new = self.load(ref)  # the old predictor answers meanwhile
            with self._lock:
                old = self._models.get(site)
                self._models[site] = new
        return {
            "site": site,
            "from": None if old is None else old.model,
            "to": new.model,
            "load_s": round(time.perf_counter() - start, 4),
        }

    def predictor(self, site: str) -> Predictor:
        """The predictor serving ``site`` now.

        Raises:
            UnknownSiteError: listing the sites served.
        """
        with self._lock:
            found = self._models.get(site)
            served = sorted(self._models)
        if found is None:
            raise UnknownSiteError(
                f"no model serves site {site!r}; sites: {', '.join(served) or 'none'} (swap one "
                "in with POST /swap/{site})"
            )
        return found

    def predict(self, site: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """One answer, computed entirely by the predictor the site had when it arrived."""
        answer = self.predictor(site).predict(inputs)
        answer["site"] = site
        return answer

    def sites(self) -> dict[str, str]:
        with self._lock:
            return {site: p.model for site, p in sorted(self._models.items())}


_NOT_FOUND = (UnknownSiteError, UnknownModelError, UnknownVersionError, UnknownAliasError)


class PredictRequest(BaseModel):
    """Body of ``POST /predict/{site}``."""

    inputs: dict[str, list[Any]] = Field(
        description="stream key → physical values, (C, T) or (C, H, W) nested lists"
    )


class SwapRequest(BaseModel):
    """Body of ``POST /swap/{site}``."""

    ref: str = Field(description="NAME:VERSION or NAME@ALIAS")


def create_app(server: ModelServer) -> FastAPI:
    """The FastAPI application around a :class:`ModelServer` (see the module docstring).

    Errors answer JSON ``{"error": <error class>, "detail": <message>}``: 404 for an unknown
    site, model, version or alias, 422 for other bad input (wrong stream, shape, reference).
    """
    app = FastAPI(title="fusion model server", version="1")

    @app.exception_handler(RegistryError)
    @app.exception_handler(DeployError)
    async def named_error(request: Request, err: Exception) -> JSONResponse:
        status = 404 if isinstance(err, _NOT_FOUND) else 422
        return JSONResponse(
            status_code=status, content={"error": type(err).__name__, "detail": str(err)}
        )

    # Plain (not async) handlers: FastAPI runs them in its thread pool, so inference does not
    # block the event loop and several requests run at once.
    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "sites": server.sites()}

    @app.post("/predict/{site}")
    def predict(site: str, body: PredictRequest) -> dict[str, Any]:
        return server.predict(site, body.inputs)

    @app.post("/swap/{site}")
    def swap(site: str, body: SwapRequest) -> dict[str, Any]:
        return server.swap(site, body.ref)

    return app


@contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yield its base URL (``port=0`` picks a
    free port) and stop it on exit."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fusion-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30.0
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RegistryError(f"the HTTP service did not start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(10.0)
