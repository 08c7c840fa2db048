"""Run streams over HTTP: the response for a stream the engine opened, and
GET .../runs/{run_id}/events with its position (`Last-Event-ID` or `?after=`) and its browser
token. The streams themselves are the engine's (`engine/streams.py`)."""

from __future__ import annotations

from typing import cast

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.context import engine_of, settings_of
from gateway.engine.streams import RunStream
from gateway.errors import AuthenticationError, InvalidRequestError
from gateway.sse import EventStreamResponse
from gateway.tokens import InvalidTokenError, StreamTokens

# Event positions are whole numbers of at most 18 digits: within the stores' 64-bit columns,
# and a rule the published schema can state as a pattern (^[0-9]{0,18}$; empty is no position).
MAX_EVENT_ID_DIGITS = 18


def stream_response(request: Request, stream: RunStream) -> Response:
    """The response that sends `stream`. The run it streams is kept on the request for the
    idempotency layer (a retry of a streamed create replays this run)."""
    request.state.streamed_run = (stream.thread_id, stream.run_id)
    settings = settings_of(request)
    return EventStreamResponse(
        stream,
        ping_seconds=settings.stream_ping_seconds,
        send_timeout=settings.stream_send_timeout_seconds,
    )


def streamed_run(request: Request) -> tuple[str, str] | None:
    """(thread id, run id) of the run whose stream answered `request`, if one did."""
    return cast("tuple[str, str] | None", getattr(request.state, "streamed_run", None))


async def replay_response(request: Request, thread_id: str, run_id: str) -> Response:
    """The whole stream of a run, from its first event."""
    return stream_response(request, await engine_of(request).run_events(thread_id, run_id, None))


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
    stream = await engine_of(request).run_events(thread_id, run_id, _position(request))
    return stream_response(request, stream)


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
