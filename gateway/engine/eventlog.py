"""The ordered event log of every run: each event gets the next sequence number of its run (the
SSE `id:`), is encoded once, kept in memory until it is stored, published on the bus, and
written to the store in group commits.

The end of a run's segment (requires_action or a terminal status) is sealed: the change that ends
it is saved in the same transaction as every event of the run up to the segment's end, so no
process can read a run at rest before it can read the events that brought it there.

Replays of a run held here read its unstored events from memory and the rest from the store (so
a just-published event is never missing from a replay); other runs are read from the store, and
from the bus for what a run on another process has not stored yet. After a restart the
numbering of a recovered run jumps ahead by `EPOCH_GAP`, so an id a client saw but the store
never received (lost in the crash) can never name a different, newer event: resuming from it
reports the position unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import orjson

from gateway import events
from gateway.bus import EventBus
from gateway.engine.durable import until_stored
from gateway.events import EPOCH_GAP, Event, follows
from gateway.objects import now
from gateway.periodic import Periodic
from gateway.store import LoggedEvent, RunStore, StoreTx

log = logging.getLogger("gateway.eventlog")

# A stream on a process that does not hold the run waits this long for a position beyond
# what it can read yet (an event still on its way to the store or the bus), polling.
CATCH_UP_SECONDS = 2.0
CATCH_UP_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class Replay:
    """Logged events to send, and whether live ones may still follow them."""

    events: Sequence[LoggedEvent]
    live: bool


class ReplayUnavailableError(LookupError):
    """The asked position is not (or no longer) in the log."""


@dataclass
class _RunLog:
    next_seq: int = 1
    # The run's events not stored yet, oldest first (every event, when the log is not kept in
    # the store): what is stored is read from the store, so a long run holds no more than a
    # flush's worth of its events.
    tail: list[LoggedEvent] = field(default_factory=list)
    # The number of the newest stored event; every event up to it is stored.
    flushed_upto: int = 0
    last: LoggedEvent | None = None  # the newest event
    segment_start: int = 1  # the number of the first event of the newest segment
    released: bool = False

    def trim(self) -> None:
        """Forget the events that are stored now."""
        stored = 0
        while stored < len(self.tail) and self.tail[stored].seq <= self.flushed_upto:
            stored += 1
        if stored:
            del self.tail[:stored]

    @property
    def at_rest(self) -> bool:
        return self.last is not None and self.last.name == events.STREAM_END


class EventLog:
    def __init__(
        self,
        store: RunStore,
        bus: EventBus,
        *,
        flush_seconds: float = 0.02,
        retention_seconds: float = 3600.0,
        prune_seconds: float = 60.0,
        persist: bool = True,
    ) -> None:
        self.store = store
        self.bus = bus
        self.flush_seconds = flush_seconds
        self.retention_seconds = retention_seconds
        self.persist = persist
        self._runs: dict[str, _RunLog] = {}
        self._pending: list[tuple[str, LoggedEvent]] = []
        # Batches being written by a flush: the runs each holds, and a future set when done.
        self._inflight: list[tuple[set[str], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._pruner = Periodic("event-log-prune", prune_seconds, self.prune, "pruning failed")

    async def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_loop(), name="event-log-flush")
        self._pruner.start()

    async def stop(self) -> None:
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        await self._pruner.stop()
        await self.flush()

    # --- writing --------------------------------------------------------------------------

    async def publish(self, run_id: str, event: Event) -> Event:
        """Number, encode, keep and announce `event`; returns it as logged."""
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = _RunLog()
        seq = run.next_seq
        run.next_seq = seq + 1
        if run.at_rest:  # the first event after a segment's end
            run.segment_start = seq
        logged = event.numbered(seq)
        entry = _entry(logged)
        run.tail.append(entry)
        run.last = entry
        if self.persist:
            self._pending.append((run_id, entry))
            self._wake.set()
        await self.bus.publish(run_id, logged)
        return logged

    async def seal(
        self,
        run_id: str,
        save: Callable[[StoreTx], Awaitable[None]],
        announce: Callable[[], Sequence[Event]],
    ) -> None:
        """End a segment of the run: in one transaction, `save` the change that ends it and store
        every event of the run not stored yet, then the events `announce()` builds (after
        `save`, so that they carry what it read) and the segment's end; only then keep and
        publish those. Retried while the database refuses writes.

        Once begun it runs to its end even if its caller is cancelled meanwhile (the caller
        waits for it, then gets its CancelledError): an ending that was saved always reaches
        the run's streams. A second cancellation abandons it."""
        sealing = asyncio.ensure_future(self._seal(run_id, save, announce))
        try:
            await asyncio.shield(sealing)
        except asyncio.CancelledError:
            if not sealing.done():
                with contextlib.suppress(Exception):
                    await sealing
            raise

    async def _seal(
        self,
        run_id: str,
        save: Callable[[StoreTx], Awaitable[None]],
        announce: Callable[[], Sequence[Event]],
    ) -> None:
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = _RunLog()
        # The run's earlier events must be stored first or with the seal: wait until no flush
        # is writing any of them, then, with no await in between (a flush could take them),
        # take the rest into the seal's own transaction.
        while holding := [done for runs, done in self._inflight if run_id in runs]:
            await asyncio.wait(holding)
        earlier = self._take_pending(run_id)
        first: int | None = None  # the seal's first number, kept if the write is tried again
        sealed: list[Event] = []

        async def write(tx: StoreTx) -> None:
            nonlocal first, sealed
            await save(tx)
            built = [*announce(), events.STREAM_END_EVENT]
            if first is None:
                first = run.next_seq
                run.next_seq = first + len(built)
            sealed = [event.numbered(first + i) for i, event in enumerate(built)]
            if self.persist:
                stamp = now()
                rows = [*earlier, *(_entry(e) for e in sealed)]
                await tx.append_events([(run_id, entry, stamp) for entry in rows])

        writing = False
        try:
            async for attempt in until_stored(f"ending run {run_id} in {self.store.where}"):
                with attempt:
                    writing = True
                    await self.store.write(write)
                    writing = False
        except asyncio.CancelledError:
            # Abandoned (a second cancellation, at shutdown). A write under way goes on to
            # commit or roll back on its own (the store shields it): its events must not be
            # queued again, or a flush could store them in a block the seal's would collide with.
            if not writing:
                self._pending[:0] = [(run_id, entry) for entry in earlier]
            raise
        except BaseException:  # refused, nothing written (the lease was lost, say)
            self._pending[:0] = [(run_id, entry) for entry in earlier]
            raise
        entries = [_entry(event) for event in sealed]
        run.last = entries[-1]
        if self.persist:
            run.flushed_upto = run.last.seq
            run.trim()
        else:
            run.tail.extend(entries)
        self._drop_if_stored(run_id, run)
        for event in sealed:
            await self.bus.publish(run_id, event)

    def _take_pending(self, run_id: str) -> list[LoggedEvent]:
        """The run's events waiting for a flush, out of the queue."""
        taken = [entry for owner, entry in self._pending if owner == run_id]
        if taken:
            self._pending = [item for item in self._pending if item[0] != run_id]
        return taken

    async def attach(self, run_id: str) -> None:
        """Hold a recovered run again, its numbering going on in a new epoch."""
        kept = await self.store.events_after(run_id, 0)
        last = kept[-1] if kept else None
        upto = last.seq if last is not None else 0
        self._runs[run_id] = _RunLog(next_seq=upto + EPOCH_GAP, flushed_upto=upto, last=last)

    def release(self, run_id: str) -> None:
        """The run is over: drop it from memory once its events are stored."""
        run = self._runs.get(run_id)
        if run is not None:
            run.released = True
            self._drop_if_stored(run_id, run)

    async def flush(self) -> None:
        """Store what is pending; what cannot be stored stays pending for the next flush."""
        try:
            await self._store_pending()
        except Exception:
            log.exception("could not store %d run events", len(self._pending))

    async def _store_pending(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        stamp = now()  # one time for the whole commit: it only decides when events are pruned

        async def write(tx: StoreTx) -> None:
            await tx.append_events([(run_id, entry, stamp) for run_id, entry in batch])

        inflight = ({run_id for run_id, _ in batch}, asyncio.get_running_loop().create_future())
        self._inflight.append(inflight)
        try:
            await self.store.write(write)
        except BaseException:
            self._pending = batch + self._pending
            raise
        finally:
            self._inflight.remove(inflight)
            inflight[1].set_result(None)
        newest: dict[str, int] = {}
        for run_id, entry in batch:
            newest[run_id] = entry.seq
        for run_id, seq in newest.items():
            run = self._runs.get(run_id)
            if run is not None:
                run.flushed_upto = max(run.flushed_upto, seq)
                run.trim()
                self._drop_if_stored(run_id, run)

    def _drop_if_stored(self, run_id: str, run: _RunLog) -> None:
        if run.released and (not run.tail or not self.persist):
            del self._runs[run_id]

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Let the events of this moment gather, then commit them together; while the
            # database refuses writes, keep trying (the events wait in memory meanwhile).
            await asyncio.sleep(self.flush_seconds)
            try:
                async for attempt in until_stored(f"storing run events in {self.store.where}"):
                    with attempt:
                        await self._store_pending()
            except Exception:
                log.exception("could not store %d run events", len(self._pending))

    async def prune(self) -> int:
        cutoff = now() - int(self.retention_seconds)

        async def write(tx: StoreTx) -> int:
            return await tx.prune_events(cutoff)

        try:
            return await self.store.write(write)
        except Exception:
            log.exception("could not prune run events")
            return 0

    # --- reading --------------------------------------------------------------------------

    async def replay(
        self,
        run_id: str,
        after: int | None,
        *,
        active: bool = False,
        since: Callable[[int], Awaitable[list[Event]]] | None = None,
    ) -> Replay:
        """The run's events after the event numbered `after` (all of them for None or 0);
        raises ReplayUnavailableError when `after` names no event a client can have seen or
        the events after it are no longer kept.

        A run held here is live unless its log ends a segment. One that is not held here is
        live only while it is `active` (its stored status) and its log has not ended the
        segment: another process is running it. Its newest events may not be stored yet;
        `since(seq)` (the bus subscription's) gives what the bus holds after event `seq`."""
        after = after or None
        run = self._runs.get(run_id)
        if run is not None:
            at_rest = run.at_rest
            return Replay(_after(await self._held(run_id, run, after), after), live=not at_rest)
        if not active or since is None:
            # The run is over, or waits with nothing running: what is stored is all there is.
            return Replay(_after(await self._stored(run_id, after), after), live=False)
        return await self._replay_elsewhere(run_id, after, since)

    async def _held(self, run_id: str, run: _RunLog, after: int | None) -> list[LoggedEvent]:
        """A held run's log from event `after` on (all of it for None): its unstored events in
        memory and, before them, the stored ones, both as they are at the moment of the call."""
        tail, upto = list(run.tail), run.flushed_upto
        if not self.persist or not upto or (after is not None and after > upto):
            return tail
        return [e for e in await self._stored(run_id, after) if e.seq <= upto] + tail

    async def _stored(self, run_id: str, after: int | None) -> list[LoggedEvent]:
        """The stored log from event `after` on (all of it for None)."""
        return await self.store.events_after(run_id, 0 if after is None else after - 1)

    async def _replay_elsewhere(
        self, run_id: str, after: int | None, since: Callable[[int], Awaitable[list[Event]]]
    ) -> Replay:
        """A replay of a run that another process is running: the stored log, then what the
        bus holds beyond it. The newest events may be in neither yet (the log is stored in
        group commits, the bus is sent to from an outbox): a stream from the run's start
        then gets them live, and a position beyond what can be read here is waited for, up
        to CATCH_UP_SECONDS, before it is called unavailable."""
        deadline = asyncio.get_running_loop().time() + CATCH_UP_SECONDS
        while True:
            known = await self._stored(run_id, after)
            if not known or known[-1].name != events.STREAM_END:
                newest = known[-1].seq if known else max((after or 0) - 1, 0)
                bridge = [_entry(e) for e in await since(newest)]
                if bridge and known and not follows(newest, bridge[0].seq):
                    raise ReplayUnavailableError(
                        f"events {newest + 1} to {bridge[0].seq - 1} are no longer kept"
                    )
                known = [*known, *bridge]
            at_rest = bool(known) and known[-1].name == events.STREAM_END
            if after is None and not known:
                return Replay([], live=True)  # nothing published yet reached here: all live
            reached = bool(known) and known[-1].seq >= (after or 0)
            if reached or asyncio.get_running_loop().time() >= deadline:
                return Replay(_after(known, after), live=not at_rest)
            await asyncio.sleep(CATCH_UP_POLL_SECONDS)

    def at_rest(self, run_id: str) -> bool:
        """Whether the run's log ends with the end of a segment."""
        run = self._runs.get(run_id)
        return run is not None and run.at_rest

    async def text_of(self, run_id: str, message_id: str) -> list[str]:
        """The text fragments of `message_id`'s deltas in the run's log, in order."""
        run = self._runs.get(run_id)
        logged = await (self._held(run_id, run, None) if run else self._stored(run_id, None))
        fragments: list[str] = []
        for entry in logged:
            if entry.name != events.MESSAGE_DELTA:
                continue
            data = orjson.loads(entry.frame.split(b"\ndata: ", 1)[1])
            if data.get("id") != message_id:
                continue
            for part in data["delta"].get("content") or ():
                value = (part.get("text") or {}).get("value")
                if isinstance(value, str):
                    fragments.append(value)
        return fragments

    def segment_start(self, run_id: str) -> int | None:
        """The number of the first event of the run's newest segment (for a stream of that
        segment alone: what came before belongs to earlier ones)."""
        run = self._runs.get(run_id)
        return run.segment_start if run is not None else None

    def last_seq(self, run_id: str) -> int | None:
        run = self._runs.get(run_id)
        return run.last.seq if run is not None and run.last is not None else None


def _entry(event: Event) -> LoggedEvent:
    """A numbered event as the log keeps it (the marker's frame is empty)."""
    return LoggedEvent(event.seq or 0, event.name, event.frame)


def _after(logged: Sequence[LoggedEvent], after: int | None) -> Sequence[LoggedEvent]:
    """The events following `after` in `logged` (which starts at or before it)."""
    if after is None:
        if not logged or logged[0].seq != 1:
            raise ReplayUnavailableError("the start of the run is no longer kept")
        return list(logged)
    for index, entry in enumerate(logged):
        if entry.seq == after:
            if entry.name == events.STREAM_END:
                break  # never sent, so no client can have seen it
            return logged[index + 1 :]
        if entry.seq > after:
            break
    raise ReplayUnavailableError(f"no event {after} is kept")
