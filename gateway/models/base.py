"""The contract between the run engine and a model backend.

The engine hands a backend a `ModelRequest` (chat-style history plus the run's effective
configuration) and iterates the chunks it streams back: text fragments, tool-call fragments, and
one final `Finish` with the reason and the token usage.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, TypeAlias


@dataclass(frozen=True)
class ToolCall:
    """A function call the assistant made earlier in this run."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    # Non-text parts (image_url / image_file) of a user message, as stored.
    parts: tuple[dict[str, Any], ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    # For role "tool": which call this output answers.
    tool_call_id: str | None = None


@dataclass(frozen=True)
class ModelRequest:
    model: str
    messages: Sequence[ChatMessage]
    # Function tool definitions as the API takes them: {"type": "function", "function": {...}}.
    tools: Sequence[dict[str, Any]] = ()
    tool_choice: str | dict[str, Any] = "auto"
    parallel_tool_calls: bool = True
    response_format: str | dict[str, Any] = "auto"
    temperature: float | None = None
    top_p: float | None = None
    max_completion_tokens: int | None = None


class TextChunk(NamedTuple):
    """Text of the answer. A named tuple: one is made per streamed token, and it is cheaper to
    make than a frozen dataclass."""

    text: str


@dataclass(frozen=True)
class ToolCallChunk:
    """A fragment of a tool call. The first fragment of an index carries id and name."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None


FinishReason: TypeAlias = Literal["stop", "tool_calls", "length", "content_filter"]


@dataclass(frozen=True)
class Finish:
    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


ModelChunk: TypeAlias = TextChunk | ToolCallChunk | Finish


class ModelBackendError(Exception):
    """The backend could not produce an answer; the run fails with this message."""

    def __init__(self, message: str, *, code: str = "server_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ModelBackend(Protocol):
    """Something that turns a chat history into a stream of chunks."""

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """How many prompt tokens these messages cost (exact or a close estimate)."""
        ...

    def stream(self, request: ModelRequest) -> AsyncGenerator[ModelChunk, None]:
        """Stream the answer; the last chunk is always a `Finish`."""
        ...
