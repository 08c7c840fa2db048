"""Bytes on the wire for run streams: SSE framing of events, the done and error frames, pings,
and the streaming response (sse-starlette's, which owns pings, disconnects and shutdown).

Every event is encoded exactly once, here, with orjson; the response writes the bytes as they are.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import AppStatus, SendTimeoutError
from starlette.types import Receive, Scope, Send

from gateway import events
from gateway.events import Event

log = logging.getLogger("gateway.sse")

DONE_FRAME = b"event: done\ndata: [DONE]\n\n"
PING_COMMENT = "ping"


def encode(event: Event) -> bytes:
    """One SSE block: `id: <seq>` when the event is logged, `event: <name>`, one `data:` line of
    compact JSON, a blank line. Computed once per event and kept on it."""
    if event.wire is not None:
        return event.wire
    if event.name == events.DONE:
        return DONE_FRAME
    head = b"" if event.seq is None else b"id: %d\n" % event.seq
    frame = (
        head + b"event: " + event.name.encode() + b"\ndata: " + orjson.dumps(event.data) + b"\n\n"
    )
    object.__setattr__(event, "wire", frame)  # a cache on a frozen event, never a change of it
    return frame


def retry_frame(milliseconds: int) -> bytes:
    """Tells an EventSource how soon to reconnect after a drop."""
    return b"retry: %d\n\n" % milliseconds


# The gateway ends its own streams on shutdown (see serving.py); sse-starlette's process-wide
# flag would cut them first, before runs in progress could send their final events.
AppStatus.disable_automatic_graceful_drain()  # type: ignore[no-untyped-call]  # unannotated upstream


def _ping() -> ServerSentEvent:
    return ServerSentEvent(comment=PING_COMMENT, sep="\n")


class EventStreamResponse(EventSourceResponse):
    """A `text/event-stream` of already-encoded frames; `on_close` runs however the stream ends
    (finished, client gone, server stopping, or never started)."""

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        *,
        ping_seconds: float,
        send_timeout: float | None = None,
        on_close: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(
            frames,
            headers={"Cache-Control": "no-cache"},
            ping=ping_seconds,
            send_timeout=send_timeout,
            ping_message_factory=_ping,
            sep="\n",  # the same line ending as the frames we encode
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            # A client that stopped reading: drop it; it can resume from the run's log.
            log.info("closed an event stream whose client stopped reading")
        finally:
            await self._on_close()
