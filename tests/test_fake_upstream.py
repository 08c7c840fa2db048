"""The fake upstream itself, checked from real HTTP clients: aiohttp and the stdlib."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from tests.fake_upstream import (
    Done,
    FakeUpstream,
    Finish,
    Raw,
    Reset,
    Script,
    Sleep,
    Stall,
    Text,
    ToolCall,
    Usage,
)
from tests.waiting import eventually_async

CHAT = {"model": "m-1", "messages": [{"role": "user", "content": "hi"}], "stream": True}


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def sse_data(raw: bytes) -> list[str]:
    """Each event's data, per the SSE spec: any line ending, comments dropped, data lines joined."""
    text = raw.decode().replace("\r\n", "\n").replace("\r", "\n")
    events = []
    for block in text.split("\n\n"):
        data = [
            line[5:].removeprefix(" ") for line in block.split("\n") if line.startswith("data:")
        ]
        if data:
            events.append("\n".join(data))
    return events


def chunks(raw: bytes) -> list[dict[str, Any]]:
    """The JSON chunks of a stream that ends in exactly one [DONE]."""
    events = sse_data(raw)
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1, events
    return [json.loads(event) for event in events[:-1]]


def content(got: list[dict[str, Any]]) -> str:
    """The text the chunks carry, joined."""
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in got if c["choices"])


