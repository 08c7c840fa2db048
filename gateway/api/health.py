"""Operational endpoints at the root: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.context import engine_of, metrics_of, store_of
from gateway.api.http import JSONResponse
from gateway.api.routing import resource
from gateway.metrics import CONTENT_TYPE
from gateway.store import PageQuery
from gateway.store.base import Kind


async def healthz(request: Request) -> Response:
    """The process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready for traffic: started, not shutting down, and the database answers."""
    state = request.app.state
    if getattr(state, "engine", None) is None or engine_of(request).stopping:
        return JSONResponse({"status": "unavailable", "reason": "starting or stopping"}, 503)
    try:
        await store_of(request).list_page(Kind.ASSISTANT, PageQuery(limit=1))
    except Exception:
        return JSONResponse({"status": "unavailable", "reason": "database"}, 503)
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    return Response(metrics_of(request).render(), media_type=CONTENT_TYPE)


routes = [
    resource("/healthz", public=True, GET=healthz),
    resource("/readyz", public=True, GET=readyz),
    resource("/metrics", public=True, GET=metrics),
]
