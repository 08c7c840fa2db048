"""Small ASGI helpers."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import Message, Send


def add_start_headers(send: Send, extra: Callable[[], list[tuple[bytes, bytes]]]) -> Send:
    """`send` with `extra()`'s headers added to the response's start message (called then, so
    a header can measure the time up to the response); body messages pass through as they are."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *extra()]}
        await send(message)

    return sending
