"""Shared fixtures: a live gateway on a real SQLite file, and an openai SDK client for it."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.server import LiveServer

# The SDK marks every Assistants method deprecated; calling them is what these tests do.
warnings.filterwarnings("ignore", category=DeprecationWarning)

REQUIRE_SERVICES = os.environ.get("GATEWAY_REQUIRE_SERVICES") == "1"


def need(condition: bool, reason: str) -> None:
    """Skip when a service or file is absent, or fail when GATEWAY_REQUIRE_SERVICES=1."""
    if condition:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"required by GATEWAY_REQUIRE_SERVICES=1: {reason}")
    pytest.skip(reason)


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A gateway on a fresh SQLite file; `@pytest.mark.settings(...)` overrides settings."""
    marker = request.node.get_closest_marker("settings")
    overrides = dict(marker.kwargs) if marker else {}
    live = LiveServer(tmp_path / "gateway.db", **overrides).start()  # type: ignore[arg-type]
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0) as c:
        yield c
