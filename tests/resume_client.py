"""Clients for resuming run streams: SSE over http.client (GET .../events from a position, or a
streamed POST), frames as comparable (id, event, data) triples, and raw sockets for clients that
stop reading or only open a stream and drop it."""

from __future__ import annotations

import http.client
import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.server import LiveServer
from tests.sse_client import Frame

Triple = tuple[int | None, str, Any]


def events_path(
    thread_id: str, run_id: str, *, after: int | None = None, token: str | None = None
) -> str:
    query = {
        name: value for name, value in (("after", after), ("token", token)) if value is not None
    }
    path = f"/v1/threads/{thread_id}/runs/{run_id}/events"
    return f"{path}?{urlencode(query)}" if query else path


class SSEConnection:
    """One event-stream request over http.client; frames are read incrementally or at once."""

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
        self._buffer = b""
        self._start = 0

    @property
    def status(self) -> int:
        return self.response.status

    def frames(self) -> Iterator[Frame]:
        """Blocks (events, retry, comments) as they arrive, until the server ends the stream."""
        while True:
            end = self._buffer.find(b"\n\n", self._start)
            if end != -1:
                block, self._start = self._buffer[self._start : end], end + 2
                yield Frame(block, time.monotonic())
                continue
            self._buffer, self._start = self._buffer[self._start :], 0
            chunk = self.response.read1(65536)
            if not chunk:
                assert self._buffer == b"", f"stream ended inside a frame: {self._buffer!r}"
                return
            self._buffer += chunk

    def read_rest(self) -> bytes:
        """The raw rest of the stream, read as fast as it comes (parse it afterwards)."""
        chunks = [self._buffer[self._start :]]
        self._buffer, self._start = b"", 0
        while chunk := self.response.read1(1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self.conn.close()


def open_events(
    server: LiveServer,
    thread_id: str,
    run_id: str,
    *,
    last_event_id: int | str | None = None,
    after: int | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> SSEConnection:
    """GET the run's event stream, from `Last-Event-ID` or `?after=` when given."""
    sent = dict(headers or {})
    if last_event_id is not None:
        sent["Last-Event-ID"] = str(last_event_id)
    path = events_path(thread_id, run_id, after=after, token=token)
    return SSEConnection(server, "GET", path, headers=sent, timeout=timeout)


def is_event(frame: Frame) -> bool:
    return not frame.is_comment and frame.field("event") is not None


def parse(raw: bytes) -> list[Frame]:
    """The blocks of a complete SSE body."""
    assert raw.endswith(b"\n\n") or raw == b"", f"body ends inside a frame: {raw[-200:]!r}"
    now = time.monotonic()
    return [Frame(block, now) for block in raw.split(b"\n\n")[:-1]]


def retry_of(frames: list[Frame]) -> int | None:
    """The `retry:` a stream announced, if any."""
    for frame in frames:
        value = None if frame.is_comment else frame.field("retry")
        if value is not None:
            return int(value)
    return None


def read_stream(stream: SSEConnection) -> list[Frame]:
    """Every block of a stream that answered 200, then close it."""
    try:
        assert stream.status == 200, stream.response.read()
        return parse(stream.read_rest())
    finally:
        stream.close()


def read_events(server: LiveServer, thread_id: str, run_id: str, **position: Any) -> list[Frame]:
    """Every event frame of one GET .../events, to the end of the stream."""
    return [
        f for f in read_stream(open_events(server, thread_id, run_id, **position)) if is_event(f)
    ]


def post_events(server: LiveServer, path: str, body: dict[str, Any]) -> list[Frame]:
    """Every event frame of one streamed POST to `/v1{path}`, to the end of the stream."""
    stream = SSEConnection(server, "POST", f"/v1{path}", body)
    return [f for f in read_stream(stream) if is_event(f)]


def triples(frames: list[Frame]) -> list[Triple]:
    return [(f.id, f.event, f.data) for f in frames]


def raw_request(
    port: int,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    rcvbuf: int | None = None,
    timeout: float = 10,
) -> socket.socket:
    """Send one HTTP/1.1 request on a fresh socket (with a small receive buffer if asked)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Set before connect, so the window the client advertises is small from the start.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    payload = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    for name, value in (headers or {}).items():
        head += f"{name}: {value}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    sock.sendall(head.encode() + b"\r\n" + payload)
    return sock


def read_until(sock: socket.socket, marker: bytes, start: bytes = b"", chunk: int = 4096) -> bytes:
    """Receive until `marker` is in what was received (the socket's timeout bounds each recv)."""
    data = start
    while marker not in data:
        more = sock.recv(chunk)
        if not more:
            raise ConnectionError(f"closed before {marker!r}: {data[-200:]!r}")
        data += more
    return data


def drain_to_eof(sock: socket.socket, deadline_seconds: float) -> bytes:
    """Everything left on the socket up to the server's close; fails past the deadline."""
    data = b""
    deadline = time.monotonic() + deadline_seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no EOF within {deadline_seconds} s ({len(data)} bytes read)")
        sock.settimeout(remaining)
        try:
            more = sock.recv(1 << 20)
        except ConnectionResetError:
            return data
        if not more:
            return data
        data += more


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll `predicate` until it holds or `timeout` passes; returns its last answer."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return predicate()
        time.sleep(interval)
    return True


# A client in its own process reads at full speed: in-process reader threads share the GIL with
# the server's loop and can fall 50 events behind a run that streams at full speed.
_READER = """
import http.client, sys
port, method, path, body, out = sys.argv[1:]
conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
headers = {"Connection": "close"}
if body:
    headers["Content-Type"] = "application/json"
conn.request(method, path, body=body or None, headers=headers)
response = conn.getresponse()
print(response.status, flush=True)
chunks = []
while chunk := response.read1(1 << 20):
    chunks.append(chunk)
with open(out, "wb") as file:
    file.write(b"".join(chunks))
"""


def spawn_reader(
    port: int, method: str, path: str, out: Path, body: dict[str, Any] | None = None
) -> subprocess.Popen[str]:
    """A child process that sends one request, prints the status once the response has begun,
    and writes the whole body to `out` when the server ends it."""
    payload = "" if body is None else json.dumps(body)
    return subprocess.Popen(
        [sys.executable, "-c", _READER, str(port), method, path, payload, str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )


def reader_status(reader: subprocess.Popen[str], timeout: float) -> int:
    """The status line a reader prints once its response has begun (bounded wait)."""
    assert reader.stdout is not None
    ready, _, _ = select.select([reader.stdout], [], [], timeout)
    assert ready, f"the reader got no response within {timeout} s"
    return int(reader.stdout.readline())
