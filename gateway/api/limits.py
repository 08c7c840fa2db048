"""The request limits an operator sets (settings `max_*` and `rate_limit_*`), each refused with
an OpenAI error envelope: a body too large (413), text or lists too long (400), too many
requests for one key (429 with Retry-After)."""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.types import Message, Receive, Scope

from gateway.errors import InvalidRequestError, PayloadTooLargeError, RateLimitError
from gateway.settings import Settings

# What a multipart form adds to the file it carries: boundaries, part headers, small fields.
FORM_OVERHEAD_BYTES = 64 * 1024


class BodyLimits:
    """A body over `max_bytes` is a 413, whether its Content-Length says so or its chunks add
    up to it (checked by the request edge, `api/edge.py`). `larger` names the requests whose
    bodies may be larger (files, and the parts of uploads): a method, a pattern of the whole
    path (with or without its /v1 prefix) and their limit."""

    def __init__(self, max_bytes: int, larger: Sequence[tuple[str, str, int]] = ()) -> None:
        self.max_bytes = max_bytes
        self.larger = [(method, re.compile(path), limit) for method, path, limit in larger]

    def limit_for(self, scope: Scope) -> int:
        path = scope["path"].removeprefix("/v1")
        for method, pattern, limit in self.larger:
            if method == scope["method"] and pattern.fullmatch(path):
                return limit
        return self.max_bytes

    @staticmethod
    def declared_over(scope: Scope, limit: int) -> PayloadTooLargeError | None:
        """The 413 for a Content-Length over `limit`, before any of the body is read."""
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                return _too_large(limit)
        return None

    @staticmethod
    def counting(receive: Receive, limit: int) -> Receive:
        """`receive` that raises the 413 once the body's chunks add up to more than `limit`
        (inside the app, where errors are rendered)."""
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(limit)
            return message

        return counted


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The request body is larger than the {limit} bytes this server accepts.",
        code="request_too_large",
    )


class RateLimiter:
    """A token bucket per API key: `rate` requests a second, saving up to `burst`. Keeps the
    `limit` most recently seen keys."""

    def __init__(self, rate: float, burst: int, *, limit: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.limit = limit
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key_id: str) -> None:
        """Spend one request of `key_id`'s, or raise RateLimitError saying when to retry."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        tokens, stamp = self._buckets.pop(key_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - stamp) * self.rate)
        if tokens < 1:
            self._buckets[key_id] = (tokens, now)
            raise RateLimitError(
                f"Rate limit reached for this API key: {self.rate:g} requests per second.",
                code="rate_limit_exceeded",
                retry_after=(1 - tokens) / self.rate,
            )
        self._buckets[key_id] = (tokens - 1, now)
        if len(self._buckets) > self.limit:
            self._buckets.popitem(last=False)


def check_fields(fields: dict[str, Any], settings: Settings) -> None:
    """Lengths and counts of a validated request body against the configured limits."""
    for name in ("instructions", "additional_instructions"):
        text = fields.get(name)
        if isinstance(text, str) and len(text) > settings.max_instructions_chars:
            raise _too_long(name, "characters", settings.max_instructions_chars, len(text))
    tools = fields.get("tools")
    if isinstance(tools, list) and len(tools) > settings.max_tools:
        raise _too_long("tools", "tools", settings.max_tools, len(tools))
    outputs = fields.get("tool_outputs")
    if isinstance(outputs, list):
        if len(outputs) > settings.max_tool_outputs:
            raise _too_long("tool_outputs", "outputs", settings.max_tool_outputs, len(outputs))
        for index, output in enumerate(outputs):
            text = output.get("output") if isinstance(output, dict) else None
            if isinstance(text, str) and len(text) > settings.max_message_chars:
                param = f"tool_outputs[{index}].output"
                raise _too_long(param, "characters", settings.max_message_chars, len(text))
    for param, message in _messages(fields):
        size = _text_size(message.get("content"))
        if size > settings.max_message_chars:
            raise _too_long(param + ".content", "characters", settings.max_message_chars, size)


def _messages(fields: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    if "role" in fields and "content" in fields:
        yield "", fields
    for name in ("messages", "additional_messages"):
        for index, message in enumerate(fields.get(name) or ()):
            yield f"{name}[{index}]", message
    thread = fields.get("thread")
    if isinstance(thread, dict):
        for index, message in enumerate(thread.get("messages") or ()):
            yield f"thread.messages[{index}]", message


def _text_size(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(
            len(part.get("text") or "")
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return 0


def _too_long(param: str, unit: str, limit: int, actual: int) -> InvalidRequestError:
    param = param.removeprefix(".")
    return InvalidRequestError(
        f"Invalid '{param}': {actual} {unit}, more than the {limit} this server accepts.",
        param=param,
        code="limit_exceeded",
    )
