"""The uvicorn server the gateway runs under (uvloop + httptools), with an orderly shutdown:
runs and their event streams are ended before uvicorn waits for open connections to close."""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette

from gateway.app import create_app, drain
from gateway.config import GatewayConfig
from gateway.models.base import ModelBackend
from gateway.settings import Settings


class GatewayServer(uvicorn.Server):
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
    return GatewayServer(
        uvicorn.Config(
            app,
            loop="uvloop",
            http="httptools",
            log_level=settings.log_level,
            lifespan="on",
            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        )
    )
