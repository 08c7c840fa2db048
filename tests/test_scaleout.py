"""Several gateway processes sharing PostgreSQL and Redis: a run made and executed on one is
streamed from another, from its start or from any event, with every event once and in order;
a restart of Redis mid-stream loses no event for a client that resumes."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from tests.aio_sse import Seen, read_frames
from tests.conftest import need
from tests.process import free_port, new_assistant, ready, start
from tests.redis_server import REDIS_URL, PrivateRedis, forget_prefix, redis_missing
from tests.slow_link import SlowLink
from tests.stores import Database, database, postgres_missing
from tests.waiting import eventually_async

WORDS = 120  # at 20 ms a token, a run streams for about 2.5 s


class Gateways:
    """Gateway processes on loopback ports, all on one database and one bus."""

    def __init__(self, db: Database, bus: str, *, lease_seconds: float = 30) -> None:
        self.db, self.bus, self.lease_seconds = db, bus, lease_seconds
        self.processes: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []

    async def start(
        self, http: aiohttp.ClientSession, count: int, *, bus: str | None = None
    ) -> list[str]:
        """Start `count` more (on `bus` instead of the shared URL, if given: the same Redis
        through a slow link, say); their API base URLs."""
        added = []
        for _ in range(count):
            port = free_port()
            # Events reach the database half a second late: a stream on another process
            # must take the newest ones from the bus (`since`), not from the stored log.
            env = {
                "GATEWAY_BUS": bus or self.bus,
                "GATEWAY_EVENT_FLUSH_MS": "500",
                "GATEWAY_LEASE_SECONDS": str(self.lease_seconds),
            }
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


async def new_thread(http: aiohttp.ClientSession, api: str, words: int = WORDS) -> tuple[str, str]:
    assistant = await new_assistant(http, api)
    text = " ".join(f"w{i}" for i in range(words))
    body = {"messages": [{"role": "user", "content": text}]}
    async with http.post(f"{api}/threads", json=body) as response:
        thread = (await response.json())["id"]
    return assistant, thread


def start_streaming(
    http: aiohttp.ClientSession, api: str, assistant: str, thread: str
) -> tuple[asyncio.Task[None], Seen]:
    """A streamed run made on `api`, read in a task: the task, and what it has seen so far."""
    seen = Seen()

    async def read() -> None:
        body = {"assistant_id": assistant, "stream": True}
        async with http.post(f"{api}/threads/{thread}/runs", json=body) as response:
            assert response.status == 200, await response.text()
            await read_frames(response, seen)

    return asyncio.create_task(read()), seen


def run_of(seen: Seen) -> str:
    """The id of the run a stream is about, from its thread.run.created event."""
    return str(next(d for _, n, d in seen.frames if n == "thread.run.created")["id"])


async def follow(
    http: aiohttp.ClientSession,
    api: str,
    thread: str,
    run: str,
    after: int | None = None,
    into: Seen | None = None,
) -> Seen:
    """The run's event stream read from `api`, after event `after`, into `into` if given."""
    seen = into if into is not None else Seen()
    headers = {"Last-Event-ID": str(after)} if after else {}
    async with http.get(f"{api}/threads/{thread}/runs/{run}/events", headers=headers) as response:
        assert response.status == 200, await response.text()
        await read_frames(response, seen)
    return seen


async def until(check: Callable[[], bool], seconds: float = 20) -> None:
    """Let the loop run until `check()` holds (bounded): a client's frames arrive meanwhile."""

    async def holds() -> bool:
        return check()

    await eventually_async(holds, timeout=seconds, what="the clients to have seen enough frames")


async def test_a_run_on_one_gateway_streams_whole_from_another(
    shared: tuple[Database, str],
) -> None:
    db, bus = shared
    gateways = Gateways(db, bus)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            a, b = await gateways.start(http, 2)
            assistant, thread = await new_thread(http, a)
            streaming, origin = start_streaming(http, a, assistant, thread)
            # The run is made by A; wait for its first event, then follow it from B twice:
            # from the start, and from the event A's client has just seen.
            await until(lambda: len(origin.frames) >= 5)
            run = run_of(origin)
            midway = origin.frames[-1][0]
            from_start, from_midway = await asyncio.gather(
                follow(http, b, thread, run), follow(http, b, thread, run, after=midway)
            )
            await streaming
    finally:
        gateways.stop()

    # The local model answers "You said: " and the words: two deltas more than the words.
    assert origin.frames[-1][1] == "done" and origin.deltas() == WORDS + 2
    assert from_start.frames == origin.frames
    assert midway is not None
    assert from_midway.frames == [f for f in origin.frames if f[0] is None or f[0] > midway]


