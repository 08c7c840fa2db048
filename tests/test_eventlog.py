"""The run event log on a real SQLite store: numbering, replay, group commits, epochs, pruning."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway import events, objects
from gateway.bus.memory import MemoryEventBus
from gateway.engine.eventlog import EPOCH_GAP, EventLog, ReplayUnavailableError
from gateway.events import Event
from gateway.store import Kind, LoggedEvent, StoreTx
from gateway.store.sqlite import SQLiteRunStore
from gateway.types import Obj


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteRunStore]:
    s = SQLiteRunStore(tmp_path / "log.db")
    await s.open()
    yield s
    await s.close()


async def a_run(store: SQLiteRunStore, status: str = "in_progress") -> Obj:
    assistant = objects.assistant({"model": "m"})
    thread = objects.thread({})
    run = objects.run(thread_id=thread["id"], assistant=assistant, fields={}, expiry_seconds=600)
    run["status"] = status

    async def write(tx: StoreTx) -> None:
        await tx.insert(Kind.ASSISTANT, assistant)
        await tx.insert(Kind.THREAD, thread)
        await tx.insert(Kind.RUN, run)

    await store.write(write)
    return run


def delta(i: int) -> Event:
    return Event.of(events.MESSAGE_DELTA, {"i": i})


async def test_events_are_numbered_encoded_and_published(store: SQLiteRunStore) -> None:
    """Each event gets its run's next number, an id line in its frame, and reaches the bus."""
    bus = MemoryEventBus()
    log = EventLog(store, bus)
    run = await a_run(store)
    async with bus.subscribe(run["id"]) as sub:
        first = await log.publish(run["id"], delta(0))
        second = await log.publish(run["id"], delta(1))
        batch = await anext(sub.batches())
    assert (first.seq, second.seq) == (1, 2)
    assert first.frame.startswith(b"id: 1\nevent: thread.message.delta")
    assert [e.seq for e in batch] == [1, 2]


async def test_replay_from_memory_then_from_the_store(store: SQLiteRunStore) -> None:
    """Replays are the same from memory (run active) and from the store (run released)."""
    log = EventLog(store, MemoryEventBus())
    run = await a_run(store)
    for i in range(5):
        await log.publish(run["id"], delta(i))
    in_memory = await log.replay(run["id"], 2)
    log.release(run["id"])
    await log.flush()
    assert log.last_seq(run["id"]) is None  # dropped from memory once stored
    stored = await log.replay(run["id"], 2)
    assert [e.seq for e in in_memory.events] == [e.seq for e in stored.events] == [3, 4, 5]
    assert in_memory.live and not stored.live
    assert [e.seq for e in (await log.replay(run["id"], None)).events] == [1, 2, 3, 4, 5]
    assert list((await log.replay(run["id"], 5)).events) == []


async def test_unknown_positions_are_unavailable(store: SQLiteRunStore) -> None:
    """A position past the end, or a run with no log, cannot be replayed."""
    log = EventLog(store, MemoryEventBus())
    run = await a_run(store)
    await log.publish(run["id"], delta(0))
    with pytest.raises(ReplayUnavailableError):
        await log.replay(run["id"], 7)
    with pytest.raises(ReplayUnavailableError):
        await log.replay("run_missing", None)


