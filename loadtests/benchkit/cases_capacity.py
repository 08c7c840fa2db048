"""Capacity cases:

- idle streams: memory (VmRSS) per idle SSE connection, the gateway's `GET .../events` of a run
  kept in progress (local model paced at one token a minute) against the raw-ASGI app's idle
  stream. Each round starts fresh processes, so that memory freed by an earlier round cannot
  hide what a connection costs.
- non-streamed runs: create thread and run + poll to completion, local model unpaced; runs
  completed per second (reported, no target).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial

from benchkit import clients
from benchkit.clients import Gateway, Session
from benchkit.plan import Context, Interleaved
from benchkit.profiling import profile
from benchkit.servers import Fleet, Server
from benchkit.stats import Record, Target, ratio, summary

PARKED_DELAY_MS = 60_000.0  # one token a minute: the run stays in progress, its streams idle
OPEN_BATCH = 100  # connections opened at once
SETTLE_SECONDS = 1.0
WARM_UP_CONNECTIONS = 10


async def _hold(http: Session, url: str, count: int) -> list[clients.Response]:
    held: list[clients.Response] = []
    try:
        for start in range(0, count, OPEN_BATCH):
            batch = min(OPEN_BATCH, count - start)
            held += await asyncio.gather(*(clients.hold_idle(http, url) for _ in range(batch)))
    except BaseException:
        _release(held)
        raise
    return held


def _release(held: list[clients.Response]) -> None:
    for response in held:
        response.close()


async def idle_cost(server: Server, url: str, count: int) -> float:
    """KiB of VmRSS per idle stream: RSS with `count` streams open minus RSS before."""
    async with clients.session() as http:
        _release(await _hold(http, url, WARM_UP_CONNECTIONS))
        await asyncio.sleep(SETTLE_SECONDS)
        before = server.rss_kib()
        held = await _hold(http, url, count)
        try:
            await asyncio.sleep(SETTLE_SECONDS)
            server.check_alive()
            after = server.rss_kib()
        finally:
            _release(held)
    return (after - before) / count


async def _parked_run(gateway: Server) -> str:
    """A run that stays in progress; the URL of its event stream."""
    async with clients.session() as http:
        gw = Gateway(http, gateway.url)
        assistant = await gw.assistant(clients.LOCAL_MODEL)
        thread = await gw.thread("Stay with me")
        run = await gw.create_run(thread, assistant)
        run_id = str(run["id"])
        await gw.wait_status(thread, run_id, lambda status: status == "in_progress", 10)
        return gw.events_url(thread, run_id)


async def idle_streams(ctx: Context) -> Record:
    plan = ctx.plan
    count = plan.idle_connections
    record = Record(
        "idle_streams",
        "Idle streams",
        {
            "connections": count,
            "reps": plan.idle_reps,
            "A": "raw ASGI app: retry frame, then nothing",
            "B": "GET .../events of a run in progress (local model, 1 token/min)",
        },
    )
    costs: dict[str, list[float]] = {"A": [], "B": []}
    rounds = Interleaved()
    with Fleet(ctx.workdir) as fleet:
        for rep in range(plan.idle_reps):
            ctx.say(f"idle streams: round {rep + 1}/{plan.idle_reps}")
            raw = fleet.raw_asgi()
            cost = partial(idle_cost, raw, raw.url + "/idle", count)
            costs["A"].append(await rounds.measure("A", {"raw": raw}, cost))
            fleet.stop(raw)
            gateway = fleet.gateway("gateway-idle", delay_ms=PARKED_DELAY_MS)
            url = await _parked_run(gateway)
            cost = partial(idle_cost, gateway, url, count)
            costs["B"].append(await rounds.measure("B", {"gateway": gateway}, cost))
            fleet.stop(gateway)
    a, b = summary(costs["A"], 2), summary(costs["B"], 2)
    value = ratio(b["median"], a["median"])
    record.metrics = {"kib_per_connection": {"A": a, "B": b, "ratio_median": value}}
    shown = {"a": f"{a['median']:.1f} KiB", "b": f"{b['median']:.1f} KiB"}
    record.targets = [
        Target("RSS per idle stream", b["median"], "<=", 25, " KiB", b=shown["b"]),
        Target("RSS per idle stream, gateway / raw ASGI", value, "<=", 1.5, **shown),
    ]
    record.cpu = rounds.cpu_shares()
    return record


class Poller:
    """Clients that each create a thread and run, then poll it until it ends, in a loop."""

    def __init__(self, gw: Gateway, assistant: str, interval: float) -> None:
        self.gw = gw
        self.assistant = assistant
        self.interval = interval

    async def one(self) -> float:
        started = time.perf_counter()
        run = await self.gw.create_thread_and_run(self.assistant, "Hello there")
        thread, run_id = str(run["thread_id"]), str(run["id"])
        status = str(run["status"])
        while status not in clients.TERMINAL:
            await asyncio.sleep(self.interval)
            status = await self.gw.run_status(thread, run_id)
        if status != "completed":
            raise clients.BenchClientError(f"run {run_id} ended {status}")
        return time.perf_counter() - started

    async def round(self, clients_: int, seconds: float) -> tuple[float, list[float]]:
        """Runs completed per second, and each run's create-to-completed time."""
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < deadline:
                latencies.append(await self.one())

        started = time.perf_counter()
        async with asyncio.timeout(seconds + clients.REQUEST_SECONDS):
            async with asyncio.TaskGroup() as group:
                for _ in range(clients_):
                    group.create_task(client())
        return len(latencies) / (time.perf_counter() - started), latencies


