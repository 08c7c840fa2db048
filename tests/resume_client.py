"""Clients for resuming run streams: GET .../events from a position, or a streamed POST, read
with tests/sse_client.py's Stream; raw sockets for clients that stop reading or only open a
stream and drop it; and a reader in a process of its own."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.server import LiveServer
from tests.sse_client import Frame, Stream, is_event, read_stream


def events_path(
    thread_id: str, run_id: str, *, after: int | None = None, token: str | None = None
) -> str:
    query = {
        name: value for name, value in (("after", after), ("token", token)) if value is not None
    }
    path = f"/v1/threads/{thread_id}/runs/{run_id}/events"
    return f"{path}?{urlencode(query)}" if query else path


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
) -> Stream:
    """GET the run's event stream, from `Last-Event-ID` or `?after=` when given."""
    sent = dict(headers or {})
    if last_event_id is not None:
        sent["Last-Event-ID"] = str(last_event_id)
    path = events_path(thread_id, run_id, after=after, token=token)
    return Stream(server, "GET", path, headers=sent, timeout=timeout)


def read_events(server: LiveServer, thread_id: str, run_id: str, **position: Any) -> list[Frame]:
    """Every event frame of one GET .../events, to the end of the stream."""
    return [
        f for f in read_stream(open_events(server, thread_id, run_id, **position)) if is_event(f)
    ]


def post_events(server: LiveServer, path: str, body: dict[str, Any]) -> list[Frame]:
    """Every event frame of one streamed POST to `/v1{path}`, to the end of the stream."""
    stream = Stream(server, "POST", f"/v1{path}", body)
    return [f for f in read_stream(stream) if is_event(f)]


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
