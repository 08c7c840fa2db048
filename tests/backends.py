"""Model backends faked at the edge, for failures the built-in model cannot produce."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence

from gateway.models.base import ChatMessage, ModelChunk, ModelRequest, TextChunk


class BreakingBackend:
    """Streams `texts`, then raises `error`: a broken upstream (ModelBackendError) or a bug in
    the gateway (anything else)."""

    def __init__(self, *texts: str, error: Exception) -> None:
        self.texts = texts
        self.error = error

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return 1

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelChunk, None]:
        for text in self.texts:
            yield TextChunk(text)
        raise self.error


class ScriptedBackend:
    """Streams exactly `chunks`, as an upstream model would have sent them."""

    def __init__(self, *chunks: ModelChunk) -> None:
        self.chunks = chunks

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return 1

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelChunk, None]:
        for chunk in self.chunks:
            yield chunk
