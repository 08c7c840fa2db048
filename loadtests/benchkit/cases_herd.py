"""The herd: N clients each create a thread and a streamed run at the same instant, the way a page
load or a batch job arrives, against the same N streams taken straight from the upstream at once.

A is N `POST /v1/chat/completions` streams to the fake upstream, all started together; B is N
`POST /v1/threads/runs` with `"stream": true` (a new thread with one message, the run routed to
the same upstream and paced model), all started together. Both are timed from the request to the
first token (A: the first content chunk; B: the first `thread.message.delta`) and the herd's wall
from the first request to the last stream's end. Rounds interleave A, B and S; every size runs its
rounds before the next size. Creation not streamed is measured too, for the profile: N
`POST /v1/threads/runs` at once, each timed until its answer (the queued run).

S is B on PostgreSQL + Redis with two gateway processes, the herd split evenly between them
(the machine's services, a schema and key prefix of the run's own; see cases_scaleout), in the
same interleaved rounds, reported beside B.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from functools import partial

from benchkit import clients
from benchkit.cases_scaleout import shared_database
from benchkit.cases_upstream import PROMPT, paced_model, ttft_ms
from benchkit.clients import Gateway, Session, Stream
from benchkit.plan import Context, Interleaved
from benchkit.profiling import profile
from benchkit.servers import Fleet, Server
from benchkit.stats import Record, Target, ratio, summary

SIDES = ("A", "B", "S")
# After the not-streamed creates of a round: time for their runs (3 tokens at 50/s) to end.
SETTLE_SECONDS = 1.0
# Between the profiled herds of not-streamed creates.
PROFILE_PAUSE_SECONDS = 0.1


async def _herd(count: int, one: Callable[[], Awaitable[Stream]]) -> tuple[list[Stream], float]:
    """`count` calls of `one` started together; the streams and the herd's wall in seconds."""
    started = time.perf_counter()
    streams = list(await asyncio.gather(*(one() for _ in range(count))))
    return streams, max(s.ended for s in streams) - started


