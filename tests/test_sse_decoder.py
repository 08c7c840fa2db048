"""The upstream SSE decoder: any chunk boundary, CRLF/LF/CR, comments, multi-line data."""

from __future__ import annotations

import pytest

from gateway.models.sse_decoder import SSEDecoder, SSEMessage

STREAM = (
    b": keep-alive\n"
    b'data: {"a": 1}\n\n'
    b"event: custom\n"
    b"data: line one\n"
    b"data: line two\n\n"
    b"data:no-space\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SSEMessage("message", '{"a": 1}'),
    SSEMessage("custom", "line one\nline two"),
    SSEMessage("message", "no-space"),
    SSEMessage("message", "[DONE]"),
]


def decode(chunks: list[bytes]) -> list[SSEMessage]:
    decoder = SSEDecoder()
    return [message for chunk in chunks for message in decoder.feed(chunk)] + decoder.finish()


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(ending: bytes) -> None:
    """LF, CRLF and CR all end lines."""
    assert decode([STREAM.replace(b"\n", ending)]) == EXPECTED


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_one_byte_at_a_time(ending: bytes) -> None:
    """Feeding one byte per read gives the same messages, a split CRLF included."""
    data = STREAM.replace(b"\n", ending)
    assert decode([data[i : i + 1] for i in range(len(data))]) == EXPECTED


def test_every_split_point() -> None:
    """Any two-way split of a CRLF stream decodes the same."""
    data = STREAM.replace(b"\n", b"\r\n")
    for cut in range(len(data) + 1):
        assert decode([data[:cut], data[cut:]]) == EXPECTED, cut


def test_incomplete_message_is_held_back() -> None:
    """A message is only dispatched by its blank line."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: partial") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\n") == [SSEMessage("message", "partial")]


def test_utf8_split_across_reads() -> None:
    """A multi-byte character split between two reads survives."""
    data = "data: héllo ✓\n\n".encode()
    assert decode([data[:8], data[8:]]) == [SSEMessage("message", "héllo ✓")]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    """Blank lines and comments alone produce no message."""
    assert decode([b"\n\n: ping\n\n\n"]) == []


def test_unterminated_message_is_dropped_at_the_end() -> None:
    """A message with no blank line after it when the stream ends is not dispatched."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: cut off\n") == []
    assert decoder.finish() == []
