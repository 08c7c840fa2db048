"""Persistence: the store protocol and its backends, chosen by URL."""

from __future__ import annotations

from gateway.settings import is_postgres
from gateway.store.base import (
    OWNED_KINDS,
    ApiKey,
    Chunk,
    ChunkRow,
    CursorNotFoundError,
    IdempotentRecord,
    Kind,
    LoggedEvent,
    RunStore,
    StoreOpenError,
    StoreTx,
)
from gateway.types import PageQuery


def open_store(database: str, *, busy_ms: int = 5000, pool_size: int = 10) -> RunStore:
    """The store named by `database`: a postgresql:// URL, or a SQLite path or sqlite:/// URL;
    its module is imported when chosen. A write waits `busy_ms` for a lock another process
    holds before it is refused; a PostgreSQL store keeps `pool_size` connections."""
    if is_postgres(database):
        from gateway.store.postgres import PostgresRunStore

        return PostgresRunStore(database, busy_ms=busy_ms, pool_size=pool_size)
    from gateway.settings import sqlite_path
    from gateway.store.sqlite import SQLiteRunStore

    return SQLiteRunStore(sqlite_path(database), busy_ms=busy_ms)


__all__ = [
    "OWNED_KINDS",
    "ApiKey",
    "Chunk",
    "ChunkRow",
    "CursorNotFoundError",
    "IdempotentRecord",
    "Kind",
    "LoggedEvent",
    "PageQuery",
    "RunStore",
    "StoreOpenError",
    "StoreTx",
    "is_postgres",
    "open_store",
]