async def test_a_run_that_reads_ended_elsewhere_streams_to_its_end_at_once(
    shared: tuple[Database, str],
) -> None:
    """Polled on B until it reads completed (or requires_action), a run made on A streams from
    B at once with its whole end: the status is never visible before the events that lead to
    it can be read from any process. Events reach the database half a second late here, so a
    status saved ahead of them would be seen long before they are."""
    db, bus = shared
    gateways = Gateways(db, bus)
    streams: list[tuple[str, Seen]] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            a, b = await gateways.start(http, 2)
            tool = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
            made = await post(http, f"{a}/assistants", {"model": "local", "tools": [tool]})
            words = " ".join(f"w{i}" for i in range(10))
            for content, ending in [(words, "completed")] * 4 + [
                ("Weather in Paris?", "requires_action")
            ]:
                body = {
                    "assistant_id": made["id"],
                    "thread": {"messages": [{"role": "user", "content": content}]},
                }
                run = await post(http, f"{a}/threads/runs", body)
                await poll_until(http, b, run["thread_id"], run["id"], {ending}, pause=0.005)
                streams.append((ending, await follow(http, b, run["thread_id"], run["id"])))
    finally:
        gateways.stop()

    for ending, seen in streams:
        names = [n for _, n, _ in seen.frames]
        assert names[0] == "thread.created", names
        if ending == "completed":
            assert seen.deltas() == 12  # "You said:" and ten words
            assert names[-4:] == [
                "thread.message.completed",
                "thread.run.step.completed",
                "thread.run.completed",
                "done",
            ], names
        else:
            assert names[-2:] == ["thread.run.requires_action", "done"], names


async def test_a_new_runs_stream_elsewhere_waits_for_events_not_yet_on_the_bus(
    shared: tuple[Database, str],
) -> None:
    """A run made on A, whose link to Redis is slow (a third of a second), streamed from B at
    once: nothing of the run is stored or on the bus yet, and B streams it whole from its
    first event instead of answering replay_unavailable ("not yet there" is not "no longer
    kept")."""
    db, bus = shared
    gateways = Gateways(db, bus)
    parts = urlsplit(bus)
    streams: list[Seen] = []
    try:
        async with (
            SlowLink((parts.hostname or "", parts.port or 6379), 0.3) as link,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http,
        ):
            slow_bus = urlunsplit(parts._replace(netloc=f"127.0.0.1:{link.port}"))
            [a] = await gateways.start(http, 1, bus=slow_bus)
            [b] = await gateways.start(http, 1)
            assistant = await new_assistant(http, a)
            for _ in range(4):
                body = {
                    "assistant_id": assistant,
                    "thread": {"messages": [{"role": "user", "content": "one two three"}]},
                }
                run = await post(http, f"{a}/threads/runs", body)
                streams.append(await follow(http, b, run["thread_id"], run["id"]))
    finally:
        gateways.stop()

    for seen in streams:
        names = [n for _, n, _ in seen.frames]
        assert "error" not in names, seen.frames
        assert names[:3] == ["thread.created", "thread.run.created", "thread.run.queued"], names
        assert names[-2:] == ["thread.run.completed", "done"], names
        assert [i for i, _, _ in seen.frames[:-1]] == list(range(1, len(names))), seen.frames


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
                streaming, origin = start_streaming(http, a, assistant, thread)
                await until(lambda: len(origin.frames) >= 5)
                run = run_of(origin)
                followed = Seen()
                following = asyncio.create_task(follow(http, b, thread, run, into=followed))
                await until(lambda: followed.deltas() >= 20)
                redis_server.stop()  # every key is gone
                await asyncio.sleep(0.5)  # an outage of a fixed length is the point
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


async def post(http: aiohttp.ClientSession, url: str, body: object) -> dict[str, Any]:
    async with http.post(url, json=body) as response:
        answer: dict[str, Any] = await response.json()
        assert response.status == 200, answer
        return answer


