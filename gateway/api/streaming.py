"""Run event streams: the POST streams of create run, create thread and run and submit tool
outputs, and GET .../runs/{run_id}/events, which replays the run's log and then goes live.

Every stream subscribes to the run's channel before anything else, so no event published from
then on can be missed; events the log has already sent are skipped by their sequence number. A
stream ends with `done` at the end of a segment (requires_action or a terminal status). Frames
waiting together are written in one send.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import cast

from starlette.requests import Request
from starlette.responses import Response

from gateway import events
from gateway.api.context import bus_of, engine_of, metrics_of, settings_of
from gateway.bus import SubscriberOverflowError, Subscription
from gateway.engine.eventlog import Replay, ReplayUnavailableError
from gateway.errors import AuthenticationError, InvalidRequestError
from gateway.events import Event
from gateway.metrics import Metrics
from gateway.objects import ACTIVE_RUN_STATUSES
from gateway.sse import DONE_FRAME, EventStreamResponse, StreamEnd, encode, retry_frame
from gateway.tokens import InvalidTokenError, StreamTokens
from gateway.types import Obj

# Events sent are added to the metric in steps of this many (and at the stream's end), not per
# send: the counter takes a lock.
COUNT_EVERY = 64
OVERFLOW_MESSAGE = (
    "The stream fell too far behind the run and was closed; the run goes on. "
    "Reconnect with Last-Event-ID to resume."
)


async def stream_run(
    request: Request, run_id: str, start: Callable[[], Awaitable[Obj]]
) -> Response:
    """Subscribe to `run_id`, call `start()` (which raises to refuse), then stream the run's
    segment that `start()` began: earlier events still on their way (the end of the segment
    before tool outputs were submitted) are skipped by their numbers."""
    subscribed = bus_of(request).subscribe(run_id)
    subscription = await subscribed.__aenter__()
    leave = partial(subscribed.__aexit__, None, None, None)
    try:
        run = await start()
    except BaseException:
        await leave()
        raise
    after = (engine_of(request).log.segment_start(run_id) or 1) - 1
    end = StreamEnd()
    body = frames(subscription, metrics_of(request), after=after, end=end)
    response = _response(request, body, leave, end)
    response.run_ref = (run["thread_id"], run["id"])
    return response


def _response(
    request: Request,
    body: AsyncIterator[bytes],
    on_close: Callable[[], Awaitable[object]],
    end: StreamEnd | None = None,
) -> EventStreamResponse:
    settings = settings_of(request)
    return EventStreamResponse(
        body,
        ping_seconds=settings.stream_ping_seconds,
        send_timeout=settings.stream_send_timeout_seconds,
        on_close=on_close,
        end=end,
    )


async def run_events(request: Request) -> Response:
    """GET the stream of a run: from its start, or after `Last-Event-ID` (or `?after=`)."""
    thread_id = request.path_params["thread_id"]
    run_id = request.path_params["run_id"]
    token = request.query_params.get("token")
    if token is not None:
        try:
            cast(StreamTokens, request.app.state.tokens).check(token, thread_id, run_id)
        except InvalidTokenError as exc:
            raise AuthenticationError(
                str(exc), param="token", code="invalid_stream_token"
            ) from None
    return await logged_stream(request, thread_id, run_id, _position(request))


async def logged_stream(
    request: Request, thread_id: str, run_id: str, after: int | None
) -> Response:
    """The run's events from its log after `after` (from its start for None), then live."""
    engine = engine_of(request)
    run = await engine.get_run(thread_id, run_id)
    settings = settings_of(request)
    subscribed = bus_of(request).subscribe(run_id)
    subscription = await subscribed.__aenter__()
    leave = partial(subscribed.__aexit__, None, None, None)
    try:
        replay = await engine.log.replay(
            run_id,
            after,
            active=run["status"] in ACTIVE_RUN_STATUSES,
            since=subscription.since,
        )
    except ReplayUnavailableError:
        await leave()
        run = await engine.get_run(thread_id, run_id)
        body = unavailable(run, settings.stream_retry_ms)
        metrics_of(request).stream_ends.labels("unavailable").inc()
        return _response(request, body, _nothing)
    except BaseException:
        await leave()
        raise
    else:
        end = StreamEnd()
        body = frames(
            subscription,
            metrics_of(request),
            replay,
            after=after or 0,
            retry_ms=settings.stream_retry_ms,
            end=end,
        )
        return _response(request, body, leave, end)


