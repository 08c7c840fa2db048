"""The request id of every HTTP request: the client's `X-Request-ID` when it sends a sane one,
else a new one; set for the logs (`logs.request_id`) and echoed in the response's header."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import logs
from gateway.asgi import add_start_headers
from gateway.ids import new_id

_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestContext:
    """ASGI middleware: a request id for every HTTP request, in the logs and in the response's
    `X-Request-ID` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _SANE_ID.fullmatch(given) else new_id("req_")
        token = logs.request_id.set(rid)

        header = [(b"x-request-id", rid.encode())]
        try:
            await self.app(scope, receive, add_start_headers(send, lambda: header))
        finally:
            logs.request_id.reset(token)
