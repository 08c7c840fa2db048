"""The run event log on a real SQLite store: numbering, replay, group commits, epochs, pruning."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway import events, objects
from gateway.bus.memory import MemoryEventBus
from gateway.engine.eventlog import EventLog, ReplayUnavailableError
from gateway.events import EPOCH_GAP, Event
from gateway.store import Kind, LoggedEvent, StoreTx
from gateway.store.sqlite import SQLiteRunStore
from gateway.wire import Run
from tests.waiting import eventually_async


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteRunStore]:
    s = SQLiteRunStore(tmp_path / "log.db")
    await s.open()
    yield s
    await s.close()


async def a_run(store: SQLiteRunStore, status: str = "in_progress") -> Run:
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


async def test_a_seal_stores_the_ending_with_every_event_before_it(
    store: SQLiteRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change that ends a segment commits with the run's unflushed events, the events that
    announce it and the marker; none of those reaches the bus before that commit."""
    bus = MemoryEventBus()
    log = EventLog(store, bus, flush_seconds=3600)  # no flush on its own during the test
    await log.start()
    run = await a_run(store)
    seen_at_publish: list[tuple[str, int]] = []  # event, events stored when it was published
    real_publish = bus.publish

    async def publish(channel: str, event: Event) -> None:
        seen_at_publish.append((event.name, len(await store.events_after(channel, 0))))
        await real_publish(channel, event)

    try:
        for i in range(3):
            await log.publish(run["id"], delta(i))
        monkeypatch.setattr(bus, "publish", publish)
        run["status"] = "completed"

        async def save(tx: StoreTx) -> None:
            await tx.save(Kind.RUN, run)

        await log.seal(run["id"], save, lambda: [events.run_status(run)])
    finally:
        await log.stop()
    stored = await store.events_after(run["id"], 0)
    names = [e.name for e in stored]
    assert names == [events.MESSAGE_DELTA] * 3 + [events.RUN_COMPLETED, events.STREAM_END]
    assert [e.seq for e in stored] == [1, 2, 3, 4, 5]
    assert seen_at_publish == [(events.RUN_COMPLETED, 5), (events.STREAM_END, 5)]
    assert (await store.get(Kind.RUN, run["id"]) or {})["status"] == "completed"


