"""Chat completions and the model list: the same base_url also serves an app's plain chat calls.

A model routed to an upstream is proxied there unchanged (body in, status and bytes out, as they
arrive); any other model is answered by the built-in local model in the chat-completions shape.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway import ids
from gateway.bodies import ChatBody
from gateway.errors import UpstreamUnavailableError, not_found
from gateway.models import chat
from gateway.models.base import Finish, ModelBackendError, ModelRequest, TextChunk
from gateway.models.router import ModelRouter
from gateway.models.upstream import ProxiedResponse
from gateway.objects import now


class Completions:
    def __init__(self, router: ModelRouter) -> None:
        self.router = router

    async def models(self) -> list[dict[str, Any]]:
        return await self.router.models()

    async def model(self, model_id: str) -> dict[str, Any]:
        for model in await self.router.models():
            if model["id"] == model_id:
                return model
        raise not_found("model", model_id)

    async def proxy(self, model: str, body: bytes) -> ProxiedResponse | None:
        """The upstream's answer to `body` when `model` is routed to one; None otherwise."""
        upstream = self.router.upstream_for(model)
        if upstream is None:
            return None
        try:
            return await upstream.proxy(body)
        except ModelBackendError as exc:
            raise UpstreamUnavailableError(exc.message, code="upstream_unavailable") from None

    def stream(self, fields: ChatBody) -> AsyncIterator[bytes]:
        """The built-in model's answer as chat-completion chunks (SSE `data:` lines); a request
        the model cannot take is refused here, before the first chunk."""
        return self._chunks(_model_request(fields))

    async def _chunks(self, request: ModelRequest) -> AsyncIterator[bytes]:
        completion_id, created = ids.new_id("chatcmpl-"), now()

        def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
            payload = chat.completion_chunk(completion_id, request.model, created, delta, finish)
            return b"data: " + orjson.dumps(payload) + b"\n\n"

        yield frame({"role": "assistant", "content": ""})
        async with contextlib.aclosing(self.router.local.stream(request)) as chunks:
            async for chunk in chunks:
                if isinstance(chunk, TextChunk):
                    yield frame({"content": chunk.text})
                elif isinstance(chunk, Finish):
                    yield frame({}, chunk.reason)
                else:
                    call: dict[str, Any] = {"index": chunk.index, "function": {}}
                    if chunk.id is not None:
                        call.update(id=chunk.id, type="function")
                        call["function"]["name"] = chunk.name
                    call["function"]["arguments"] = chunk.arguments
                    yield frame({"tool_calls": [call]})
        yield b"data: [DONE]\n\n"

    async def complete(self, fields: ChatBody) -> dict[str, Any]:
        """The built-in model's whole answer as a chat completion."""
        request = _model_request(fields)
        text: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        finish = Finish("stop", 0, 0)
        async with contextlib.aclosing(self.router.local.stream(request)) as chunks:
            async for chunk in chunks:
                if isinstance(chunk, TextChunk):
                    text.append(chunk.text)
                elif isinstance(chunk, Finish):
                    finish = chunk
                elif chunk.index not in calls:
                    calls[chunk.index] = {
                        "id": chunk.id,
                        "type": "function",
                        "function": {"name": chunk.name, "arguments": chunk.arguments},
                    }
                else:
                    calls[chunk.index]["function"]["arguments"] += chunk.arguments
        return chat.completion(
            ids.new_id("chatcmpl-"),
            request.model,
            now(),
            "".join(text),
            [calls[i] for i in sorted(calls)],
            finish.reason,
            finish.prompt_tokens,
            finish.completion_tokens,
        )


def _model_request(fields: ChatBody) -> ModelRequest:
    return ModelRequest(
        model=fields["model"],
        messages=chat.from_chat_messages(fields["messages"]),
        tools=fields.get("tools") or (),
        tool_choice=fields.get("tool_choice") or "auto",
        parallel_tool_calls=fields.get("parallel_tool_calls") is not False,
        response_format=fields.get("response_format") or "auto",
        temperature=fields.get("temperature"),
        top_p=fields.get("top_p"),
        max_completion_tokens=fields.get("max_completion_tokens") or fields.get("max_tokens"),
    )
