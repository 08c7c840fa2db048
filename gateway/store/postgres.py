"""The PostgreSQL store (asyncpg): the same contract as the SQLite store, for several gateway
processes on several hosts sharing one database.

Each write is one transaction on a pooled connection, run in a task of its own so that a
cancelled caller never leaves it half done (the SQLite store gets the same from its committer).
There is no group commit: PostgreSQL takes concurrent transactions itself, so writes from many
runs proceed in parallel instead of queueing for one writer. Reads go straight to the pool.

A database that cannot answer (down, restarting, out of connections or disk, a lock held past
`busy_ms`) raises StoreUnavailableError, which the API answers with a 503 and the engine waits
out, exactly as for SQLite.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, TypeVar

import asyncpg
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
from gateway.store.pg_migrations import MIGRATIONS
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

T = TypeVar("T")
# A connection of its own or one lent by the pool: the same calls.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

_ACTIVE: Final = sorted(ACTIVE_RUN_STATUSES)
# Taken while migrating, so that workers starting together migrate once, one after another.
_MIGRATION_LOCK: Final = 0x6761_7465  # "gate"

# Errors that mean "not now" rather than "never": the caller gets a 503 and may retry.
_UNAVAILABLE: Final = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08: the connection failed or was refused
    asyncpg.InsufficientResourcesError,  # class 53: disk full, out of memory or connections
    asyncpg.OperatorInterventionError,  # class 57: shutting down, starting up, cancelled
    asyncpg.LockNotAvailableError,  # a lock held past lock_timeout (busy_ms)
    asyncpg.TransactionRollbackError,  # class 40: serialization failure, deadlock
    asyncpg.exceptions.ConnectionDoesNotExistError,  # the server closed it mid-query
    asyncpg.exceptions.InterfaceError,  # e.g. a pool that lost its connections
)


def _unavailable(exc: BaseException) -> StoreUnavailableError | None:
    if isinstance(exc, _UNAVAILABLE):
        return StoreUnavailableError(f"{type(exc).__name__}: {exc}")
    return None


_INSERT: Final = {kind: insert_sql(kind, lambda i: f"${i}") for kind in Kind}
_UPSERT: Final = {kind: upsert_sql(kind, lambda i: f"${i}") for kind in Kind}
_ADD_CHUNK: Final = (
    "INSERT INTO vs_chunks (vector_store_id, file_id, position, text, tokens, embedding)"
    " VALUES ($1, $2, $3, $4, $5, $6)"
)
_PUT_CHUNK: Final = (
    "INSERT INTO blob_chunks (blob_id, part, seq, data, created_at) VALUES ($1, $2, $3, $4, $5)"
)
# The chunks of blobs no file holds whose newest chunk is older than the parameter.
_PRUNE_BLOBS: Final = (
    "DELETE FROM blob_chunks WHERE blob_id IN (SELECT blob_id FROM blob_chunks GROUP BY blob_id"
    " HAVING max(created_at) < $1) AND blob_id NOT IN (SELECT id FROM files)"
    " AND blob_id NOT IN (SELECT id FROM upload_parts)"
)
_APPEND_BLOCK: Final = (
    "INSERT INTO run_event_blocks (run_id, first_seq, last_seq, frames, created_at)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
)


def _count(status: str) -> int:
    """The row count of a command tag such as 'DELETE 3'."""
    return int(status.rsplit(" ", 1)[-1])


class _PostgresTx:
    """One write transaction on one connection: statements go out as they come."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def get(self, kind: Kind, object_id: str) -> Obj | None:
        rows = await self._conn.fetch(f"SELECT body FROM {TABLES[kind]} WHERE id=$1", object_id)
        return decode_first(rows)

    async def insert(self, kind: Kind, obj: AnyObj, *, project: str = "") -> None:
        values = [row_key(kind, obj), *row_values(kind, obj)]
        if kind in OWNED_KINDS:
            values.append(project)
        await self._conn.execute(_INSERT[kind], *values)

    async def save(self, kind: Kind, obj: AnyObj) -> None:
        await self._conn.execute(_UPSERT[kind], row_key(kind, obj), *row_values(kind, obj))

    async def delete(self, kind: Kind, object_id: str) -> bool:
        status = await self._conn.execute(f"DELETE FROM {TABLES[kind]} WHERE id=$1", object_id)
        return _count(status) > 0

    async def append_events(self, rows: Iterable[tuple[str, LoggedEvent, int]]) -> None:
        blocks = event_blocks(rows)
        if blocks:
            await self._conn.executemany(_APPEND_BLOCK, blocks)

    async def secret(self, name: str, make: Callable[[], str]) -> str:
        await self._conn.execute(
            "INSERT INTO gateway_secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            name,
            make(),
        )
        value: str = await self._conn.fetchval(
            "SELECT value FROM gateway_secrets WHERE name=$1", name
        )
        return value

    async def prune_events(self, before: int) -> int:
        status = await self._conn.execute(
            "DELETE FROM run_event_blocks WHERE created_at < $1 AND run_id IN"
            " (SELECT id FROM runs WHERE status <> ALL($2::text[]))",
            before,
            _ACTIVE,
        )
        return _count(status)

    async def put_chunk(self, blob_id: str, part: int, seq: int, data: bytes, at: int) -> None:
        await self._conn.execute(_PUT_CHUNK, blob_id, part, seq, data, at)

    async def delete_blob(self, blob_id: str) -> None:
        await self._conn.execute("DELETE FROM blob_chunks WHERE blob_id=$1", blob_id)

    async def move_blob(self, blob_id: str, to: str, part: int) -> None:
        await self._conn.execute(
            "UPDATE blob_chunks SET blob_id=$1, part=$2 WHERE blob_id=$3", to, part, blob_id
        )

    async def add_chunks(
        self, vector_store_id: str, file_id: str, chunks: Sequence[tuple[str, int, bytes | None]]
    ) -> None:
        await self._conn.executemany(
            _ADD_CHUNK,
            [
                (vector_store_id, file_id, position, text, tokens, embedding)
                for position, (text, tokens, embedding) in enumerate(chunks)
            ],
        )

    async def delete_chunks(self, vector_store_id: str, file_id: str | None = None) -> None:
        if file_id is None:
            await self._conn.execute(
                "DELETE FROM vs_chunks WHERE vector_store_id=$1", vector_store_id
            )
        else:
            await self._conn.execute(
                "DELETE FROM vs_chunks WHERE vector_store_id=$1 AND file_id=$2",
                vector_store_id,
                file_id,
            )

    async def claim_ingestion(self, owner: str, now: float, until: float) -> str | None:
        # SKIP LOCKED: processes claiming at once take different files, none waits.
        key: str | None = await self._conn.fetchval(
            "UPDATE vector_store_files SET owner=$1, lease_until=$2 WHERE seq = (SELECT seq"
            " FROM vector_store_files WHERE status='in_progress'"
            " AND (owner IS NULL OR lease_until < $3) ORDER BY seq LIMIT 1"
            " FOR UPDATE SKIP LOCKED) RETURNING id",
            owner,
            until,
            now,
        )
        return key

    async def renew_ingestion(self, key: str, owner: str, until: float) -> bool:
        status = await self._conn.execute(
            "UPDATE vector_store_files SET lease_until=$1 WHERE id=$2 AND owner=$3",
            until,
            key,
            owner,
        )
        return _count(status) > 0

    async def holds_ingestion(self, key: str, owner: str) -> bool:
        # FOR UPDATE: no other process takes it over between this check and the commit.
        found = await self._conn.fetchval(
            "SELECT 1 FROM vector_store_files WHERE id=$1 AND owner=$2 FOR UPDATE", key, owner
        )
        return found is not None

    async def release_ingestions(self, owner: str) -> int:
        status = await self._conn.execute(
            "UPDATE vector_store_files SET owner=NULL, lease_until=NULL"
            " WHERE owner=$1 AND status='in_progress'",
            owner,
        )
        return _count(status)

    async def prune_blobs(self, before: int) -> int:
        return _count(await self._conn.execute(_PRUNE_BLOBS, before))

    async def add_key(self, key: ApiKey) -> None:
        await self._conn.execute(
            "INSERT INTO api_keys (id, project, hash, created_at, revoked_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            key.id,
            key.project,
            key.hash,
            key.created_at,
            key.revoked_at,
        )

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
        await self._conn.execute(
            "DELETE FROM idempotency_keys WHERE project=$1 AND key=$2"
            " AND (created_at < $3 OR (status IS NULL AND created_at < $4))",
            project,
            key,
            expired_before,
            abandoned_before,
        )
        claimed = await self._conn.fetchval(
            "INSERT INTO idempotency_keys (project, key, fingerprint, created_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1",
            project,
            key,
            fingerprint,
            at,
        )
        if claimed is not None:
            return None
        row = await self._conn.fetchrow(
            "SELECT fingerprint, created_at, status, body, thread_id, run_id"
            " FROM idempotency_keys WHERE project=$1 AND key=$2",
            project,
            key,
        )
        assert row is not None  # the conflict was with a committed row, visible now
        return IdempotentRecord(*row)

    async def finish_idempotency(self, project: str, key: str, record: IdempotentRecord) -> None:
        await self._conn.execute(
            "UPDATE idempotency_keys SET status=$1, body=$2, thread_id=$3, run_id=$4"
            " WHERE project=$5 AND key=$6 AND created_at=$7 AND status IS NULL",
            record.status,
            record.body,
            record.thread_id,
            record.run_id,
            project,
            key,
            record.created_at,
        )

    async def release_idempotency(self, project: str, key: str, claimed_at: int) -> None:
        await self._conn.execute(
            "DELETE FROM idempotency_keys"
            " WHERE project=$1 AND key=$2 AND created_at=$3 AND status IS NULL",
            project,
            key,
            claimed_at,
        )

    async def prune_idempotency(self, before: int) -> int:
        status = await self._conn.execute(
            "DELETE FROM idempotency_keys WHERE created_at < $1", before
        )
        return _count(status)

    async def revoke_key(self, key_id: str, at: int) -> bool:
        status = await self._conn.execute(
            "UPDATE api_keys SET revoked_at=$1 WHERE id=$2 AND revoked_at IS NULL", at, key_id
        )
        return _count(status) > 0

    async def lease_run(self, run_id: str, owner: str, until: float) -> None:
        await self._conn.execute(
            "UPDATE runs SET owner=$1, lease_until=$2 WHERE id=$3", owner, until, run_id
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
        rows = await self._conn.fetch(
            "UPDATE runs SET owner=$1, lease_until=$2"
            " WHERE id=$3 AND status = ANY($4::text[]) AND ($7::text IS NULL OR status=$7)"
            " AND ($5 OR owner IS NULL OR owner=$1 OR lease_until < $6) RETURNING body",
            owner,
            until,
            run_id,
            _ACTIVE,
            force,
            now,
            status,
        )
        return decode_first(rows)

    async def renew_leases(self, owner: str, until: float) -> list[tuple[str, str | None]]:
        rows = await self._conn.fetch(
            "UPDATE runs SET lease_until=$1 WHERE owner=$2 AND status = ANY($3::text[])"
            " RETURNING id, stop_requested",
            until,
            owner,
            _ACTIVE,
        )
        return [(row[0], row[1]) for row in rows]

    async def hold_run(self, run_id: str, owner: str) -> Obj | None:
        rows = await self._conn.fetch(
            "SELECT body FROM runs WHERE id=$1 AND owner=$2 FOR UPDATE", run_id, owner
        )
        return decode_first(rows)

    async def request_stop(self, run_id: str, reason: str) -> bool:
        status = await self._conn.execute(
            "UPDATE runs SET stop_requested=$1 WHERE id=$2 AND status = ANY($3::text[])",
            reason,
            run_id,
            _ACTIVE,
        )
        return _count(status) > 0

    async def active_run(self, thread_id: str) -> Obj | None:
        rows = await self._conn.fetch(
            "SELECT body FROM runs WHERE thread_id=$1 AND status = ANY($2::text[]) LIMIT 1",
            thread_id,
            _ACTIVE,
        )
        return decode_first(rows)


class PostgresRunStore:
    shared = True  # any number of processes

    def __init__(self, dsn: str, *, busy_ms: int = 5000, pool_size: int = 10) -> None:
        self.dsn = dsn
        self.where = _safe(dsn)
        # How long a statement waits for a lock before it is refused (503), as for SQLite.
        self.busy_ms = busy_ms
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._writes: set[asyncio.Task[Any]] = set()

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                # A fixed pool: the connections a process holds do not swing with its load.
                min_size=self.pool_size,
                max_size=self.pool_size,
                server_settings={"lock_timeout": str(self.busy_ms)},
                timeout=10,
            )
            async with self._pool.acquire() as conn:
                await self._migrate(conn)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            await self.close()
            raise StoreOpenError(f"cannot open database {_safe(self.dsn)!r}: {exc}") from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._writes:
            await asyncio.wait(self._writes, timeout=10)
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.wait_for(pool.close(), timeout=10)

    @staticmethod
    async def _migrate(conn: Conn) -> None:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS gateway_schema (version INTEGER NOT NULL)"
            )
            version = await conn.fetchval("SELECT max(version) FROM gateway_schema") or 0
            if version > len(MIGRATIONS):
                raise StoreOpenError(
                    f"database schema version {version} is newer than this gateway knows "
                    f"({len(MIGRATIONS)}); upgrade the gateway"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                async with conn.transaction():
                    await conn.execute(script)
                    await conn.execute("INSERT INTO gateway_schema (version) VALUES ($1)", number)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)

    @property
    def _p(self) -> asyncpg.Pool:
        assert self._pool is not None, "store is not open"
        return self._pool

    async def write(self, fn: Callable[[_PostgresTx], Awaitable[T]]) -> T:
        task = asyncio.ensure_future(self._transaction(fn))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        # A caller that is cancelled leaves the transaction to finish (or roll back) whole.
        return await asyncio.shield(task)

    async def _transaction(self, fn: Callable[[_PostgresTx], Awaitable[T]]) -> T:
        try:
            async with self._p.acquire() as conn, conn.transaction():
                return await fn(_PostgresTx(conn))
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "runs_one_active_per_thread":
                raise active_run_conflict() from exc
            raise
        except Exception as exc:
            unavailable = _unavailable(exc)
            if unavailable is None:
                raise
            log.warning("a write was refused by the database: %s", exc)
            raise unavailable from exc

    async def _fetch(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        try:
            rows: list[asyncpg.Record] = await self._p.fetch(sql, *params)
        except asyncpg.CharacterNotInRepertoireError:
            # Text PostgreSQL cannot hold (a NUL byte, say, in an id from a URL) names nothing
            # stored: every id and column the gateway writes is its own or validated.
            return []
        except Exception as exc:
            unavailable = _unavailable(exc)
            if unavailable is None:
                raise
            raise unavailable from exc
        return rows

    async def get(self, kind: Kind, object_id: str, *, project: str | None = None) -> Obj | None:
        if project is None:
            rows = await self._fetch(f"SELECT body FROM {TABLES[kind]} WHERE id=$1", object_id)
            return decode_first(rows)
        assert kind in OWNED_KINDS, kind
        rows = await self._fetch(
            f"SELECT body FROM {TABLES[kind]} WHERE id=$1 AND project=$2", object_id, project
        )
        return decode_first(rows)

    async def project_of(self, kind: Kind, object_id: str) -> str | None:
        assert kind in OWNED_KINDS, kind
        rows = await self._fetch(f"SELECT project FROM {TABLES[kind]} WHERE id=$1", object_id)
        return str(rows[0][0]) if rows else None

    async def api_keys(self) -> list[ApiKey]:
        rows = await self._fetch(
            "SELECT id, project, hash, created_at, revoked_at FROM api_keys ORDER BY created_at, id"
        )
        return [ApiKey(*row) for row in rows]

    async def list_page(
        self, kind: Kind, query: PageQuery, **filters: str
    ) -> tuple[list[Obj], bool]:
        table = TABLES[kind]
        params: list[Any] = list(filters.values())
        where = [f"{column}=${i}" for i, column in enumerate(filters, start=1)]
        forward = query.order == "asc"
        for param, cursor, later in (("after", query.after, True), ("before", query.before, False)):
            if cursor is None:
                continue
            seq = await self._cursor_seq(kind, param, cursor, filters)
            # "after" means later in the chosen order; in desc order that is a smaller seq.
            params.append(seq)
            where.append(f"seq {'>' if later == forward else '<'} ${len(params)}")
        # A `before` page is read walking backwards from the cursor, then put back in order.
        backwards = query.before is not None and query.after is None
        ascending = forward != backwards
        params.append(query.limit + 1)
        sql = (
            f"SELECT body FROM {table}"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" ORDER BY seq {'ASC' if ascending else 'DESC'} LIMIT ${len(params)}"
        )
        rows = await self._fetch(sql, *params)
        has_more = len(rows) > query.limit
        items = [orjson.loads(row[0]) for row in rows[: query.limit]]
        if backwards:
            items.reverse()
        return items, has_more

    async def _cursor_seq(
        self, kind: Kind, param: str, cursor: str, filters: dict[str, str]
    ) -> int:
        where = "".join(f" AND {column}=${i}" for i, column in enumerate(filters, start=2))
        column = CURSOR_COLUMNS.get(kind, "id")
        rows = await self._fetch(
            f"SELECT seq FROM {TABLES[kind]} WHERE {column}=$1{where}", cursor, *filters.values()
        )
        if not rows:
            raise CursorNotFoundError(param, cursor)
        seq: int = rows[0][0]
        return seq

    async def list_all(self, kind: Kind, **filters: str) -> list[Obj]:
        where = " AND ".join(f"{c}=${i}" for i, c in enumerate(filters, start=1)) or "TRUE"
        rows = await self._fetch(
            f"SELECT body FROM {TABLES[kind]} WHERE {where} ORDER BY seq", *filters.values()
        )
        return [orjson.loads(row[0]) for row in rows]

    async def events_after(self, run_id: str, after: int) -> list[LoggedEvent]:
        rows = await self._fetch(
            "SELECT frames FROM run_event_blocks WHERE run_id=$1 AND last_seq>$2"
            " ORDER BY first_seq",
            run_id,
            after,
        )
        return [e for (frames,) in rows for e in split_block(frames) if e.seq > after]

    async def expired_ids(
        self, kind: Kind, now: int, *, limit: int = 1000, **filters: str
    ) -> list[str]:
        where = "".join(f" AND {column}=${i}" for i, column in enumerate(filters, start=3))
        rows = await self._fetch(
            f"SELECT id FROM {TABLES[kind]} WHERE expires_at <= $1{where} LIMIT $2",
            now,
            limit,
            *filters.values(),
        )
        return [row[0] for row in rows]

    async def file_chunk_texts(self, vector_store_id: str, file_id: str) -> list[str]:
        rows = await self._fetch(
            "SELECT text FROM vs_chunks WHERE vector_store_id=$1 AND file_id=$2 ORDER BY position",
            vector_store_id,
            file_id,
        )
        return [row[0] for row in rows]

    async def keyword_search(
        self,
        vector_store_ids: Sequence[str],
        terms: Sequence[str],
        limit: int,
        file_ids: Sequence[str] | None = None,
    ) -> list[tuple[int, float]]:
        if not terms or not vector_store_ids or (file_ids is not None and not file_ids):
            return []
        # Each term a phrase of its own (plainto_tsquery drops what is not a word), OR-ed.
        sql = (
            "WITH q AS (SELECT to_tsquery('english', string_agg(t::text, ' | ')) AS query"
            " FROM unnest($2::text[]) AS term, plainto_tsquery('english', term) AS t"
            " WHERE t::text <> '')"
            " SELECT c.seq, ts_rank_cd(c.words, q.query) AS score FROM vs_chunks c, q"
            " WHERE q.query IS NOT NULL AND c.vector_store_id = ANY($1::text[])"
            " AND c.words @@ q.query AND ($3::text[] IS NULL OR c.file_id = ANY($3::text[]))"
            " ORDER BY score DESC LIMIT $4"
        )
        rows = await self._fetch(
            sql,
            list(vector_store_ids),
            list(terms),
            None if file_ids is None else list(file_ids),
            limit,
        )
        return [(int(seq), float(score)) for seq, score in rows]

    async def chunk_rows(self, seqs: Sequence[int]) -> list[ChunkRow]:
        if not seqs:
            return []
        rows = await self._fetch(
            "SELECT seq, vector_store_id, file_id, position, text FROM vs_chunks"
            " WHERE seq = ANY($1::bigint[])",
            list(seqs),
        )
        return [ChunkRow(*row) for row in rows]

    async def chunk_stamp(self, vector_store_id: str) -> tuple[int, int]:
        rows = await self._fetch(
            "SELECT chunks, version FROM vs_chunk_stamps WHERE vector_store_id=$1",
            vector_store_id,
        )
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    async def embeddings_after(
        self, vector_store_id: str, after: int
    ) -> list[tuple[int, str, bytes | None]]:
        rows = await self._fetch(
            "SELECT seq, file_id, embedding FROM vs_chunks WHERE vector_store_id=$1 AND seq>$2"
            " ORDER BY seq",
            vector_store_id,
            after,
        )
        return [(int(seq), str(file_id), embedding) for seq, file_id, embedding in rows]

    async def next_chunk(self, blob_id: str, after: tuple[int, int]) -> Chunk | None:
        rows = await self._fetch(
            "SELECT part, seq, data FROM blob_chunks WHERE blob_id=$1 AND (part, seq) > ($2, $3)"
            " ORDER BY part, seq LIMIT 1",
            blob_id,
            *after,
        )
        return Chunk(*rows[0]) if rows else None

    async def orphaned_runs(self, owner: str, now: float, *, own: bool = True) -> list[Obj]:
        rows = await self._fetch(
            "SELECT body FROM runs WHERE status = ANY($1::text[])"
            " AND (owner IS NULL OR ($4 AND owner=$2) OR (owner<>$2 AND lease_until < $3))"
            " ORDER BY seq",
            _ACTIVE,
            owner,
            now,
            own,
        )
        return [orjson.loads(row[0]) for row in rows]

    async def runs_with_status(self, statuses: Iterable[str]) -> list[Obj]:
        rows = await self._fetch(
            "SELECT body FROM runs WHERE status = ANY($1::text[]) ORDER BY seq", list(statuses)
        )
        return [orjson.loads(row[0]) for row in rows]


def _safe(dsn: str) -> str:
    """The DSN without its password, for messages."""
    scheme, sep, rest = dsn.partition("://")
    if "@" not in rest:
        return dsn
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}@{host}"
