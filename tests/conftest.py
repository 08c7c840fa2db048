"""Shared fixtures: a live gateway on a real SQLite file, and an openai SDK client for it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import openai
import pytest

from gateway.store import RunStore
from tests.server import LiveServer
from tests.stores import Database, database, postgres_missing

REQUIRE_SERVICES = os.environ.get("GATEWAY_REQUIRE_SERVICES") == "1"


def need(condition: bool, reason: str) -> None:
    """Skip when a service or file is absent, or fail when GATEWAY_REQUIRE_SERVICES=1."""
    if condition:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"required by GATEWAY_REQUIRE_SERVICES=1: {reason}")
    pytest.skip(reason)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The store backend of the test's database: sqlite, or GATEWAY_TEST_BACKEND (a test
    marked `sqlite_only` works on the file itself). A module whose tests run once per backend
    imports `every_backend` from tests.stores instead."""
    if request.node.get_closest_marker("sqlite_only"):
        return "sqlite"
    return os.environ.get("GATEWAY_TEST_BACKEND", "sqlite")


@pytest.fixture
def db(backend: str, tmp_path: Path) -> Iterator[Database]:
    """A database of the test's own: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if backend == "postgresql":
        missing = postgres_missing()
        need(missing is None, missing or "")
    with database(backend, tmp_path) as found:
        yield found


@pytest.fixture
async def store(db: Database) -> AsyncIterator[RunStore]:
    """An open store on the test's database."""
    opened = db.store()
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def server(db: Database, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A gateway on a fresh database; `@pytest.mark.settings(...)` overrides settings."""
    marker = request.node.get_closest_marker("settings")
    overrides = dict(marker.kwargs) if marker else {}
    live = LiveServer(db.url, **overrides).start()
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0) as c:
        yield c
