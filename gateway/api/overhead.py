"""An `x-gateway-overhead-ms` header on every response: the time the gateway spent before the
response started, less any time spent waiting on a model upstream. For a non-streamed call
that is the gateway's own cost; load tests read it."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.asgi import add_start_headers
from gateway.metrics import UpstreamWait, upstream_wait

HEADER = b"x-gateway-overhead-ms"


class OverheadHeaderMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        waited = UpstreamWait()
        token = upstream_wait.set(waited)

        def overhead() -> list[tuple[bytes, bytes]]:
            spent = (time.perf_counter() - started - waited.seconds) * 1000
            return [(HEADER, b"%.2f" % max(spent, 0.0))]

        try:
            await self.app(scope, receive, add_start_headers(send, overhead))
        finally:
            upstream_wait.reset(token)
