"""The uvicorn server the gateway runs under (uvloop + httptools), with an orderly shutdown:
runs and their event streams are ended before uvicorn waits for open connections to close."""

from __future__ import annotations

import contextlib
import gc
import signal
import socket
from collections.abc import Callable, Iterator

import uvicorn
from starlette.applications import Starlette

from gateway.app import create_app, drain
from gateway.config import GatewayConfig
from gateway.connections import protocol_class
from gateway.metrics import Metrics
from gateway.models.base import ModelBackend
from gateway.settings import Settings

# The collector's thresholds while serving: a young-generation pass every 50,000 allocations
# instead of 700, and full passes a tenth as often. Every streamed token allocates a few
# objects; with the defaults, collections took 11% of the gateway's CPU in the burst benchmark
# (measured with gc.callbacks), and raising them gave 15-30% more events per second in the
# burst and emit-path cases (loadtests/bench.py, three rounds each, same run).
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Before serving: everything allocated at start-up (modules, the app) goes to the
    permanent generation, which collections skip, and the thresholds above apply."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class GatewayServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's, except that a SIGTERM whose shutdown has finished is not raised again
        afterwards: the process then exits with status 0, which is what service managers and
        `wait` take for a clean stop (killed by the signal, it exited -15). A SIGINT is still
        raised again, as a shell expects of Ctrl-C."""
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals[:] = [
                    s for s in self._captured_signals if s != signal.SIGTERM
                ]

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        if isinstance(app, Starlette):
            # Without this, an open stream would hold uvicorn until its graceful timeout.
            await drain(app)
        await super().shutdown(sockets=sockets)


def build_server(
    settings: Settings,
    *,
    config: GatewayConfig | None = None,
    backend_for: Callable[[str], ModelBackend] | None = None,
) -> GatewayServer:
    app = create_app(settings, config=config, backend_for=backend_for)
    metrics: Metrics = app.state.metrics
    http = protocol_class(
        request_timeout=settings.request_timeout_seconds,
        peer_timeout=settings.peer_timeout_seconds,
        dropped=metrics.connection_dropped,
        upload_rate=settings.min_upload_bytes_per_second,
    )
    return GatewayServer(
        uvicorn.Config(
            app,
            loop="uvloop",
            http=http,
            log_level=settings.log_level,
            log_config=None,  # the CLI configures logging (gateway.logs) for the process
            lifespan="on",
            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        )
    )
