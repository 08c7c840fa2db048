"""Cases on the gateway's own emit path, with the built-in local model unpaced (no upstream):

- emit path: SSE events per second from the gateway (B) against the raw-ASGI app writing the
  same bytes, pre-recorded from a gateway run, on the same uvicorn configuration (A).
- persistence: the same workload with the event log persisted (B) and in memory only (A).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from benchkit import clients
from benchkit.clients import Gateway, Session, Stream
from benchkit.plan import Context, Interleaved
from benchkit.profiling import profile
from benchkit.servers import Fleet, Server
from benchkit.stats import Record, Target, ratio, summary


def _rate(streams: list[Stream], wall: float) -> float:
    return sum(s.frames for s in streams) / wall


class EmitLoad:
    """`runs` streamed runs of one long message, `concurrency` at a time, against a gateway or
    the raw app; measured as event frames per second."""

    def __init__(self, http: Session, message: str) -> None:
        self.http = http
        self.message = message
        self.minimum = len(message.split())

    async def gateway(self, gw: Gateway, assistant: str, runs: int, concurrency: int) -> float:
        streams, wall = await clients.run_pool(
            runs, concurrency, partial(gw.thread_and_run_stream, assistant, self.message)
        )
        clients.check_streams(streams, "gateway", self.minimum)
        return _rate(streams, wall)

    async def raw(self, raw: Server, runs: int, concurrency: int) -> float:
        url = raw.url + "/stream"
        streams, wall = await clients.run_pool(
            runs, concurrency, partial(clients.post_stream, self.http, url, {})
        )
        clients.check_streams(streams, "raw", self.minimum)
        return _rate(streams, wall)

    async def record(self, gw: Gateway, assistant: str) -> bytes:
        """One run's stream, as bytes, for the raw app to replay."""
        body = {"assistant_id": assistant, "stream": True}
        body["thread"] = {"messages": [{"role": "user", "content": self.message}]}
        async with self.http.post(f"{gw.api}/threads/runs", json=body) as response:
            if response.status != 200:
                raise clients.BenchClientError(f"recording a run: {response.status}")
            return await response.read()


def _throughput_targets(
    record: Record, rates: dict[str, list[float]], name: str, limit: float
) -> None:
    a, b = summary(rates["A"], 1), summary(rates["B"], 1)
    value = ratio(b["median"], a["median"])
    record.metrics = {
        "events_per_s": {"A": a, "B": b, "ratio_median": value},
        "per_rep_ratio": [ratio(y, x) for x, y in zip(rates["A"], rates["B"], strict=True)],
    }
    record.targets = [
        Target(name, value, ">=", limit, a=f"{a['median']:,.0f}/s", b=f"{b['median']:,.0f}/s")
    ]


async def emit_path(ctx: Context) -> Record:
    plan = ctx.plan
    runs, concurrency = plan.emit_runs, plan.emit_concurrency
    record = Record(
        "emit_path",
        "Emit path",
        {
            "deltas_per_run": plan.emit_words + 2,
            "runs_per_round": runs,
            "concurrency": concurrency,
            "reps": plan.emit_reps,
            "A": "raw ASGI app, recorded frames, one send per frame",
        },
    )
    rates: dict[str, list[float]] = {"A": [], "B": []}
    rounds = Interleaved()
    with Fleet(ctx.workdir) as fleet:
        gateway = fleet.gateway("gateway")
        async with clients.session() as http:
            gw = Gateway(http, gateway.url)
            assistant = await gw.assistant(clients.LOCAL_MODEL)
            load = EmitLoad(http, clients.words(plan.emit_words))
            frames = ctx.workdir / "recorded-run.sse"
            frames.write_bytes(await load.record(gw, assistant))
            raw = fleet.raw_asgi(frames)
            await load.raw(raw, concurrency, concurrency)  # warm-up
            await load.gateway(gw, assistant, concurrency, concurrency)
            for rep in range(plan.emit_reps):
                ctx.say(f"emit path: round {rep + 1}/{plan.emit_reps}")
                rates["A"].append(
                    await rounds.measure(
                        "A", {"raw": raw}, partial(load.raw, raw, runs, concurrency)
                    )
                )
                rates["B"].append(
                    await rounds.measure(
                        "B",
                        {"gateway": gateway},
                        partial(load.gateway, gw, assistant, runs, concurrency),
                    )
                )
            if ctx.plot:
                ctx.samples["emit_sweep"] = await _sweep(ctx, load, raw, gw, assistant)
            if ctx.profile:
                measured = partial(load.gateway, gw, assistant, runs, concurrency)
                await profile(ctx, gateway, "emit_path", measured)
    _throughput_targets(record, rates, "gateway events/s / raw ASGI events/s", 0.8)
    # Issue 19 asks for half of the raw app first, on the way to issue 6's 0.8.
    first = record.targets[0]
    record.targets.append(replace(first, name=first.name + " (issue 19)", limit=0.5))
    record.cpu = rounds.cpu_shares()
    return record


async def _sweep(
    ctx: Context, load: EmitLoad, raw: Server, gw: Gateway, assistant: str
) -> dict[str, list[float]]:
    """Throughput against concurrency, one short round per level and side, for the chart."""
    sweep: dict[str, list[float]] = {"concurrency": [], "A": [], "B": []}
    for level in ctx.plan.sweep_levels:
        ctx.say(f"emit path: sweep at concurrency {level}")
        runs = max(2 * level, 8)
        sweep["concurrency"].append(level)
        sweep["A"].append(await load.raw(raw, runs, level))
        sweep["B"].append(await load.gateway(gw, assistant, runs, level))
    return sweep


async def persistence(ctx: Context) -> Record:
    plan = ctx.plan
    runs, concurrency = plan.emit_runs, plan.emit_concurrency
    record = Record(
        "persistence",
        "Persistence",
        {
            "deltas_per_run": plan.emit_words + 2,
            "runs_per_round": runs,
            "concurrency": concurrency,
            "reps": plan.emit_reps,
            "A": "GATEWAY_PERSIST_EVENTS=false",
            "B": "GATEWAY_PERSIST_EVENTS=true",
        },
    )
    rates: dict[str, list[float]] = {"A": [], "B": []}
    rounds = Interleaved()
    with Fleet(ctx.workdir) as fleet:
        memory = fleet.gateway("gateway-memory", persist_events=False)
        persisted = fleet.gateway("gateway-persisted", persist_events=True)
        async with clients.session() as http:
            load = EmitLoad(http, clients.words(plan.emit_words))
            sides = {}
            for side, server in (("A", memory), ("B", persisted)):
                gw = Gateway(http, server.url)
                assistant = await gw.assistant(clients.LOCAL_MODEL)
                await load.gateway(gw, assistant, concurrency, concurrency)  # warm-up
                sides[side] = (server, gw, assistant)
            for rep in range(plan.emit_reps):
                ctx.say(f"persistence: round {rep + 1}/{plan.emit_reps}")
                for side, (server, gw, assistant) in sides.items():
                    measured = partial(load.gateway, gw, assistant, runs, concurrency)
                    rates[side].append(await rounds.measure(side, {"gateway": server}, measured))
    _throughput_targets(record, rates, "events/s persisted / in memory only", 0.9)
    record.cpu = rounds.cpu_shares()
    return record
