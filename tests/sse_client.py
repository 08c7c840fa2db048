"""The gateway's SSE streams as the tests read them: one `Frame` type and one parser
(`split_frames`), used by every reader, and the synchronous client (`Stream`, over
http.client). The asyncio client, over aiohttp, is tests/aio_sse.py.

A frame is one block of the stream up to its blank line, kept as its raw bytes (the tests check
the bytes on the wire) with the monotonic time it was read."""

from __future__ import annotations

import http.client
import json
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.server import LiveServer

Triple = tuple[int | None, str, Any]


@dataclass
class Frame:
    """One SSE block as it arrived: its raw bytes and the monotonic time it was read."""

    raw: bytes
    at: float

    @property
    def lines(self) -> list[str]:
        return self.raw.decode().split("\n")

    @property
    def is_comment(self) -> bool:
        return all(line.startswith(":") for line in self.lines)

    def field(self, name: str) -> str | None:
        prefix = name + ": "
        for line in self.lines:
            if line.startswith(prefix):
                return line.removeprefix(prefix)
        return None

    @property
    def id(self) -> int | None:
        value = self.field("id")
        return None if value is None else int(value)

    @property
    def event(self) -> str:
        value = self.field("event")
        assert value is not None, self.raw
        return value

    @property
    def data(self) -> Any:
        payload = self.field("data")
        assert payload is not None, self.raw
        return payload if payload == "[DONE]" else json.loads(payload)


def split_frames(data: bytes, at: float | None = None) -> tuple[list[Frame], bytes]:
    """The parser: the complete frames at the start of `data`, stamped `at` (now if None), and
    the bytes after the last of them (a frame not complete yet, or b"")."""
    *blocks, rest = data.split(b"\n\n")
    stamp = time.monotonic() if at is None else at
    return [Frame(block, stamp) for block in blocks], rest


def parse(raw: bytes) -> list[Frame]:
    """The frames of a complete SSE body."""
    frames, rest = split_frames(raw)
    assert rest == b"", f"body ends inside a frame: {raw[-200:]!r}"
    return frames


def is_event(frame: Frame) -> bool:
    """An event (not a comment, nor the `retry:` block)."""
    return not frame.is_comment and frame.field("event") is not None


def retry_of(frames: list[Frame]) -> int | None:
    """The `retry:` a stream announced, if any."""
    for frame in frames:
        value = None if frame.is_comment else frame.field("retry")
        if value is not None:
            return int(value)
    return None


def triple(frame: Frame) -> Triple:
    """An event frame as a comparable (id, event, data)."""
    return frame.id, frame.event, frame.data


def triples(frames: list[Frame]) -> list[Triple]:
    return [triple(f) for f in frames]


class Stream:
    """One event-stream request over http.client; frames are read as they arrive (`frames`,
    with read1, so nothing is held back) or all at once (`read_rest`)."""

    def __init__(
        self,
        server: LiveServer,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10,
    ) -> None:
        sent = dict(headers or {})
        payload = None
        if body is not None:
            payload = json.dumps(body)
            sent["Content-Type"] = "application/json"
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
        self.conn.request(method, path, body=payload, headers=sent)
        self.response = self.conn.getresponse()
        self._ready: deque[Frame] = deque()  # parsed, not handed out yet
        self._rest = b""  # the start of a frame not complete yet

    @property
    def status(self) -> int:
        return self.response.status

    def frames(self) -> Iterator[Frame]:
        """Blocks (events, retry, comments) as they arrive, until the server ends the stream."""
        while True:
            while self._ready:
                yield self._ready.popleft()
            chunk = self.response.read1(65536)
            if not chunk:
                assert self._rest == b"", f"stream ended inside a frame: {self._rest!r}"
                return
            frames, self._rest = split_frames(self._rest + chunk)
            self._ready.extend(frames)

    def read_rest(self) -> bytes:
        """The raw rest of the stream, read as fast as it comes (parse it afterwards)."""
        chunks = [f.raw + b"\n\n" for f in self._ready] + [self._rest]
        self._ready.clear()
        self._rest = b""
        while chunk := self.response.read1(1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self.conn.close()


def post_stream(server: LiveServer, path: str, body: dict[str, Any]) -> Stream:
    """A streamed POST of `body` to `/v1{path}`, its response open and no frame read yet."""
    return Stream(server, "POST", f"/v1{path}", body, headers={"Accept": "application/json"})


def read_stream(stream: Stream) -> list[Frame]:
    """Every block of a stream that answered 200, then close it."""
    try:
        assert stream.status == 200, stream.response.read()
        return parse(stream.read_rest())
    finally:
        stream.close()
