"""What the gateway counts, for load tests and dashboards: one Prometheus registry per app
(prometheus_client), rendered at GET /metrics."""

from __future__ import annotations

import asyncio
from contextvars import ContextVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Latency buckets from 1 ms to 30 s: first tokens of a local model and of a slow upstream alike.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.run_statuses = Counter(
            "gateway_run_status_changes", "Runs entering each status.", ["status"], registry=r
        )
        self.active_runs = Gauge("gateway_active_runs", "Runs not yet terminal.", registry=r)
        self.active_streams = Gauge(
            "gateway_active_streams", "Open event streams (POST and GET).", registry=r
        )
        self.events_sent = Counter(
            "gateway_events_sent",
            "Events written to stream clients (done not counted).",
            registry=r,
        )
        self.stream_ends = Counter(
            "gateway_stream_ends",
            "Event streams ended, by reason "
            "(done, client_gone, stalled, overflow, unavailable, closed).",
            ["reason"],
            registry=r,
        )
        self.first_token = Histogram(
            "gateway_time_to_first_token_seconds",
            "From a run segment's start to the model's first text or tool-call chunk.",
            buckets=_BUCKETS,
            registry=r,
        )
        self.upstream_first_byte = Histogram(
            "gateway_upstream_first_byte_seconds",
            "From sending a request to an upstream to its first streamed message.",
            ["upstream"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors",
            "Upstream failures, by kind.",
            ["upstream", "kind"],
            registry=r,
        )
        self.connections_dropped = Counter(
            "gateway_connections_dropped",
            "Connections the gateway closed because the client stopped sending, by reason.",
            ["reason"],
            registry=r,
        )
        self.code_sessions = Gauge(
            "gateway_code_interpreter_sessions", "Sandboxed code sessions alive.", registry=r
        )
        self.code_calls = Counter(
            "gateway_code_interpreter_calls",
            "code_interpreter calls, by how they ended (ok, error: the code raised, time, "
            "ended: the session died on a limit, output: cut, busy: no session free).",
            ["outcome"],
            registry=r,
        )
        self.code_call_seconds = Histogram(
            "gateway_code_interpreter_call_seconds",
            "Wall time of a code_interpreter call, by whether its session started for it.",
            ["session"],
            buckets=_BUCKETS,
            registry=r,
        )
        # Leak checks and capacity: tasks on the serving loop, and the process's open files,
        # memory and CPU (process_* series, Linux).
        self.tasks = Gauge("gateway_asyncio_tasks", "Tasks alive on the event loop.", registry=r)
        self.tasks.set_function(_task_count)
        ProcessCollector(registry=r)

    def connection_dropped(self, reason: str) -> None:
        """Count a connection the gateway closed because its client stopped sending."""
        self.connections_dropped.labels(reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class UpstreamWait:
    """Seconds a request spent waiting on an upstream, subtracted from its overhead header."""

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds = 0.0


# The current request's upstream wait (set by the overhead middleware, added to by the proxy).
upstream_wait: ContextVar[UpstreamWait | None] = ContextVar("upstream_wait", default=None)


def _task_count() -> float:
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # rendered outside the event loop
        return 0.0
