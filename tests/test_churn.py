"""Connect/disconnect churn against a gateway process: rounds of clients that go away in every
way a client can (mid-stream with a reset or a close, before sending, halfway through their
headers, silent until the deadline drops them, after a normal request) leave the process's
tasks, open files and memory where they were."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from tests.process import free_port, new_assistant, ready, start
from tests.waiting import eventually_async

ROUND = 240  # connections per round, 40 of each kind
ROUNDS = 3  # after one warm-up round
AT_ONCE = 40


async def gauges(http: aiohttp.ClientSession, port: int) -> dict[str, float]:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    names = (
        "gateway_asyncio_tasks",
        "process_open_fds",
        "process_resident_memory_bytes",
        "gateway_active_streams",
        "gateway_active_runs",
    )
    found = {}
    for name in names:
        match = re.search(rf"^{name} (\S+)$", text, flags=re.M)
        assert match is not None, name
        found[name] = float(match.group(1))
    return found


async def at_rest(http: aiohttp.ClientSession, port: int) -> dict[str, float]:
    """The gauges once no stream or run is left (bounded wait)."""
    last: dict[str, float] = {}

    async def idle() -> bool:
        nonlocal last
        last = await gauges(http, port)
        return last["gateway_active_streams"] == 0 and last["gateway_active_runs"] == 0

    await eventually_async(
        idle, interval=0.05, what=lambda: f"no stream or run active (now {last})"
    )
    # A fixed settling time: no gauge says that the callbacks of closed connections have run,
    # and the task and fd counts taken next must not catch them halfway.
    await asyncio.sleep(0.3)
    return await gauges(http, port)


def request(method: str, path: str, body: dict[str, object] | None = None) -> bytes:
    raw = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    return head.encode() + b"Content-Length: %d\r\n\r\n" % len(raw) + raw


async def churn_round(port: int, assistant: str, finished: tuple[str, str]) -> None:
    loop = asyncio.get_running_loop()
    stream_run = request(
        "POST",
        "/v1/threads/runs",
        {
            "assistant_id": assistant,
            "stream": True,
            "thread": {"messages": [{"role": "user", "content": " ".join(["w"] * 100)}]},
        },
    )
    replay = request("GET", f"/v1/threads/{finished[0]}/runs/{finished[1]}/events")

    async def opened() -> socket.socket:
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        return sock

    async def reset_mid_stream() -> None:
        sock = await opened()
        await loop.sock_sendall(sock, stream_run)
        await loop.sock_recv(sock, 4096)
        await loop.sock_recv(sock, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST

    async def close_mid_stream() -> None:
        sock = await opened()
        await loop.sock_sendall(sock, stream_run)
        await loop.sock_recv(sock, 4096)
        sock.close()  # FIN

    async def replay_to_the_end() -> None:
        sock = await opened()
        await loop.sock_sendall(sock, replay)
        received = b""
        while not received.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"):  # chunked: its end
            chunk = await loop.sock_recv(sock, 65536)
            assert chunk, received[-200:]
            received += chunk
        sock.close()

    async def close_before_sending() -> None:
        (await opened()).close()

    async def close_halfway_through_headers() -> None:
        sock = await opened()
        await loop.sock_sendall(sock, b"POST /v1/threads HTTP/1.1\r\nHost: x\r\nContent-")
        sock.close()

    async def silent_until_dropped() -> None:
        sock = await opened()
        await loop.sock_sendall(sock, b"GET /v1/assistants HTTP/1.1\r\n")
        while await loop.sock_recv(sock, 4096):
            pass  # the 408, then the server's close
        sock.close()

    kinds: list[Callable[[], Awaitable[None]]] = [
        reset_mid_stream,
        close_mid_stream,
        replay_to_the_end,
        close_before_sending,
        close_halfway_through_headers,
        silent_until_dropped,
    ]
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(index: int) -> None:
        async with gate:
            await asyncio.wait_for(kinds[index % len(kinds)](), timeout=20)

    await asyncio.gather(*(one(i) for i in range(ROUND)))


async def test_churn_leaves_tasks_files_and_memory_at_baseline(tmp_path: Path) -> None:
    port = free_port()
    env = {"GATEWAY_REQUEST_TIMEOUT_SECONDS": "1"}
    gateway = start(tmp_path / "churn.db", port, "--local-model-delay-ms", "2", env=env)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            await ready(http, port)
            api = f"http://127.0.0.1:{port}/v1"
            assistant = await new_assistant(http, api)
            message = {"role": "user", "content": "done soon"}
            body = {"assistant_id": assistant, "thread": {"messages": [message]}}
            async with http.post(f"{api}/threads/runs", json=body) as response:
                run = await response.json()
            finished = (run["thread_id"], run["id"])
            await at_rest(http, port)

            await churn_round(port, assistant, finished)  # warm-up: first-use allocations
            baseline = await at_rest(http, port)
            for _ in range(ROUNDS):
                await churn_round(port, assistant, finished)
            after = await at_rest(http, port)
    finally:
        gateway.terminate()
        gateway.wait(15)

    grown = after["process_resident_memory_bytes"] - baseline["process_resident_memory_bytes"]
    print(f"baseline {baseline}\nafter {after}\nresident memory grew {grown / 1024:.0f} KiB")
    assert after["gateway_asyncio_tasks"] == baseline["gateway_asyncio_tasks"]
    assert after["process_open_fds"] == baseline["process_open_fds"]
    # 720 connections and 240 runs after the baseline: a leak of one stream's state each
    # (about 20 KiB) would be 14 MiB.
    assert grown < 4 * 1024 * 1024, grown
