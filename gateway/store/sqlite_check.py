"""The CLI's look at a SQLite database file before serving, with the standard library's sqlite3
alone: importing the store itself (aiosqlite and the rest) before the server starts would cost
every idle stream about 1 KiB more later (the heap the server grows into, measured with
loadtests/bench.py --cases idle_streams)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.store.base import StoreOpenError
from gateway.store.migrations import MIGRATIONS


def count_keys_in_file(path: Path) -> int:
    """Open the database file once for writing, outside any event loop (the CLI's check before
    serving); how many API keys it holds. StoreOpenError when it cannot be used: locked,
    unreadable, or made by a newer gateway."""
    try:
        conn = sqlite3.connect(path, timeout=5, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            has_keys = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='api_keys'"
            ).fetchone()[0]
            keys = conn.execute("SELECT count(*) FROM api_keys").fetchone()[0] if has_keys else 0
            conn.execute("ROLLBACK")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreOpenError(str(exc)) from None
    if version > len(MIGRATIONS):
        raise StoreOpenError(
            f"it has schema version {version}, newer than this gateway knows "
            f"({len(MIGRATIONS)}): upgrade the gateway"
        )
    return int(keys)
