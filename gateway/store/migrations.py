"""Versioned schema migrations for the SQLite store; `PRAGMA user_version` records the version.

Append a new script to MIGRATIONS to change the schema; never edit one that has shipped.
"""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: the five object tables. `seq` gives creation order (created_at has one-second ties).
    """
    CREATE TABLE assistants (
        seq  INTEGER PRIMARY KEY AUTOINCREMENT,
        id   TEXT NOT NULL UNIQUE,
        body BLOB NOT NULL
    );
    CREATE TABLE threads (
        seq  INTEGER PRIMARY KEY AUTOINCREMENT,
        id   TEXT NOT NULL UNIQUE,
        body BLOB NOT NULL
    );
    CREATE TABLE messages (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        id        TEXT NOT NULL UNIQUE,
        thread_id TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
        run_id    TEXT,
        body      BLOB NOT NULL
    );
    CREATE INDEX messages_by_thread ON messages(thread_id, seq);
    CREATE INDEX messages_by_run ON messages(run_id) WHERE run_id IS NOT NULL;
    CREATE TABLE runs (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        thread_id    TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
        assistant_id TEXT NOT NULL,
        status       TEXT NOT NULL,
        expires_at   INTEGER,
        body         BLOB NOT NULL
    );
    CREATE INDEX runs_by_thread ON runs(thread_id, seq);
    CREATE INDEX runs_active ON runs(status, expires_at)
        WHERE status IN ('queued', 'in_progress', 'requires_action', 'cancelling');
    CREATE TABLE run_steps (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        id        TEXT NOT NULL UNIQUE,
        thread_id TEXT NOT NULL,
        run_id    TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        body      BLOB NOT NULL
    );
    CREATE INDEX run_steps_by_run ON run_steps(run_id, seq);
    """,
    # 2: the ordered event log of each run (frames as sent, ids included), and the gateway's
    # own secrets (the key that signs browser stream tokens), so both survive a restart.
    """
    CREATE TABLE run_events (
        run_id     TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        seq        INTEGER NOT NULL,
        name       TEXT NOT NULL,
        frame      BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    CREATE INDEX run_events_by_age ON run_events(created_at);
    CREATE TABLE gateway_secrets (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
)
