"""Databases for tests that run once per store backend: a SQLite file of the test's own, or a
schema of the test's own in the machine's PostgreSQL (dropped afterwards)."""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.store import RunStore, open_store

# The PostgreSQL server the tests use; its database must exist and take trust logins.
POSTGRES_URL = os.environ.get("GATEWAY_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Database:
    """Where one test's store lives: `url` is what --database takes."""

    backend: str
    url: str

    def store(self, *, busy_ms: int = 5000) -> RunStore:
        """A new, unopened store on this database (several may share it)."""
        return open_store(self.url, busy_ms=busy_ms)


@functools.cache
def postgres_missing() -> str | None:
    """None when the PostgreSQL server answers, else why it cannot be used."""
    try:
        _admin("SELECT 1")
    except (OSError, TimeoutError, ImportError) as exc:
        return f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}"
    except Exception as exc:  # asyncpg's own errors: refused login, missing database
        return f"PostgreSQL at {POSTGRES_URL} cannot be used: {exc}"
    return None


def _admin(sql: str) -> None:
    """Run `sql` on the server, from a thread of its own: the caller's thread may have an
    event loop running (Playwright's, or an async test's)."""
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, run()).result()


@contextmanager
def database(backend: str, folder: Path) -> Iterator[Database]:
    """Called outside any running event loop (fixtures, sync tests)."""
    if backend == "sqlite":
        yield Database("sqlite", str(folder / "gateway.db"))
        return
    schema = f"test_{uuid.uuid4().hex[:16]}"
    _admin(f"CREATE SCHEMA {schema}")
    try:
        yield Database("postgresql", f"{POSTGRES_URL}?search_path={schema}")
    finally:
        _admin(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(name="backend", params=BACKENDS)
def every_backend(request: pytest.FixtureRequest) -> str:
    """Import into a test module to run its tests once per store backend."""
    backend: str = request.param
    return backend
