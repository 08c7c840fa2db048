"""The network edge, faked: a scriptable OpenAI-compatible chat-completions server.

`FakeUpstream` serves real HTTP on an ephemeral loopback port from aiohttp.web, in a background
thread with its own event loop, so synchronous tests can point a gateway at `base_url`. Each
POST /v1/chat/completions plays the next queued `Script` (FIFO, then `DEFAULT_SCRIPT`), streamed
as SSE or, for `"stream": false`, assembled into one `chat.completion`.

Headers go out lazily, with the first byte of the body: a script that opens with `Sleep` or
`Stall` keeps the client waiting for headers, one that opens with `Reset` never answers.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.waiting import eventually

__all__ = [
    "DEFAULT_SCRIPT",
    "Done",
    "FakeUpstream",
    "Finish",
    "Raw",
    "Received",
    "Reset",
    "Script",
    "Sleep",
    "Stall",
    "Step",
    "Text",
    "ToolCall",
    "Usage",
]

# How long start(), stop() and a cross-thread look at the loop may take before they give up.
_BOUND = 5.0


@dataclass(frozen=True)
class Text:
    """One chunk whose delta carries `content`."""

    content: str


@dataclass(frozen=True)
class ToolCall:
    """One chunk whose delta carries a tool-call fragment; `id` and `name` only when given."""

    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True)
class Finish:
    """A chunk with an empty delta and this finish_reason."""

    reason: str


@dataclass(frozen=True)
class Usage:
    """A final chunk with `choices: []` and token usage."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Sleep:
    """Pause before the next step."""

    seconds: float


@dataclass(frozen=True)
class Stall:
    """Send nothing more; wait until the client goes away."""


@dataclass(frozen=True)
class Reset:
    """Abort the TCP connection here (`transport.abort()`): unsent bytes are dropped."""


@dataclass(frozen=True)
class Raw:
    """These bytes, written verbatim with no SSE framing (streams only)."""

    data: bytes


@dataclass(frozen=True)
class Done:
    """`data: [DONE]`; sent at the end anyway unless the script has one, stalls or resets."""


Step = Text | ToolCall | Finish | Usage | Sleep | Stall | Reset | Raw | Done


@dataclass(frozen=True)
class Script:
    """What to answer to one chat-completions request, and how to frame it on the wire.

    A non-200 `status` answers an OpenAI error envelope (its message is the script's `Text` steps
    joined, if any) after playing the `Sleep`/`Stall`/`Reset` steps.
    """

    steps: list[Step]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    chunk_size: int | None = None
    line_ending: str = "\n"
    comments: bool = False
    multiline_data: bool = False


DEFAULT_SCRIPT = Script(
    [Text("Hello"), Text(" from"), Text(" upstream"), Finish("stop"), Usage(5, 3)]
)


@dataclass(frozen=True)
class Received:
    """One request as the fake saw it; `headers` has lower-case keys, `body` is JSON or None."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float


# status -> (type, code) as OpenAI spells them in its error envelope.
_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


EMBEDDING_SIZE = 64


def bag_of_words(text: str) -> list[float]:
    """A text's words counted into EMBEDDING_SIZE buckets by a stable hash."""
    vector = [0.0] * EMBEDDING_SIZE
    for word in re.findall(r"\w+", text.lower()):
        vector[zlib.crc32(word.encode()) % EMBEDDING_SIZE] += 1.0
    return vector


def error_envelope(status: int, message: str = "") -> dict[str, Any]:
    """OpenAI's error body for `status`, with a stock message when none is given."""
    fallback = ("server_error" if status >= 500 else "invalid_request_error", None)
    kind, code = _ERRORS.get(status, fallback)
    message = message or f"fake upstream error {status}"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class _Aborted(Exception):
    """The script reset the connection; the response has no outcome to count."""