async def test_default_script_streams_chunks_then_done(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """With nothing queued, a stream says "Hello from upstream" in proper chunks, then [DONE]."""
    async with session.post(f"{upstream.base_url}/chat/completions", json=CHAT) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        got = chunks(await resp.read())
    assert {c["object"] for c in got} == {"chat.completion.chunk"}
    assert {c["model"] for c in got} == {"m-1"}
    assert len({c["id"] for c in got}) == 1
    assert got[0]["choices"][0]["delta"]["role"] == "assistant"
    assert content(got) == "Hello from upstream"
    assert got[-2]["choices"][0]["finish_reason"] == "stop"
    assert got[-1]["choices"] == []
    assert got[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    assert upstream.wait_completed(1, 1.0)


async def test_requests_are_recorded_in_order(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """Every request is kept with its path, lower-cased headers, parsed body and arrival time."""
    headers = {"Authorization": "Bearer sk-up", "X-Trace": "t1"}
    url = f"{upstream.base_url}/chat/completions"
    async with session.post(url, json=CHAT, headers=headers) as resp:
        await resp.read()
    async with session.post(url, data=b"not json") as resp:
        await resp.read()
    first, second = upstream.requests
    assert (first.method, first.path, first.body) == ("POST", "/v1/chat/completions", CHAT)
    assert first.headers["authorization"] == "Bearer sk-up"
    assert first.headers["x-trace"] == "t1"
    assert second.body is None
    assert first.at <= second.at <= time.monotonic()


async def test_error_status_is_an_envelope_then_queue_moves_on(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """A 429 script answers the OpenAI error envelope with Retry-After; the next takes its turn."""
    upstream.enqueue(
        Script([Text("slow down")], status=429, headers={"Retry-After": "1"}),
        Script([Text("second")]),
    )
    url = f"{upstream.base_url}/chat/completions"
    async with session.post(url, json=CHAT) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "1"
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert body == {
        "error": {
            "message": "slow down",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    for expected in ("second", "Hello from upstream"):
        async with session.post(url, json=CHAT) as resp:
            got = chunks(await resp.read())
        assert content(got) == expected


@pytest.mark.parametrize(
    "framing",
    [
        {"chunk_size": 1},
        {"line_ending": "\r\n"},
        {"comments": True},
        {"multiline_data": True},
        {"chunk_size": 3, "line_ending": "\r\n", "comments": True, "multiline_data": True},
    ],
)
async def test_framing_options_still_parse(
    upstream: FakeUpstream, session: aiohttp.ClientSession, framing: dict[str, Any]
) -> None:
    """Odd but valid framing (tiny writes, CRLF, comments, split data lines) parses the same."""
    upstream.enqueue(Script([Text("a"), Text("b"), Finish("stop")], **framing))
    async with session.post(f"{upstream.base_url}/chat/completions", json=CHAT) as resp:
        raw = await resp.read()
    got = chunks(raw)
    assert [c["choices"][0]["delta"].get("content") for c in got] == ["a", "b", None]
    assert (b"\r\n" in raw) == (framing.get("line_ending") == "\r\n")
    assert (b": keep-alive" in raw) == framing.get("comments", False)
    assert raw.count(b"data: ") == 4 + 3 * framing.get("multiline_data", False)


def test_one_byte_writes_are_separate_http_chunks(upstream: FakeUpstream) -> None:
    """chunk_size=1 writes, and so frames, every byte of the body on its own."""
    upstream.enqueue(Script([Text("abc")], chunk_size=1))
    body = json.dumps(CHAT).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    raw = b""
    with socket.create_connection(("127.0.0.1", upstream.port), timeout=2) as sock:
        sock.sendall(head.encode() + body)
        while data := sock.recv(65536):
            raw += data
    headers, _, wire = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in headers.lower()
    sizes, payload = [], b""
    while (size := int(wire.split(b"\r\n", 1)[0], 16)) > 0:
        wire = wire.split(b"\r\n", 1)[1]
        payload, wire = payload + wire[:size], wire[size + 2 :]
        sizes.append(size)
    assert set(sizes) == {1}
    assert content(chunks(payload)) == "abc"


async def test_client_closing_mid_stall_is_a_disconnect(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """A client that gives up on a stalled stream is counted by wait_disconnects."""
    upstream.enqueue(Script([Text("partial"), Stall()]))
    async with session.post(f"{upstream.base_url}/chat/completions", json=CHAT) as resp:
        first = await resp.content.readuntil(b"\n\n")
        assert first.startswith(b"data: ")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(resp.content.readany(), 0.05)
        resp.close()
    assert await asyncio.to_thread(upstream.wait_disconnects, 1, 2.0)
    assert upstream.completed == 0


async def test_reset_aborts_mid_stream(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """A Reset step cuts the connection after the chunks before it: the body never completes."""
    upstream.enqueue(Script([Text("partial"), Reset(), Text("never")]))
    async with session.post(f"{upstream.base_url}/chat/completions", json=CHAT) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert (upstream.disconnects, upstream.completed) == (0, 0)


def test_reset_before_headers_is_seen_by_http_client(upstream: FakeUpstream) -> None:
    """A script that opens with Reset never answers; a stdlib client sees the connection drop."""
    upstream.enqueue(Script([Reset()]))
    conn = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=2)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(CHAT))
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            conn.getresponse()
    finally:
        conn.close()


async def test_non_stream_request_gets_one_chat_completion(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """Without "stream", the script's steps are assembled into one chat.completion."""
    upstream.enqueue(
        Script(
            [
                Sleep(0.01),
                Text("Let me "),
                Text("look."),
                ToolCall(0, "call_1", "lookup", '{"q":'),
                ToolCall(0, None, None, ' "x"}'),
                ToolCall(1, "call_2", "other", "{}"),
                Raw(b"ignored"),
                Finish("tool_calls"),
                Usage(7, 4),
                Done(),
            ]
        )
    )
    body = CHAT | {"stream": False}
    async with session.post(f"{upstream.base_url}/chat/completions", json=body) as resp:
        assert resp.status == 200
        completion = await resp.json()
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "m-1"
    (choice,) = completion["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me look."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"q": "x"}'},
        },
        {"id": "call_2", "type": "function", "function": {"name": "other", "arguments": "{}"}},
    ]
    assert completion["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}


async def test_streamed_tool_calls_carry_id_and_type_only_when_given(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """A tool-call chunk names id, type and function name only in the fragments that have them."""
    upstream.enqueue(Script([ToolCall(0, "call_1", "lookup", "{"), ToolCall(0, None, None, "}")]))
    async with session.post(f"{upstream.base_url}/chat/completions", json=CHAT) as resp:
        got = chunks(await resp.read())
    first, second = (c["choices"][0]["delta"]["tool_calls"] for c in got)
    assert first == [
        {
            "index": 0,
            "id": "call_1",
            "type": "function",
            "function": {"name": "lookup", "arguments": "{"},
        }
    ]
    assert second == [{"index": 0, "function": {"arguments": "}"}}]


async def test_open_connections_return_to_zero(upstream: FakeUpstream) -> None:
    """Pooled connections stay open while the client session lives and close with it."""
    assert upstream.open_connections == 0
    url = f"{upstream.base_url}/chat/completions"
    upstream.enqueue(Script([Sleep(0.1), Text("a")]), Script([Sleep(0.1), Text("b")]))
    async with aiohttp.ClientSession() as session:

        async def fetch() -> bytes:
            async with session.post(url, json=CHAT) as resp:
                return await resp.read()

        await asyncio.gather(fetch(), fetch())
        assert upstream.open_connections == 2
    await asyncio.to_thread(upstream.wait_open_connections, 0, 2.0)


async def test_models_lists_the_configured_ids(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """GET /v1/models lists `models`, which a test may replace."""
    upstream.models = ["gpt-a", "gpt-b"]
    async with session.get(f"{upstream.base_url}/models") as resp:
        listing = await resp.json()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["gpt-a", "gpt-b"]
    async with session.get(f"{upstream.base_url}/nowhere") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["type"] == "invalid_request_error"


async def test_stop_closes_a_stalled_connection_quickly(session: aiohttp.ClientSession) -> None:
    """Stopping the fake ends a stalled response at once, and that is not a client disconnect."""
    fake = FakeUpstream().start()
    fake.enqueue(Script([Stall()]))
    request = asyncio.create_task(session.post(f"{fake.base_url}/chat/completions", json=CHAT))

    async def received() -> bool:
        return len(fake.requests) == 1

    await eventually_async(received, timeout=2.0, what="the fake to receive the request")
    started = time.monotonic()
    await asyncio.to_thread(fake.stop)
    assert time.monotonic() - started < 1.0
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await request
    assert fake.disconnects == 0
