"""Persistence: the store protocol and its backends, chosen by URL."""

from __future__ import annotations

from gateway.store.base import (
    OWNED_KINDS,
    ApiKey,
    CursorNotFoundError,
    IdempotentRecord,
    Kind,
    LoggedEvent,
    PageQuery,
    RunStore,
    StoreTx,
)


def open_store(database: str, *, busy_ms: int = 5000) -> RunStore:
    """The store named by `database` (a SQLite path or sqlite:/// URL); imported when chosen.
    A write waits `busy_ms` for another process's lock before it is refused."""
    from gateway.settings import sqlite_path
    from gateway.store.sqlite import SQLiteRunStore

    return SQLiteRunStore(sqlite_path(database), busy_ms=busy_ms)


__all__ = [
    "OWNED_KINDS",
    "ApiKey",
    "CursorNotFoundError",
    "IdempotentRecord",
    "Kind",
    "LoggedEvent",
    "PageQuery",
    "RunStore",
    "StoreTx",
    "open_store",
]
