"""A gateway in a process of its own, for tests that kill it, signal it or read its
resources from outside: a free loopback port, start, and wait until ready."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from tests.waiting import eventually_async


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    database: Path | str, port: int, *flags: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`gateway serve` on `port` and `database`, the local model at 20 ms a token unless
    `flags` say otherwise; `env` adds GATEWAY_* variables."""
    argv = [sys.executable, "-m", "gateway", "serve", "--port", str(port)]
    argv += ["--database", str(database), "--local-model-delay-ms", "20", "--log-level", "warning"]
    return subprocess.Popen(
        [*argv, *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


async def ready(http: aiohttp.ClientSession, port: int, seconds: float = 20) -> float:
    """Seconds until /readyz answers 200."""
    started = time.monotonic()

    async def answers() -> bool:
        try:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    await eventually_async(
        answers, timeout=seconds, interval=0.05, what="the gateway to become ready"
    )
    return time.monotonic() - started


async def new_assistant(http: aiohttp.ClientSession, api: str) -> str:
    """An assistant on the built-in model, made through `api` (a base URL ending in /v1)."""
    async with http.post(f"{api}/assistants", json={"model": "local"}) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["id"])
