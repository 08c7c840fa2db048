"""Run streams for the three endpoints that take `"stream": true`.

The handler subscribes to the run's channel first, then asks the engine to act; a refusal
(unknown id, active run, bad outputs) is an ordinary JSON error because no byte of the stream has
been sent yet. From then on every event the engine publishes for the run is written as it comes,
until the engine marks the end of the segment; `done` closes the stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

from starlette.requests import Request
from starlette.responses import Response

from gateway import events
from gateway.api.context import bus_of, settings_of
from gateway.bus import SubscriberOverflowError, Subscription
from gateway.sse import DONE_FRAME, EventStreamResponse, encode
from gateway.types import Obj


async def stream_run(
    request: Request, run_id: str, start: Callable[[], Awaitable[Obj]]
) -> Response:
    """Subscribe to `run_id`, call `start()` (which raises to refuse), then stream the run."""
    resources = AsyncExitStack()
    subscription = await resources.enter_async_context(bus_of(request).subscribe(run_id))
    try:
        await start()
    except BaseException:
        await resources.aclose()
        raise
    return EventStreamResponse(
        frames(subscription),
        ping_seconds=settings_of(request).stream_ping_seconds,
        on_close=resources.aclose,
    )


async def frames(subscription: Subscription) -> AsyncIterator[bytes]:
    """The run's events as SSE frames, up to the end of the segment, then `done`.

    If the bus closes first (the gateway is shutting down), the stream ends without `done`."""
    try:
        async for event in subscription:
            if event.name == events.STREAM_END:
                yield DONE_FRAME
                return
            yield encode(event)
    except SubscriberOverflowError:
        yield encode(
            events.error(
                "The stream fell too far behind the run and was closed; the run goes on.",
                code="stream_overflow",
            )
        )
        yield DONE_FRAME