class _Reply:
    """One chat-completions response in progress: chunk building, framing, lazy headers."""

    def __init__(self, request: web.Request, script: Script, body: Any, number: int) -> None:
        self.request = request
        self.script = script
        body = body if isinstance(body, dict) else {}
        self.model = str(body.get("model") or "fake-model")
        self.stream = bool(body.get("stream"))
        options = body.get("stream_options")
        self.include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        self.id = f"chatcmpl-fake{number:06d}"
        self.created = int(time.time())
        self.response: web.StreamResponse | None = None
        self.role_sent = False

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        if not self.role_sent:
            delta = {"role": "assistant", **delta}
            self.role_sent = True
        chunk = self.envelope("chat.completion.chunk")
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        chunk["choices"] = [choice]
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def envelope(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def frame(self, payload: str) -> bytes:
        le = self.script.line_ending
        lines = [payload]
        if self.script.multiline_data and payload.startswith("{"):
            # Splitting after the opening brace keeps the rejoined text (with "\n") valid JSON.
            lines = [payload[:1], payload[1:]]
        text = "".join(f"data: {line}{le}" for line in lines) + le
        if self.script.comments:
            text = f": keep-alive{le}{le}" + text
        return text.encode()

    async def send(self, data: bytes) -> None:
        if self.response is None:
            self.response = web.StreamResponse(headers=self.script.headers)
            self.response.content_type = "text/event-stream"
            self.response.charset = "utf-8"
            self.response.headers["Cache-Control"] = "no-cache"
            await self.response.prepare(self.request)
        size = self.script.chunk_size or len(data) or 1
        for start in range(0, len(data), size):
            await self.response.write(data[start : start + size])

    async def event(self, payload: dict[str, Any]) -> None:
        await self.send(self.frame(json.dumps(payload)))

    def reset(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()
        raise _Aborted


def _usage(step: Usage) -> dict[str, int]:
    total = step.prompt_tokens + step.completion_tokens
    return {
        "prompt_tokens": step.prompt_tokens,
        "completion_tokens": step.completion_tokens,
        "total_tokens": total,
    }


async def _wait_step(reply: _Reply, step: Step) -> bool:
    """Play a step that only waits or aborts; False when `step` is not one of those."""
    match step:
        case Sleep(seconds):
            await asyncio.sleep(seconds)
        case Stall():
            await asyncio.get_running_loop().create_future()
        case Reset():
            reply.reset()
        case _:
            return False
    return True


async def _play_stream(reply: _Reply) -> web.StreamResponse:
    done = False
    for step in reply.script.steps:
        if await _wait_step(reply, step):
            continue
        match step:
            case Text(content):
                await reply.event(reply.chunk({"content": content}))
            case ToolCall(index, call_id, name, arguments):
                call: dict[str, Any] = {"index": index}
                if call_id is not None:
                    call |= {"id": call_id, "type": "function"}
                function = {"arguments": arguments}
                if name is not None:
                    function = {"name": name, **function}
                call["function"] = function
                await reply.event(reply.chunk({"tool_calls": [call]}))
            case Finish(reason):
                await reply.event(reply.chunk({}, reason))
            case Usage():
                last = {"choices": [], "usage": _usage(step)}
                await reply.event(reply.envelope("chat.completion.chunk") | last)
            case Raw(data):
                await reply.send(data)
            case Done():
                await reply.send(reply.frame("[DONE]"))
                done = True
    if not done:
        await reply.send(reply.frame("[DONE]"))
    assert reply.response is not None
    return reply.response


async def _play_whole(reply: _Reply) -> web.Response:
    parts: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish: str | None = None
    usage: dict[str, int] | None = None
    for step in reply.script.steps:
        if await _wait_step(reply, step):
            continue
        match step:
            case Text(content):
                parts.append(content)
            case ToolCall(index, call_id, name, arguments):
                function = {"name": "", "arguments": ""}
                call = calls.setdefault(index, {"id": "", "type": "function", "function": function})
                call["id"] = call_id or call["id"]
                call["function"]["name"] += name or ""
                call["function"]["arguments"] += arguments
            case Finish(reason):
                finish = reason
            case Usage():
                usage = _usage(step)
    if reply.script.status != 200:
        envelope = error_envelope(reply.script.status, "".join(parts))
        return web.json_response(envelope, status=reply.script.status, headers=reply.script.headers)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(parts) if parts else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": finish or ("tool_calls" if calls else "stop"),
    }
    completion = reply.envelope("chat.completion") | {"choices": [choice], "usage": usage}
    return web.json_response(completion, headers=reply.script.headers)


class FakeUpstream:
    """A scriptable OpenAI-compatible upstream on 127.0.0.1; use it as a context manager.

    `disconnects` and `completed` count chat completions (streamed or not) that ended because the
    client went away before the script finished, or because the script finished. A `Reset`, an
    error before the end, or `stop()` counts as neither.
    """

    def __init__(self) -> None:
        self.models: list[str] = ["fake-model"]
        self.requests: list[Received] = []
        self.embedding_failures: list[int] = []
        self.disconnects = 0
        self.completed = 0
        self.port = 0
        self._scripts: deque[Script] = deque()
        self._lock = threading.Lock()
        self._outcomes = threading.Condition(self._lock)
        self._number = 0
        self._closing = False
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def enqueue(self, *scripts: Script) -> None:
        with self._lock:
            self._scripts.extend(scripts)

    def wait_disconnects(self, n: int, timeout: float) -> bool:
        """True once `n` responses have ended because their client went away."""
        with self._outcomes:
            return self._outcomes.wait_for(lambda: self.disconnects >= n, timeout)

    def wait_completed(self, n: int, timeout: float) -> bool:
        """True once `n` responses have played their script to the end."""
        with self._outcomes:
            return self._outcomes.wait_for(lambda: self.completed >= n, timeout)

    @property
    def open_connections(self) -> int:
        """TCP connections aiohttp holds open, each until its handler has ended."""
        assert self._loop is not None, "the fake upstream is not running"
        count = asyncio.run_coroutine_threadsafe(self._count_connections(), self._loop)
        return count.result(_BOUND)

    def wait_open_connections(self, n: int, timeout: float) -> None:
        """Wait until exactly `n` connections are open (the server notices a close a bit later);
        fails the test past `timeout`."""
        eventually(
            lambda: self.open_connections == n,
            timeout=timeout,
            what=lambda: f"{n} open connections (now {self.open_connections})",
        )

    def start(self) -> FakeUpstream:
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)
        self._thread.start()
        if not self._ready.wait(_BOUND):
            raise RuntimeError("fake upstream did not start")
        if self._failure is not None:
            raise RuntimeError("fake upstream did not start") from self._failure
        return self

    def stop(self) -> None:
        """Close every connection (handlers in progress are cancelled) and end the thread."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(_BOUND)
        if self._thread.is_alive():
            raise RuntimeError("fake upstream did not stop")
        self._thread = None

    # Everything below runs on the fake's own event loop.

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        try:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = runner.addresses[0][1]
            self._runner = runner
            self._stop = asyncio.Event()
            self._loop = asyncio.get_running_loop()
        except BaseException as exc:
            self._failure = exc
            await runner.cleanup()
            raise
        finally:
            self._ready.set()
        try:
            await self._stop.wait()
        finally:
            self._closing = True
            server = runner.server
            for handler in server.connections if server is not None else []:
                if handler.transport is not None:
                    handler.transport.abort()
            await runner.cleanup()

    async def _count_connections(self) -> int:
        server = self._runner.server if self._runner is not None else None
        return len(server.connections) if server is not None else 0

    async def _record(self, request: web.Request) -> Received:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in request.headers.items()}
        received = Received(request.method, request.path, headers, body, time.monotonic())
        self.requests.append(received)
        return received

    def _count(self, outcome: str) -> None:
        with self._outcomes:
            setattr(self, outcome, getattr(self, outcome) + 1)
            self._outcomes.notify_all()

    async def _list_models(self, request: web.Request) -> web.Response:
        await self._record(request)
        data = [
            {"id": model, "object": "model", "created": 0, "owned_by": "fake-upstream"}
            for model in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def _embeddings(self, request: web.Request) -> web.Response:
        """Each input as a bag of its words hashed into EMBEDDING_SIZE buckets (unnormalised):
        texts sharing words are near, which is all a test of the plumbing needs. A status in
        `embedding_failures` (popped one per request) answers that error instead."""
        received = await self._record(request)
        if self.embedding_failures:
            status = self.embedding_failures.pop(0)
            return web.json_response(error_envelope(status, "embeddings refused"), status=status)
        inputs = received.body["input"] if isinstance(received.body, dict) else []
        data = [
            {"object": "embedding", "index": i, "embedding": bag_of_words(text)}
            for i, text in enumerate(inputs if isinstance(inputs, list) else [inputs])
        ]
        return web.json_response({"object": "list", "data": data, "model": received.body["model"]})

    async def _not_found(self, request: web.Request) -> web.Response:
        await self._record(request)
        envelope = error_envelope(404, f"no route {request.method} {request.path}")
        return web.json_response(envelope, status=404)

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        received = await self._record(request)
        with self._lock:
            script = self._scripts.popleft() if self._scripts else DEFAULT_SCRIPT
            self._number += 1
            number = self._number
        reply = _Reply(request, script, received.body, number)
        try:
            if reply.stream and script.status == 200:
                response: web.StreamResponse = await _play_stream(reply)
            else:
                response = await _play_whole(reply)
        except _Aborted:
            # Nothing left to answer on; aiohttp's own write to the dead transport fails quietly.
            return reply.response or web.Response()
        except asyncio.CancelledError:
            # handler_cancellation=True: the client closed, or stop() aborted every connection.
            if not self._closing:
                self._count("disconnects")
            raise
        except ConnectionError:
            self._count("disconnects")
            return reply.response or web.Response()
        self._count("completed")
        return response
