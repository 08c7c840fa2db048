"""One route per path with a handler per method, so a 405 names every method the path serves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api import idempotency
from gateway.api.access import admit

Handler = Callable[[Request], Awaitable[Response]]


def resource(
    path: str,
    *,
    public: bool = False,
    token_allowed: bool = False,
    creates: bool = False,
    **handlers: Handler,
) -> Route:
    """A route for `path` dispatching GET=..., POST=..., DELETE=... to their handlers, each
    request admitted first (its API key, and its path inside its project: `access.admit`)
    unless the route is `public`. `token_allowed`: a stream token may stand in for the key
    (the handler checks it). `creates`: its POST creates, and honours an Idempotency-Key."""
    if "GET" in handlers:
        handlers.setdefault("HEAD", handlers["GET"])

    async def endpoint(request: Request) -> Response:
        if not public:
            await admit(request, token_allowed=token_allowed)
        handler = handlers[request.method]
        if creates and request.method == "POST":
            return await idempotency.handle(request, handler)
        return await handler(request)

    return Route(path, endpoint, methods=list(handlers), name=path)