async def _nothing() -> None:
    return None


# Event positions are whole numbers of at most 18 digits: within the stores' 64-bit columns,
# and a rule the published schema can state as a pattern (^[0-9]{0,18}$; empty is no position).
MAX_EVENT_ID_DIGITS = 18


def _position(request: Request) -> int | None:
    """The client's position: `Last-Event-ID`, else `?after=`; None for none. Each one given
    must read as an event id (plain ASCII digits, at most 18), else the answer is a 400."""
    header = _event_id(request.headers.get("last-event-id"), "Last-Event-ID")
    query = _event_id(request.query_params.get("after"), "after")
    return header if header is not None else query


def _event_id(raw: str | None, param: str) -> int | None:
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_EVENT_ID_DIGITS):
        shown = raw if len(raw) <= 32 else raw[:29] + "..."
        raise InvalidRequestError(
            f"Invalid event position {shown!r}: expected the id of an event of this run, "
            f"at most {MAX_EVENT_ID_DIGITS} digits.",
            param=param,
        )
    return int(raw)


async def frames(
    subscription: Subscription,
    metrics: Metrics,
    replay: Replay | None = None,
    *,
    after: int = 0,
    retry_ms: int | None = None,
    end: StreamEnd | None = None,
) -> AsyncIterator[bytes]:
    """The run's events as SSE frames: `replay` first, then live ones, to the segment's end.
    Counts open streams, events sent and why the stream ended.

    A stream whose subscriber fell behind is closed after an `error` frame and without `done`,
    so that an EventSource reconnects and resumes from the log; one that ends without either
    was closed by the bus (the gateway is shutting down). `end` says when the response closed
    the stream for a reason of its own (a client that stopped reading)."""
    metrics.active_streams.inc()
    reason = "client_gone"  # unless the stream gets to one of the ends below
    uncounted = 0
    try:
        head = [retry_frame(retry_ms)] if retry_ms is not None else []
        last = after
        if replay is not None:
            head += [e.frame for e in replay.events if e.name != events.STREAM_END]
            metrics.events_sent.inc(len(head) - (retry_ms is not None))
            if replay.events:
                last = replay.events[-1].seq
            if not replay.live:
                reason = "done"
                head.append(DONE_FRAME)
                yield b"".join(head)  # at rest: nothing live to wait for
                return
            replay = None  # an idle stream keeps none of what it has sent
        if head:
            chunk = b"".join(head)
            head = []
            yield chunk
            del chunk  # a quiet stream holds none of what it has sent
        try:
            async for batch in subscription.batches():
                out, ended = _live(batch, last)
                if out:
                    last = batch[-1].seq or last
                    uncounted += len(out)
                    if uncounted >= COUNT_EVERY:
                        metrics.events_sent.inc(uncounted)
                        uncounted = 0
                if ended:
                    reason = "done"
                    out.append(DONE_FRAME)
                    yield b"".join(out)
                    return
                if out:
                    yield out[0] if len(out) == 1 else b"".join(out)
            reason = "closed"
        except SubscriberOverflowError:
            reason = "overflow"
            yield encode(events.error(OVERFLOW_MESSAGE, code="stream_overflow"))
    finally:
        if uncounted:
            metrics.events_sent.inc(uncounted)
        if end is not None and end.reason is not None:
            reason = end.reason
        metrics.active_streams.dec()
        metrics.stream_ends.labels(reason).inc()


def _live(batch: list[Event], last: int) -> tuple[list[bytes], bool]:
    """The frames of `batch` not sent yet, and whether the segment ended in it."""
    out: list[bytes] = []
    for event in batch:
        if event.seq is not None and event.seq <= last:
            continue  # already sent from the log
        if event.name == events.STREAM_END:
            return out, True
        out.append(event.frame)
    return out, False


async def unavailable(run: Obj, retry_ms: int) -> AsyncIterator[bytes]:
    """The answer to a position the log cannot serve: the run as it is now, an error, done."""
    error = events.error(
        "The events after this position are no longer kept (or never were); the run's current "
        "state follows. Fetch the run's messages to catch up.",
        type_="invalid_request_error",
        code="replay_unavailable",
        run=run,
    )
    yield b"".join(
        [retry_frame(retry_ms), encode(events.run_status(run)), encode(error), DONE_FRAME]
    )
