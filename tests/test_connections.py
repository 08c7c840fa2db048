"""Clients that stop talking, against a live gateway: a request that never arrives in full is
closed at its deadline (408 before the headers are in), and a stream whose peer vanished
(half-open: every packet dropped) ends within about ping + peer timeout."""

from __future__ import annotations

import json
import socket
import time

import openai
import orjson
import pytest

from tests.conftest import need
from tests.faults import can_drop_packets, vanished
from tests.server import LiveServer
from tests.waiting import eventually


def connect(server: LiveServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_all(sock: socket.socket) -> tuple[bytes, float]:
    """Everything until the server closes, and how long that took."""
    started = time.monotonic()
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks), time.monotonic() - started


def dropped(server: LiveServer) -> float:
    assert server.app is not None
    counter = server.app.state.metrics.connections_dropped.labels("request_timeout")
    return float(counter._value.get())


@pytest.mark.settings(request_timeout_seconds=0.5)
@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connected, then silence
        b"POST /v1/assistants HTTP/1.1\r\nHost: x\r\n",  # half the headers
    ],
    ids=["nothing", "half-headers"],
)
def test_a_request_whose_headers_never_arrive_gets_408(server: LiveServer, sent: bytes) -> None:
    with connect(server) as sock:
        sock.sendall(sent)
        answer, waited = read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert orjson.loads(body)["error"]["code"] == "request_timeout"
    assert 0.4 < waited < 3
    assert dropped(server) == 1


@pytest.mark.settings(request_timeout_seconds=1.0)
def test_a_trickling_client_is_dropped_at_the_deadline(server: LiveServer) -> None:
    """Each byte would reset uvicorn's own keep-alive timer; the deadline is absolute."""
    request = b"GET /v1/assistants HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200
    with connect(server) as sock:
        started = time.monotonic()
        closed = False
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.02)  # the trickle is the point: one byte every 20 ms
            if time.monotonic() - started > 4:
                break
        answer, _ = read_all(sock) if not closed else (b"", 0.0)
    assert time.monotonic() - started < 3, "the trickle was not cut off"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408")
    assert dropped(server) == 1


@pytest.mark.settings(request_timeout_seconds=0.5)
def test_a_body_that_never_completes_is_dropped_and_nothing_is_created(
    server: LiveServer, client: openai.OpenAI
) -> None:
    body = json.dumps({"model": "local", "name": "never"}).encode()
    with connect(server) as sock:
        sock.sendall(
            b"POST /v1/assistants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body[:10])
        )
        answer, waited = read_all(sock)
    assert not answer.startswith(b"HTTP/1.1 2"), answer
    assert waited < 3
    assert dropped(server) == 1
    assert client.beta.assistants.list().data == []
    # The gateway goes on serving.
    assert client.beta.assistants.create(model="local", name="after").name == "after"


