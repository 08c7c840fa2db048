"""POST /chat/completions: an upstream's answer passed through as it arrives, or the built-in
model's (see engine/completions.py)."""

from __future__ import annotations

from typing import cast

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.api.context import completions_of
from gateway.api.docs import wire_object
from gateway.api.http import JSONResponse, read_body
from gateway.api.requests import ChatCompletionRequest
from gateway.api.routing import op, resource
from gateway.bodies import ChatBody

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def chat_completions(request: Request) -> Response:
    fields = cast(ChatBody, await read_body(request, ChatCompletionRequest))
    completions = completions_of(request)
    proxied = await completions.proxy(fields["model"], await request.body())
    if proxied is not None:
        return StreamingResponse(
            proxied.body,
            status_code=proxied.status,
            media_type=proxied.content_type,
            headers=STREAM_HEADERS,
            background=BackgroundTask(proxied.close),
        )
    if fields.get("stream"):
        return StreamingResponse(
            completions.stream(fields), media_type="text/event-stream", headers=STREAM_HEADERS
        )
    return JSONResponse(await completions.complete(fields))


routes = [
    resource(
        "/chat/completions",
        POST=op(
            chat_completions,
            "Chat completions (forwarded to the model's upstream, or the local model)",
            wire_object("chat.completion"),
            body=ChatCompletionRequest,
            streams=True,
        ),
    )
]
