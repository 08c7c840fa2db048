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


def open_store(database: str) -> RunStore:
    """The store named by `database` (a SQLite path or sqlite:/// URL); imported when chosen."""
    from gateway.settings import sqlite_path
    from gateway.store.sqlite import SQLiteRunStore

    return SQLiteRunStore(sqlite_path(database))


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