async def test_cancel_on_another_gateway_stops_the_run_where_it_runs(
    shared: tuple[Database, str],
) -> None:
    """A run made and executing on A, followed from B, is cancelled through C: A stops it (it
    sees the request at its next lease renewal), C answers with the cancelled run, and both
    streams end cancelled."""
    db, bus = shared
    gateways = Gateways(db, bus)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            a, b, c = await gateways.start(http, 3)
            assistant, thread = await new_thread(http, a, words=400)  # about 8 s
            streaming, origin = start_streaming(http, a, assistant, thread)
            await until(lambda: origin.deltas() >= 5)
            run = run_of(origin)
            following = asyncio.create_task(follow(http, b, thread, run))
            cancelled = await post(http, f"{c}/threads/{thread}/runs/{run}/cancel", {})
            await asyncio.wait_for(streaming, 20)
            followed = await asyncio.wait_for(following, 20)
    finally:
        gateways.stop()

    assert cancelled["status"] == "cancelled"
    for seen in (origin, followed):
        assert [n for _, n, _ in seen.frames][-2:] == ["thread.run.cancelled", "done"]
    assert origin.deltas() < 400  # stopped, not finished


async def test_tool_outputs_on_another_gateway_continue_the_run_there(
    shared: tuple[Database, str],
) -> None:
    """A run waiting for tool outputs on A gets them through B: B takes the run over and
    finishes it, exactly once; A lets go of it."""
    db, bus = shared
    gateways = Gateways(db, bus)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            a, b = await gateways.start(http, 2)
            tool = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
            assistant = (await post(http, f"{a}/assistants", {"model": "local", "tools": [tool]}))[
                "id"
            ]
            message = {"role": "user", "content": 'Weather in Paris? {"city": "Paris"}'}
            made = await post(
                http,
                f"{a}/threads/runs",
                {"assistant_id": assistant, "thread": {"messages": [message]}},
            )
            thread, run = made["thread_id"], made["id"]
            waiting = await poll_until(http, a, thread, run, {"requires_action"})
            call = waiting["required_action"]["submit_tool_outputs"]["tool_calls"][0]
            outputs = {"tool_outputs": [{"tool_call_id": call["id"], "output": "21 C"}]}
            body = {**outputs, "stream": True}
            continued = Seen()
            url = f"{b}/threads/{thread}/runs/{run}/submit_tool_outputs"
            async with http.post(url, json=body) as response:
                assert response.status == 200, await response.text()
                await read_frames(response, continued)
            done = await poll_until(http, a, thread, run, {"completed"})
            again = await http.post(url, json=outputs)
            again_status = again.status
            async with http.get(f"{a}/threads/{thread}/messages") as response:
                messages = (await response.json())["data"]
    finally:
        gateways.stop()

    assert [n for _, n, _ in continued.frames][-2:] == ["thread.run.completed", "done"]
    assert done["status"] == "completed"
    assert again_status == 400  # the outputs were taken once
    replies = [m for m in messages if m["role"] == "assistant"]
    assert len(replies) == 1
    assert replies[0]["content"][0]["text"]["value"] == "Tool results: get_weather returned 21 C."


async def test_a_dead_gateways_run_ends_on_another_within_the_lease(
    shared: tuple[Database, str],
) -> None:
    """kill -9 of the gateway executing a run: another takes the run over once its lease
    passes (3 s here), ends it failed, and a stream following it there gets the end and
    done."""
    db, bus = shared
    gateways = Gateways(db, bus, lease_seconds=3)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            a, b = await gateways.start(http, 2)
            assistant, thread = await new_thread(http, a, words=600)  # about 12 s
            made = await post(http, f"{a}/threads/{thread}/runs", {"assistant_id": assistant})
            run = made["id"]
            await poll_until(http, b, thread, run, {"in_progress"})
            followed = Seen()
            following = asyncio.create_task(follow(http, b, thread, run, into=followed))
            await until(lambda: followed.deltas() >= 1)  # B's stream is under way
            gateways.processes[0].kill()
            killed_at = asyncio.get_running_loop().time()
            followed = await asyncio.wait_for(following, 20)
            took = asyncio.get_running_loop().time() - killed_at
            ended = await poll_until(http, b, thread, run, {"failed"})
    finally:
        gateways.stop()

    assert ended["last_error"]["code"] == "server_error"
    assert [n for _, n, _ in followed.frames][-2:] == ["thread.run.failed", "done"]
    assert took < 3 + 1 + 3, took  # lease, a sweep, slack


