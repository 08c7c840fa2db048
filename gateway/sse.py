"""The streaming response of run streams: headers, pings, slow and vanished clients.

The frames come encoded (see `events.Event`); the response writes the bytes as they are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Protocol

import anyio
from sse_starlette import EventSourceResponse
from sse_starlette.sse import AppStatus
from starlette.datastructures import MutableHeaders
from starlette.types import Receive, Scope, Send

log = logging.getLogger("gateway.sse")

# A send blocked this long when the connection ends means the client had stopped reading.
STALLED_AFTER = 1.0
PING_FRAME = b": ping\n\n"
# The one header list every stream starts with (see EventStreamResponse.headers).
_HEADERS: dict[tuple[tuple[bytes, bytes], ...], list[tuple[bytes, bytes]]] = {}


# The gateway ends its own streams on shutdown (see serving.py); sse-starlette's process-wide
# flag would cut them first, before runs in progress could send their final events.
AppStatus.disable_automatic_graceful_drain()  # type: ignore[no-untyped-call]  # unannotated upstream


class FrameSource(Protocol):
    """What a response streams: chunks of encoded frames, and `close(why)`, called once however
    the response ends; `why` is "stalled" or "client_gone" when the client's side ended it."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...
    async def close(self, why: str | None = None) -> None: ...


class EventStreamResponse(EventSourceResponse):
    """A `text/event-stream` of already-encoded frames from `source`, which is closed however
    the stream ends (finished, client gone, client stalled, server stopping, or never started).

    sse-starlette gives the headers, HEAD and the websocket denial. The stream itself is sent
    here, by the request's own task and one watcher task, instead of by sse-starlette's task
    group of four with a cancel scope around every send: measured under load (loadtests/), that
    scaffolding cost more CPU per event than everything else on the path and about 40 KiB of
    memory per idle stream. The watcher waits for the client to go away, writes a `: ping`
    comment after `ping_seconds` of silence, and closes a stream whose client has accepted no
    data for `send_timeout` seconds (the transport's buffer stays full), so that one stuck
    reader never holds its run's subscription.
    """

    def __init__(
        self,
        source: FrameSource,
        *,
        ping_seconds: float,
        send_timeout: float | None = None,
    ) -> None:
        super().__init__(
            source,
            headers={"Cache-Control": "no-cache"},
            ping=ping_seconds,
            send_timeout=send_timeout,
            sep="\n",  # the same line ending as the frames we encode
        )
        # Every stream has the same headers: share one list rather than hold a copy each (it
        # is copied before any change, see `headers`). `Connection` is the server's to send:
        # sse-starlette's `keep-alive` contradicts the `close` of an HTTP/1.0 client or of one
        # that asked for it, and persistence is HTTP/1.1's default anyway.
        own = tuple(h for h in self.raw_headers if h[0] != b"connection")
        self.raw_headers = _HEADERS.setdefault(own, list(own))
        # sse-starlette's send lock serves only its own sending path (used below for HEAD and
        # websocket scopes, which make a new one); a quiet stream need not hold one.
        del self._send_lock
        self._source = source
        self._stopped_by: str | None = None  # set by the watcher before it cancels the stream
        self._sending_since: float | None = None
        self._last_write = 0.0

    @property
    def headers(self) -> MutableHeaders:
        """This response's headers, to change: its own copy of the shared list, made now."""
        if "_headers" not in self.__dict__:
            self.raw_headers = list(self.raw_headers)
        return super().headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["type"] != "http" or scope["method"] == "HEAD":
                self._send_lock = anyio.Lock()
                await super().__call__(scope, receive, send)
            else:
                await self._stream(receive, send)
        finally:
            # The source's own cleanup (its counters, its subscription), wherever the stream
            # stopped; a source that has finished only lets go of its subscription.
            await self._source.close(self._stopped_by)

    async def _stream(self, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        self._last_write = loop.time()
        watcher = loop.create_task(self._watch(receive, send, task), name="sse-watch")
        try:
            async for chunk in self._source:
                self._sending_since = loop.time()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                del chunk  # a quiet stream holds none of what it has sent
                self._sending_since = None
                self._last_write = loop.time()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if self._stopped_by is None or task.uncancel() > 0:
                raise  # a cancellation from outside: the server is stopping
            if self._stopped_by == "stalled":
                log.info("closed an event stream whose client stopped reading")
        finally:
            watcher.cancel()

    async def _watch(self, receive: Receive, send: Send, stream: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        ping = self.ping_interval or None
        limit = self.send_timeout
        while True:
            now = loop.time()
            waits = []
            if ping is not None and self._sending_since is None:
                waits.append(self._last_write + ping - now)
            if limit is not None:
                since = self._sending_since
                waits.append(limit / 2 if since is None else since + limit - now)
            try:
                async with asyncio.timeout(max(min(waits), 0.0) if waits else None):
                    message = await receive()
            except TimeoutError:
                pass
            else:
                if message["type"] == "http.disconnect":
                    return self._stop(stream, self._gone_why(loop.time()))
                continue
            now = loop.time()
            since = self._sending_since
            if since is not None:
                if limit is not None and now - since >= limit:
                    return self._stop(stream, "stalled")
            elif ping is not None and now - self._last_write >= ping:
                self._sending_since = now
                try:
                    async with asyncio.timeout(limit):
                        await send(
                            {"type": "http.response.body", "body": PING_FRAME, "more_body": True}
                        )
                except TimeoutError:
                    return self._stop(stream, "stalled")
                finally:
                    if self._sending_since == now:
                        self._sending_since = None
                self._last_write = loop.time()

    def _gone_why(self, now: float) -> str:
        """Why a stream whose connection went away ended: `stalled` when a send had been
        blocked for STALLED_AFTER seconds or more (the client had stopped reading, and the
        kernel's peer timeout ended it before the send timeout could), else `client_gone`.

        A send still counts as blocked here: uvicorn wakes the receive that reports the
        disconnect before it releases the blocked send (connection_lost sets its message
        event, then resumes writing), and the watcher acts on it at once."""
        since = self._sending_since
        return "stalled" if since is not None and now - since >= STALLED_AFTER else "client_gone"

    def _stop(self, stream: asyncio.Task[None], reason: str) -> None:
        self._stopped_by = reason
        stream.cancel()
