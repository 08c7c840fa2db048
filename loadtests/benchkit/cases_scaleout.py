"""Scale-out case: non-streamed runs (create thread and run + poll, local model unpaced) on the
embedded default (SQLite + memory bus) against PostgreSQL + Redis with one gateway process and
with two, the clients split evenly between the two. Runs completed per second and create to
completed; the ratios are against the default, measured in the same run, rounds interleaved.

It needs the machine's PostgreSQL and Redis (GATEWAY_BENCH_POSTGRES_URL, GATEWAY_BENCH_REDIS_URL);
each run gets a schema and a key prefix of its own, removed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import asyncpg

from benchkit import clients
from benchkit.cases_capacity import Poller
from benchkit.clients import Gateway
from benchkit.plan import Context, Interleaved
from benchkit.servers import Fleet, Server
from benchkit.stats import Record, summary

POSTGRES = os.environ.get("GATEWAY_BENCH_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
REDIS = os.environ.get("GATEWAY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SIDES = ("default", "shared_1", "shared_2")


@asynccontextmanager
async def shared_database() -> AsyncIterator[tuple[str, str]]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        yield f"{POSTGRES}?search_path={schema}", f"{REDIS}?prefix=bench:{schema}:"
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


async def _split_round(
    pollers: list[Poller], clients_: int, seconds: float
) -> tuple[float, list[float]]:
    """The clients split evenly between the pollers' gateways, all at once."""
    share = clients_ // len(pollers)
    results = await asyncio.gather(*(p.round(share, seconds) for p in pollers))
    return sum(rate for rate, _ in results), [t for _, times in results for t in times]


async def scale_out(ctx: Context) -> Record:
    plan = ctx.plan
    record = Record(
        "scale_out",
        "Several processes (PostgreSQL + Redis)",
        {
            "clients": plan.polling_clients,
            "seconds_per_round": plan.polling_seconds,
            "reps": plan.polling_reps,
        },
    )
    rates: dict[str, list[float]] = {side: [] for side in SIDES}
    latencies: dict[str, list[float]] = {side: [] for side in SIDES}
    rounds = Interleaved()
    async with shared_database() as (database, bus), clients.session() as http:
        with Fleet(ctx.workdir) as fleet:
            default = fleet.gateway("default")
            one = fleet.gateway("shared-a", database=database, bus=bus)
            two = fleet.gateway("shared-b", database=database, bus=bus)
            sides: dict[str, list[Server]] = {
                "default": [default],
                "shared_1": [one],
                "shared_2": [one, two],
            }
            pollers: dict[str, list[Poller]] = {}
            for side, servers in sides.items():
                made = []
                for server in servers:
                    gw = Gateway(http, server.url)
                    made.append(
                        Poller(gw, await gw.assistant(clients.LOCAL_MODEL), plan.poll_interval)
                    )
                pollers[side] = made
                await _split_round(made, plan.polling_clients, 1.0)  # warm-up
            for rep in range(plan.polling_reps):
                for side in SIDES:
                    ctx.say(f"scale-out: {side}, round {rep + 1}/{plan.polling_reps}")
                    rate, times = await rounds.measure(
                        side,
                        {s.name: s for s in sides[side]},
                        partial(
                            _split_round, pollers[side], plan.polling_clients, plan.polling_seconds
                        ),
                    )
                    rates[side].append(rate)
                    latencies[side] += times
    metrics = {}
    reported = {}
    base = summary(rates["default"], 1)["median"]
    for side in SIDES:
        per_s = summary(rates[side], 1)
        latency = summary([1000 * t for t in latencies[side]], 1)
        metrics[f"{side}_runs_per_s"] = per_s
        metrics[f"{side}_create_to_completed_ms"] = latency
        reported[f"{side}: runs/s (x default)"] = (
            f"{per_s['median']:,.1f}/s ({per_s['median'] / base:.2f})"
        )
        reported[f"{side}: create to completed p50 / p99"] = (
            f"{latency['median']:.0f} / {latency['p99']:.0f} ms"
        )
    record.metrics = metrics
    record.reported = reported
    record.cpu = rounds.cpu_shares()
    return record
