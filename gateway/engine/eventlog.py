"""The ordered event log of every run: each event gets the next sequence number of its run (the
SSE `id:`), is encoded once, kept in memory while its run is active, published on the bus, and
written to the store in group commits.

Replays read memory for a run still held here (so a just-published event is never missing from
a replay) and the store for the others. After a restart the numbering of a recovered run jumps
ahead by `EPOCH_GAP`, so an id a client saw but the store never received (lost in the crash)
can never name a different, newer event: resuming from it reports the position unavailable.
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
from gateway.events import Event
from gateway.objects import now
from gateway.periodic import Periodic
from gateway.store import LoggedEvent, RunStore, StoreTx

log = logging.getLogger("gateway.eventlog")

EPOCH_GAP = 1_000_000


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
    events: list[LoggedEvent] = field(default_factory=list)
    flushed_upto: int = 0
    released: bool = False


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
        logged = event.numbered(seq)
        entry = LoggedEvent(seq, logged.name, logged.frame)  # the marker's frame is empty
        run.events.append(entry)
        if self.persist:
            self._pending.append((run_id, entry))
            self._wake.set()
        else:
            run.flushed_upto = entry.seq
        await self.bus.publish(run_id, logged)
        return logged

    async def attach(self, run_id: str) -> None:
        """Hold a recovered run's logged events in memory again, numbering on in a new epoch."""
        kept = await self.store.events_after(run_id, 0)
        last = kept[-1].seq if kept else 0
        self._runs[run_id] = _RunLog(next_seq=last + EPOCH_GAP, events=kept, flushed_upto=last)

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

        try:
            await self.store.write(write)
        except BaseException:
            self._pending = batch + self._pending
            raise
        for run_id, entry in batch:
            run = self._runs.get(run_id)
            if run is not None:
                run.flushed_upto = max(run.flushed_upto, entry.seq)
                self._drop_if_stored(run_id, run)

    def _drop_if_stored(self, run_id: str, run: _RunLog) -> None:
        if run.released and (not run.events or run.flushed_upto >= run.events[-1].seq):
            del self._runs[run_id]

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Let the events of this moment gather, then commit them together; while the
            # database refuses writes, keep trying (the events wait in memory meanwhile).
            await asyncio.sleep(self.flush_seconds)
            try:
                async for attempt in until_stored():
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
        `since(seq)` (the bus subscription's) gives what followed event `seq`."""
        after = after or None
        run = self._runs.get(run_id)
        if run is not None:
            found = _after(run.events, after)
            at_rest = bool(run.events) and run.events[-1].name == events.STREAM_END
            return Replay(found, live=not at_rest)
        stored = await self.store.events_after(run_id, 0 if after is None else after - 1)
        at_rest = bool(stored) and stored[-1].name == events.STREAM_END
        if active and not at_rest and since is not None:
            newest = stored[-1].seq if stored else max((after or 0) - 1, 0)
            bridge = [LoggedEvent(e.seq or 0, e.name, e.frame) for e in await since(newest)]
            stored = [*stored, *bridge]
            at_rest = bool(stored) and stored[-1].name == events.STREAM_END
        # Otherwise the run is over, or waits with nothing running: nothing live will come.
        return Replay(_after(stored, after), live=active and not at_rest)

    def at_rest(self, run_id: str) -> bool:
        """Whether the run's log ends with the end of a segment."""
        run = self._runs.get(run_id)
        return run is not None and bool(run.events) and run.events[-1].name == events.STREAM_END

    def text_of(self, run_id: str, message_id: str) -> list[str]:
        """The text fragments of `message_id`'s deltas held for the run, in order."""
        run = self._runs.get(run_id)
        fragments: list[str] = []
        for entry in run.events if run is not None else ():
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

    def last_seq(self, run_id: str) -> int | None:
        run = self._runs.get(run_id)
        return run.events[-1].seq if run is not None and run.events else None


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
