"""SQLite store through aiosqlite: WAL, synchronous=NORMAL, foreign keys, one writer.

All writes go through one connection (its own thread) under one lock, each inside
`BEGIN IMMEDIATE`; reads use a second connection so they never queue behind a write. A write runs
as its own task, shielded from the caller's cancellation and awaited by `close()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Final, TypeVar

import aiosqlite
import orjson

from gateway.objects import ACTIVE_RUN_STATUSES
from gateway.store.base import CursorNotFoundError, Kind, LoggedEvent, PageQuery
from gateway.store.eventblocks import event_blocks, split_block
from gateway.store.migrations import MIGRATIONS
from gateway.types import Obj

_TABLES: Final = {
    Kind.ASSISTANT: "assistants",
    Kind.THREAD: "threads",
    Kind.MESSAGE: "messages",
    Kind.RUN: "runs",
    Kind.STEP: "run_steps",
}
# Columns copied out of the object so rows can be found without decoding bodies.
_COLUMNS: Final[dict[Kind, tuple[str, ...]]] = {
    Kind.ASSISTANT: (),
    Kind.THREAD: (),
    Kind.MESSAGE: ("thread_id", "run_id"),
    Kind.RUN: ("thread_id", "assistant_id", "status", "expires_at"),
    Kind.STEP: ("thread_id", "run_id"),
}
_ACTIVE: Final = tuple(sorted(ACTIVE_RUN_STATUSES))
_ACTIVE_SQL: Final = ",".join("?" * len(_ACTIVE))


class StoreOpenError(Exception):
    """The database file cannot be opened or migrated."""


async def _connect(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    await conn.execute("PRAGMA journal_mode=WAL")
    await conn.execute("PRAGMA synchronous=NORMAL")
    await conn.execute("PRAGMA foreign_keys=ON")
    await conn.execute("PRAGMA busy_timeout=5000")
    return conn


def _row_values(kind: Kind, obj: Obj) -> tuple[Any, ...]:
    return (*(obj.get(c) for c in _COLUMNS[kind]), orjson.dumps(obj))


class _SQLiteTx:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def get(self, kind: Kind, object_id: str) -> Obj | None:
        return await _get(self._conn, kind, object_id)

    async def insert(self, kind: Kind, obj: Obj) -> None:
        columns = ("id", *_COLUMNS[kind], "body")
        marks = ",".join("?" * len(columns))
        await self._conn.execute(
            f"INSERT INTO {_TABLES[kind]} ({','.join(columns)}) VALUES ({marks})",
            (obj["id"], *_row_values(kind, obj)),
        )

    async def save(self, kind: Kind, obj: Obj) -> None:
        columns = ("id", *_COLUMNS[kind], "body")
        marks = ",".join("?" * len(columns))
        sets = ",".join(f"{c}=excluded.{c}" for c in columns[1:])
        # An upsert, not INSERT OR REPLACE: REPLACE deletes the row and cascades to its children.
        await self._conn.execute(
            f"INSERT INTO {_TABLES[kind]} ({','.join(columns)}) VALUES ({marks})"
            f" ON CONFLICT(id) DO UPDATE SET {sets}",
            (obj["id"], *_row_values(kind, obj)),
        )

    async def delete(self, kind: Kind, object_id: str) -> bool:
        cursor = await self._conn.execute(f"DELETE FROM {_TABLES[kind]} WHERE id=?", (object_id,))
        return cursor.rowcount > 0

    async def append_events(self, rows: Iterable[tuple[str, LoggedEvent, int]]) -> None:
        await self._conn.executemany(
            "INSERT OR IGNORE INTO run_event_blocks (run_id, first_seq, last_seq, frames,"
            " created_at) VALUES (?, ?, ?, ?, ?)",
            event_blocks(rows),
        )

    async def secret(self, name: str, make: Callable[[], str]) -> str:
        rows = list(
            await self._conn.execute_fetchall(
                "SELECT value FROM gateway_secrets WHERE name=?", (name,)
            )
        )
        if rows:
            value: str = rows[0][0]
            return value
        value = make()
        await self._conn.execute(
            "INSERT INTO gateway_secrets (name, value) VALUES (?, ?)", (name, value)
        )
        return value

    async def prune_events(self, before: int) -> int:
        cursor = await self._conn.execute(
            f"DELETE FROM run_event_blocks WHERE created_at < ? AND run_id IN"
            f" (SELECT id FROM runs WHERE status NOT IN ({_ACTIVE_SQL}))",
            (before, *_ACTIVE),
        )
        return cursor.rowcount

    async def active_run(self, thread_id: str) -> Obj | None:
        rows = await self._conn.execute_fetchall(
            f"SELECT body FROM runs WHERE thread_id=? AND status IN ({_ACTIVE_SQL}) LIMIT 1",
            (thread_id, *_ACTIVE),
        )
        return _decode_first(rows)


async def _get(conn: aiosqlite.Connection, kind: Kind, object_id: str) -> Obj | None:
    rows = await conn.execute_fetchall(f"SELECT body FROM {_TABLES[kind]} WHERE id=?", (object_id,))
    return _decode_first(rows)


def _decode_first(rows: Iterable[Any]) -> Obj | None:
    for row in rows:
        decoded: Obj = orjson.loads(row[0])
        return decoded
    return None


T = TypeVar("T")


class SQLiteRunStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._writes: set[asyncio.Task[Any]] = set()

    async def open(self) -> None:
        try:
            self._writer = await _connect(self.path)
            await self._migrate(self._writer)
            self._reader = await _connect(self.path)
        except (OSError, aiosqlite.Error) as exc:
            await self.close()
            raise StoreOpenError(f"cannot open database {str(self.path)!r}: {exc}") from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._writes:
            await asyncio.wait(self._writes, timeout=10)
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    @staticmethod
    async def _migrate(conn: aiosqlite.Connection) -> None:
        rows = await conn.execute_fetchall("PRAGMA user_version")
        version = next(iter(rows))[0]
        if version > len(MIGRATIONS):
            raise StoreOpenError(
                f"database schema version {version} is newer than this gateway knows "
                f"({len(MIGRATIONS)}); upgrade the gateway"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            # executescript commits first, so run each migration as one explicit transaction.
            await conn.executescript(
                f"BEGIN IMMEDIATE; {script}; PRAGMA user_version={number}; COMMIT;"
            )

    @property
    def _w(self) -> aiosqlite.Connection:
        assert self._writer is not None, "store is not open"
        return self._writer

    @property
    def _r(self) -> aiosqlite.Connection:
        assert self._reader is not None, "store is not open"
        return self._reader

    async def write(self, fn: Callable[[_SQLiteTx], Awaitable[T]]) -> T:
        task = asyncio.ensure_future(self._transact(fn))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return await asyncio.shield(task)

    async def _transact(self, fn: Callable[[_SQLiteTx], Awaitable[T]]) -> T:
        async with self._write_lock:
            conn = self._w
            await conn.execute("BEGIN IMMEDIATE")
            try:
                result = await fn(_SQLiteTx(conn))
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")
            return result

    async def get(self, kind: Kind, object_id: str) -> Obj | None:
        return await _get(self._r, kind, object_id)

    async def list_page(
        self, kind: Kind, query: PageQuery, **filters: str
    ) -> tuple[list[Obj], bool]:
        table = _TABLES[kind]
        where = [f"{column}=?" for column in filters]
        params: list[Any] = list(filters.values())
        forward = query.order == "asc"
        for param, cursor, later in (("after", query.after, True), ("before", query.before, False)):
            if cursor is None:
                continue
            seq = await self._cursor_seq(table, param, cursor, where, params)
            # "after" means later in the chosen order; in desc order that is a smaller seq.
            where.append("seq > ?" if later == forward else "seq < ?")
            params.append(seq)
        # A `before` page is read walking backwards from the cursor, then put back in order.
        backwards = query.before is not None and query.after is None
        ascending = forward != backwards
        sql = (
            f"SELECT body FROM {table}"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" ORDER BY seq {'ASC' if ascending else 'DESC'} LIMIT ?"
        )
        rows = list(await self._r.execute_fetchall(sql, (*params, query.limit + 1)))
        has_more = len(rows) > query.limit
        items = [orjson.loads(row[0]) for row in rows[: query.limit]]
        if backwards:
            items.reverse()
        return items, has_more

    async def _cursor_seq(
        self, table: str, param: str, cursor: str, where: list[str], params: list[Any]
    ) -> int:
        sql = f"SELECT seq FROM {table} WHERE id=?" + "".join(f" AND {w}" for w in where)
        rows = list(await self._r.execute_fetchall(sql, (cursor, *params)))
        if not rows:
            raise CursorNotFoundError(param, cursor)
        seq: int = rows[0][0]
        return seq

    async def list_all(self, kind: Kind, **filters: str) -> list[Obj]:
        where = " AND ".join(f"{column}=?" for column in filters) or "1"
        rows = await self._r.execute_fetchall(
            f"SELECT body FROM {_TABLES[kind]} WHERE {where} ORDER BY seq", tuple(filters.values())
        )
        return [orjson.loads(row[0]) for row in rows]

    async def events_after(self, run_id: str, after: int) -> list[LoggedEvent]:
        rows = await self._r.execute_fetchall(
            "SELECT frames FROM run_event_blocks WHERE run_id=? AND last_seq>? ORDER BY first_seq",
            (run_id, after),
        )
        return [e for (frames,) in rows for e in split_block(frames) if e.seq > after]

    async def runs_with_status(self, statuses: Iterable[str]) -> list[Obj]:
        wanted = tuple(statuses)
        rows = await self._r.execute_fetchall(
            f"SELECT body FROM runs WHERE status IN ({','.join('?' * len(wanted))}) ORDER BY seq",
            wanted,
        )
        return [orjson.loads(row[0]) for row in rows]
