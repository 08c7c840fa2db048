"""An `x-gateway-overhead-ms` header on every response: the time the gateway spent before the
response started, less any time spent waiting on a model upstream. For a non-streamed call
that is the gateway's own cost; load tests read it."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                spent = (time.perf_counter() - started - waited.seconds) * 1000
                headers = [*message.get("headers", ()), (HEADER, b"%.2f" % max(spent, 0.0))]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            upstream_wait.reset(token)
