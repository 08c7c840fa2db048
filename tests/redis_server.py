"""Redis for tests: the machine's server (each test under a key prefix of its own), or a
private redis-server on a free loopback port that a test may stop and start again."""

from __future__ import annotations

import functools
import shutil
import socket
import subprocess
from pathlib import Path

import redis
import redis.asyncio as aioredis

from tests.process import free_port
from tests.waiting import eventually

REDIS_URL = "redis://127.0.0.1:6379/0"


@functools.cache
def redis_missing() -> str | None:
    """None when the machine's Redis answers, else why it cannot be used."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except (redis.RedisError, OSError) as exc:
        return f"Redis is not reachable at {REDIS_URL}: {exc}"
    return None


async def forget_prefix(prefix: str) -> None:
    """Delete a test's keys."""
    client = aioredis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


class PrivateRedis:
    """A redis-server of the test's own, keeping nothing on disk: stop() and start() again
    on the same port is a Redis restart that loses every key."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def missing() -> str | None:
        return None if shutil.which("redis-server") else "redis-server is not installed"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        self._process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        eventually(self._answers, interval=0.05, what=f"redis-server to listen on {self.port}")
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            self._process = None
