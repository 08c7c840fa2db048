"""Cases with a model upstream: the same stream taken directly from the fake upstream (A) and
as a run streamed through the gateway routed to it (B).

- paced streams: many concurrent streams at a model's pace; end-to-end time and time to first
  token.
- burst: the upstream as fast as it can; events per second delivered.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from functools import partial

from benchkit import clients
from benchkit.clients import Gateway, Session, Stream
from benchkit.plan import Context, Interleaved
from benchkit.profiling import profile
from benchkit.servers import Fleet, Server
from benchkit.stats import Record, Target, quantile, ratio, summary

PROMPT = "Stream please"


class Sides:
    """One stream of either side: A straight from the upstream, B a run through the gateway on
    a fresh thread (made ahead, unmeasured: `threads()`)."""

    def __init__(self, http: Session, upstream: Server, gw: Gateway, assistant: str) -> None:
        self.http = http
        self.upstream = upstream
        self.gw = gw
        self.assistant = assistant
        self.fresh: list[str] = []

    async def threads(self, count: int) -> None:
        self.fresh = await self.gw.threads(count, PROMPT)

    async def a(self, model: str) -> Stream:
        return await clients.direct_chat_stream(self.http, self.upstream.url, model)

    async def b(self, model: str) -> Stream:
        return await self.gw.run_stream(self.fresh.pop(), self.assistant, model)


async def staggered(
    users: int, tokens: int, rate: float, one: Callable[[str], Awaitable[Stream]]
) -> list[Stream]:
    """Streams measured while `users` streams are in flight all along.

    User i starts at i/users of a stream's length T and streams three times back to back: a
    ramp-up stream, the measured one, and a tail just long enough to keep it streaming until
    the last measured stream ends. So every measured stream runs while all the others do, and
    starts are spread as in steady traffic, not all in the same millisecond."""
    length = tokens / rate

    async def user(i: int) -> Stream:
        await asyncio.sleep(i * length / users)
        await one(paced_model(tokens, rate))
        measured = await one(paced_model(tokens, rate))
        await one(paced_model(max(1, math.ceil(tokens * (users - 1 - i) / users)), rate))
        return measured

    return list(await asyncio.gather(*(user(i) for i in range(users))))


async def herd(users: int, model: str, one: Callable[[str], Awaitable[Stream]]) -> list[Stream]:
    """`users` streams started at the same moment."""
    return list(await asyncio.gather(*(one(model) for _ in range(users))))


def paced_model(tokens: int, rate: float) -> str:
    return f"fake-t{tokens}-r{rate:g}"


def ttft_ms(streams: list[Stream]) -> list[float]:
    return [1000 * (s.ttft or math.nan) for s in streams]


async def paced_streams(ctx: Context) -> Record:
    plan = ctx.plan
    users, tokens, rate = plan.paced_streams, plan.paced_tokens, plan.paced_rate
    model = paced_model(tokens, rate)
    record = Record(
        "paced_streams",
        "Paced streams",
        {
            "concurrent_streams": users,
            "tokens": tokens,
            "tokens_per_s": rate,
            "reps": plan.paced_reps,
            "schedule": "staggered starts, all streams in flight during each measured one",
        },
    )
    streams: dict[str, list[Stream]] = {"A": [], "B": []}
    per_rep: dict[str, list[float]] = {"A": [], "B": []}
    herds: dict[str, list[Stream]] = {}
    rounds = Interleaved()
    with Fleet(ctx.workdir) as fleet:
        upstream = fleet.fake_upstream()
        gateway = fleet.gateway("gateway", upstream=upstream)
        async with clients.session() as http:
            gw = Gateway(http, gateway.url)
            sides = Sides(http, upstream, gw, await gw.assistant(model))
            # Warm-up: pools, code paths and the database, on both sides; not measured.
            await sides.threads(users)
            await herd(users, paced_model(5, rate), sides.a)
            await herd(users, paced_model(5, rate), sides.b)
            measured = {
                "A": {"upstream": upstream},
                "B": {"gateway": gateway, "upstream": upstream},
            }
            for rep in range(plan.paced_reps):
                ctx.say(f"paced streams: round {rep + 1}/{plan.paced_reps}")
                for side, one in (("A", sides.a), ("B", sides.b)):
                    await sides.threads(3 * users)
                    got = await rounds.measure(
                        side, measured[side], partial(staggered, users, tokens, rate, one)
                    )
                    clients.check_streams(got, side, tokens)
                    streams[side] += got
                    per_rep[side].append(quantile([s.duration for s in got], 0.5))
            ctx.say("paced streams: all started at once, for the record")
            await sides.threads(users)
            for side, one in (("A", sides.a), ("B", sides.b)):
                herds[side] = await herd(users, model, one)
            if ctx.profile:

                async def profiled_round() -> None:
                    await sides.threads(3 * users)
                    await staggered(users, tokens, rate, sides.b)

                await profile(ctx, gateway, "paced_streams", profiled_round)
    a_dur, b_dur = [s.duration for s in streams["A"]], [s.duration for s in streams["B"]]
    a_ttft, b_ttft = ttft_ms(streams["A"]), ttft_ms(streams["B"])
    dur = {"A": summary(a_dur), "B": summary(b_dur)}
    ttft = {"A": summary(a_ttft, 2), "B": summary(b_ttft, 2)}
    duration_ratio = ratio(dur["B"]["median"], dur["A"]["median"])
    added_p50 = ttft["B"]["median"] - ttft["A"]["median"]
    added_p99 = ttft["B"]["p99"] - ttft["A"]["p99"]
    paired = [ratio(b, a) for a, b in zip(per_rep["A"], per_rep["B"], strict=True)]
    herd_ttft = {side: summary(ttft_ms(got), 2) for side, got in herds.items()}
    record.metrics = {
        "duration_s": dur | {"ratio_median": duration_ratio, "ratio_p99": _p99_ratio(dur)},
        "ttft_ms": ttft | {"added_p50": round(added_p50, 2), "added_p99": round(added_p99, 2)},
        "per_rep_median_duration_s": per_rep,
        "per_rep_duration_ratio": paired,
        "all_at_once_ttft_ms": herd_ttft,
    }
    record.reported = {
        f"TTFT p50 / p99, all {users} started at once": " vs ".join(
            f"{side} {herd_ttft[side]['median']:.0f} / {herd_ttft[side]['p99']:.0f} ms"
            for side in ("A", "B")
        )
    }
    record.targets = [
        Target(
            "end-to-end duration, B/A (median)",
            duration_ratio,
            "<=",
            1.02,
            a=f"{dur['A']['median']:.3f} s",
            b=f"{dur['B']['median']:.3f} s",
        ),
        Target(
            "added time to first token, p50",
            added_p50,
            "<=",
            5,
            " ms",
            a=f"{ttft['A']['median']:.1f} ms",
            b=f"{ttft['B']['median']:.1f} ms",
        ),
        Target(
            "added time to first token, p99",
            added_p99,
            "<=",
            20,
            " ms",
            a=f"{ttft['A']['p99']:.1f} ms",
            b=f"{ttft['B']['p99']:.1f} ms",
        ),
    ]
    record.cpu = rounds.cpu_shares()
    ctx.samples["paced"] = {"A_ttft_ms": a_ttft, "B_ttft_ms": b_ttft, "A_s": a_dur, "B_s": b_dur}
    return record


def _p99_ratio(duration: dict[str, dict[str, float]]) -> float:
    return ratio(duration["B"]["p99"], duration["A"]["p99"])


def _rate(streams: list[Stream]) -> float:
    """Frames per second over the round: from the first request to the last stream's end."""
    wall = max(s.ended for s in streams) - min(s.started for s in streams)
    return sum(s.frames for s in streams) / wall


