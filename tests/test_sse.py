"""SSE encoding, byte for byte."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import pytest

from gateway import events
from gateway.events import DONE_FRAME, Event
from gateway.sse import EventStreamResponse


def test_event_frame_is_exact() -> None:
    """An event is `event: <name>`, one compact `data:` line, and a blank line."""
    event = Event.of("thread.run.created", {"id": "run_1", "text": "a\nb", "n": 1.5, "x": None})
    assert event.frame == (
        b'event: thread.run.created\ndata: {"id":"run_1","text":"a\\nb","n":1.5,"x":null}\n\n'
    )


def test_non_ascii_is_sent_as_utf8() -> None:
    """Text outside ASCII goes out as UTF-8, not as escapes."""
    frame = Event.of("thread.message.delta", {"v": "héllo ✓"}).frame
    assert frame.decode("utf-8").endswith('{"v":"héllo ✓"}\n\n')


def test_done_frame() -> None:
    """`done` carries the literal [DONE], not JSON."""
    assert events.DONE_EVENT.frame == DONE_FRAME == b"event: done\ndata: [DONE]\n\n"


def test_error_frame_carries_flat_and_nested_error() -> None:
    """The error event has the flat fields and the same object under "error"."""
    frame = events.error("boom").frame
    assert frame.startswith(b"event: error\ndata: {")
    assert (
        b'"error":{"message":"boom","type":"server_error","param":null,"code":"server_error"}'
        in frame
    )


def test_numbered_event_carries_its_id_and_the_same_body() -> None:
    """Numbering prefixes `id:` and keeps the body's bytes, decoded back to the same data."""
    event = Event.of("thread.run.queued", {"id": "run_1"})
    numbered = event.numbered(7)
    assert numbered.frame == b"id: 7\n" + event.body
    assert numbered.body is event.body
    assert numbered.data == {"id": "run_1"}


def test_snapshot_is_not_changed_by_later_edits() -> None:
    """A snapshot keeps the object as it was when the event was made."""
    run = {"id": "run_1", "status": "queued"}
    event = events.snapshot(events.RUN_QUEUED, run)
    run["status"] = "in_progress"
    assert event.data == {"id": "run_1", "status": "queued"}


@pytest.mark.parametrize("fragment", ["plain ", 'quo"te\\ ', "new\nline\t", "héllo ✓ 🎉", ""])
@pytest.mark.parametrize("index", [0, 3])
def test_text_delta_bytes_equal_the_encoding_of_its_object(fragment: str, index: int) -> None:
    """The text delta made from a byte template is exactly what encoding its object gives."""
    made = events.message_text_delta("msg_Ab3", index, fragment, first=False)
    expected = Event.of(
        events.MESSAGE_DELTA,
        {
            "id": "msg_Ab3",
            "object": "thread.message.delta",
            "delta": {"content": [{"index": index, "type": "text", "text": {"value": fragment}}]},
        },
    )
    assert made.body == expected.body
    first = events.message_text_delta("msg_Ab3", index, fragment, first=True).data
    assert first is not None
    assert first["delta"]["content"][0]["text"] == {"value": fragment, "annotations": []}


class Source:
    """A frame source that yields `chunks` and records how it was closed."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks
        self.iterated = False
        self.closed: list[str | None] = []

    async def _iterate(self) -> AsyncIterator[bytes]:
        self.iterated = True
        for chunk in self.chunks:
            yield chunk

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def close(self, why: str | None = None) -> None:
        self.closed.append(why)


async def _send_all(response: EventStreamResponse, method: str) -> list[MutableMapping[str, Any]]:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        await asyncio.sleep(3600)  # the client never goes away
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope: dict[str, Any] = {"type": "http", "method": method, "headers": [], "path": "/"}
    await asyncio.wait_for(response(scope, receive, send), timeout=5)
    return sent


async def test_the_response_sends_every_chunk_then_closes_its_source_once() -> None:
    """A stream that ends by itself sends its chunks as they are and closes its source once,
    with no reason of the client's; a HEAD closes it without reading it."""
    source = Source(b"event: a\ndata: 1\n\n", b"event: b\ndata: 2\n\n")
    sent = await _send_all(EventStreamResponse(source, ping_seconds=15), "GET")
    bodies = [m["body"] for m in sent if m["type"] == "http.response.body"]
    assert bodies == [*source.chunks, b""]
    assert source.closed == [None]
    head = Source(b"event: a\ndata: 1\n\n")
    await _send_all(EventStreamResponse(head, ping_seconds=15), "HEAD")
    assert head.closed == [None] and not head.iterated


def test_a_header_set_on_one_stream_is_its_own() -> None:
    """Streams share their header list until one changes: the change stays on that response
    (a header set by the idempotency layer once leaked into every later stream)."""

    def stream() -> EventStreamResponse:
        return EventStreamResponse(Source(), ping_seconds=15)

    first, second = stream(), stream()
    assert first.raw_headers is second.raw_headers  # shared while nobody changes them
    first.headers["idempotent-replayed"] = "true"
    third = stream()
    assert (b"idempotent-replayed", b"true") in first.raw_headers
    for other in (second, third):
        assert b"idempotent-replayed" not in dict(other.raw_headers)
    assert b"connection" not in dict(third.raw_headers)  # the server's to send
