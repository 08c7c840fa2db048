"""POST /chat/completions: the same base_url also serves an app's plain chat calls.

A model routed to an upstream is proxied there unchanged (body in, status and bytes out, as they
arrive); any other model is answered by the built-in local model in the chat-completions shape.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import orjson
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway import ids
from gateway.api.http import JSONResponse, read_body
from gateway.api.requests import ChatCompletionRequest
from gateway.api.routing import resource
from gateway.errors import UpstreamUnavailableError
from gateway.models import chat
from gateway.models.base import Finish, ModelBackendError, ModelRequest, TextChunk
from gateway.models.router import ModelRouter
from gateway.objects import now


async def chat_completions(request: Request) -> Response:
    fields = await read_body(request, ChatCompletionRequest)
    router = cast(ModelRouter, request.app.state.router)
    upstream = router.upstream_for(fields["model"])
    if upstream is not None:
        try:
            proxied = await upstream.proxy(await request.body())
        except ModelBackendError as exc:
            raise UpstreamUnavailableError(exc.message, code="upstream_unavailable") from None
        return StreamingResponse(
            proxied.body,
            status_code=proxied.status,
            media_type=proxied.content_type,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            background=BackgroundTask(proxied.close),
        )
    model_request = _model_request(fields)
    if fields.get("stream"):
        return StreamingResponse(
            _local_stream(router, model_request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return JSONResponse(await _local_completion(router, model_request))


def _model_request(fields: dict[str, Any]) -> ModelRequest:
    return ModelRequest(
        model=fields["model"],
        messages=chat.from_chat_messages(fields["messages"]),
        tools=fields.get("tools") or (),
        tool_choice=fields.get("tool_choice") or "auto",
        parallel_tool_calls=fields.get("parallel_tool_calls", True),
        response_format=fields.get("response_format") or "auto",
        temperature=fields.get("temperature"),
        top_p=fields.get("top_p"),
        max_completion_tokens=fields.get("max_completion_tokens") or fields.get("max_tokens"),
    )


async def _local_stream(router: ModelRouter, request: ModelRequest) -> AsyncIterator[bytes]:
    completion_id, created = ids.new_id("chatcmpl-"), now()

    def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
        payload = chat.completion_chunk(completion_id, request.model, created, delta, finish)
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    yield frame({"role": "assistant", "content": ""})
    async with contextlib.aclosing(router.local.stream(request)) as chunks:
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


async def _local_completion(router: ModelRouter, request: ModelRequest) -> dict[str, Any]:
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish = Finish("stop", 0, 0)
    async with contextlib.aclosing(router.local.stream(request)) as chunks:
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


routes = [resource("/chat/completions", POST=chat_completions)]
