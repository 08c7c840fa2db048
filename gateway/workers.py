"""`gateway serve --workers N`: N gateway processes on one listening socket.

The parent binds the socket once and starts N children, each a whole `gateway serve` given the
socket's file descriptor (`--fd`), so each has the gateway's own shutdown order (runs end before
connections close). uvicorn's own multi-process supervisor builds plain uvicorn servers in its
children, which would lose that order; hence this small one. Each child gets a stable name in
the shared database (`<worker id or host:port>/<index>`), so a worker that is restarted takes
its runs back at once.

The parent forwards SIGTERM and SIGINT to every child and waits for them (bounded). A child that
dies on its own is started again after a pause; one that keeps dying (5 times in a minute) stops
the whole server.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger("gateway.workers")

RESTART_PAUSE = 1.0  # seconds before a dead worker is started again
RESTART_LIMIT = 5  # deaths within RESTART_WINDOW that stop the server
RESTART_WINDOW = 60.0
POLL = 0.2


class Supervisor:
    def __init__(
        self, argv: Sequence[str], sock: socket.socket, count: int, *, owner: str, grace: float
    ) -> None:
        self.argv = list(argv)  # `serve` flags for each child, without --workers
        self.sock = sock
        self.count = count
        self.owner = owner
        self.grace = grace
        self.children: list[subprocess.Popen[bytes] | None] = [None] * count
        self.deaths: list[float] = []
        self.stopping = False

    def _start(self, index: int) -> None:
        fd = self.sock.fileno()
        argv = [sys.executable, "-m", "gateway", "serve", *self.argv, "--fd", str(fd)]
        # --workers from the environment would make each child a supervisor in turn.
        env = {**os.environ, "GATEWAY_WORKER_ID": f"{self.owner}/{index}", "GATEWAY_WORKERS": "1"}
        self.children[index] = subprocess.Popen(argv, pass_fds=(fd,), env=env)
        log.info("started worker %d (pid %d)", index, self.children[index].pid)  # type: ignore[union-attr]

    def _stop_all(self, signum: int = signal.SIGTERM) -> None:
        for child in self.children:
            if child is not None and child.poll() is None:
                child.send_signal(signum)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        self._stop_all(signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for index in range(self.count):
            self._start(index)
        failed = False
        while not self.stopping:
            time.sleep(POLL)
            for index, child in enumerate(self.children):
                if child is None or child.poll() is None or self.stopping:
                    continue
                now = time.monotonic()
                self.deaths = [t for t in self.deaths if now - t < RESTART_WINDOW] + [now]
                log.warning("worker %d exited with %s", index, child.returncode)
                if len(self.deaths) >= RESTART_LIMIT:
                    log.error("workers keep exiting: stopping the server")
                    failed = self.stopping = True
                    self._stop_all()
                    break
                time.sleep(RESTART_PAUSE)
                self._start(index)
        deadline = time.monotonic() + self.grace + 10
        for child in self.children:
            if child is None:
                continue
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.sock.close()
        return 1 if failed else 0