async def poll_until(
    http: aiohttp.ClientSession,
    api: str,
    thread: str,
    run: str,
    statuses: set[str],
    *,
    pause: float = 0.05,
) -> dict[str, Any]:
    """The run, read through `api` every `pause` seconds, once its status is one of `statuses`
    (20 s at most)."""
    last: dict[str, Any] = {}

    async def reached() -> dict[str, Any] | None:
        nonlocal last
        async with http.get(f"{api}/threads/{thread}/runs/{run}") as response:
            last = await response.json()
        return last if last["status"] in statuses else None

    return await eventually_async(
        reached,
        timeout=20,
        interval=pause,
        what=lambda: f"run {run} to reach {statuses} (now {last.get('status')})",
    )


def children_of(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def test_serve_with_workers_shares_the_port_and_restarts_a_dead_worker(
    shared: tuple[Database, str],
) -> None:
    """`serve --workers 2`: both workers take runs on the one port; a worker killed mid-run is
    started again under the same name, takes its run back at once (its lease is its own) and
    ends it failed, and the server goes on; SIGTERM stops everything."""
    db, bus = shared
    port = free_port()
    parent = start(db.url, port, "--workers", "2", env={"GATEWAY_BUS": bus})
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            await ready(http, port)
            api = f"http://127.0.0.1:{port}/v1"
            assistant, thread = await new_thread(http, api, words=1000)  # about 20 s
            owners = set()
            for _ in range(30):  # each on a new connection: the kernel spreads them
                async with aiohttp.ClientSession() as fresh:
                    made = await post(
                        fresh,
                        f"{api}/threads/runs",
                        {"assistant_id": assistant, "thread": {"messages": []}},
                    )
                    owners.add(await owner_of(db, made["id"]))
            long_run = await post(http, f"{api}/threads/{thread}/runs", {"assistant_id": assistant})
            await poll_until(http, api, thread, long_run["id"], {"in_progress"})
            holder = await owner_of(db, long_run["id"])
            workers = children_of(parent.pid)
            assert len(workers) == 2
            victim = workers[int(holder.rsplit("/", 1)[1])]
            os.kill(victim, signal.SIGKILL)
            ended = await poll_until(http, api, thread, long_run["id"], {"failed"})
            assert len(children_of(parent.pid)) == 2 and victim not in children_of(parent.pid)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(20) == 0
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)

    assert len(owners) == 2, owners
    assert ended["last_error"]["code"] == "server_error"


