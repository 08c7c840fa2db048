"""A real uvicorn serving the gateway on an ephemeral loopback port, in a background thread."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from gateway.config import GatewayConfig
from gateway.models.base import ModelBackend
from gateway.serving import build_server
from gateway.settings import Settings
from tests.waiting import eventually


class LiveServer:
    """Start, stop and restart the gateway on one SQLite file; `base_url` ends in /v1."""

    def __init__(
        self,
        database: Path | str,
        backend_for: Callable[[str], ModelBackend] | None = None,
        config: GatewayConfig | None = None,
        **settings: object,
    ) -> None:
        # Tests run the local model unpaced unless they ask for a pace, and without
        # code_interpreter's sandbox unless they ask for it (its check costs a process).
        settings = {"local_model_delay_ms": 0.0, "code_interpreter": "off", **settings}
        self.settings = replace(Settings(), database=str(database), **settings)  # type: ignore[arg-type]
        self.backend_for = backend_for
        self.config = config
        self.app: Starlette | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def start(self) -> LiveServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self._server = build_server(
            replace(self.settings, log_level="warning"),
            config=self.config,
            backend_for=self.backend_for,
        )
        app = self._server.config.app
        assert isinstance(app, Starlette)
        self.app = app
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        server, thread = self._server, self._thread
        eventually(lambda: server.started or not thread.is_alive(), what="the gateway to start")
        if not server.started:
            raise RuntimeError("gateway did not start")
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(15)
            if self._thread.is_alive():
                raise RuntimeError("gateway did not stop")
        self._server = self._thread = None

    def restart(self) -> None:
        """Stop and start again on the same port and database."""
        self.stop()
        self.start()
