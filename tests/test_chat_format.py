"""The chat-completions wire format: chunk reading and request building, without HTTP."""

from __future__ import annotations

import pytest

from gateway.models.base import ChatMessage, ModelRequest, TextChunk, ToolCallChunk
from gateway.models.chat import (
    ChunkReader,
    MalformedChunkError,
    estimate_tokens,
    finish_reason,
    request_body,
)


def new_id() -> str:
    return "call_generated"


def delta(**fields: object) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": None}]}


def test_text_and_usage_and_finish() -> None:
    """Content becomes text chunks; finish_reason and a usage-only chunk are remembered."""
    reader = ChunkReader()
    assert reader.read(delta(role="assistant", content=""), new_id) == []
    assert reader.read(delta(content="Hi"), new_id) == [TextChunk("Hi")]
    reader.read({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, new_id)
    reader.read({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}, new_id)
    assert (reader.finish_reason, reader.prompt_tokens, reader.completion_tokens) == ("stop", 3, 1)


def test_tool_call_fragments_and_missing_id() -> None:
    """The first fragment of a call carries id and name (an id is made when absent)."""
    reader = ChunkReader()
    first = reader.read(delta(tool_calls=[{"index": 0, "function": {"name": "f"}}]), new_id)
    assert first == [ToolCallChunk(index=0, id="call_generated", name="f", arguments="")]
    later = reader.read(delta(tool_calls=[{"index": 0, "function": {"arguments": "{}"}}]), new_id)
    assert later == [ToolCallChunk(index=0, arguments="{}")]
    assert reader.completion_chars == 2


@pytest.mark.parametrize(
    "chunk",
    [
        [1, 2],
        {"choices": "nope"},
        delta(tool_calls=[{"index": 0, "function": {"arguments": "{"}}]),
        delta(tool_calls=[{"index": "x"}]),
    ],
)
def test_malformed_chunks(chunk: object) -> None:
    """Shapes no chat.completion.chunk has are refused, not guessed at."""
    with pytest.raises(MalformedChunkError):
        ChunkReader().read(chunk, new_id)


def test_finish_reasons_map() -> None:
    """Legacy function_call counts as tool_calls; unknown or missing reasons as stop."""
    assert finish_reason("function_call") == "tool_calls"
    assert finish_reason(None) == finish_reason("weird") == "stop"
    assert finish_reason("content_filter") == "content_filter"


def test_request_body_omits_what_was_not_asked() -> None:
    """No tools, auto/text response formats and unset sampling leave their fields out."""
    body = request_body(
        ModelRequest(model="m", messages=[ChatMessage(role="user", content="hi")]), stream=False
    )
    assert body == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": False}


def test_estimate_is_four_characters_a_token() -> None:
    """The token estimate rounds up characters / 4."""
    assert estimate_tokens([ChatMessage(role="user", content="x" * 9)]) == 3
