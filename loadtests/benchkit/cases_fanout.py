"""Fan-out: one long run watched by many `GET .../events` subscribers; deliveries (event frames
received, summed over the subscribers) per second. There is no baseline: the target is absolute.
Two sources of events are measured in turn on the same gateway:

- local (the target): the built-in model unpaced. It yields to the loop every 32 tokens, so
  the events of each such burst reach a subscriber in one write. The run starts when it is
  created and the subscribers connect right after; what the run emitted before one connected
  reaches it as one replayed read (`replayed_share`). Time: from create run to the last
  `done`.
- upstream burst (reported): the fake upstream unpaced after a wait of `UPSTREAM_WAIT_MS`, so
  that every subscriber is connected before the first delta. Its tokens arrive from the socket
  in bursts, so the subscribers' queues fill and each send carries a backlog: the coalesced
  path. Time: from the first delta seen to the last `done`.
"""

from __future__ import annotations

import asyncio
import math
import time
from functools import partial

from benchkit import clients
from benchkit.clients import Gateway, Stream
from benchkit.plan import Context, Interleaved
from benchkit.profiling import profile
from benchkit.servers import Fleet
from benchkit.stats import Record, Target, summary

UPSTREAM_WAIT_MS = 1000


class Watchers:
    """One run and its subscribers, on one gateway."""

    def __init__(self, gw: Gateway, assistant: str, subscribers: int) -> None:
        self.gw = gw
        self.assistant = assistant
        self.subscribers = subscribers

    async def watch(self, thread: str, model: str) -> tuple[float, list[Stream]]:
        """Create a run on `thread` and subscribe to it; when the run was created, and the
        subscribers' streams."""
        created = time.perf_counter()
        body = {"assistant_id": self.assistant, "model": model}
        run = await self.gw.post(f"/threads/{thread}/runs", body)
        url = self.gw.events_url(thread, str(run["id"]))
        streams = await asyncio.gather(
            *(clients.get_stream(self.gw.http, url) for _ in range(self.subscribers))
        )
        bad = [s for s in streams if not s.done or s.first_token_at is None]
        if bad:
            raise clients.BenchClientError(f"fan-out: {len(bad)} streams ended early")
        return created, streams

    async def local(self, tokens: int) -> dict[str, float]:
        thread = await self.gw.thread(clients.words(tokens - 2))  # "You said: " is two more deltas
        created, streams = await self.watch(thread, clients.LOCAL_MODEL)
        frames = sum(s.frames for s in streams)
        return {
            "rate": frames / (max(s.ended for s in streams) - created),
            "replayed_share": sum(s.first_read_frames for s in streams) / frames,
        }

    async def upstream(self, tokens: int) -> dict[str, float]:
        thread = await self.gw.thread("Stream please")
        model = f"fake-t{tokens}-r0-d{UPSTREAM_WAIT_MS}"
        _, streams = await self.watch(thread, model)
        first = min(s.first_token_at or math.inf for s in streams)
        return {
            "rate": sum(s.frames for s in streams) / (max(s.ended for s in streams) - first),
            "late_subscribers": sum(1 for s in streams if s.headers_at > first),
        }


async def fan_out(ctx: Context) -> Record:
    plan = ctx.plan
    subscribers, tokens = plan.fanout_subscribers, plan.fanout_tokens
    record = Record(
        "fan_out",
        "Fan-out",
        {
            "subscribers": subscribers,
            "deltas_per_run": tokens,
            "reps": plan.fanout_reps,
            "local": "built-in model unpaced: one event per send (the target)",
            "upstream_burst": f"fake upstream unpaced after {UPSTREAM_WAIT_MS} ms: coalesced",
        },
    )
    results: dict[str, list[dict[str, float]]] = {"local": [], "upstream_burst": []}
    rounds = Interleaved()
    with Fleet(ctx.workdir) as fleet:
        upstream = fleet.fake_upstream()
        gateway = fleet.gateway("gateway", upstream=upstream)
        servers = {"gateway": gateway, "upstream": upstream}
        async with clients.session() as http:
            gw = Gateway(http, gateway.url)
            watchers = Watchers(gw, await gw.assistant(clients.LOCAL_MODEL), subscribers)
            for rep in range(plan.fanout_reps):
                ctx.say(f"fan-out: round {rep + 1}/{plan.fanout_reps}")
                # Unmeasured: opens (or reopens, past uvicorn's keep-alive) the connections.
                await watchers.local(10)
                for side, measured in (
                    ("local", partial(watchers.local, tokens)),
                    ("upstream_burst", partial(watchers.upstream, tokens)),
                ):
                    results[side].append(await rounds.measure(side, servers, measured))
            if ctx.profile:
                await profile(ctx, gateway, "fan_out", partial(watchers.local, tokens))
    local = summary([r["rate"] for r in results["local"]], 0)
    burst = summary([r["rate"] for r in results["upstream_burst"]], 0)
    record.metrics = {
        "deliveries_per_s": {"local": local, "upstream_burst": burst},
        "local_replayed_share": [round(r["replayed_share"], 4) for r in results["local"]],
        "upstream_late_subscribers": [
            int(r["late_subscribers"]) for r in results["upstream_burst"]
        ],
    }
    record.targets = [
        Target(
            f"deliveries/s, 1 run to {subscribers} subscribers",
            local["median"],
            ">=",
            100_000,
            "/s",
            b=f"{local['median']:,.0f}/s",
        )
    ]
    record.reported = {"deliveries/s, upstream burst (coalesced)": f"{burst['median']:,.0f}/s"}
    record.cpu = rounds.cpu_shares()
    return record
