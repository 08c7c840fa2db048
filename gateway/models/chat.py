"""The chat-completions wire format: a `ModelRequest` as a request body, and a streamed
`chat.completion.chunk` as model chunks. Pure; the HTTP lives in `upstream.py`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.models.base import (
    ChatMessage,
    FinishReason,
    ModelRequest,
    TextChunk,
    ToolCall,
    ToolCallChunk,
)

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "length": "length",
    "content_filter": "content_filter",
}


def request_body(
    request: ModelRequest, *, stream: bool, max_tokens_field: str = "max_completion_tokens"
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [chat_message(m) for m in request.messages],
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    if request.tools:
        body["tools"] = [
            {"type": "function", "function": dict(tool["function"])} for tool in request.tools
        ]
        body["tool_choice"] = request.tool_choice
        body["parallel_tool_calls"] = request.parallel_tool_calls
    response_format = request.response_format
    if isinstance(response_format, dict) and response_format.get("type") != "text":
        body["response_format"] = response_format
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.max_completion_tokens is not None:
        body[max_tokens_field] = request.max_completion_tokens
    return body


def chat_message(message: ChatMessage) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in message.tool_calls
            ],
        }
    if message.role == "user" and message.parts:
        return {"role": "user", "content": _user_parts(message)}
    return {"role": message.role, "content": message.content}


def _user_parts(message: ChatMessage) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if message.content:
        parts.append({"type": "text", "text": message.content})
    for part in message.parts:
        if part["type"] == "image_url":
            parts.append({"type": "image_url", "image_url": dict(part["image_url"])})
        elif part["type"] == "image_file":
            # There is no files API behind the gateway yet: say so rather than drop it silently.
            file_id = part["image_file"]["file_id"]
            parts.append({"type": "text", "text": f"[image file {file_id} is not available]"})
    return parts


class MalformedChunkError(ValueError):
    """A streamed chunk that is not a chat.completion.chunk object."""


@dataclass
class ChunkReader:
    """Turns parsed chat.completion.chunk objects into model chunks, remembering the finish
    reason and usage that arrive along the way."""

    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # Characters of content and arguments received, to estimate usage an upstream leaves out.
    completion_chars: int = 0
    _call_ids: dict[int, str] = field(default_factory=dict)

    def read(self, chunk: Any, new_call_id: Any) -> list[TextChunk | ToolCallChunk]:
        if not isinstance(chunk, dict):
            raise MalformedChunkError("a chunk is not a JSON object")
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = _int(usage.get("prompt_tokens"))
            self.completion_tokens = _int(usage.get("completion_tokens"))
        choices = chunk.get("choices")
        if choices is None:
            choices = []
        if not isinstance(choices, list):
            raise MalformedChunkError("a chunk's choices are not a list")
        out: list[TextChunk | ToolCallChunk] = []
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise MalformedChunkError("a chunk's delta is not an object")
            content = delta.get("content")
            if isinstance(content, str) and content:
                self.completion_chars += len(content)
                out.append(TextChunk(content))
            for call in delta.get("tool_calls") or ():
                out.append(self._tool_call(call, new_call_id))
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                self.finish_reason = reason
        return out

    def _tool_call(self, call: Any, new_call_id: Any) -> ToolCallChunk:
        if not isinstance(call, dict) or not isinstance(call.get("index", 0), int):
            raise MalformedChunkError("a tool call delta has no index")
        index: int = call.get("index", 0)
        function = call.get("function") or {}
        arguments = function.get("arguments") or ""
        self.completion_chars += len(arguments)
        if index in self._call_ids:
            return ToolCallChunk(index=index, arguments=arguments)
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise MalformedChunkError("a new tool call has no function name")
        # Some servers leave the id out; every call still needs one to be answered.
        call_id = call.get("id") or new_call_id()
        self._call_ids[index] = call_id
        return ToolCallChunk(index=index, id=call_id, name=name, arguments=arguments)


def finish_reason(raw: str | None) -> FinishReason:
    return FINISH_REASONS.get(raw or "stop", "stop")


def estimate_tokens(messages: Sequence[ChatMessage]) -> int:
    """About four characters a token: used when the upstream reports no usage, and to
    truncate a history to max_prompt_tokens before sending it."""
    chars = sum(
        len(m.content) + sum(len(c.name) + len(c.arguments) for c in m.tool_calls) for m in messages
    )
    return (chars + 3) // 4


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def completion_chunk(
    completion_id: str, model: str, created: int, delta: dict[str, Any], finish: str | None
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def completion(
    completion_id: str,
    model: str,
    created: int,
    content: str,
    tool_calls: list[dict[str, Any]],
    finish: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def from_chat_messages(messages: list[Any]) -> list[ChatMessage]:
    """Chat-completions request messages as the model's history (text only; other parts drop)."""
    out: list[ChatMessage] = []
    for raw in messages:
        role = raw.get("role")
        content = raw.get("content")
        if isinstance(content, list):
            content = "\n".join(
                p.get("text", "")
                for p in content
                if isinstance(p, dict) and p.get("type") == "text"
            )
        text = content if isinstance(content, str) else ""
        if role in ("system", "developer"):
            out.append(ChatMessage(role="system", content=text))
        elif role == "assistant":
            calls = tuple(
                ToolCall(c["id"], c["function"]["name"], c["function"].get("arguments", ""))
                for c in raw.get("tool_calls") or ()
            )
            out.append(ChatMessage(role="assistant", content=text, tool_calls=calls))
        elif role == "tool":
            out.append(ChatMessage(role="tool", content=text, tool_call_id=raw.get("tool_call_id")))
        else:
            out.append(ChatMessage(role="user", content=text))
    return out
