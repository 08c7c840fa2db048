"""Numbers: quantiles and summaries of samples, CPU meters, targets and the per-case record."""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from benchkit.servers import Server

# A client process above this share of one core during a measurement may be what limits it.
CLIENT_SATURATED = 0.9


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: Sequence[float], digits: int = 4) -> dict[str, float]:
    """Median, p99, IQR and friends of `values`, rounded."""
    if not values:
        return {"n": 0}
    p25, p75 = quantile(values, 0.25), quantile(values, 0.75)
    stats = {
        "median": quantile(values, 0.5),
        "p99": quantile(values, 0.99),
        "p25": p25,
        "p75": p75,
        "iqr": p75 - p25,
        "min": min(values),
        "max": max(values),
    }
    return {"n": len(values)} | {k: round(v, digits) for k, v in stats.items()}


def ratio(b: float, a: float) -> float:
    return round(b / a, 4) if a else math.nan


@dataclass(frozen=True)
class Target:
    """One target of the issue: `value op limit`."""

    name: str
    value: float
    op: str  # "<=" or ">="
    limit: float
    unit: str = ""
    a: str = ""  # the baseline's figure, as shown in the table
    b: str = ""  # the gateway's figure, as shown in the table

    @property
    def passed(self) -> bool:
        if math.isnan(self.value):
            return False
        return self.value <= self.limit if self.op == "<=" else self.value >= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": round(self.value, 4),
            "target": f"{self.op} {self.limit:g}{self.unit}",
            "pass": self.passed,
            "A": self.a,
            "B": self.b,
        }


@dataclass
class Record:
    """What one case prints: its measured sides, targets, CPU shares and how long it took."""

    case: str
    title: str
    config: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    reported: dict[str, Any] = field(default_factory=dict)  # report-only figures

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.targets)

    def as_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "title": self.title,
            "config": self.config,
            "metrics": self.metrics,
            "reported": self.reported,
            "targets": [t.as_dict() for t in self.targets],
            "pass": self.passed if self.targets else None,
            "cpu_share_of_one_core": self.cpu,
            "client_saturated": self.client_saturated,
            "seconds": round(self.seconds, 1),
            "notes": self.notes,
        }

    @property
    def client_saturated(self) -> bool:
        return any(side.get("client", 0) >= CLIENT_SATURATED for side in self.cpu.values())


class CpuMeter:
    """CPU time of this (client) process and of some servers over an interval, as a share of one
    core: 1.0 is one core busy the whole time."""

    def __init__(self, servers: dict[str, Server]) -> None:
        self.servers = servers
        self.wall = time.perf_counter()
        self.client = _own_cpu()
        self.start = {name: server.cpu_seconds() for name, server in servers.items()}

    def shares(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall
        shares = {"client": (_own_cpu() - self.client) / wall}
        for name, server in self.servers.items():
            shares[name] = (server.cpu_seconds() - self.start[name]) / wall
        return {name: round(share, 3) for name, share in shares.items()}


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def median_shares(samples: list[dict[str, float]]) -> dict[str, float]:
    """The median share of each process over several measured rounds."""
    names = {name for sample in samples for name in sample}
    return {
        name: round(quantile([s[name] for s in samples if name in s], 0.5), 3)
        for name in sorted(names)
    }
