"""The store contract, run once per backend (a SQLite file, a PostgreSQL schema): transactions,
pagination, cascades, lifecycle; then what is SQLite's own (pragmas, migrations, group commit)."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, cast

import aiosqlite
import asyncpg
import pytest

from gateway import events, objects
from gateway.errors import ConflictError, StoreUnavailableError
from gateway.store import RunStore, StoreOpenError, open_store
from gateway.store.base import (
    CursorNotFoundError,
    IdempotentRecord,
    Kind,
    LoggedEvent,
    StoreTx,
)
from gateway.store.migrations import MIGRATIONS
from gateway.store.rows import row_key
from gateway.store.sqlite import SQLiteRunStore
from gateway.types import AnyObj, Obj, PageQuery
from gateway.wire import Assistant, Run, Step
from tests.stores import Database, every_backend  # noqa: F401  (runs each test per backend)
from tests.waiting import eventually_async


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "gateway.db"


@pytest.fixture
async def sqlite_store(db_path: Path) -> AsyncIterator[SQLiteRunStore]:
    opened = SQLiteRunStore(db_path)
    await opened.open()
    yield opened
    await opened.close()


# What each backend raises for a broken constraint (the gateway never relies on catching it).
INTEGRITY_ERRORS = (sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError)


def _pragma(path: Path, name: str) -> Any:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


def _new_assistant() -> Assistant:
    return objects.assistant({"model": "gateway-local", "name": "helper"})


def _new_run(thread: AnyObj, assistant: AnyObj) -> Run:
    return objects.run(thread_id=thread["id"], assistant=assistant, fields={}, expiry_seconds=600)


def _new_step(run: Run) -> Step:
    details = {"type": "message_creation", "message_creation": {"message_id": "msg_x"}}
    return objects.step(run, details)


async def _insert(store: RunStore, *items: tuple[Kind, AnyObj]) -> None:
    async def fn(tx: StoreTx) -> None:
        for kind, obj in items:
            await tx.insert(kind, obj)

    await store.write(fn)


async def _seed(store: RunStore) -> dict[Kind, AnyObj]:
    """One object of every kind, parents first, inserted in one write."""
    assistant = _new_assistant()
    thread = objects.thread({})
    message = objects.user_message(thread["id"], {"role": "user", "content": "hi"})
    run = _new_run(thread, assistant)
    step = _new_step(run)
    upload = objects.upload(filename="b.txt", purpose="assistants", size=3, created=1)
    vs = objects.vector_store(name="v", expires_after=None, metadata=None, created=1)
    seeded: dict[Kind, AnyObj] = {
        Kind.ASSISTANT: assistant,
        Kind.THREAD: thread,
        Kind.MESSAGE: message,
        Kind.RUN: run,
        Kind.STEP: step,
        Kind.FILE: objects.file(filename="a.txt", purpose="assistants", size=3, expires_after=60),
        Kind.UPLOAD: upload,
        Kind.UPLOAD_PART: {**objects.upload_part(upload["id"], created=1), "bytes": 3},
        Kind.VECTOR_STORE: vs,
        Kind.VECTOR_STORE_FILE: objects.vector_store_file(
            vs["id"], "file-x", chunking_strategy=None, attributes={"a": 1}, created=1
        ),
        Kind.FILE_BATCH: objects.file_batch(vs["id"], created=1, total=0),
    }
    await _insert(store, *seeded.items())
    return seeded


async def _assistants(store: RunStore, count: int) -> list[str]:
    """Insert `count` assistants one write at a time and return their ids, oldest first."""
    made = [_new_assistant() for _ in range(count)]
    for assistant in made:
        await _insert(store, (Kind.ASSISTANT, assistant))
    return [a["id"] for a in made]


async def _eventually(store: RunStore, kind: Kind, object_id: str) -> Obj:
    """The object once a write still in flight has committed it (SQLite's single writer
    commits in order; PostgreSQL's concurrent transactions need not): polled for up to 5 s."""
    return await eventually_async(
        lambda: store.get(kind, object_id),
        timeout=5,
        interval=0.05,
        what=f"{kind.name} {object_id} to be committed",
    )


def _cursor_query(param: str, cursor: str) -> PageQuery:
    return PageQuery(after=cursor) if param == "after" else PageQuery(before=cursor)


def _ids(items: Sequence[AnyObj]) -> list[str]:
    return [item["id"] for item in items]


# -- open / migrations ---------------------------------------------------------------------------


async def test_open_applies_every_migration(sqlite_store: SQLiteRunStore, db_path: Path) -> None:
    """A fresh file is migrated to the newest schema version."""
    assert _pragma(db_path, "user_version") == len(MIGRATIONS)


async def test_open_sets_wal_journal_mode(sqlite_store: SQLiteRunStore, db_path: Path) -> None:
    """The database file is left in WAL mode, which persists across connections."""
    assert _pragma(db_path, "journal_mode") == "wal"


async def test_store_connections_enforce_foreign_keys(sqlite_store: SQLiteRunStore) -> None:
    """Both store connections run with foreign keys on, so an orphan message is refused."""
    for conn in (sqlite_store._writer, sqlite_store._reader):
        assert conn is not None
        rows = list(await conn.execute_fetchall("PRAGMA foreign_keys"))
        assert rows[0][0] == 1
    orphan = objects.user_message("thread_missing", {"role": "user", "content": "hi"})
    with pytest.raises(sqlite3.IntegrityError):
        await _insert(sqlite_store, (Kind.MESSAGE, orphan))


async def test_reopen_keeps_schema_and_data(db_path: Path) -> None:
    """Reopening a migrated file runs no migration again (it would fail on existing tables)."""
    first = SQLiteRunStore(db_path)
    await first.open()
    [assistant_id] = await _assistants(first, 1)
    await first.close()

    second = SQLiteRunStore(db_path)
    await second.open()
    try:
        assert _pragma(db_path, "user_version") == len(MIGRATIONS)
        assert await second.get(Kind.ASSISTANT, assistant_id) is not None
    finally:
        await second.close()


async def test_newer_schema_version_is_refused(db_path: Path) -> None:
    """A file migrated by a newer gateway raises StoreOpenError instead of being touched."""
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    conn.close()
    store = SQLiteRunStore(db_path)
    try:
        with pytest.raises(StoreOpenError, match="newer"):
            await store.open()
    finally:
        await store.close()
    assert _pragma(db_path, "user_version") == len(MIGRATIONS) + 1


async def test_refused_open_leaves_no_connection_thread(db_path: Path) -> None:
    """A failed open() closes what it opened: no aiosqlite thread outlives the error."""
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    conn.close()
    before = set(threading.enumerate())
    store = SQLiteRunStore(db_path)
    try:
        with pytest.raises(StoreOpenError):
            await store.open()
        started = set(threading.enumerate()) - before
        for thread in started:
            thread.join(timeout=1)
        leaked = [thread for thread in started if thread.is_alive()]
    finally:
        # The lifespan never calls close() after a failed open(); this only keeps pytest exiting.
        await store.close()
    assert leaked == []


@pytest.mark.parametrize("where", ["missing-folder", "file-as-folder"])
async def test_unopenable_path_raises_store_open_error(tmp_path: Path, where: str) -> None:
    """A database path whose folder is missing or is not a folder raises StoreOpenError."""
    if where == "file-as-folder":
        (tmp_path / "plain-file").write_text("not a folder")
        path = tmp_path / "plain-file" / "gateway.db"
    else:
        path = tmp_path / "no" / "such" / "folder" / "gateway.db"
    before = set(threading.enumerate())
    store = SQLiteRunStore(path)
    with pytest.raises(StoreOpenError):
        await store.open()
    # aiosqlite stops the failed connection's thread without awaiting it; joining here also keeps
    # that thread from reporting to this test's event loop after the loop has closed.
    started = set(threading.enumerate()) - before
    for thread in started:
        thread.join(timeout=1)
    assert [thread for thread in started if thread.is_alive()] == []
    assert not path.exists()


# -- write transactions --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(Kind))
async def test_insert_then_get_roundtrips_every_kind(store: RunStore, kind: Kind) -> None:
    """An inserted object comes back from get() exactly as it went in."""
    seeded = await _seed(store)
    assert await store.get(kind, row_key(kind, seeded[kind])) == seeded[kind]


async def test_get_unknown_id_returns_none(store: RunStore) -> None:
    """get() of an id never stored is None, not an error."""
    assert await store.get(Kind.THREAD, "thread_missing") is None


async def test_tx_reads_its_own_writes(store: RunStore) -> None:
    """Inside a write, tx.get() sees an object the same transaction inserted."""
    assistant = _new_assistant()

    async def fn(tx: StoreTx) -> Obj | None:
        await tx.insert(Kind.ASSISTANT, assistant)
        return await tx.get(Kind.ASSISTANT, assistant["id"])

    assert await store.write(fn) == assistant


async def test_ids_no_object_can_have_find_nothing(store: RunStore) -> None:
    """An id with a NUL byte or other text no id holds (from a URL) is simply not found, as a
    get, a list filter and a cursor: PostgreSQL cannot even hold such text."""
    await _seed(store)
    odd = "asst_\x00\u0080x"
    assert await store.get(Kind.ASSISTANT, odd) is None
    assert await store.get(Kind.THREAD, odd, project="p") is None
    assert await store.list_all(Kind.MESSAGE, thread_id=odd) == []
    with pytest.raises(CursorNotFoundError):
        await store.list_page(Kind.ASSISTANT, PageQuery(after=odd))


async def test_an_orphan_message_is_refused(store: RunStore) -> None:
    """Foreign keys hold: a message of a thread that does not exist is not stored."""
    orphan = objects.user_message("thread_missing", {"role": "user", "content": "hi"})
    with pytest.raises(INTEGRITY_ERRORS):
        await _insert(store, (Kind.MESSAGE, orphan))
    assert await store.get(Kind.MESSAGE, orphan["id"]) is None


async def test_insert_of_existing_id_is_refused(store: RunStore) -> None:
    """insert() never overwrites: a second insert of the same id is an integrity error."""
    [assistant_id] = await _assistants(store, 1)
    again = {**_new_assistant(), "id": assistant_id}
    with pytest.raises(INTEGRITY_ERRORS):
        await _insert(store, (Kind.ASSISTANT, again))


async def test_save_upserts_without_deleting_children(store: RunStore) -> None:
    """Saving an existing thread updates it in place and keeps its messages, runs and steps."""
    seeded = await _seed(store)
    thread = {**seeded[Kind.THREAD], "metadata": {"k": "v"}}

    async def fn(tx: StoreTx) -> None:
        await tx.save(Kind.THREAD, thread)

    await store.write(fn)
    assert await store.get(Kind.THREAD, thread["id"]) == thread
    for kind in (Kind.MESSAGE, Kind.RUN, Kind.STEP):
        assert await store.get(kind, seeded[kind]["id"]) == seeded[kind]


async def test_save_updates_lookup_columns(store: RunStore) -> None:
    """Saving a run with a new status moves it between runs_with_status() answers."""
    seeded = await _seed(store)
    done = {**seeded[Kind.RUN], "status": "completed"}

    async def fn(tx: StoreTx) -> None:
        await tx.save(Kind.RUN, done)

    await store.write(fn)
    assert await store.runs_with_status(["queued"]) == []
    assert await store.runs_with_status(["completed"]) == [done]


async def test_save_inserts_a_new_object(store: RunStore) -> None:
    """save() of an unknown id inserts it."""
    assistant = _new_assistant()

    async def fn(tx: StoreTx) -> None:
        await tx.save(Kind.ASSISTANT, assistant)

    await store.write(fn)
    assert await store.get(Kind.ASSISTANT, assistant["id"]) == assistant


async def test_raising_write_rolls_back_everything(store: RunStore) -> None:
    """A write fn that raises persists none of its changes and the store stays usable."""
    thread = objects.thread({})
    message = objects.user_message(thread["id"], {"role": "user", "content": "hi"})

    async def fn(tx: StoreTx) -> None:
        await tx.insert(Kind.THREAD, thread)
        await tx.insert(Kind.MESSAGE, message)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await store.write(fn)
    assert await store.get(Kind.THREAD, thread["id"]) is None
    assert await store.get(Kind.MESSAGE, message["id"]) is None

    await _insert(store, (Kind.THREAD, thread))
    assert await store.get(Kind.THREAD, thread["id"]) == thread


async def test_delete_reports_whether_a_row_went(store: RunStore) -> None:
    """tx.delete() is True for a stored id and False for an unknown one."""
    [assistant_id] = await _assistants(store, 1)

    async def fn(tx: StoreTx) -> tuple[bool, bool]:
        return await tx.delete(Kind.ASSISTANT, assistant_id), await tx.delete(
            Kind.ASSISTANT, "asst_missing"
        )

    assert await store.write(fn) == (True, False)
    assert await store.get(Kind.ASSISTANT, assistant_id) is None


async def test_write_cancelled_while_running_still_commits(store: RunStore) -> None:
    """Cancelling the caller of a running write does not stop the write from committing."""
    thread = objects.thread({})
    message = objects.user_message(thread["id"], {"role": "user", "content": "hi"})
    running = asyncio.Event()

    async def fn(tx: StoreTx) -> None:
        running.set()
        await tx.insert(Kind.THREAD, thread)
        await tx.insert(Kind.MESSAGE, message)

    caller = asyncio.create_task(store.write(fn))
    await running.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller

    assert await _eventually(store, Kind.THREAD, thread["id"]) == thread
    assert await _eventually(store, Kind.MESSAGE, message["id"]) == message


async def test_write_cancelled_while_queued_still_commits(store: RunStore) -> None:
    """A write whose caller is cancelled while it waits behind another write still commits."""
    gate = asyncio.Event()
    holding = asyncio.Event()
    queued = asyncio.Event()
    assistant = _new_assistant()

    async def hold(tx: StoreTx) -> None:
        holding.set()
        await gate.wait()

    async def fn(tx: StoreTx) -> None:
        await tx.insert(Kind.ASSISTANT, assistant)

    async def caller() -> None:
        queued.set()
        # write() schedules its transaction before its first suspension, in this same step.
        await store.write(fn)

    holder = asyncio.create_task(store.write(hold))
    await holding.wait()
    queued_caller = asyncio.create_task(caller())
    await queued.wait()
    queued_caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued_caller
    gate.set()
    await holder

    assert await _eventually(store, Kind.ASSISTANT, assistant["id"]) == assistant


async def test_close_waits_for_a_cancelled_write(db: Database) -> None:
    """close() lets an in-flight write whose caller was cancelled commit before closing."""
    store = db.store()
    await store.open()
    assistant = _new_assistant()
    running = asyncio.Event()

    async def fn(tx: StoreTx) -> None:
        running.set()
        await tx.insert(Kind.ASSISTANT, assistant)

    caller = asyncio.create_task(store.write(fn))
    await running.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await store.close()

    reopened = db.store()
    await reopened.open()
    try:
        assert await reopened.get(Kind.ASSISTANT, assistant["id"]) == assistant
    finally:
        await reopened.close()


# -- list_page -----------------------------------------------------------------------------------


async def test_list_page_defaults_to_newest_first(store: RunStore) -> None:
    """Without an order, a page lists the newest object first."""
    made = await _assistants(store, 3)
    items, has_more = await store.list_page(Kind.ASSISTANT, PageQuery())
    assert _ids(items) == made[::-1]
    assert has_more is False


async def test_list_page_asc_lists_oldest_first(store: RunStore) -> None:
    """order=asc lists in creation order."""
    made = await _assistants(store, 3)
    items, _ = await store.list_page(Kind.ASSISTANT, PageQuery(order="asc"))
    assert _ids(items) == made


@pytest.mark.parametrize(("limit", "expected_more"), [(1, True), (4, True), (5, False), (6, False)])
async def test_list_page_limit_and_exact_has_more(
    store: RunStore, limit: int, expected_more: bool
) -> None:
    """A page holds at most `limit` items; has_more is True only if another item follows."""
    made = await _assistants(store, 5)
    items, has_more = await store.list_page(Kind.ASSISTANT, PageQuery(limit=limit, order="asc"))
    assert _ids(items) == made[:limit]
    assert has_more is expected_more


async def test_list_page_of_empty_collection(store: RunStore) -> None:
    """An empty collection lists no items and no more."""
    assert await store.list_page(Kind.ASSISTANT, PageQuery()) == ([], False)


# Five assistants a0..a4 created in that order; expected pages name them by index.
CURSOR_CASES = [
    # order, after, before, limit, expected indices, has_more
    ("asc", 1, None, 20, [2, 3, 4], False),
    ("asc", 1, None, 2, [2, 3], True),
    ("asc", 4, None, 20, [], False),
    ("asc", None, 3, 20, [0, 1, 2], False),
    ("asc", None, 3, 2, [1, 2], True),
    ("asc", None, 0, 20, [], False),
    ("desc", 3, None, 20, [2, 1, 0], False),
    ("desc", 3, None, 2, [2, 1], True),
    ("desc", 0, None, 20, [], False),
    ("desc", None, 1, 20, [4, 3, 2], False),
    ("desc", None, 1, 2, [3, 2], True),
    ("desc", None, 4, 20, [], False),
    ("asc", 0, 4, 20, [1, 2, 3], False),
    ("desc", 4, 0, 20, [3, 2, 1], False),
]


@pytest.mark.parametrize(
    ("order", "after", "before", "limit", "expected", "expected_more"), CURSOR_CASES
)
async def test_list_page_cursors(
    store: RunStore,
    order: Any,
    after: int | None,
    before: int | None,
    limit: int,
    expected: list[int],
    expected_more: bool,
) -> None:
    """after/before select the items strictly past/short of the cursor in the listed order."""
    made = await _assistants(store, 5)
    query = PageQuery(
        limit=limit,
        order=order,
        after=None if after is None else made[after],
        before=None if before is None else made[before],
    )
    items, has_more = await store.list_page(Kind.ASSISTANT, query)
    assert _ids(items) == [made[i] for i in expected]
    assert has_more is expected_more


async def test_list_page_walks_every_item_once(store: RunStore) -> None:
    """Following last_id with `after` visits every item exactly once, in order."""
    made = await _assistants(store, 7)
    seen: list[str] = []
    after: str | None = None
    while True:
        items, has_more = await store.list_page(Kind.ASSISTANT, PageQuery(limit=3, after=after))
        seen += _ids(items)
        if not has_more:
            break
        after = items[-1]["id"]
    assert seen == made[::-1]


@pytest.mark.parametrize("param", ["after", "before"])
async def test_unknown_cursor_raises(store: RunStore, param: str) -> None:
    """A cursor naming no stored object raises CursorNotFoundError naming the parameter."""
    await _assistants(store, 2)
    query = _cursor_query(param, "asst_missing")
    with pytest.raises(CursorNotFoundError) as caught:
        await store.list_page(Kind.ASSISTANT, query)
    assert caught.value.param == param
    assert caught.value.cursor == "asst_missing"


async def _two_threads_of_messages(store: RunStore) -> tuple[dict[str, list[str]], Run]:
    """Two threads with three messages each, interleaved; the last two of thread A tie to a run."""
    assistant = _new_assistant()
    thread_a, thread_b = objects.thread({}), objects.thread({})
    run = _new_run(thread_a, assistant)
    await _insert(
        store, (Kind.ASSISTANT, assistant), (Kind.THREAD, thread_a), (Kind.THREAD, thread_b)
    )
    await _insert(store, (Kind.RUN, run))
    ids: dict[str, list[str]] = {thread_a["id"]: [], thread_b["id"]: []}
    for n in range(3):
        for thread in (thread_a, thread_b):
            if thread is thread_a and n > 0:
                message = objects.assistant_message(run)
            else:
                message = objects.user_message(thread["id"], {"role": "user", "content": f"{n}"})
            await _insert(store, (Kind.MESSAGE, message))
            ids[thread["id"]].append(message["id"])
    return ids, run


async def test_list_page_filters_messages_by_thread(store: RunStore) -> None:
    """Filtering by thread_id lists only that thread's messages."""
    ids, _ = await _two_threads_of_messages(store)
    for thread_id, message_ids in ids.items():
        items, has_more = await store.list_page(
            Kind.MESSAGE, PageQuery(order="asc"), thread_id=thread_id
        )
        assert _ids(items) == message_ids
        assert has_more is False


async def test_list_page_filters_messages_by_run(store: RunStore) -> None:
    """Filtering by thread_id and run_id lists only the run's messages."""
    ids, run = await _two_threads_of_messages(store)
    items, _ = await store.list_page(
        Kind.MESSAGE, PageQuery(order="asc"), thread_id=run["thread_id"], run_id=run["id"]
    )
    assert _ids(items) == ids[run["thread_id"]][1:]


async def test_list_page_cursor_within_filter(store: RunStore) -> None:
    """A cursor inside the filtered collection pages within that collection only."""
    ids, run = await _two_threads_of_messages(store)
    thread_ids = ids[run["thread_id"]]
    items, _ = await store.list_page(
        Kind.MESSAGE, PageQuery(order="asc", after=thread_ids[0]), thread_id=run["thread_id"]
    )
    assert _ids(items) == thread_ids[1:]


@pytest.mark.parametrize("param", ["after", "before"])
async def test_cursor_from_another_thread_is_unknown(store: RunStore, param: str) -> None:
    """A message id from another thread is no cursor for this thread's messages."""
    ids, run = await _two_threads_of_messages(store)
    [other] = [t for t in ids if t != run["thread_id"]]
    query = _cursor_query(param, ids[other][1])
    with pytest.raises(CursorNotFoundError) as caught:
        await store.list_page(Kind.MESSAGE, query, thread_id=run["thread_id"])
    assert caught.value.param == param


# -- list_all / runs_with_status -----------------------------------------------------------------


async def test_list_all_is_oldest_first(store: RunStore) -> None:
    """list_all() returns every object in creation order."""
    made = await _assistants(store, 4)
    assert _ids(await store.list_all(Kind.ASSISTANT)) == made


async def test_list_all_filters(store: RunStore) -> None:
    """list_all() with filters returns only matching objects, oldest first."""
    ids, run = await _two_threads_of_messages(store)
    for thread_id, message_ids in ids.items():
        assert _ids(await store.list_all(Kind.MESSAGE, thread_id=thread_id)) == message_ids
    by_run = await store.list_all(Kind.MESSAGE, run_id=run["id"])
    assert _ids(by_run) == ids[run["thread_id"]][1:]
    assert await store.list_all(Kind.MESSAGE, thread_id="thread_missing") == []


async def test_runs_with_status(store: RunStore) -> None:
    """runs_with_status() returns the runs in any of the given statuses, oldest first."""
    assistant = _new_assistant()
    statuses = ["queued", "in_progress", "completed", "requires_action", "failed"]
    threads = [objects.thread({}) for _ in statuses]  # one active run per thread at most
    runs = [
        {**_new_run(thread, assistant), "status": status}
        for thread, status in zip(threads, statuses, strict=True)
    ]
    await _insert(
        store,
        (Kind.ASSISTANT, assistant),
        *((Kind.THREAD, thread) for thread in threads),
        *((Kind.RUN, run) for run in runs),
    )
    active = await store.runs_with_status(["requires_action", "queued", "in_progress"])
    assert _ids(active) == _ids(runs[:2] + runs[3:4])
    assert await store.runs_with_status(["completed"]) == [runs[2]]
    assert await store.runs_with_status(["expired"]) == []
    assert await store.runs_with_status([]) == []


async def test_tx_active_run(store: RunStore) -> None:
    """tx.active_run() finds the thread's run in an active status and ignores finished ones."""
    seeded = await _seed(store)
    thread_id = seeded[Kind.THREAD]["id"]

    async def active(tx: StoreTx) -> Obj | None:
        return await tx.active_run(thread_id)

    assert await store.write(active) == seeded[Kind.RUN]

    async def finish(tx: StoreTx) -> None:
        await tx.save(Kind.RUN, {**seeded[Kind.RUN], "status": "completed"})

    await store.write(finish)
    assert await store.write(active) is None


# -- cascade and durability ----------------------------------------------------------------------


async def test_deleting_a_thread_cascades(store: RunStore) -> None:
    """Deleting a thread deletes its messages, runs and run steps, and nothing else."""
    seeded = await _seed(store)
    other = await _seed(store)

    async def fn(tx: StoreTx) -> bool:
        return await tx.delete(Kind.THREAD, seeded[Kind.THREAD]["id"])

    assert await store.write(fn) is True
    for kind in (Kind.THREAD, Kind.MESSAGE, Kind.RUN, Kind.STEP):
        assert await store.get(kind, seeded[kind]["id"]) is None
    assert await store.list_all(Kind.STEP, run_id=seeded[Kind.RUN]["id"]) == []
    assert await store.get(Kind.ASSISTANT, seeded[Kind.ASSISTANT]["id"]) is not None
    for kind, obj in other.items():
        assert await store.get(kind, row_key(kind, obj)) == obj


async def test_data_survives_close_and_reopen(db: Database) -> None:
    """Everything written is there after close() and a fresh open() of the same database."""
    first = db.store()
    await first.open()
    seeded = await _seed(first)
    await first.close()

    second = db.store()
    await second.open()
    try:
        for kind, obj in seeded.items():
            assert await second.get(kind, row_key(kind, obj)) == obj
    finally:
        await second.close()


async def test_close_leaves_no_threads(db_path: Path) -> None:
    """close() stops both aiosqlite connection threads."""
    store = SQLiteRunStore(db_path)
    await store.open()
    await _seed(store)
    assert store._writer is not None and store._reader is not None
    # Each aiosqlite connection's own worker thread (counting every thread of the process
    # instead was flaky: other tests' threads come and go while this one runs).
    started = [store._writer._thread, store._reader._thread]
    assert len(set(started)) == 2 and all(thread.is_alive() for thread in started)
    await store.close()
    for thread in started:
        # The worker answers close() just before its loop exits; give it a moment to return.
        thread.join(timeout=1)
    assert [thread for thread in started if thread.is_alive()] == []


async def test_close_twice_is_harmless(db: Database) -> None:
    """A second close() is a no-op: it raises nothing, the store stays closed (it refuses a
    write, saying so), and the database opens again with what was written before."""
    store = db.store()
    await store.open()
    kept = _new_assistant()
    await _insert(store, (Kind.ASSISTANT, kept))
    await store.close()
    await store.close()
    with pytest.raises(AssertionError, match="store is not open"):
        await _insert(store, (Kind.ASSISTANT, _new_assistant()))
    again = db.store()
    await again.open()
    try:
        assert await again.get(Kind.ASSISTANT, kept["id"]) == kept
        assert await again.list_all(Kind.ASSISTANT) == [kept], "the refused write left nothing"
    finally:
        await again.close()


def test_migration_3_moves_row_per_event_logs_into_blocks(db_path: Path) -> None:
    """A database at version 2 keeps its logged events, marker included, when migrated."""
    conn = sqlite3.connect(db_path)
    for script in MIGRATIONS[:2]:
        conn.executescript(script)
    conn.execute(
        "INSERT INTO runs (id, thread_id, assistant_id, status, body)"
        " VALUES ('run_1', 't', 'a', 'completed', '{}')"
    )
    conn.execute(
        "INSERT INTO run_events VALUES ('run_1', 1, 'thread.run.created', ?, 5)",
        (b"id: 1\nevent: thread.run.created\ndata: {}\n\n",),
    )
    conn.execute("INSERT INTO run_events VALUES ('run_1', 2, ?, x'', 5)", (events.STREAM_END,))
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()

    async def reopen() -> list[LoggedEvent]:
        store = SQLiteRunStore(db_path)
        await store.open()
        try:
            return await store.events_after("run_1", 0)
        finally:
            await store.close()

    assert asyncio.run(reopen()) == [
        LoggedEvent(1, "thread.run.created", b"id: 1\nevent: thread.run.created\ndata: {}\n\n"),
        LoggedEvent(2, events.STREAM_END, b""),
    ]


# --- group commit ---------------------------------------------------------------------------


async def _traced(sqlite_store: SQLiteRunStore) -> list[str]:
    """Statements the writer connection runs from now on (its trace callback)."""
    seen: list[str] = []
    assert sqlite_store._writer is not None
    await sqlite_store._writer.set_trace_callback(seen.append)
    return seen


async def test_concurrent_writes_share_transactions(sqlite_store: SQLiteRunStore) -> None:
    """Fifty writes made at once are all committed, in far fewer than fifty transactions, and
    each caller gets its own result."""
    traced = await _traced(sqlite_store)
    assistants = [_new_assistant() for _ in range(50)]

    def writer(assistant: AnyObj) -> Callable[[StoreTx], Awaitable[str]]:
        async def fn(tx: StoreTx) -> str:
            await tx.insert(Kind.ASSISTANT, assistant)
            return str(assistant["id"])

        return fn

    results = await asyncio.gather(*(sqlite_store.write(writer(a)) for a in assistants))
    assert results == [a["id"] for a in assistants]
    for assistant in assistants:
        assert await sqlite_store.get(Kind.ASSISTANT, assistant["id"]) == assistant
    begins = [s for s in traced if s.startswith("BEGIN")]
    assert 1 <= len(begins) <= 5, begins


async def test_a_failing_write_does_not_undo_the_others_in_its_group(
    store: RunStore,
) -> None:
    """In one group: a write that raises before sending anything, and one whose statement fails
    at commit (a duplicate id), each get their own error; the others are committed."""
    [taken] = await _assistants(store, 1)
    fine = [_new_assistant() for _ in range(3)]
    duplicate = {**_new_assistant(), "id": taken}

    async def ok(tx: StoreTx, assistant: AnyObj) -> None:
        await tx.insert(Kind.ASSISTANT, assistant)

    async def refuses(tx: StoreTx) -> None:
        await tx.insert(Kind.ASSISTANT, _new_assistant())
        raise LookupError("not there")

    async def clashes(tx: StoreTx) -> None:
        await tx.insert(Kind.ASSISTANT, duplicate)

    outcomes = await asyncio.gather(
        store.write(lambda tx: ok(tx, fine[0])),
        store.write(refuses),
        store.write(lambda tx: ok(tx, fine[1])),
        store.write(clashes),
        store.write(lambda tx: ok(tx, fine[2])),
        return_exceptions=True,
    )
    assert outcomes[0] is None and outcomes[2] is None and outcomes[4] is None
    assert isinstance(outcomes[1], LookupError)
    assert isinstance(outcomes[3], INTEGRITY_ERRORS)
    for assistant in fine:
        assert await store.get(Kind.ASSISTANT, assistant["id"]) == assistant
    rows = await store.list_all(Kind.ASSISTANT)
    assert len(rows) == 4  # the one taken before, and the three fine ones


async def test_a_write_that_fails_after_reading_is_undone_alone(store: RunStore) -> None:
    """A write that sent statements (a read flushes them) and then raised leaves nothing of its
    own behind, and the writes grouped with it still commit."""
    fine, lost = _new_assistant(), _new_assistant()

    async def ok(tx: StoreTx) -> None:
        await tx.insert(Kind.ASSISTANT, fine)

    async def half(tx: StoreTx) -> None:
        await tx.insert(Kind.ASSISTANT, lost)
        assert await tx.get(Kind.ASSISTANT, lost["id"]) is not None  # sent, not yet committed
        raise RuntimeError("changed its mind")

    outcomes = await asyncio.gather(store.write(ok), store.write(half), return_exceptions=True)
    assert outcomes[0] is None and isinstance(outcomes[1], RuntimeError)
    assert await store.get(Kind.ASSISTANT, fine["id"]) == fine
    assert await store.get(Kind.ASSISTANT, lost["id"]) is None


async def test_a_lone_one_statement_write_is_sent_alone(sqlite_store: SQLiteRunStore) -> None:
    """A group that comes down to one statement sends it without BEGIN and COMMIT (it is
    atomic by itself); a write of two statements gets its transaction."""
    traced = await _traced(sqlite_store)
    one, two, three = _new_assistant(), _new_assistant(), _new_assistant()

    async def single(tx: StoreTx) -> None:
        await tx.insert(Kind.ASSISTANT, one)

    async def double(tx: StoreTx) -> None:
        await tx.insert(Kind.ASSISTANT, two)
        await tx.save(Kind.THREAD, objects.thread({}))
        await tx.insert(Kind.ASSISTANT, three)

    await sqlite_store.write(single)
    assert [s.split()[0] for s in traced] == ["INSERT"]
    traced.clear()
    await sqlite_store.write(double)
    assert [s.split()[0] for s in traced] == ["BEGIN", "INSERT", "INSERT", "INSERT", "COMMIT"]
    for assistant in (one, two, three):
        assert await sqlite_store.get(Kind.ASSISTANT, assistant["id"]) == assistant


async def test_a_write_without_reads_is_one_trip_to_the_database_thread(
    sqlite_store: SQLiteRunStore,
) -> None:
    """BEGIN, the held statements and COMMIT of a write that reads nothing go to aiosqlite's
    thread together: one trip, however many statements."""
    assert sqlite_store._writer is not None
    writer = sqlite_store._writer
    trips = 0
    real: Any = writer._execute

    async def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal trips
        trips += 1
        return await real(fn, *args, **kwargs)

    writer._execute = counting  # type: ignore[method-assign]
    try:

        async def three(tx: StoreTx) -> None:
            await tx.insert(Kind.ASSISTANT, _new_assistant())
            await tx.save(Kind.THREAD, objects.thread({}))
            await tx.insert(Kind.ASSISTANT, _new_assistant())

        await sqlite_store.write(three)
    finally:
        del writer._execute
    assert trips == 1
    assert len(await sqlite_store.list_all(Kind.ASSISTANT)) == 2


# --- point reads on the loop's thread -------------------------------------------------------


def _count_trips(conn: aiosqlite.Connection | None) -> list[int]:
    """A one-item list counting the trips to `conn`'s thread from now on."""
    assert conn is not None
    trips = [0]
    real: Any = conn._execute

    async def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips[0] += 1
        return await real(fn, *args, **kwargs)

    conn._execute = counting  # type: ignore[method-assign]
    return trips


async def test_point_reads_are_answered_on_the_loop_thread(sqlite_store: SQLiteRunStore) -> None:
    """A read of one row by its key (with or without its project, or its project alone) makes
    no trip to the reader's thread; a list does."""
    seeded = await _seed(sqlite_store)
    trips = _count_trips(sqlite_store._reader)
    thread = seeded[Kind.THREAD]
    assert await sqlite_store.get(Kind.THREAD, thread["id"]) == thread
    assert await sqlite_store.get(Kind.THREAD, thread["id"], project="") == thread
    assert await sqlite_store.get(Kind.THREAD, thread["id"], project="other") is None
    assert await sqlite_store.project_of(Kind.THREAD, thread["id"]) == ""
    assert await sqlite_store.get(Kind.RUN, "run_missing") is None
    assert trips == [0]
    await sqlite_store.list_all(Kind.MESSAGE, thread_id=thread["id"])
    assert trips == [1]


async def test_the_loop_threads_connection_cannot_write(sqlite_store: SQLiteRunStore) -> None:
    """The loop's connection is opened read-only: nothing run on it can change the file."""
    assert sqlite_store._point is not None
    with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only"):
        sqlite_store._point.execute("DELETE FROM assistants")


class _BusyConnection:
    """A connection whose every statement is answered as SQLite answers a reader it cannot let
    in at once (another connection recovering the write-ahead log, say)."""

    def execute(self, sql: str, params: Any = ()) -> Any:
        raise sqlite3.OperationalError("database is locked")

    def close(self) -> None:
        pass


async def test_a_busy_point_read_is_answered_by_the_reader_thread(
    sqlite_store: SQLiteRunStore,
) -> None:
    """When SQLite answers busy on the loop's thread, the read goes to the reader's thread
    (which waits for the lock) and gives the row."""
    seeded = await _seed(sqlite_store)
    real = sqlite_store._point
    trips = _count_trips(sqlite_store._reader)
    sqlite_store._point = cast(sqlite3.Connection, _BusyConnection())
    try:
        thread = seeded[Kind.THREAD]
        assert await sqlite_store.get(Kind.THREAD, thread["id"]) == thread
        assert await sqlite_store.project_of(Kind.THREAD, thread["id"]) == ""
        assert trips == [2]
    finally:
        sqlite_store._point = real


# --- PostgreSQL's own ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_postgres_lock_held_past_busy_timeout_is_unavailable(db: Database) -> None:
    """Another session holds a table lock: the write is refused with StoreUnavailableError
    after busy_ms, not a hang or a bare driver error, and succeeds once the lock goes."""
    store = db.store(busy_ms=200)
    await store.open()
    holder = await asyncpg.connect(db.url)
    try:
        lock = holder.transaction()
        await lock.start()
        await holder.execute("LOCK TABLE assistants IN ACCESS EXCLUSIVE MODE")
        started = asyncio.get_running_loop().time()
        with pytest.raises(StoreUnavailableError):
            await _insert(store, (Kind.ASSISTANT, _new_assistant()))
        assert asyncio.get_running_loop().time() - started < 3
        await lock.rollback()
        [made] = await _assistants(store, 1)
        assert await store.get(Kind.ASSISTANT, made) is not None
    finally:
        await holder.close()
        await store.close()


async def test_postgres_unreachable_is_an_open_error() -> None:
    """A server that does not answer fails open() with StoreOpenError, password not shown."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = open_store(f"postgresql://someone:secret@127.0.0.1:{port}/none")
    with pytest.raises(StoreOpenError) as raised:
        await store.open()
    assert "secret" not in str(raised.value)
    await store.close()


# --- run leases (both backends) -----------------------------------------------------------------


async def _active_run(store: RunStore) -> Run:
    assistant, thread = _new_assistant(), objects.thread({})
    run = _new_run(thread, assistant)
    await _insert(store, (Kind.ASSISTANT, assistant), (Kind.THREAD, thread), (Kind.RUN, run))
    return run


async def test_a_thread_has_at_most_one_active_run(store: RunStore) -> None:
    """The store itself refuses a second active run on a thread (processes cannot see each
    other's runs in memory); a finished one does not count."""
    run = await _active_run(store)
    thread = await store.get(Kind.THREAD, run["thread_id"])
    assert thread is not None
    second = _new_run(thread, {"id": run["assistant_id"], **_new_assistant()})
    with pytest.raises(ConflictError) as raised:
        await _insert(store, (Kind.RUN, second))
    assert raised.value.code == "thread_has_active_run"
    await _insert(store, (Kind.RUN, {**second, "status": "completed"}))


async def test_a_leased_run_is_claimed_only_when_its_lease_passed(store: RunStore) -> None:
    run = await _active_run(store)

    async def lease(tx: StoreTx) -> None:
        await tx.lease_run(run["id"], "worker-a", 100.0)

    await store.write(lease)

    def claim(owner: str, now: float, force: bool = False) -> Awaitable[Obj | None]:
        async def fn(tx: StoreTx) -> Obj | None:
            return await tx.claim_run(run["id"], owner, now, now + 30, force=force)

        return store.write(fn)

    assert await claim("worker-b", now=99.0) is None  # A's lease holds
    assert await claim("worker-a", now=99.0) == run  # a process may take back its own
    assert await claim("worker-b", now=200.0) == run  # A's lease (now 129) passed
    assert await claim("worker-c", now=201.0) is None  # B's holds until 230
    assert await claim("worker-c", now=201.0, force=True) == run


async def test_renewal_reports_stop_requests_and_only_active_runs(store: RunStore) -> None:
    run = await _active_run(store)

    async def setup(tx: StoreTx) -> bool:
        await tx.lease_run(run["id"], "worker-a", 100.0)
        return await tx.request_stop(run["id"], "cancel")

    assert await store.write(setup) is True

    async def renew(tx: StoreTx) -> list[tuple[str, str | None]]:
        return await tx.renew_leases("worker-a", 200.0)

    assert await store.write(renew) == [(run["id"], "cancel")]

    async def finish(tx: StoreTx) -> bool:
        await tx.save(Kind.RUN, {**run, "status": "cancelled"})
        return await tx.request_stop(run["id"], "cancel")

    assert await store.write(finish) is False  # not active any more
    assert await store.write(renew) == []


async def test_orphaned_runs(store: RunStore) -> None:
    """PostgreSQL: active runs with no owner, the asker's own, or a passed lease. SQLite (one
    process per file): every active run."""
    free, own, live, lapsed = [await _active_run(store) for _ in range(4)]

    async def lease(tx: StoreTx) -> None:
        await tx.lease_run(own["id"], "me", 500.0)
        await tx.lease_run(live["id"], "other", 500.0)
        await tx.lease_run(lapsed["id"], "other", 50.0)

    await store.write(lease)
    found = _ids(await store.orphaned_runs("me", 100.0))
    not_own = _ids(await store.orphaned_runs("me", 100.0, own=False))
    if store.shared:
        assert found == _ids([free, own, lapsed])
        assert not_own == _ids([free, lapsed])
    else:
        assert found == not_own == _ids([free, own, live, lapsed])


async def test_an_idempotency_claim_is_replaced_when_expired_or_abandoned(store: RunStore) -> None:
    """A claim is kept and returned while it is live; one older than `expired_before`, or one
    still unanswered older than `abandoned_before` (its process died), gives way to a new one.
    The request whose claim was taken over can neither answer nor release the new one. An
    answered one is kept until it expires."""

    def claim(at: int, fingerprint: bytes = b"f") -> Any:
        async def write(tx: StoreTx) -> Any:
            return await tx.claim_idempotency(
                "p", "k", fingerprint, at, expired_before=at - 1000, abandoned_before=at - 60
            )

        return store.write(write)

    assert await claim(100) is None  # claimed at 100
    held = await claim(150, b"g")  # within 60 s: the claim is returned, not replaced
    assert held is not None
    assert (held.fingerprint, held.created_at, held.status) == (b"f", 100, None)
    assert await claim(161, b"g") is None  # unanswered for 61 s: abandoned, taken by g

    async def answer(tx: StoreTx) -> None:
        await tx.finish_idempotency("p", "k", IdempotentRecord(b"g", 161, 200, b"{}"))

    async def late_answer(tx: StoreTx) -> None:  # the request that claimed at 100 ends
        await tx.finish_idempotency("p", "k", IdempotentRecord(b"f", 100, 201, b"late"))

    async def late_release(tx: StoreTx) -> None:
        await tx.release_idempotency("p", "k", 100)

    await store.write(late_answer)  # its claim was taken over: it changes nothing
    await store.write(late_release)
    await store.write(answer)
    await store.write(late_answer)
    await store.write(late_release)
    kept = await claim(1000)  # answered: kept whatever its age, until it expires
    assert kept is not None and (kept.fingerprint, kept.status, kept.body) == (b"g", 200, b"{}")
    assert await claim(1162) is None  # expired