async def owner_of(db: Database, run_id: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(db.url)
    try:
        owner: str = await conn.fetchval("SELECT owner FROM runs WHERE id=$1", run_id)
    finally:
        await conn.close()
    return owner


async def test_under_load_no_process_takes_over_its_own_runs(
    shared: tuple[Database, str],
) -> None:
    """40 clients creating and polling runs for 5 s on one PostgreSQL gateway: every run
    completes. The bench's scale-out case once saw a run fail here: the lease sweep took a run
    being made (committed between its look at what the process holds and its query) for an
    orphan. That race is pinned deterministically in tests/test_leases.py; this is the load."""
    db, bus = shared
    gateways = Gateways(db, bus)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            [api] = await gateways.start(http, 1)
            assistant = await new_assistant(http, api)
            ended: list[str] = []
            body = {
                "assistant_id": assistant,
                "thread": {"messages": [{"role": "user", "content": "Hello there"}]},
            }

            async def client() -> None:
                deadline = asyncio.get_running_loop().time() + 5
                while asyncio.get_running_loop().time() < deadline:
                    made = await post(http, f"{api}/threads/runs", body)
                    done = await poll_until(http, api, made["thread_id"], made["id"], TERMINAL)
                    ended.append(done["status"])

            await asyncio.gather(*(client() for _ in range(40)))
            async with http.get(api.removesuffix("/v1") + "/metrics") as response:
                metrics = await response.text()
    finally:
        gateways.stop()

    assert len(ended) > 100
    assert set(ended) == {"completed"}, {s: ended.count(s) for s in set(ended)}
    assert 'gateway_run_status_changes_total{status="failed"}' not in metrics


TERMINAL = {"completed", "failed", "cancelled", "expired", "incomplete"}


async def test_a_threads_active_run_on_one_gateway_binds_the_others(
    shared: tuple[Database, str],
) -> None:
    """While A runs a thread's run, B refuses a message and a second run on that thread (400),
    and deleting the thread through B cancels the run on A first (its stream ends cancelled)."""
    db, bus = shared
    gateways = Gateways(db, bus)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            a, b = await gateways.start(http, 2)
            assistant, thread = await new_thread(http, a, words=400)
            streaming, origin = start_streaming(http, a, assistant, thread)
            await until(lambda: origin.deltas() >= 3)
            message = {"role": "user", "content": "more"}
            async with http.post(f"{b}/threads/{thread}/messages", json=message) as response:
                message_status = response.status
            async with http.post(
                f"{b}/threads/{thread}/runs", json={"assistant_id": assistant}
            ) as response:
                second_run = (response.status, await response.json())
            async with http.delete(f"{b}/threads/{thread}") as response:
                deleted = (response.status, await response.json())
            await asyncio.wait_for(streaming, 20)
    finally:
        gateways.stop()

    assert message_status == 400
    assert second_run[0] == 400 and "active run" in second_run[1]["error"]["message"]
    assert deleted == (200, {"id": thread, "object": "thread.deleted", "deleted": True})
    assert [n for _, n, _ in origin.frames][-2:] == ["thread.run.cancelled", "done"]


async def test_metadata_modified_elsewhere_survives_the_runs_own_saves(
    shared: tuple[Database, str],
) -> None:
    """Metadata set through B on a run that A is executing is still there when A ends the run
    (A's saves keep the stored metadata), and the completed event carries it."""
    db, bus = shared
    gateways = Gateways(db, bus)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            a, b = await gateways.start(http, 2)
            assistant, thread = await new_thread(http, a, words=100)
            streaming, origin = start_streaming(http, a, assistant, thread)
            await until(lambda: origin.deltas() >= 3)
            run = run_of(origin)
            modified = await post(
                http, f"{b}/threads/{thread}/runs/{run}", {"metadata": {"tag": "from-b"}}
            )
            await asyncio.wait_for(streaming, 20)
            done = await poll_until(http, a, thread, run, {"completed"})
    finally:
        gateways.stop()

    assert modified["metadata"] == {"tag": "from-b"}
    assert done["metadata"] == {"tag": "from-b"}
    completed = next(d for _, n, d in origin.frames if n == "thread.run.completed")
    assert completed["metadata"] == {"tag": "from-b"}


async def test_a_process_that_lost_its_runs_lease_writes_nothing_more(
    shared: tuple[Database, str],
) -> None:
    """A's lease on a run it is executing passes (as if A had stalled past it): B adopts the
    run and ends it failed. A, still running it, is refused at its next save (the lease is
    checked and locked in every save) and lets go: the run stays failed, never completed, and
    A's own client gets B's end."""
    db, bus = shared
    gateways = Gateways(db, bus)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            a, _ = await gateways.start(http, 2)
            assistant, thread = await new_thread(http, a, words=200)  # about 4 s
            streaming, origin = start_streaming(http, a, assistant, thread)
            await until(lambda: origin.deltas() >= 20)
            run = run_of(origin)
            await lapse_lease(db, run)
            await asyncio.wait_for(streaming, 20)
            # A fixed wait is the point: past the time A would have completed the run, had it
            # gone on writing; there is no event to await for a write that must not happen.
            await asyncio.sleep(5)
            final = await poll_until(http, a, thread, run, TERMINAL)
    finally:
        gateways.stop()

    assert final["status"] == "failed", final["status"]
    names = [n for _, n, _ in origin.frames]
    assert "thread.run.completed" not in names
    assert names[-2:] == ["thread.run.failed", "done"]


async def lapse_lease(db: Database, run_id: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(db.url)
    try:
        await conn.execute("UPDATE runs SET owner='stalled', lease_until=0 WHERE id=$1", run_id)
    finally:
        await conn.close()


async def test_one_idempotency_key_on_two_gateways_at_once_makes_one_run(
    shared: tuple[Database, str],
) -> None:
    """The same create under the same Idempotency-Key through A and then B, while A's is still
    being made (PostgreSQL holds A's insert on a table lock here, so B surely arrives
    meanwhile): B waits for A's answer and gives the same run, plainly and streamed."""
    import asyncpg

    db, bus = shared
    gateways = Gateways(db, bus)
    answers: list[tuple[tuple[int, str, Any], tuple[int, str, Any]]] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            a, b = await gateways.start(http, 2)
            assistant = await new_assistant(http, a)

            async def create(api: str, key: str, stream: bool) -> tuple[int, str, Any]:
                body = {
                    "assistant_id": assistant,
                    "stream": stream,
                    "thread": {"messages": [{"role": "user", "content": "one two"}]},
                }
                headers = {"Idempotency-Key": key}
                async with http.post(f"{api}/threads/runs", json=body, headers=headers) as response:
                    replayed = response.headers.get("idempotent-replayed", "")
                    if not stream or response.status != 200:
                        return response.status, replayed, await response.json()
                    seen = Seen()
                    await read_frames(response, seen)
                    return response.status, replayed, run_of(seen)

            for stream in (False, True):
                lock = await asyncpg.connect(db.url)
                try:
                    await lock.execute("BEGIN; LOCK TABLE runs IN EXCLUSIVE MODE")
                    first = asyncio.create_task(create(a, f"key-{stream}", stream))
                    await eventually_async(  # then its insert waits for the table lock
                        functools.partial(claimed, lock, f"key-{stream}"),
                        what="A to claim the key",
                    )
                    second = asyncio.create_task(create(b, f"key-{stream}", stream))
                    # B polls A's claim in its own process, which nothing outside shows: it
                    # gets a fixed half second to arrive and wait while A is held.
                    await asyncio.sleep(0.5)
                    pending = not first.done() and not second.done()
                finally:
                    await lock.close()  # the lock goes with its connection
                answers.append(await asyncio.gather(first, second))
                assert pending, answers
            async with http.get(f"{a}/threads/{thread_of(answers[0][0])}/runs") as response:
                runs = (await response.json())["data"]
    finally:
        gateways.stop()

    plain, streamed = answers
    assert [(status, replayed) for status, replayed, _ in plain] == [(200, ""), (200, "true")]
    assert plain[0][2] == plain[1][2] and len(runs) == 1
    assert [(status, replayed) for status, replayed, _ in streamed] == [(200, ""), (200, "true")]
    assert streamed[0][2] == streamed[1][2]


async def claimed(conn: Any, key: str) -> bool:
    """Whether a request has claimed Idempotency-Key `key` (its claim is committed)."""
    return bool(await conn.fetchval("SELECT count(*) FROM idempotency_keys WHERE key=$1", key))


def thread_of(answer: tuple[int, str, Any]) -> str:
    return str(answer[2]["thread_id"])


async def test_files_and_vector_stores_are_shared_and_ingested_once(
    shared: tuple[Database, str],
) -> None:
    """Two processes on PostgreSQL and Redis: a file uploaded through one is added to a store
    through the other; the 30 files of a batch are each ingested exactly once between them
    (claims with SKIP LOCKED), and either process's search finds them."""
    db, bus = shared
    gateways = Gateways(db, bus)
    async with aiohttp.ClientSession() as http:
        try:
            first, second = await gateways.start(http, 2)
            ids = []
            for i in range(30):
                form = aiohttp.FormData()
                form.add_field("purpose", "assistants")
                text = f"Note {i}: the code word for item {i} is zebra{i}.\n"
                form.add_field("file", text.encode(), filename=f"note{i}.txt")
                api = first if i % 2 else second
                async with http.post(f"{api}/files", data=form) as response:
                    assert response.status == 200, await response.text()
                    ids.append((await response.json())["id"])
            async with http.post(f"{second}/vector_stores", json={}) as response:
                store_id = (await response.json())["id"]
            async with http.post(
                f"{first}/vector_stores/{store_id}/file_batches", json={"file_ids": ids}
            ) as response:
                assert response.status == 200, await response.text()

            async def settled() -> bool:
                async with http.get(f"{second}/vector_stores/{store_id}") as answer:
                    completed: int = (await answer.json())["file_counts"]["completed"]
                    return completed == 30

            await eventually_async(settled, timeout=60, what="the batch to be ingested")
            for api in (first, second):
                async with http.post(
                    f"{api}/vector_stores/{store_id}/search", json={"query": "zebra17"}
                ) as response:
                    hits = (await response.json())["data"]
                assert hits[0]["file_id"] == ids[17]
            # Each file's chunks were written once: no file was ingested twice.
            for file_id in ids:
                async with http.get(
                    f"{first}/vector_stores/{store_id}/files/{file_id}/content"
                ) as response:
                    assert len((await response.json())["data"]) == 1
        finally:
            gateways.stop()
