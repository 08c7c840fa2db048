"""The processes a case measures: the fake upstream, gateways and the raw-ASGI baseline, each
started on a free loopback port and always stopped (`Fleet`), and what /proc says about them.

Every wait is bounded: a server that does not answer within `START_SECONDS` fails the case with
the tail of its log; one that does not stop within `STOP_SECONDS` of SIGTERM is killed.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

LOADTESTS = Path(__file__).resolve().parent.parent
ROOT = LOADTESTS.parent
PYTHON = sys.executable
START_SECONDS = 30.0
STOP_SECONDS = 15.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Every server ever started, so that even an exit that skips the `finally` kills them.
_started: list[subprocess.Popen[bytes]] = []


class ServerError(RuntimeError):
    """A server did not start, or exited while it was needed."""


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kib(self) -> int:
        """Resident memory (VmRSS) in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise ServerError(f"{self.name}: no VmRSS in /proc/{self.pid}/status")

    def cpu_seconds(self) -> float:
        """User + system CPU time so far, all threads."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, path: str) -> None:
        """Return once GET `path` answers 200."""
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with {self.process.returncode} while starting:\n"
                    + self.log_tail()
                )
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise ServerError(f"{self.name} did not answer within {START_SECONDS:.0f} s")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise ServerError(
                f"{self.name} exited with {self.process.returncode}:\n" + self.log_tail()
            )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within STOP_SECONDS."""
        _stop(self.process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_SECONDS)


@atexit.register
def _kill_leftovers() -> None:
    for process in _started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_SECONDS)


@dataclass
class Fleet:
    """Starts servers with their files in `workdir`; stops all of them on exit, even on error."""

    workdir: Path
    servers: list[Server] = field(default_factory=list)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop_all()

    def stop_all(self) -> None:
        while self.servers:
            self.stop(self.servers[-1])

    def stop(self, server: Server) -> None:
        try:
            server.stop()
        finally:
            if server in self.servers:
                self.servers.remove(server)

    def start(
        self, name: str, argv: list[str], ready_path: str, env: dict[str, str] | None = None
    ) -> Server:
        port = free_port()
        log = self.workdir / f"{name}-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*argv, "--port", str(port)],
                cwd=ROOT,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C in the terminal reaches only the benchmark, which
                # then stops the servers in order.
                start_new_session=True,
            )
        _started.append(process)
        server = Server(name, process, port, log)
        self.servers.append(server)
        server.wait_ready(ready_path)
        return server

    def fake_upstream(self) -> Server:
        script = str(LOADTESTS / "fake_upstream_server.py")
        return self.start("fake-upstream", [PYTHON, script], "/health")

    def raw_asgi(self, frames: Path | None = None) -> Server:
        argv = [PYTHON, str(LOADTESTS / "raw_asgi_app.py")]
        if frames is not None:
            argv += ["--frames", str(frames)]
        return self.start("raw-asgi", argv, "/health")

    def gateway(
        self,
        name: str,
        *,
        upstream: Server | None = None,
        delay_ms: float = 0.0,
        persist_events: bool = True,
        database: str | None = None,
        bus: str | None = None,
        settings: dict[str, str] | None = None,
    ) -> Server:
        """`gateway serve` with a fresh SQLite database, or on `database` and `bus` (URLs)
        shared with others; models `fake-*` go to `upstream` if given; `settings` are more
        GATEWAY_* variables."""
        folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))
        argv = [PYTHON, "-m", "gateway", "serve", "--host", "127.0.0.1"]
        argv += ["--database", database or str(folder / "gateway.db"), "--log-level", "warning"]
        if bus is not None:
            argv += ["--bus", bus]
        argv += ["--local-model-delay-ms", str(delay_ms)]
        if upstream is not None:
            config = folder / "gateway.toml"
            config.write_text(routing_config(upstream))
            argv += ["--config", str(config)]
        env = {"GATEWAY_PERSIST_EVENTS": "true" if persist_events else "false", **(settings or {})}
        return self.start(name, argv, "/readyz", env)


def routing_config(upstream: Server) -> str:
    return (
        "[[upstream]]\n"
        'name = "fake"\n'
        f'base_url = "{upstream.url}/v1"\n'
        'models = ["fake-*"]\n'
        "first_byte_timeout = 30\n"
        "idle_timeout = 30\n"
        "max_retries = 0\n"
    )