@pytest.mark.settings(request_timeout_seconds=2.0)
def test_a_slow_request_inside_the_deadline_is_served(server: LiveServer) -> None:
    body = json.dumps({"model": "local", "name": "slow"}).encode()
    request = (
        b"POST /v1/assistants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with connect(server) as sock:
        for start in range(0, len(request), 16):
            sock.sendall(request[start : start + 16])
            time.sleep(0.05)  # slow on purpose: the whole request takes about a second
        answer, _ = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert dropped(server) == 0


@pytest.mark.settings(request_timeout_seconds=0.5, local_model_delay_ms=20)
def test_the_deadline_does_not_touch_a_long_stream_or_a_kept_alive_connection(
    server: LiveServer, client: openai.OpenAI
) -> None:
    """The deadline ends when the request is in: a stream three times longer than it runs to
    its end, and a keep-alive connection idle between requests is not cut by it."""
    assistant = client.beta.assistants.create(model="local")
    started = time.monotonic()
    with client.beta.threads.create_and_run_stream(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": " ".join(["w"] * 75)}]},
    ) as stream:
        names = [event.event for event in stream]
    assert names[-1] == "thread.run.completed"
    assert time.monotonic() - started > 1.5
    # A fixed wait is the point: the connection stays idle past the request deadline.
    time.sleep(0.8)
    assert client.beta.assistants.retrieve(assistant.id).id == assistant.id
    assert dropped(server) == 0


@pytest.mark.settings(stream_ping_seconds=0.5, peer_timeout_seconds=2.0, local_model_delay_ms=20)
def test_a_stream_whose_peer_vanished_ends_within_ping_plus_peer_timeout(
    server: LiveServer, client: openai.OpenAI
) -> None:
    """Every packet of a live stream's connection is dropped (the client's host is gone: no
    FIN, no RST). The kernel gives up on the unacknowledged data after the peer timeout and
    the stream ends, instead of holding its task and socket for the kernel's ~15 minutes;
    the run itself goes on."""
    reason = can_drop_packets()
    need(reason is None, reason or "")
    assert server.app is not None
    metrics = server.app.state.metrics
    assistant = client.beta.assistants.create(model="local")
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(thread.id, role="user", content=" ".join(["w"] * 1500))
    body = json.dumps({"assistant_id": assistant.id, "stream": True}).encode()
    with connect(server) as sock:
        sock.sendall(
            b"POST /v1/threads/%s/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (thread.id.encode(), len(body), body)
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        assert metrics.active_streams._value.get() == 1
        with vanished(sock.getsockname()[1]):
            started = time.monotonic()
            eventually(
                lambda: metrics.active_streams._value.get() == 0,
                timeout=15,
                interval=0.1,
                what="the half-open stream to end",
            )
            gone_after = time.monotonic() - started
    assert gone_after < 0.5 + 2.0 + 3.0, gone_after
    assert metrics.stream_ends.labels("client_gone")._value.get() == 1
    run = client.beta.threads.runs.list(thread_id=thread.id).data[0]
    assert run.status == "in_progress"  # a vanished reader does not stop the run
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)


def header_lines(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return [
        (name.strip().lower(), value.strip())
        for name, _, value in (h.partition(":") for h in lines)
    ]


@pytest.mark.parametrize(
    ("version", "extra"),
    [(b"HTTP/1.0", b""), (b"HTTP/1.1", b"Connection: close\r\n")],
    ids=["http-1.0", "http-1.1-close"],
)
def test_an_event_stream_is_framed_as_the_clients_http_version_allows(
    server: LiveServer, client: openai.OpenAI, version: bytes, extra: bytes
) -> None:
    """RFC 9112: an HTTP/1.0 client gets no Transfer-Encoding (the body ends when the server
    closes), and every response has at most one Connection header, never one contradicting
    the close the server does."""
    assistant = client.beta.assistants.create(model="local")
    run = client.beta.threads.create_and_run(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "a b c"}]}
    )
    client.beta.threads.runs.poll(run.id, thread_id=run.thread_id, poll_interval_ms=10)
    path = f"/v1/threads/{run.thread_id}/runs/{run.id}/events".encode()
    with connect(server) as sock:
        sock.sendall(b"GET %s %s\r\nHost: x\r\n%s\r\n" % (path, version, extra))
        answer, _ = read_all(sock)  # the server closes: that is where the body ends
    head, _, body = answer.partition(b"\r\n\r\n")
    headers = header_lines(head)
    names = [name for name, _ in headers]
    assert head.startswith(b"HTTP/1.1 200"), head
    assert names.count("connection") == 1 and ("connection", "close") in headers, headers
    if version == b"HTTP/1.0":
        assert "transfer-encoding" not in names, headers
        assert body.startswith(b"retry: "), body[:100]  # the stream itself, not chunk sizes
        assert body.endswith(b"event: done\ndata: [DONE]\n\n"), body[-100:]
        assert body.count(b"event: thread.message.delta") == 5  # "You", "said:", three words