async def non_streamed(ctx: Context) -> Record:
    plan = ctx.plan
    record = Record(
        "non_streamed",
        "Non-streamed runs",
        {
            "clients": plan.polling_clients,
            "seconds_per_round": plan.polling_seconds,
            "poll_interval_s": plan.poll_interval,
            "reps": plan.polling_reps,
        },
    )
    rates: list[float] = []
    latencies: list[float] = []
    rounds = Interleaved()
    with Fleet(ctx.workdir) as fleet:
        gateway = fleet.gateway("gateway")
        async with clients.session() as http:
            gw = Gateway(http, gateway.url)
            poller = Poller(gw, await gw.assistant(clients.LOCAL_MODEL), plan.poll_interval)
            await poller.round(plan.polling_clients, 1.0)  # warm-up
            measured: Callable[[], Awaitable[tuple[float, list[float]]]] = partial(
                poller.round, plan.polling_clients, plan.polling_seconds
            )
            for rep in range(plan.polling_reps):
                ctx.say(f"non-streamed runs: round {rep + 1}/{plan.polling_reps}")
                rate, times = await rounds.measure("B", {"gateway": gateway}, measured)
                rates.append(rate)
                latencies += times
            if ctx.profile:
                await profile(ctx, gateway, "non_streamed", measured)
    per_s = summary(rates, 1)
    latency = summary([1000 * t for t in latencies], 1)
    record.metrics = {"runs_per_s": per_s, "create_to_completed_ms": latency}
    # Each client waits a poll interval at least before it sees its run end: the loop cannot
    # complete more than this many runs a second, however fast the gateway.
    ceiling = plan.polling_clients / plan.poll_interval
    record.reported = {
        "create to completed, p50 / p99": f"{latency['median']:.0f} / {latency['p99']:.0f} ms",
        "the client loop's ceiling (clients / poll interval)": f"{ceiling:,.0f}/s",
    }
    record.targets = [
        Target(
            f"runs completed/s ({plan.polling_clients} clients, create + poll)",
            per_s["median"],
            ">=",
            2000,
            "/s",
            b=f"{per_s['median']:,.1f}/s",
        )
    ]
    record.cpu = rounds.cpu_shares()
    ctx.samples["non_streamed_ms"] = [1000 * t for t in latencies]
    return record
