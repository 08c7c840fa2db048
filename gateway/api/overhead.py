"""An `x-gateway-overhead-ms` header on every response: the time the gateway spent before the
response started, less any time spent waiting on a model upstream. For a non-streamed call
that is the gateway's own cost; load tests read it. Measured by the request edge
(`api/edge.py`) with an `Overhead` per request."""

from __future__ import annotations

import time

from gateway.metrics import UpstreamWait, upstream_wait

HEADER = b"x-gateway-overhead-ms"


class Overhead:
    """From its making to `header()`: the time spent, less the upstream waits recorded
    meanwhile in this context (`metrics.upstream_wait`). `close()` once the request ends."""

    __slots__ = ("_started", "_token", "_waited")

    def __init__(self) -> None:
        self._started = time.perf_counter()
        self._waited = UpstreamWait()
        self._token = upstream_wait.set(self._waited)

    def header(self) -> tuple[bytes, bytes]:
        spent = (time.perf_counter() - self._started - self._waited.seconds) * 1000
        return (HEADER, b"%.2f" % max(spent, 0.0))

    def close(self) -> None:
        upstream_wait.reset(self._token)
