"""The benchmark's model upstream: a fake OpenAI-compatible `POST /v1/chat/completions` that
streams `chat.completion.chunk` SSE at a pace chosen per request. Raw asyncio + httptools on
uvloop, so that it takes little CPU from the gateway sharing the machine with it.

The model name chooses the answer: `fake-t<tokens>-r<rate>[-d<ms>]` streams <tokens> content
chunks (`"word "` each) at <rate> chunks per second on a fixed schedule (the first at once), or
as fast as the connection takes them with `r0` (yielding to the loop between chunks, so that
concurrent streams share it); `-d<ms>` first waits that long, as a model reading its prompt.
Then a `finish_reason: "stop"` chunk, a usage chunk when the request asks for
`stream_options.include_usage`, and `data: [DONE]`. `"stream": false` answers the whole
completion at once, after the same pacing. Any other model name is a 404 `model_not_found`.

Also answers `GET /v1/models` and `GET /health`. Serves 127.0.0.1 only; SIGTERM or SIGINT stops it.

Usage: python loadtests/fake_upstream_server.py --port PORT
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

import httptools
import orjson
import uvloop

MODEL = re.compile(r"fake-t(\d+)-r(\d+(?:\.\d+)?)(?:-d(\d+))?")
TOKEN = "word "
SSE_HEADERS = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
)
DONE = b"data: [DONE]\n\n"
_numbers = itertools.count(1)


@dataclass(frozen=True)
class Shape:
    """How one answer streams: how many content chunks, and how many per second (0: unpaced)."""

    tokens: int
    rate: float
    delay: float = 0.0  # seconds before the first chunk

    @classmethod
    def parse(cls, model: object) -> Shape | None:
        match = MODEL.fullmatch(model) if isinstance(model, str) else None
        if match is None:
            return None
        delay = int(match.group(3) or 0) / 1000
        return cls(int(match.group(1)), float(match.group(2)), delay)


class ClientGoneError(Exception):
    """The connection closed while an answer was being written."""


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: requests are parsed by httptools and answered one at a time by a
    task that this connection owns (it is cancelled when the connection is lost)."""

    def __init__(self, connections: set[Connection]) -> None:
        self.connections = connections
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed = False
        self.task: asyncio.Task[None] | None = None
        self.url = b""
        self.body: list[bytes] = []

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it
        self.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.close()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.writable.set()
        self.connections.discard(self)
        if self.task is not None:
            self.task.cancel()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        keep_alive = self.parser.should_keep_alive()
        body = b"".join(self.body)
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(self.respond(method, self.url, body, keep_alive))

    # answers

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def respond(self, method: bytes, url: bytes, body: bytes, keep_alive: bool) -> None:
        path = url.partition(b"?")[0]
        try:
            if method == b"POST" and path == b"/v1/chat/completions":
                await self.chat(body)
            elif method == b"GET" and path == b"/v1/models":
                models = {"object": "list", "data": [{"id": "fake-t1-r0", "object": "model"}]}
                self.send_json(200, models)
            elif method == b"GET" and path == b"/health":
                self.send_json(200, {"status": "ok"})
            else:
                self.send_json(404, error(f"no route {method.decode()} {path.decode()}"))
        except ClientGoneError:
            return
        if not keep_alive:
            self.close()

    def send_json(self, status: int, payload: object) -> None:
        body = orjson.dumps(payload)
        reason = b"OK" if status == 200 else b"Error"
        head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        self.write(head % (status, reason, len(body)) + body)

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise ClientGoneError
        self.transport.write(data)

    async def write_chunk(self, data: bytes) -> None:
        """One piece of a chunked body; waits while the client's socket buffer is full."""
        self.write(b"%x\r\n%b\r\n" % (len(data), data))
        if not self.writable.is_set():
            await self.writable.wait()
            if self.closed:
                raise ClientGoneError

    async def chat(self, raw: bytes) -> None:
        try:
            request = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.send_json(400, error("the body is not JSON", code=None))
            return
        if not isinstance(request, dict):
            self.send_json(400, error("the body is not a JSON object", code=None))
            return
        model = request.get("model")
        shape = Shape.parse(model)
        if shape is None:
            problem = f"unknown model {model!r}: use fake-t<tokens>-r<rate>[-d<ms>]"
            self.send_json(404, error(problem))
            return
        reply = Reply(str(model), shape)
        if not request.get("stream"):
            async for _ in reply.paced():
                pass
            self.send_json(200, reply.whole())
            return
        options = request.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        self.write(SSE_HEADERS)
        async for frame in reply.paced():
            await self.write_chunk(frame)
        await self.write_chunk(reply.finish_frame())
        if include_usage:
            await self.write_chunk(reply.usage_frame())
        await self.write_chunk(DONE)
        self.write(b"0\r\n\r\n")


class Reply:
    """The frames of one answer. Every frame is built from bytes prepared once per answer."""

    def __init__(self, model: str, shape: Shape) -> None:
        self.shape = shape
        self.id = f"chatcmpl-bench{next(_numbers)}"
        self.model = model
        self.created = int(time.time())
        head = {"id": self.id, "object": "chat.completion.chunk", "created": self.created}
        self.head = orjson.dumps(head | {"model": model})[:-1]
        choice = b',"choices":[{"index":0,"delta":%b,"logprobs":null,"finish_reason":%b}]}'

        def frame(delta: object, finish_reason: bytes) -> bytes:
            return b"data: " + self.head + choice % (orjson.dumps(delta), finish_reason) + b"\n\n"

        self.first = frame({"role": "assistant", "content": TOKEN}, b"null")
        self.content = frame({"content": TOKEN}, b"null")
        self.finish = frame({}, b'"stop"')

    async def paced(self) -> AsyncIterator[bytes]:
        """Yield each content frame when it is due (the first after the delay)."""
        if self.shape.delay:
            await asyncio.sleep(self.shape.delay)
        loop = asyncio.get_running_loop()
        start = loop.time()
        rate = self.shape.rate
        for index in range(self.shape.tokens):
            if rate > 0:
                delay = start + index / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif index:
                await asyncio.sleep(0)  # unpaced: let concurrent streams have their turn
            yield self.first if index == 0 else self.content

    def finish_frame(self) -> bytes:
        return self.finish

    def usage(self) -> dict[str, int]:
        tokens = self.shape.tokens
        return {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1}

    def usage_frame(self) -> bytes:
        payload = orjson.dumps({"choices": [], "usage": self.usage()})[1:]
        return b"data: " + self.head + b"," + payload + b"\n\n"

    def whole(self) -> dict[str, object]:
        message = {"role": "assistant", "content": TOKEN * self.shape.tokens, "refusal": None}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": self.usage(),
        }


def error(message: str, code: str | None = "model_not_found") -> dict[str, object]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    connections: set[Connection] = set()
    server = await loop.create_server(
        lambda: Connection(connections), "127.0.0.1", port, backlog=4096
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        for connection in list(connections):
            if connection.transport is not None:
                connection.transport.abort()
        await asyncio.wait_for(server.wait_closed(), 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
