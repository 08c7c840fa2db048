"""One route per path with a handler per method, so a 405 names every method the path serves;
each documented operation carries its `Doc` (docs.py), from which /openapi.json is made."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api import idempotency
from gateway.api.access import admit
from gateway.api.docs import Doc

Handler = Callable[[Request], Awaitable[Response]]


class Operation(NamedTuple):
    handler: Handler
    doc: Doc


def op(handler: Handler, summary: str, response: Any, **doc: Any) -> Operation:
    """A documented operation: `handler`, and what the OpenAPI document says of it."""
    return Operation(handler, Doc(summary, response, **doc))


class ApiRoute(Route):
    """A route and the documentation of its operations, by method (lowercase)."""

    docs: dict[str, Doc]


def resource(
    path: str,
    *,
    public: bool = False,
    token_allowed: bool = False,
    creates: bool = False,
    **operations: Operation | Handler,
) -> ApiRoute:
    """A route for `path` dispatching GET=..., POST=..., DELETE=... to their handlers (each an
    `op(...)`, documented, or a bare handler, left out of the document), each request admitted
    first (its API key, and its path inside its project: `access.admit`) unless the route is
    `public`. `token_allowed`: a stream token may stand in for the key (the handler checks it).
    `creates`: its POST creates, and honours an Idempotency-Key."""
    handlers: dict[str, Handler] = {}
    docs: dict[str, Doc] = {}
    for method, given in operations.items():
        if isinstance(given, Operation):
            handlers[method] = given.handler
            docs[method.lower()] = given.doc
        else:
            handlers[method] = given
    if "GET" in handlers:
        handlers.setdefault("HEAD", handlers["GET"])

    async def endpoint(request: Request) -> Response:
        if not public:
            await admit(request, token_allowed=token_allowed)
        handler = handlers[request.method]
        if creates and request.method == "POST":
            return await idempotency.handle(request, handler)
        return await handler(request)

    route = ApiRoute(path, endpoint, methods=list(handlers), name=path)
    route.docs = docs
    return route