async def test_a_seal_waits_for_a_flush_holding_the_runs_events(
    store: SQLiteRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a flush is writing some of the run's events, the seal commits after it, so the
    stored log never has the ending without what came before."""
    log = EventLog(store, MemoryEventBus())
    run = await a_run(store)
    await log.publish(run["id"], delta(0))
    real_write = store.write
    order: list[str] = []
    release = asyncio.Event()

    async def slow_first(fn: Any) -> Any:
        if not order:
            order.append("flush")
            await release.wait()
        else:
            order.append("seal")
        return await real_write(fn)

    monkeypatch.setattr(store, "write", slow_first)
    flushing = asyncio.create_task(log.flush())
    await until(lambda: order == ["flush"], "the flush to be writing")
    sealing = asyncio.create_task(log.seal(run["id"], _nothing, list))
    # A window for the seal to write too early, were it not waiting: what is asserted is that
    # nothing happens meanwhile, so a fixed wait is the point.
    await asyncio.sleep(0.05)
    assert order == ["flush"] and not sealing.done()
    release.set()
    await asyncio.gather(flushing, sealing)
    assert order == ["flush", "seal"]
    assert [e.seq for e in await store.events_after(run["id"], 0)] == [1, 2]


async def test_a_seal_waits_for_a_flush_that_starts_while_it_waits(
    store: SQLiteRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Event 1 is being flushed and event 2 waits when the run ends. The flush ends and a new
    one takes event 2 before the seal wakes (as a flush interval of 0 allows): the seal waits
    for that one too, so the log is stored in order, 1, then 2, then the seal."""
    log = EventLog(store, MemoryEventBus())
    run = await a_run(store)
    await log.publish(run["id"], delta(0))
    real_write = store.write
    order: list[str] = []
    gates = [asyncio.Event(), asyncio.Event()]

    async def gated(fn: Any) -> Any:
        step = len(order)
        order.append(f"write {step + 1}")
        if step < len(gates):
            await gates[step].wait()
        return await real_write(fn)

    monkeypatch.setattr(store, "write", gated)
    first = asyncio.create_task(log.flush())
    await until(lambda: order == ["write 1"], "the first flush to be writing")
    await log.publish(run["id"], delta(1))
    sealing = asyncio.create_task(log.seal(run["id"], _nothing, list))
    # The seal must be waiting for the first flush before that one ends; nothing observable
    # says it is, so it gets a fixed moment to get there.
    await asyncio.sleep(0.01)
    gates[0].set()
    second = asyncio.create_task(log.flush())  # takes event 2 as the first flush ends
    await until(lambda: first.done() and order == ["write 1", "write 2"], "the second flush")
    # A window for the seal, woken by the first flush's end, to write too early were it not
    # waiting for the second: what is asserted is that nothing happens, so the wait is fixed.
    await asyncio.sleep(0.05)
    assert order == ["write 1", "write 2"] and not sealing.done()  # the seal waits for it
    gates[1].set()
    await asyncio.gather(first, second, sealing)
    assert order == ["write 1", "write 2", "write 3"]
    assert [e.seq for e in await store.events_after(run["id"], 0)] == [1, 2, 3]


async def test_a_cancelled_caller_still_gets_its_seal_published(
    store: SQLiteRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller cancelled while its seal is being written waits for it to finish: the ending is
    stored and published (streams get it), then the caller sees its cancellation."""
    bus = MemoryEventBus()
    log = EventLog(store, bus)
    run = await a_run(store)
    real_write = store.write
    writing = asyncio.Event()

    async def slow(fn: Any) -> Any:
        writing.set()
        await asyncio.sleep(0.1)  # a slow write, on purpose: the cancel lands during it
        return await real_write(fn)

    monkeypatch.setattr(store, "write", slow)
    async with bus.subscribe(run["id"]) as sub:
        sealing = asyncio.create_task(log.seal(run["id"], _nothing, lambda: [delta(0)]))
        await writing.wait()
        sealing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sealing
        got = await anext(sub.batches())
    assert [e.name for e in got] == [events.MESSAGE_DELTA, events.STREAM_END]
    assert len(await store.events_after(run["id"], 0)) == 2


async def test_an_abandoned_seal_leaves_its_write_to_finish_alone(
    store: SQLiteRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled twice while its write is under way (shutdown's last resort), a seal does not
    queue its events again: the write, which the store finishes on its own, stores them, and
    a flush of the same events could have collided with its block."""
    log = EventLog(store, MemoryEventBus())
    run = await a_run(store)
    await log.publish(run["id"], delta(0))
    real_write = store.write
    writes = 0

    async def slow(fn: Any) -> Any:
        nonlocal writes
        writes += 1

        async def later() -> Any:
            await asyncio.sleep(0.1)  # a slow write, on purpose: both cancels land during it
            return await real_write(fn)

        # As the stores do: the write goes on if its caller goes.
        return await asyncio.shield(asyncio.ensure_future(later()))

    monkeypatch.setattr(store, "write", slow)
    sealing = asyncio.create_task(log.seal(run["id"], _nothing, list))
    await until(lambda: writes == 1, "the seal's write to be under way")
    sealing.cancel()
    await asyncio.sleep(0)  # one turn of the loop: the first cancel lands before the second
    sealing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sealing

    async def committed() -> bool:  # the write commits on its own
        return len(await store.events_after(run["id"], 0)) == 2

    await eventually_async(committed, what="the abandoned seal's write to commit")
    await log.flush()
    assert writes == 1  # nothing was queued again for a flush
    stored = await store.events_after(run["id"], 0)
    assert [(e.seq, e.name) for e in stored] == [(1, events.MESSAGE_DELTA), (2, events.STREAM_END)]


async def until(holds: Callable[[], bool], what: str) -> None:
    """Let the loop run until `holds()` (5 s at most)."""

    async def check() -> bool:
        return holds()

    await eventually_async(check, timeout=5, interval=0.001, what=what)


async def _nothing(tx: StoreTx) -> None:
    return None


def _elsewhere(held: list[Event]) -> Any:
    """A bus subscription's `since` that holds `held`."""

    async def since(seq: int) -> list[Event]:
        return [e for e in held if (e.seq or 0) > seq]

    return since


async def test_a_run_running_elsewhere_with_nothing_readable_yet_is_all_live(
    store: SQLiteRunStore,
) -> None:
    """Nothing stored and nothing on the bus yet: from its start, everything comes live."""
    log = EventLog(store, MemoryEventBus())
    run = await a_run(store)
    replay = await log.replay(run["id"], None, active=True, since=_elsewhere([]))
    assert list(replay.events) == [] and replay.live


async def test_a_position_not_readable_yet_is_waited_for_then_unavailable(
    store: SQLiteRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A position beyond what can be read elsewhere is waited for (its event is on its way),
    and is called unavailable only after CATCH_UP_SECONDS."""
    monkeypatch.setattr("gateway.engine.eventlog.CATCH_UP_SECONDS", 0.3)
    log = EventLog(store, MemoryEventBus())
    run = await a_run(store)
    held = [delta(i).numbered(i + 1) for i in range(2)]
    since = _elsewhere(held)

    async def arrives() -> None:
        await asyncio.sleep(0.1)  # the events arrive late, on purpose: they are waited for
        held.append(delta(2).numbered(3))
        held.append(delta(3).numbered(4))

    arriving = asyncio.create_task(arrives())
    replay = await log.replay(run["id"], 3, active=True, since=since)
    await arriving
    assert [e.seq for e in replay.events] == [4] and replay.live
    started = asyncio.get_running_loop().time()
    with pytest.raises(ReplayUnavailableError):
        await log.replay(run["id"], 9, active=True, since=since)
    assert asyncio.get_running_loop().time() - started >= 0.3


async def test_a_gap_between_the_stored_log_and_the_bus_is_unavailable(
    store: SQLiteRunStore,
) -> None:
    """Stored up to 2, the bus holding only 5 on: events 3 and 4 are nowhere, which is said."""
    log = EventLog(store, MemoryEventBus())
    run = await a_run(store)
    for i in range(2):
        await log.publish(run["id"], delta(i))
    log.release(run["id"])
    await log.flush()
    since = _elsewhere([delta(i).numbered(i + 1) for i in range(4, 6)])
    with pytest.raises(ReplayUnavailableError):
        await log.replay(run["id"], None, active=True, since=since)