async def _creates(
    gw: Gateway, assistant: str, count: int, model: str | None = None
) -> list[float]:
    """`count` create-thread-and-run calls (not streamed) at once; each one's answer time, ms."""

    async def one() -> float:
        started = time.perf_counter()
        await gw.create_thread_and_run(assistant, PROMPT, model)
        return 1000 * (time.perf_counter() - started)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def herd(ctx: Context) -> Record:
    plan = ctx.plan
    sizes, tokens, rate = plan.herd_sizes, plan.paced_tokens, plan.paced_rate
    model = paced_model(tokens, rate)
    record = Record(
        "herd",
        "Herd of create-thread-and-run streams",
        {
            "sizes": list(sizes),
            "tokens": tokens,
            "tokens_per_s": rate,
            "reps": plan.herd_reps,
            "schedule": "every stream of a round started at the same instant",
        },
    )
    ttft: dict[int, dict[str, list[float]]] = {n: {side: [] for side in SIDES} for n in sizes}
    walls: dict[int, dict[str, list[float]]] = {n: {side: [] for side in SIDES} for n in sizes}
    creates: dict[int, list[float]] = {n: [] for n in sizes}
    short = paced_model(3, rate)  # the not-streamed creates, and the profiled herds
    rounds = Interleaved()
    async with shared_database() as (database, bus), clients.session() as http:
        with Fleet(ctx.workdir) as fleet:
            upstream = fleet.fake_upstream()
            # A herd of 500 is past the default cap of 200 active runs a project (and a key).
            caps = {
                f"GATEWAY_MAX_ACTIVE_RUNS_PER_{who}": str(2 * max(sizes))
                for who in ("PROJECT", "KEY")
            }
            gateway = fleet.gateway("gateway", upstream=upstream, settings=caps)
            shared = [
                fleet.gateway(name, upstream=upstream, settings=caps, database=database, bus=bus)
                for name in ("shared-a", "shared-b")
            ]
            gw = Gateway(http, gateway.url)
            sides = _Sides(http, upstream)
            assistant = await sides.add("B", [gw], model)
            # One assistant in the shared database serves both processes.
            await sides.add("S", [Gateway(http, server.url) for server in shared], model)
            # Warm-up: pools, code paths and the database, on every side; not measured.
            for side in SIDES:
                await _herd(max(sizes), sides.one(side, paced_model(5, rate)))
            measured: dict[str, dict[str, Server]] = {
                "A": {"upstream": upstream},
                "B": {"gateway": gateway, "upstream": upstream},
                "S": {**{s.name: s for s in shared}, "upstream": upstream},
            }
            for size in sizes:
                for rep in range(plan.herd_reps):
                    ctx.say(f"herd of {size}: round {rep + 1}/{plan.herd_reps}")
                    for side in SIDES:
                        members = sides.one(side, model)
                        got, wall = await rounds.measure(
                            f"{side}{size}", measured[side], partial(_herd, size, members)
                        )
                        clients.check_streams(got, f"{side} (herd of {size})", tokens)
                        ttft[size][side] += ttft_ms(got)
                        walls[size][side].append(wall)
                    # Runs of 3 tokens, given time to end, so that none is still streaming
                    # into the next round.
                    creates[size] += await _creates(gw, assistant, size, short)
                    await asyncio.sleep(SETTLE_SECONDS)
            if ctx.profile:
                # Streams of 3 tokens: the profile is of starting runs, not of streaming them.
                async def streamed() -> int:
                    await _herd(sizes[0], sides.one("B", short))
                    return sizes[0]

                async def not_streamed() -> int:
                    await _creates(gw, assistant, sizes[0], short)
                    # Paced so that the runs in flight stay under the active-run cap.
                    await asyncio.sleep(PROFILE_PAUSE_SECONDS)
                    return sizes[0]

                await profile(ctx, gateway, "herd", streamed, per="run")
                await profile(ctx, gateway, "herd_not_streamed", not_streamed, per="run")
    record.metrics = {}
    record.reported = {}
    for size in sizes:
        t = {side: summary(values, 2) for side, values in ttft[size].items()}
        w = {side: summary(values, 3) for side, values in walls[size].items()}
        c = summary(creates[size], 2)
        added_p50 = t["B"]["median"] - t["A"]["median"]
        added_p99 = t["B"]["p99"] - t["A"]["p99"]
        wall_ratio = ratio(w["B"]["median"], w["A"]["median"])
        record.metrics[str(size)] = {
            "ttft_ms": t | {"added_p50": round(added_p50, 2), "added_p99": round(added_p99, 2)},
            "wall_s": w | {"ratio_median": wall_ratio},
            "create_not_streamed_ms": c,
        }
        record.reported[f"herd of {size}: TTFT p50 / p99"] = " vs ".join(
            f"{side} {t[side]['median']:.0f} / {t[side]['p99']:.0f} ms" for side in ("A", "B")
        )
        record.reported[f"herd of {size}: create-thread-and-run answer, not streamed"] = (
            f"p50 {c['median']:.0f} ms, p99 {c['p99']:.0f} ms"
        )
        s_p50 = t["S"]["median"] - t["A"]["median"]
        s_p99 = t["S"]["p99"] - t["A"]["p99"]
        s_wall = ratio(w["S"]["median"], w["A"]["median"])
        record.metrics[str(size)]["shared_two_processes"] = {
            "ttft_ms": t["S"],
            "added_p50": round(s_p50, 2),
            "added_p99": round(s_p99, 2),
            "wall_ratio": s_wall,
        }
        record.reported[
            f"herd of {size}, PostgreSQL + Redis, two processes: added TTFT p50 / p99, wall B/A"
        ] = f"{s_p50:+.1f} / {s_p99:+.1f} ms, {s_wall:.3f}"
        if size != sizes[0]:
            record.reported[f"herd of {size}: added TTFT p50 / p99, wall B/A"] = (
                f"{added_p50:+.1f} / {added_p99:+.1f} ms, {wall_ratio:.3f}"
            )
            continue
        record.targets += [
            Target(
                f"herd of {size}: added time to first token, p50",
                added_p50,
                "<=",
                25,
                " ms",
                a=f"{t['A']['median']:.1f} ms",
                b=f"{t['B']['median']:.1f} ms",
            ),
            Target(
                f"herd of {size}: added time to first token, p99",
                added_p99,
                "<=",
                50,
                " ms",
                a=f"{t['A']['p99']:.1f} ms",
                b=f"{t['B']['p99']:.1f} ms",
            ),
            Target(
                f"herd of {size}: wall, B/A (median)",
                wall_ratio,
                "<=",
                1.02,
                a=f"{w['A']['median']:.3f} s",
                b=f"{w['B']['median']:.3f} s",
            ),
        ]
    record.cpu = rounds.cpu_shares()
    ctx.samples["herd"] = {str(n): ttft[n] for n in sizes}
    return record


class _Sides:
    """One herd member of a side: A straight from the upstream; B and S a new thread and a run
    streamed through the side's gateways, taken in turn (B has one, S two)."""

    def __init__(self, http: Session, upstream: Server) -> None:
        self.http = http
        self.upstream = upstream
        self.gateways: dict[str, tuple[list[Gateway], str]] = {}

    async def add(self, side: str, gateways: list[Gateway], model: str) -> str:
        """A gateway side, with an assistant of `model` made through its first gateway (the
        others share its database); the assistant's id."""
        assistant = await gateways[0].assistant(model)
        self.gateways[side] = (gateways, assistant)
        return assistant

    def one(self, side: str, model: str) -> Callable[[], Awaitable[Stream]]:
        if side == "A":
            return lambda: clients.direct_chat_stream(self.http, self.upstream.url, model)
        gateways, assistant = self.gateways[side]
        turn = itertools.cycle(gateways)
        # The assistant's model is the paced one; the warm-up overrides it with a short one.
        return lambda: next(turn).thread_and_run_stream(assistant, PROMPT, model)