def test_a_json_answer_to_http_1_0_keeps_its_length(server: LiveServer) -> None:
    """A JSON response to an HTTP/1.0 client is sent with its Content-Length, then closed."""
    with connect(server) as sock:
        sock.sendall(b"GET /v1/assistants HTTP/1.0\r\n\r\n")
        answer, _ = read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    headers = dict(header_lines(head))
    assert int(headers["content-length"]) == len(body)
    assert "transfer-encoding" not in headers
    assert json.loads(body)["object"] == "list"


@pytest.mark.settings(
    stream_send_timeout_seconds=4.0, peer_timeout_seconds=1.0, max_message_chars=10_000_000
)
def test_a_client_that_stops_reading_is_counted_stalled_whichever_timer_ends_it(
    server: LiveServer, client: openai.OpenAI
) -> None:
    """A client that stops reading a stream (its window stays at zero) is ended either by the
    gateway's send timeout or by the kernel's peer timeout, whichever comes first; here the
    kernel's (1 s) always does. Either way it is counted `stalled`, not `client_gone`: the
    reason follows what the client did, not which timer fired."""
    assert server.app is not None
    metrics = server.app.state.metrics
    assistant = client.beta.assistants.create(model="local")
    thread = client.beta.threads.create()
    words = " ".join("w" * 2000 for _ in range(3000))  # 6 MB of deltas: more than any buffer
    client.beta.threads.messages.create(thread.id, role="user", content=words)
    body = json.dumps({"assistant_id": assistant.id, "stream": True}).encode()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(
            b"POST /v1/threads/%s/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (thread.id.encode(), len(body), body)
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        started = time.monotonic()  # and from now on, nothing more is read
        eventually(
            lambda: metrics.active_streams._value.get() == 0,
            timeout=20,
            interval=0.1,
            what="the stalled stream to end",
        )
        ended_after = time.monotonic() - started
    assert ended_after < 4.0, ended_after  # the kernel's timer, before the gateway's
    assert metrics.stream_ends.labels("stalled")._value.get() == 1
    assert metrics.stream_ends.labels("client_gone")._value.get() == 0


def _upload_request(size: int) -> bytes:
    """A whole POST /v1/files of a `size`-byte file, as it goes on the wire."""
    boundary = b"uploadboundary"
    body = (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n'
        b"assistants\r\n--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; '
        b'filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
        + b"x" * size
        + b"\r\n--"
        + boundary
        + b"--\r\n"
    )
    head = (
        b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary="
        + boundary
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    return head + body


def _send_paced(sock: socket.socket, data: bytes, bytes_per_second: float) -> bool:
    """Send `data` at about this rate; False if the server closed the connection first."""
    piece = 64 * 1024
    started = time.monotonic()
    for offset in range(0, len(data), piece):
        try:
            sock.sendall(data[offset : offset + piece])
        except OSError:
            return False
        ahead = (offset + piece) / bytes_per_second - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    return True


@pytest.mark.settings(request_timeout_seconds=1.0, min_upload_bytes_per_second=500_000)
def test_a_large_upload_at_a_fair_pace_outlasts_the_request_deadline(server: LiveServer) -> None:
    """2.4 MB at 1.5 MB/s takes 1.6 s, past the 1 s deadline, well within the 1 s + 4.8 s a
    body of that length is given: stored. The same body at 0.15 MB/s is cut off."""
    request = _upload_request(2_400_000)
    with connect(server) as sock:
        assert _send_paced(sock, request, 1_500_000)
        sock.shutdown(socket.SHUT_WR)
        answer, _ = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert b'"bytes":2400000' in answer
    assert dropped(server) == 0

    started = time.monotonic()
    with connect(server) as sock:
        sent = _send_paced(sock, request, 150_000)
        answer, _ = read_all(sock) if sent else (b"", 0.0)
    assert not answer.startswith(b"HTTP/1.1 200")
    assert time.monotonic() - started < 10, "the slow upload was not cut off"
    assert dropped(server) == 1
