"""SQLite store through aiosqlite: WAL, synchronous=NORMAL, foreign keys, one writer.

All writes go through one connection (its own thread); reads use a second connection so they
never queue behind a write. Reads of one row by its key (an assistant, a run, the project of a
thread) are answered on the event loop's own thread, from a third, read-only connection: such a
read costs about 4 us in SQLite, while the trip to a connection's thread costs 20 us (a hundred
at once) to 90 us (one alone) of the process's CPU, and waits behind every other trip queued
there. In WAL mode a reader takes no lock a writer holds; in the rare moments SQLite still
answers busy (another connection recovering the log, say), the read goes to the reader thread,
which waits. A row not in the OS's page cache costs a disk read on the loop: one B-tree lookup.
(Small commits on the loop's thread were tried too, with checkpoints left to the writer's
thread: within noise under a herd, +3-5% non-streamed runs/s, so not kept; see issue 19.)

Writes are group-committed. Every call to `write(fn)` joins a queue; one committer task takes
what is queued, runs each `fn` in turn inside one `BEGIN IMMEDIATE` transaction, commits once,
and only then answers each caller. Statements that return nothing are held by the transaction
and sent together (a run of the same statement as one `executemany`) before anything that reads
and at commit. Measured here, each call into the aiosqlite thread costs about 130 us of
wake-ups, so a write of three statements cost three hops plus BEGIN and COMMIT; a hundred runs
starting at once queued several hundred of them behind one another. A `fn` that raises has its
held statements dropped and gets its error, while the rest of the group commits; if it had
already sent some, the group is rolled back and every `fn` is run again alone. A write finishes
and commits even when its caller is cancelled; `close()` waits for the queue to drain.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

import aiosqlite
import orjson

from gateway.errors import StoreUnavailableError
from gateway.objects import ACTIVE_RUN_STATUSES
from gateway.store.base import (
    OWNED_KINDS,
    ApiKey,
    Chunk,
    ChunkRow,
    CursorNotFoundError,
    IdempotentRecord,
    Kind,
    LoggedEvent,
    StoreOpenError,
    active_run_conflict,
)
from gateway.store.eventblocks import event_blocks, split_block
from gateway.store.migrations import MIGRATIONS
from gateway.store.rows import (
    CURSOR_COLUMNS,
    TABLES,
    decode_first,
    insert_sql,
    row_key,
    row_values,
    upsert_sql,
)
from gateway.types import AnyObj, Obj, PageQuery

log = logging.getLogger("gateway.store")

_ACTIVE: Final = tuple(sorted(ACTIVE_RUN_STATUSES))
_ACTIVE_SQL: Final = ",".join("?" * len(_ACTIVE))


async def _connect(path: Path, busy_ms: int) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    await conn.execute("PRAGMA journal_mode=WAL")
    await conn.execute("PRAGMA synchronous=NORMAL")
    await conn.execute("PRAGMA foreign_keys=ON")
    await conn.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    return conn


# SQLite's words for a database that cannot take a write now, but may later: another process
# holds it past the busy timeout, or its disk is full or failing.
_UNAVAILABLE = ("database is locked", "database is busy", "disk is full", "disk I/O error")


def _open_point_reader(path: Path) -> sqlite3.Connection:
    """The read-only connection of the loop thread (see the module's docstring): it never
    waits for a lock (busy_timeout 0: a busy answer sends the read to the reader thread)."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    db.execute("PRAGMA busy_timeout=0")
    db.execute("PRAGMA query_only=ON")
    return db


def _unavailable(exc: Exception) -> StoreUnavailableError | None:
    """The 503 a client should see for `exc`, if the database is only unavailable for now."""
    if isinstance(exc, sqlite3.OperationalError) and any(w in str(exc) for w in _UNAVAILABLE):
        return StoreUnavailableError(str(exc))
    return None


_INSERT: Final = {kind: insert_sql(kind, lambda _: "?") for kind in Kind}
_GET: Final = {kind: f"SELECT body FROM {TABLES[kind]} WHERE id=?" for kind in Kind}
_GET_OWNED: Final = {
    kind: f"SELECT body FROM {TABLES[kind]} WHERE id=? AND project=?" for kind in OWNED_KINDS
}
_PROJECT_OF: Final = {
    kind: f"SELECT project FROM {TABLES[kind]} WHERE id=?" for kind in OWNED_KINDS
}
_UPSERT: Final = {kind: upsert_sql(kind, lambda _: "?") for kind in Kind}


def _quoted(word: str) -> str:
    """A word as an FTS5 string (a phrase of its tokens)."""
    return '"' + word.replace('"', '""') + '"'


_ADD_CHUNK: Final = (
    "INSERT INTO vs_chunks (vector_store_id, file_id, position, text, tokens, embedding)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_PUT_CHUNK: Final = (
    "INSERT INTO blob_chunks (blob_id, part, seq, data, created_at) VALUES (?, ?, ?, ?, ?)"
)
# The chunks of blobs no file holds whose newest chunk is older than the parameter.
_PRUNE_BLOBS: Final = (
    "DELETE FROM blob_chunks WHERE blob_id IN (SELECT blob_id FROM blob_chunks GROUP BY blob_id"
    " HAVING max(created_at) < ?) AND blob_id NOT IN (SELECT id FROM files)"
    " AND blob_id NOT IN (SELECT id FROM upload_parts)"
)
_APPEND_BLOCK: Final = (
    "INSERT OR IGNORE INTO run_event_blocks (run_id, first_seq, last_seq, frames, created_at)"
    " VALUES (?, ?, ?, ?, ?)"
)


T = TypeVar("T")


async def _in_thread(conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` with the connection's sqlite3 connection, on its own thread, in one trip.

    aiosqlite's public calls send one statement per trip to its thread, and a trip costs about
    130 us of thread wake-ups here, so a transaction of BEGIN, three statements and COMMIT
    cost five. aiosqlite has no public call for several statements at once; this uses the one
    its own public calls are built on (`Connection._execute`, with `_conn`, the sqlite3
    connection, read on that thread). pyproject.toml keeps aiosqlite within the releases this
    was checked against, and every store test goes through it."""
    result: T = await conn._execute(lambda: fn(conn._conn))  # type: ignore[no-untyped-call]
    return result


def _send(
    db: sqlite3.Connection, *, begin: bool, held: list[tuple[str, tuple[Any, ...]]], commit: bool
) -> None:
    """On the connection's thread: BEGIN if asked, the held statements (a run of the same
    statement as one executemany), COMMIT if asked."""
    if begin:
        db.execute("BEGIN IMMEDIATE")
    start = 0
    while start < len(held):
        sql = held[start][0]
        end = start + 1
        while end < len(held) and held[end][0] is sql:
            end += 1
        if end - start == 1:
            db.execute(sql, held[start][1])
        else:
            db.executemany(sql, [params for _, params in held[start:end]])
        start = end
    if commit:
        db.execute("COMMIT")


class _SQLiteTx:
    """One group commit's transaction. Writes that return nothing are held and sent together in
    one trip (`flush`); anything that reads or counts sends what is held first. `BEGIN
    IMMEDIATE` goes with the first statements sent, and COMMIT with the last, so a write with no
    read in it is one trip, and a group that comes down to one statement sends just that
    statement (see `SQLiteRunStore._transaction`)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self.held: list[tuple[str, tuple[Any, ...]]] = []
        self.flushes = 0
        self.begun = False

    async def flush(self, *, commit: bool = False) -> None:
        """Send what is held, after BEGIN if the transaction has not begun, and COMMIT if asked:
        all in one trip to the connection's thread."""
        held, self.held = self.held, []
        begin = not self.begun
        if held:
            self.flushes += 1
        if not (begin or held or commit):
            return
        await _in_thread(self._conn, partial(_send, begin=begin, held=held, commit=commit))
        self.begun = not commit

    async def get(self, kind: Kind, object_id: str) -> Obj | None:
        await self.flush()
        return await _get(self._conn, kind, object_id)

    async def insert(self, kind: Kind, obj: AnyObj, *, project: str = "") -> None:
        values = (row_key(kind, obj), *row_values(kind, obj))
        self.held.append((_INSERT[kind], (*values, project) if kind in OWNED_KINDS else values))

    async def save(self, kind: Kind, obj: AnyObj) -> None:
        self.held.append((_UPSERT[kind], (row_key(kind, obj), *row_values(kind, obj))))

    async def delete(self, kind: Kind, object_id: str) -> bool:
        await self.flush()
        cursor = await self._conn.execute(f"DELETE FROM {TABLES[kind]} WHERE id=?", (object_id,))
        return cursor.rowcount > 0

    async def append_events(self, rows: Iterable[tuple[str, LoggedEvent, int]]) -> None:
        self.held.extend((_APPEND_BLOCK, block) for block in event_blocks(rows))

    async def secret(self, name: str, make: Callable[[], str]) -> str:
        await self.flush()
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
        await self.flush()
        cursor = await self._conn.execute(
            f"DELETE FROM run_event_blocks WHERE created_at < ? AND run_id IN"
            f" (SELECT id FROM runs WHERE status NOT IN ({_ACTIVE_SQL}))",
            (before, *_ACTIVE),
        )
        return cursor.rowcount

    async def add_key(self, key: ApiKey) -> None:
        self.held.append(
            (
                "INSERT INTO api_keys (id, project, hash, created_at, revoked_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (key.id, key.project, key.hash, key.created_at, key.revoked_at),
            )
        )

    async def put_chunk(self, blob_id: str, part: int, seq: int, data: bytes, at: int) -> None:
        self.held.append((_PUT_CHUNK, (blob_id, part, seq, data, at)))

    async def delete_blob(self, blob_id: str) -> None:
        self.held.append(("DELETE FROM blob_chunks WHERE blob_id=?", (blob_id,)))

    async def move_blob(self, blob_id: str, to: str, part: int) -> None:
        self.held.append(
            ("UPDATE blob_chunks SET blob_id=?, part=? WHERE blob_id=?", (to, part, blob_id))
        )

    async def add_chunks(
        self, vector_store_id: str, file_id: str, chunks: Sequence[tuple[str, int, bytes | None]]
    ) -> None:
        self.held.extend(
            (_ADD_CHUNK, (vector_store_id, file_id, position, text, tokens, embedding))
            for position, (text, tokens, embedding) in enumerate(chunks)
        )

    async def delete_chunks(self, vector_store_id: str, file_id: str | None = None) -> None:
        if file_id is None:
            self.held.append(("DELETE FROM vs_chunks WHERE vector_store_id=?", (vector_store_id,)))
        else:
            sql = "DELETE FROM vs_chunks WHERE vector_store_id=? AND file_id=?"
            self.held.append((sql, (vector_store_id, file_id)))

    async def claim_ingestion(self, owner: str, now: float, until: float) -> str | None:
        await self.flush()
        rows = list(
            await self._conn.execute_fetchall(
                "UPDATE vector_store_files SET owner=?, lease_until=? WHERE seq = (SELECT seq"
                " FROM vector_store_files WHERE status='in_progress'"
                " AND (owner IS NULL OR lease_until < ?) ORDER BY seq LIMIT 1) RETURNING id",
                (owner, until, now),
            )
        )
        return str(rows[0][0]) if rows else None

    async def renew_ingestion(self, key: str, owner: str, until: float) -> bool:
        await self.flush()
        cursor = await self._conn.execute(
            "UPDATE vector_store_files SET lease_until=? WHERE id=? AND owner=?",
            (until, key, owner),
        )
        return cursor.rowcount > 0

    async def holds_ingestion(self, key: str, owner: str) -> bool:
        await self.flush()
        rows = await self._conn.execute_fetchall(
            "SELECT 1 FROM vector_store_files WHERE id=? AND owner=?", (key, owner)
        )
        return bool(list(rows))

    async def release_ingestions(self, owner: str) -> int:
        await self.flush()
        cursor = await self._conn.execute(
            "UPDATE vector_store_files SET owner=NULL, lease_until=NULL"
            " WHERE owner=? AND status='in_progress'",
            (owner,),
        )
        return cursor.rowcount

    async def prune_blobs(self, before: int) -> int:
        await self.flush()
        cursor = await self._conn.execute(_PRUNE_BLOBS, (before,))
        return cursor.rowcount

    async def claim_idempotency(
        self,
        project: str,
        key: str,
        fingerprint: bytes,
        at: int,
        *,
        expired_before: int,
        abandoned_before: int,
    ) -> IdempotentRecord | None:
        await self.flush()
        await self._conn.execute(
            "DELETE FROM idempotency_keys WHERE project=? AND key=?"
            " AND (created_at < ? OR (status IS NULL AND created_at < ?))",
            (project, key, expired_before, abandoned_before),
        )
        rows = list(
            await self._conn.execute_fetchall(
                "SELECT fingerprint, created_at, status, body, thread_id, run_id"
                " FROM idempotency_keys WHERE project=? AND key=?",
                (project, key),
            )
        )
        if rows:
            fp, created, status, body, thread_id, run_id = rows[0]
            return IdempotentRecord(
                bytes(fp), created, status, None if body is None else bytes(body), thread_id, run_id
            )
        self.held.append(
            (
                "INSERT INTO idempotency_keys (project, key, fingerprint, created_at)"
                " VALUES (?, ?, ?, ?)",
                (project, key, fingerprint, at),
            )
        )
        return None

    async def finish_idempotency(self, project: str, key: str, record: IdempotentRecord) -> None:
        self.held.append(
            (
                "UPDATE idempotency_keys SET status=?, body=?, thread_id=?, run_id=?"
                " WHERE project=? AND key=? AND created_at=? AND status IS NULL",
                (
                    *(record.status, record.body, record.thread_id, record.run_id),
                    *(project, key, record.created_at),
                ),
            )
        )

    async def release_idempotency(self, project: str, key: str, claimed_at: int) -> None:
        self.held.append(
            (
                "DELETE FROM idempotency_keys"
                " WHERE project=? AND key=? AND created_at=? AND status IS NULL",
                (project, key, claimed_at),
            )
        )

    async def prune_idempotency(self, before: int) -> int:
        await self.flush()
        cursor = await self._conn.execute(
            "DELETE FROM idempotency_keys WHERE created_at < ?", (before,)
        )
        return cursor.rowcount

    async def revoke_key(self, key_id: str, at: int) -> bool:
        await self.flush()
        cursor = await self._conn.execute(
            "UPDATE api_keys SET revoked_at=? WHERE id=? AND revoked_at IS NULL", (at, key_id)
        )
        return cursor.rowcount > 0

    async def lease_run(self, run_id: str, owner: str, until: float) -> None:
        self.held.append(
            ("UPDATE runs SET owner=?, lease_until=? WHERE id=?", (owner, until, run_id))
        )

    async def claim_run(
        self,
        run_id: str,
        owner: str,
        now: float,
        until: float,
        *,
        force: bool = False,
        status: str | None = None,
    ) -> Obj | None:
        await self.flush()
        rows = await self._conn.execute_fetchall(
            "UPDATE runs SET owner=?, lease_until=?"
            f" WHERE id=? AND status IN ({_ACTIVE_SQL}) AND (? IS NULL OR status=?)"
            " AND (? OR owner IS NULL OR owner=? OR lease_until < ?) RETURNING body",
            (owner, until, run_id, *_ACTIVE, status, status, force, owner, now),
        )
        return decode_first(rows)

    async def renew_leases(self, owner: str, until: float) -> list[tuple[str, str | None]]:
        await self.flush()
        rows = await self._conn.execute_fetchall(
            f"UPDATE runs SET lease_until=? WHERE owner=? AND status IN ({_ACTIVE_SQL})"
            " RETURNING id, stop_requested",
            (until, owner, *_ACTIVE),
        )
        return [(str(i), r) for i, r in rows]

    async def hold_run(self, run_id: str, owner: str) -> Obj | None:
        # The one writer connection already keeps every other write out of this transaction.
        await self.flush()
        rows = await self._conn.execute_fetchall(
            "SELECT body FROM runs WHERE id=? AND owner=?", (run_id, owner)
        )
        return decode_first(rows)

    async def request_stop(self, run_id: str, reason: str) -> bool:
        await self.flush()
        cursor = await self._conn.execute(
            f"UPDATE runs SET stop_requested=? WHERE id=? AND status IN ({_ACTIVE_SQL})",
            (reason, run_id, *_ACTIVE),
        )
        return cursor.rowcount > 0

    async def active_run(self, thread_id: str) -> Obj | None:
        await self.flush()
        rows = await self._conn.execute_fetchall(
            f"SELECT body FROM runs WHERE thread_id=? AND status IN ({_ACTIVE_SQL}) LIMIT 1",
            (thread_id, *_ACTIVE),
        )
        return decode_first(rows)


async def _get(conn: aiosqlite.Connection, kind: Kind, object_id: str) -> Obj | None:
    rows = await conn.execute_fetchall(_GET[kind], (object_id,))
    return decode_first(rows)


# The most writes one group commit takes, so that no transaction grows without bound.
MAX_GROUP: Final = 256


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _settle(future: asyncio.Future[Any], value: Any, error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)


class SQLiteRunStore:
    shared = False  # one process per file

    def __init__(self, path: Path, *, busy_ms: int = 5000) -> None:
        self.path = path
        self.where = str(path)
        # How long a write waits for another process's lock before it is refused (503).
        self.busy_ms = busy_ms
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._point: sqlite3.Connection | None = None  # used on the event loop's thread only
        self._queue: list[tuple[Callable[[_SQLiteTx], Awaitable[Any]], asyncio.Future[Any]]] = []
        self._committer: asyncio.Task[None] | None = None

    async def open(self) -> None:
        try:
            self._writer = await _connect(self.path, self.busy_ms)
            await self._migrate(self._writer)
            self._reader = await _connect(self.path, self.busy_ms)
            self._point = _open_point_reader(self.path)
        except (OSError, aiosqlite.Error) as exc:
            await self.close()
            raise StoreOpenError(f"cannot open database {str(self.path)!r}: {exc}") from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._committer is not None:
            await asyncio.wait([self._committer], timeout=10)
        if self._point is not None:
            self._point.close()
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = self._point = None

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
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        # A caller that was cancelled never reads the outcome; take it so none goes unread.
        future.add_done_callback(_consume)
        self._queue.append((fn, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_queued(), name="sqlite-commit")
        return await asyncio.shield(future)

    async def _commit_queued(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[Callable[[_SQLiteTx], Awaitable[Any]], Any]]) -> None:
        try:
            outcomes = await self._transaction(batch)
        except Exception as exc:
            unavailable = _unavailable(exc)
            if unavailable is not None:  # the whole group was rolled back; each caller is told
                log.warning("a write was refused by the database: %s", exc)
                for _, future in batch:
                    _settle(future, None, unavailable)
            elif len(batch) == 1:
                conflict = "UNIQUE constraint failed: runs.thread_id" in str(exc)
                _settle(batch[0][1], None, active_run_conflict() if conflict else exc)
            else:  # one of them failed after sending statements: each alone, in order
                for item in batch:
                    await self._commit([item])
            return
        for future, value, error in outcomes:
            _settle(future, value, error)

    async def _transaction(
        self, batch: list[tuple[Callable[[_SQLiteTx], Awaitable[Any]], Any]]
    ) -> list[tuple[Any, Any, Exception | None]]:
        conn = self._w
        tx = _SQLiteTx(conn)
        outcomes: list[tuple[Any, Any, Exception | None]] = []
        try:
            for fn, future in batch:
                mark, flushes = len(tx.held), tx.flushes
                try:
                    outcomes.append((future, await fn(tx), None))
                except Exception as exc:
                    if len(batch) == 1 or tx.flushes != flushes:
                        raise
                    del tx.held[mark:]  # nothing of it was sent: drop it, keep the others
                    outcomes.append((future, None, exc))
            if not tx.begun and len(tx.held) == 1:
                # One statement is atomic by itself: sent alone it is one round trip, not three.
                sql, params = tx.held.pop()
                await conn.execute(sql, params)
            elif tx.begun or tx.held:
                await tx.flush(commit=True)
        except BaseException:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise
        return outcomes

    async def _point_read(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """The rows of a read of one row by its key: on the loop's thread, or on the reader's
        when SQLite answers busy there (see the module's docstring)."""
        point = self._point
        if point is not None:
            try:
                return point.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if _unavailable(exc) is None:
                    raise
        return list(await self._r.execute_fetchall(sql, params))

    async def get(self, kind: Kind, object_id: str, *, project: str | None = None) -> Obj | None:
        if project is None:
            return decode_first(await self._point_read(_GET[kind], (object_id,)))
        assert kind in OWNED_KINDS, kind
        return decode_first(await self._point_read(_GET_OWNED[kind], (object_id, project)))

    async def project_of(self, kind: Kind, object_id: str) -> str | None:
        assert kind in OWNED_KINDS, kind
        rows = await self._point_read(_PROJECT_OF[kind], (object_id,))
        return str(rows[0][0]) if rows else None

    async def api_keys(self) -> list[ApiKey]:
        rows = await self._r.execute_fetchall(
            "SELECT id, project, hash, created_at, revoked_at FROM api_keys ORDER BY created_at, id"
        )
        return [ApiKey(i, p, bytes(h), c, r) for i, p, h, c, r in rows]

    async def list_page(
        self, kind: Kind, query: PageQuery, **filters: str
    ) -> tuple[list[Obj], bool]:
        table = TABLES[kind]
        where = [f"{column}=?" for column in filters]
        params: list[Any] = list(filters.values())
        forward = query.order == "asc"
        for param, cursor, later in (("after", query.after, True), ("before", query.before, False)):
            if cursor is None:
                continue
            seq = await self._cursor_seq(kind, param, cursor, where, params)
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
        self, kind: Kind, param: str, cursor: str, where: list[str], params: list[Any]
    ) -> int:
        column = CURSOR_COLUMNS.get(kind, "id")
        sql = f"SELECT seq FROM {TABLES[kind]} WHERE {column}=?" + "".join(
            f" AND {w}" for w in where
        )
        rows = list(await self._r.execute_fetchall(sql, (cursor, *params)))
        if not rows:
            raise CursorNotFoundError(param, cursor)
        seq: int = rows[0][0]
        return seq

    async def list_all(self, kind: Kind, **filters: str) -> list[Obj]:
        where = " AND ".join(f"{column}=?" for column in filters) or "1"
        rows = await self._r.execute_fetchall(
            f"SELECT body FROM {TABLES[kind]} WHERE {where} ORDER BY seq", tuple(filters.values())
        )
        return [orjson.loads(row[0]) for row in rows]

    async def events_after(self, run_id: str, after: int) -> list[LoggedEvent]:
        rows = await self._r.execute_fetchall(
            "SELECT frames FROM run_event_blocks WHERE run_id=? AND last_seq>? ORDER BY first_seq",
            (run_id, after),
        )
        return [e for (frames,) in rows for e in split_block(frames) if e.seq > after]

    async def expired_ids(
        self, kind: Kind, now: int, *, limit: int = 1000, **filters: str
    ) -> list[str]:
        where = "".join(f" AND {column}=?" for column in filters)
        rows = await self._r.execute_fetchall(
            f"SELECT id FROM {TABLES[kind]} WHERE expires_at <= ?{where} LIMIT ?",
            (now, *filters.values(), limit),
        )
        return [row[0] for row in rows]

    async def file_chunk_texts(self, vector_store_id: str, file_id: str) -> list[str]:
        rows = await self._r.execute_fetchall(
            "SELECT text FROM vs_chunks WHERE vector_store_id=? AND file_id=? ORDER BY position",
            (vector_store_id, file_id),
        )
        return [row[0] for row in rows]

    async def keyword_search(
        self,
        vector_store_ids: Sequence[str],
        terms: Sequence[str],
        limit: int,
        file_ids: Sequence[str] | None = None,
    ) -> list[tuple[int, float]]:
        if not terms or not vector_store_ids:
            return []
        if file_ids is not None and not file_ids:
            return []
        # Each term and store id quoted: FTS5 reads them as words, whatever they hold. The
        # stores are matched in the index itself, so other stores' chunks cost nothing.
        words = " OR ".join(_quoted(term) for term in terms)
        stores = " OR ".join(_quoted(store) for store in vector_store_ids)
        match = f"vector_store_id : ({stores}) AND text : ({words})"
        sql = (
            "SELECT c.seq, bm25(vs_chunks_fts, 1.0, 0.0) FROM vs_chunks_fts"
            " JOIN vs_chunks c ON c.seq = vs_chunks_fts.rowid WHERE vs_chunks_fts MATCH ?"
        )
        params: list[Any] = [match]
        if file_ids is not None:
            sql += f" AND c.file_id IN ({','.join('?' * len(file_ids))})"
            params += file_ids
        sql += " ORDER BY bm25(vs_chunks_fts, 1.0, 0.0) LIMIT ?"
        rows = await self._r.execute_fetchall(sql, (*params, limit))
        # bm25() is lower for better matches; the protocol's scores are higher for better.
        return [(int(seq), -float(score)) for seq, score in rows]

    async def chunk_rows(self, seqs: Sequence[int]) -> list[ChunkRow]:
        if not seqs:
            return []
        rows = await self._r.execute_fetchall(
            "SELECT seq, vector_store_id, file_id, position, text FROM vs_chunks"
            f" WHERE seq IN ({','.join('?' * len(seqs))})",
            tuple(seqs),
        )
        return [ChunkRow(*row) for row in rows]

    async def chunk_stamp(self, vector_store_id: str) -> tuple[int, int]:
        rows = list(
            await self._r.execute_fetchall(
                "SELECT chunks, version FROM vs_chunk_stamps WHERE vector_store_id=?",
                (vector_store_id,),
            )
        )
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    async def embeddings_after(
        self, vector_store_id: str, after: int
    ) -> list[tuple[int, str, bytes | None]]:
        rows = await self._r.execute_fetchall(
            "SELECT seq, file_id, embedding FROM vs_chunks WHERE vector_store_id=? AND seq>?"
            " ORDER BY seq",
            (vector_store_id, after),
        )
        return [(int(seq), str(file_id), embedding) for seq, file_id, embedding in rows]

    async def next_chunk(self, blob_id: str, after: tuple[int, int]) -> Chunk | None:
        rows = list(
            await self._r.execute_fetchall(
                "SELECT part, seq, data FROM blob_chunks WHERE blob_id=? AND (part, seq) > (?, ?)"
                " ORDER BY part, seq LIMIT 1",
                (blob_id, *after),
            )
        )
        return Chunk(*rows[0]) if rows else None

    async def orphaned_runs(self, owner: str, now: float, *, own: bool = True) -> list[Obj]:
        # One process uses a SQLite file: at its start, every active run is a previous one's.
        return await self.runs_with_status(ACTIVE_RUN_STATUSES)

    async def runs_with_status(self, statuses: Iterable[str]) -> list[Obj]:
        wanted = tuple(statuses)
        rows = await self._r.execute_fetchall(
            f"SELECT body FROM runs WHERE status IN ({','.join('?' * len(wanted))}) ORDER BY seq",
            wanted,
        )
        return [orjson.loads(row[0]) for row in rows]
