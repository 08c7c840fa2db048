"""Writes a run cannot go on without (its status, steps and messages, its event log) wait out
a database that refuses writes for a while, locked by another process or out of disk space,
instead of failing the run: the run pauses, its streams stay open on their pings, and once
the cause goes it carries on. Requests that only create something are not retried here; they
answer 503 store_unavailable at once, and their client retries."""

from __future__ import annotations

from typing import Any

from gateway.errors import StoreUnavailableError
from gateway.retrying import forever


def until_stored(what: str) -> Any:
    """Attempts at a write that must land: `async for attempt in until_stored("saving X"):
    with attempt: ...`. Only StoreUnavailableError is retried; any other error is raised.
    `what` names the write in the log lines of the failures."""
    return forever(StoreUnavailableError, what)
