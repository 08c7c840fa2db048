"""SSE encoding, byte for byte."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway import events
from gateway.events import Event
from gateway.sse import DONE_FRAME, EventStreamResponse, encode


def test_event_frame_is_exact() -> None:
    """An event is `event: <name>`, one compact `data:` line, and a blank line."""
    event = Event.of("thread.run.created", {"id": "run_1", "text": "a\nb", "n": 1.5, "x": None})
    assert encode(event) == (
        b'event: thread.run.created\ndata: {"id":"run_1","text":"a\\nb","n":1.5,"x":null}\n\n'
    )


def test_non_ascii_is_sent_as_utf8() -> None:
    """Text outside ASCII goes out as UTF-8, not as escapes."""
    frame = encode(Event.of("thread.message.delta", {"v": "héllo ✓"}))
    assert frame.decode("utf-8").endswith('{"v":"héllo ✓"}\n\n')


def test_done_frame() -> None:
    """`done` carries the literal [DONE], not JSON."""
    assert encode(events.DONE_EVENT) == DONE_FRAME == b"event: done\ndata: [DONE]\n\n"


def test_encoded_once() -> None:
    """Encoding the same event twice returns the very same bytes object."""
    event = Event.of("thread.run.queued", {"id": "run_1"})
    assert encode(event) is encode(event)


def test_error_frame_carries_flat_and_nested_error() -> None:
    """The error event has the flat fields and the same object under "error"."""
    frame = encode(events.error("boom"))
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


async def _no_frames() -> AsyncIterator[bytes]:
    return
    yield b""


async def _nothing() -> None:
    return None


def test_a_header_set_on_one_stream_is_its_own() -> None:
    """Streams share their header list until one changes: the change stays on that response
    (a header set by the idempotency layer once leaked into every later stream)."""

    def stream() -> EventStreamResponse:
        return EventStreamResponse(_no_frames(), ping_seconds=15, on_close=_nothing)

    first, second = stream(), stream()
    assert first.raw_headers is second.raw_headers  # shared while nobody changes them
    first.headers["idempotent-replayed"] = "true"
    third = stream()
    assert (b"idempotent-replayed", b"true") in first.raw_headers
    for other in (second, third):
        assert b"idempotent-replayed" not in dict(other.raw_headers)
    assert b"connection" not in dict(third.raw_headers)  # the server's to send
