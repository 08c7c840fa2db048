"""Several gateway processes sharing PostgreSQL and Redis: a run made and executed on one is
streamed from another, from its start or from any event, with every event once and in order;
a restart of Redis mid-stream loses no event for a client that resumes."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.aio_sse import Seen, read_frames
from tests.conftest import need
from tests.process import free_port, ready, start
from tests.redis_server import REDIS_URL, PrivateRedis, forget_prefix, redis_missing
from tests.stores import Database, database, postgres_missing

WORDS = 120  # at 20 ms a token, a run streams for about 2.5 s


class Gateways:
    """Gateway processes on loopback ports, all on one database and one bus."""

    def __init__(self, db: Database, bus: str) -> None:
        self.db, self.bus = db, bus
        self.processes: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []

    async def start(self, http: aiohttp.ClientSession, count: int) -> list[str]:
        """Start `count` more; their API base URLs."""
        added = []
        for _ in range(count):
            port = free_port()
            # Events reach the database half a second late: a stream on another process
            # must take the newest ones from the bus (`since`), not from the stored log.
            env = {"GATEWAY_BUS": self.bus, "GATEWAY_EVENT_FLUSH_MS": "500"}
            self.processes.append(start(self.db.url, port, env=env))
            self.ports.append(port)
            await ready(http, port)
            added.append(f"http://127.0.0.1:{port}/v1")
        return added

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@pytest.fixture
async def shared(tmp_path: Path) -> AsyncIterator[tuple[Database, str]]:
    """A PostgreSQL schema and a Redis key prefix of the test's own."""
    for missing in (postgres_missing(), redis_missing()):
        need(missing is None, missing or "")
    prefix = f"test:{uuid.uuid4().hex}:"
    with database("postgresql", tmp_path) as db:
        yield db, f"{REDIS_URL}?prefix={prefix}"
    await forget_prefix(prefix)


async def new_thread(http: aiohttp.ClientSession, api: str) -> tuple[str, str]:
    async with http.post(f"{api}/assistants", json={"model": "local"}) as response:
        assistant = (await response.json())["id"]
    text = " ".join(f"w{i}" for i in range(WORDS))
    body = {"messages": [{"role": "user", "content": text}]}
    async with http.post(f"{api}/threads", json=body) as response:
        thread = (await response.json())["id"]
    return assistant, thread


async def stream_run(http: aiohttp.ClientSession, api: str, assistant: str, thread: str) -> Seen:
    seen = Seen()
    body = {"assistant_id": assistant, "stream": True}
    async with http.post(f"{api}/threads/{thread}/runs", json=body) as response:
        assert response.status == 200
        await read_frames(response, seen)
    return seen


async def follow(
    http: aiohttp.ClientSession, api: str, thread: str, run: str, after: int | None = None
) -> Seen:
    seen = Seen()
    headers = {"Last-Event-ID": str(after)} if after else {}
    async with http.get(f"{api}/threads/{thread}/runs/{run}/events", headers=headers) as response:
        assert response.status == 200, await response.text()
        await read_frames(response, seen)
    return seen


async def until(check: Callable[[], bool], seconds: float = 20) -> None:
    """Poll `check` until it holds (bounded)."""
    for _ in range(int(seconds / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out waiting")


async def test_a_run_on_one_gateway_streams_whole_from_another(
    shared: tuple[Database, str],
) -> None:
    db, bus = shared
    gateways = Gateways(db, bus)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            a, b = await gateways.start(http, 2)
            assistant, thread = await new_thread(http, a)
            origin = Seen()

            async def on_a() -> None:
                body = {"assistant_id": assistant, "stream": True}
                async with http.post(f"{a}/threads/{thread}/runs", json=body) as response:
                    await read_frames(response, origin)

            streaming = asyncio.create_task(on_a())
            # The run is made by A; wait for its first event, then follow it from B twice:
            # from the start, and from the event A's client has just seen.
            await until(lambda: len(origin.frames) >= 5)
            run = str(next(d for _, n, d in origin.frames if n == "thread.run.created")["id"])
            midway = origin.frames[-1][0]
            from_start, from_midway = await asyncio.gather(
                follow(http, b, thread, run), follow(http, b, thread, run, after=midway)
            )
            await streaming
    finally:
        gateways.stop()

    assert origin.frames[-1][1] == "done" and origin.deltas() >= WORDS
    assert from_start.frames == origin.frames
    assert midway is not None
    assert from_midway.frames == [f for f in origin.frames if f[0] is None or f[0] > midway]


async def test_a_redis_restart_mid_stream_loses_nothing_for_a_resuming_client(
    tmp_path: Path,
) -> None:
    need(postgres_missing() is None, postgres_missing() or "")
    need(PrivateRedis.missing() is None, PrivateRedis.missing() or "")
    redis_server = PrivateRedis(tmp_path).start()
    with database("postgresql", tmp_path) as db:
        gateways = Gateways(db, redis_server.url)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                a, b = await gateways.start(http, 2)
                assistant, thread = await new_thread(http, a)
                origin = Seen()

                async def on_a() -> None:
                    body = {"assistant_id": assistant, "stream": True}
                    async with http.post(f"{a}/threads/{thread}/runs", json=body) as response:
                        await read_frames(response, origin)

                streaming = asyncio.create_task(on_a())
                await until(lambda: len(origin.frames) >= 5)
                run = str(next(d for _, n, d in origin.frames if n == "thread.run.created")["id"])
                followed = Seen()

                async def on_b() -> None:
                    url = f"{b}/threads/{thread}/runs/{run}/events"
                    async with http.get(url) as response:
                        await read_frames(response, followed)

                following = asyncio.create_task(on_b())
                await until(lambda: followed.deltas() >= 20)
                redis_server.stop()  # every key is gone
                await asyncio.sleep(0.5)
                redis_server.start()
                await streaming
                await asyncio.wait_for(following, 30)
                # A client whose stream ended without done resumes from its last id, on B.
                resumed = Seen()
                if followed.frames[-1][1] != "done":
                    resumed = await follow(http, b, thread, run, after=followed.last_id())
        finally:
            gateways.stop()
            redis_server.stop()

    assert origin.frames[-1][1] == "done"
    got = [f for f in followed.frames if f[1] != "error"] + resumed.frames
    assert got == origin.frames
