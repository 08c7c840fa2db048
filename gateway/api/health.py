"""Endpoints at the root: where things are (GET /), liveness, readiness and Prometheus
metrics."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway import __version__
from gateway.api.context import engine_of, metrics_of
from gateway.api.http import JSONResponse
from gateway.api.routing import resource
from gateway.metrics import CONTENT_TYPE

# How long readiness waits for the database to answer.
CHECK_SECONDS = 3.0


async def home(request: Request) -> Response:
    """A browser (it accepts HTML) is sent to the playground; an API client gets a short JSON
    of where things are."""
    if "text/html" in request.headers.get("accept", ""):
        root = request.scope.get("root_path", "")
        return RedirectResponse(f"{root}/playground", status_code=302)
    return JSONResponse(
        {
            "object": "gateway",
            "version": __version__,
            "links": {
                "api": "/v1",
                "playground": "/playground",
                "openapi": "/openapi.json",
                "health": "/healthz",
                "ready": "/readyz",
                "metrics": "/metrics",
            },
        }
    )


async def healthz(request: Request) -> Response:
    """The process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready for traffic: started, not shutting down, and the database and the bus answer.
    Each is reported: `{"status": "ready", "database": "ok", "bus": "ok"}`, or 503 with
    `unavailable` and the reason for the one that is not."""
    state = request.app.state
    if getattr(state, "engine", None) is None or engine_of(request).stopping:
        return JSONResponse({"status": "unavailable", "reason": "starting or stopping"}, 503)
    checks = await engine_of(request).readiness(CHECK_SECONDS)
    ready = all(found == "ok" for found in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", **checks}, 200 if ready else 503
    )


async def metrics(request: Request) -> Response:
    return Response(metrics_of(request).render(), media_type=CONTENT_TYPE)


routes = [
    resource("/", public=True, GET=home),
    resource("/healthz", public=True, GET=healthz),
    resource("/readyz", public=True, GET=readyz),
    resource("/metrics", public=True, GET=metrics),
]