async def test_events_are_written_in_group_commits(
    store: SQLiteRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of events is written by one transaction, not one per event."""
    log = EventLog(store, MemoryEventBus())
    run = await a_run(store)
    writes = 0
    real_write = store.write

    async def counting(fn: Any) -> Any:
        nonlocal writes
        writes += 1
        return await real_write(fn)

    monkeypatch.setattr(store, "write", counting)
    for i in range(200):
        await log.publish(run["id"], delta(i))
    await log.flush()
    assert writes == 1
    assert len(await store.events_after(run["id"], 0)) == 200


async def test_a_recovered_run_numbers_on_in_a_new_epoch(store: SQLiteRunStore) -> None:
    """After a restart a run's numbers jump ahead, so ids lost in a crash name nothing."""
    run = await a_run(store)
    before = EventLog(store, MemoryEventBus())
    for i in range(3):
        await before.publish(run["id"], delta(i))
    await before.flush()
    await before.publish(run["id"], delta(99))  # published, never stored: lost in the "crash"
    after = EventLog(store, MemoryEventBus())
    await after.attach(run["id"])
    resumed = await after.publish(run["id"], delta(3))
    assert resumed.seq == 3 + EPOCH_GAP
    assert [e.seq for e in (await after.replay(run["id"], 3)).events] == [3 + EPOCH_GAP]
    with pytest.raises(ReplayUnavailableError):
        await after.replay(run["id"], 4)  # the lost id is not served as something else


async def test_prune_removes_only_events_of_finished_runs(
    store: SQLiteRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pruning deletes old events of runs that are over and keeps those of active runs."""
    log = EventLog(store, MemoryEventBus(), retention_seconds=0)
    active = await a_run(store, "in_progress")
    finished = await a_run(store, "completed")
    for run in (active, finished):
        await log.publish(run["id"], delta(0))
    await log.flush()
    later = objects.now() + 10
    monkeypatch.setattr("gateway.engine.eventlog.now", lambda: later)
    assert await log.prune() == 1
    assert await store.events_after(active["id"], 0)
    assert await store.events_after(finished["id"], 0) == []


async def test_a_segment_end_is_no_position(store: SQLiteRunStore) -> None:
    """The never-sent segment-end marker cannot be resumed from; a log ending in it is at rest."""
    log = EventLog(store, MemoryEventBus())
    run = await a_run(store)
    await log.publish(run["id"], delta(0))
    marker = await log.publish(run["id"], events.STREAM_END_EVENT)
    replay = await log.replay(run["id"], 1)
    assert [e.name for e in replay.events] == [events.STREAM_END] and not replay.live
    with pytest.raises(ReplayUnavailableError):
        await log.replay(run["id"], marker.seq)


async def test_persistence_off_keeps_events_in_memory_only(store: SQLiteRunStore) -> None:
    """With persistence off, replays work while the run is held and nothing reaches the store."""
    log = EventLog(store, MemoryEventBus(), persist=False)
    run = await a_run(store)
    await log.publish(run["id"], delta(0))
    await log.flush()
    assert [e.seq for e in (await log.replay(run["id"], None)).events] == [1]
    assert await store.events_after(run["id"], 0) == []
    log.release(run["id"])
    assert log.last_seq(run["id"]) is None


async def test_event_blocks_round_trip_frames_and_markers(store: SQLiteRunStore) -> None:
    """Events stored in one commit come back one by one, in order, the marker with its empty
    frame, and `after` cuts inside a block."""
    run = await a_run(store)

    def logged_as(seq: int, name: str, data: bytes) -> LoggedEvent:
        frame = b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, name.encode(), data)
        return LoggedEvent(seq, name, frame)

    logged = [
        logged_as(1, "thread.run.created", b'{"a":1}'),
        logged_as(2, "thread.message.delta", b'"x"'),
        LoggedEvent(3, events.STREAM_END, b""),
    ]
    later = logged_as(1_000_003, "thread.run.queued", b"{}")

    async def write(tx: StoreTx) -> None:
        await tx.append_events([(run["id"], e, 1) for e in logged])

    async def write_later(tx: StoreTx) -> None:
        await tx.append_events([(run["id"], later, 2)])

    await store.write(write)
    await store.write(write_later)
    assert await store.events_after(run["id"], 0) == [*logged, later]
    assert await store.events_after(run["id"], 2) == [logged[2], later]
    assert await store.events_after(run["id"], 3) == [later]
    rows = await store._r.execute_fetchall("SELECT count(*) FROM run_event_blocks")
    assert list(rows) == [(2,)]  # one row per commit, not one per event