async def burst(ctx: Context) -> Record:
    plan = ctx.plan
    count, tokens = plan.burst_streams, plan.burst_tokens
    model = f"fake-t{tokens}-r0"
    record = Record(
        "burst",
        "Burst",
        {"streams": count, "tokens": tokens, "tokens_per_s": "unpaced", "reps": plan.burst_reps},
    )
    rates: dict[str, list[float]] = {"A": [], "B": []}
    rounds = Interleaved()
    with Fleet(ctx.workdir) as fleet:
        upstream = fleet.fake_upstream()
        gateway = fleet.gateway("gateway", upstream=upstream)
        async with clients.session() as http:
            gw = Gateway(http, gateway.url)
            sides = Sides(http, upstream, gw, await gw.assistant(model))
            await sides.threads(count)
            await herd(count, "fake-t200-r0", sides.a)  # warm-up
            await herd(count, "fake-t200-r0", sides.b)
            measured = {
                "A": {"upstream": upstream},
                "B": {"gateway": gateway, "upstream": upstream},
            }
            for rep in range(plan.burst_reps):
                ctx.say(f"burst: round {rep + 1}/{plan.burst_reps}")
                for side, one in (("A", sides.a), ("B", sides.b)):
                    await sides.threads(count)
                    got = await rounds.measure(
                        side, measured[side], partial(herd, count, model, one)
                    )
                    clients.check_streams(got, side, tokens)
                    rates[side].append(_rate(got))
            if ctx.profile:

                async def profiled_round() -> None:
                    await sides.threads(count)
                    await herd(count, model, sides.b)

                await profile(ctx, gateway, "burst", profiled_round)
    a, b = summary(rates["A"], 1), summary(rates["B"], 1)
    value = ratio(b["median"], a["median"])
    record.metrics = {
        "frames_per_s": {"A": a, "B": b, "ratio_median": value},
        "per_rep_ratio": [ratio(y, x) for x, y in zip(rates["A"], rates["B"], strict=True)],
    }
    record.targets = [
        Target(
            "events/s through the gateway / chunks/s direct",
            value,
            ">=",
            0.5,
            a=f"{a['median']:,.0f}/s",
            b=f"{b['median']:,.0f}/s",
        )
    ]
    record.cpu = rounds.cpu_shares()
    return record
