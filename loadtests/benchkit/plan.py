"""How big each case is (`Plan`, full or `--quick`), what every case is handed (`Context`), and
the interleaved A/B measurement (`Interleaved`)."""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from benchkit.servers import Server
from benchkit.stats import CpuMeter, median_shares

T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions. The full plan keeps the whole run under about 5 minutes on the
    2-core machine; `quick()` under about a minute and a half."""

    paced_streams: int = 100
    paced_tokens: int = 200
    paced_rate: float = 50.0
    paced_reps: int = 3

    herd_sizes: tuple[int, ...] = (100, 500)  # the first has the targets
    herd_reps: int = 3

    burst_streams: int = 20
    burst_tokens: int = 4000
    burst_reps: int = 4

    # Emit path and persistence: runs of the local model, unpaced, each ~`emit_words` deltas.
    emit_words: int = 500
    emit_runs: int = 40
    emit_concurrency: int = 10
    emit_reps: int = 5
    sweep_levels: tuple[int, ...] = (1, 2, 5, 10, 20, 50)

    fanout_subscribers: int = 100
    fanout_tokens: int = 1000
    fanout_reps: int = 3

    idle_connections: int = 1000
    idle_reps: int = 2

    polling_clients: int = 50
    polling_seconds: float = 8.0
    polling_reps: int = 3
    poll_interval: float = 0.05

    def with_reps(self, reps: int) -> Plan:
        """The same plan with every case repeated `reps` times."""
        counts: dict[str, Any] = {f.name: reps for f in fields(self) if f.name.endswith("_reps")}
        return replace(self, **counts)

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            paced_streams=20,
            paced_tokens=50,
            paced_reps=2,
            herd_sizes=(20, 50),
            herd_reps=2,
            burst_streams=10,
            burst_tokens=500,
            burst_reps=2,
            emit_runs=12,
            emit_concurrency=4,
            emit_reps=2,
            sweep_levels=(1, 5, 20),
            fanout_subscribers=100,
            fanout_tokens=500,
            fanout_reps=2,
            idle_connections=200,
            idle_reps=1,
            polling_clients=20,
            polling_seconds=3.0,
            polling_reps=2,
        )


@dataclass
class Context:
    """What every case gets: the plan, a scratch folder, the output folder, the switches, and a
    place to leave samples for the charts."""

    plan: Plan
    workdir: Path
    out: Path
    plot: bool = False
    profile: bool = False
    samples: dict[str, Any] = field(default_factory=dict)

    def say(self, message: str) -> None:
        """Progress, on stderr (stdout carries the records)."""
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Interleaved:
    """Rounds of a case's sides, A (baseline) and B (gateway) or others, measured in turn, each
    with the CPU share of the client and of the servers it names."""

    def __init__(self) -> None:
        self.cpu: dict[str, list[dict[str, float]]] = {}

    async def measure(
        self, side: str, servers: dict[str, Server], round_: Callable[[], Awaitable[T]]
    ) -> T:
        meter = CpuMeter(servers)
        result = await round_()
        self.cpu.setdefault(side, []).append(meter.shares())
        for server in servers.values():
            server.check_alive()
        return result

    def cpu_shares(self) -> dict[str, dict[str, float]]:
        return {side: median_shares(rounds) for side, rounds in self.cpu.items() if rounds}
