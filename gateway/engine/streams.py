"""Run streams: a run's events as encoded SSE frames, from a position to the end of a segment.

Every stream subscribes to the run's channel before anything else, so no event published from
then on can be missed; events the log has already given are skipped by their numbers. Two
ways in, used alike by POST streams, the GET events stream and idempotent replays:

- `start(run_id, begin)`: subscribe, then `begin()` (a create or a submit, which raises to
  refuse), then stream the segment it began;
- `replay(thread_id, run_id, after)`: the run's log after `after` (from its start for None),
  then live. A position the log cannot serve gets the run as it is now, an error, `done`.

A stream ends with `done` at the end of a segment (requires_action or a terminal status). A
stream whose subscriber fell behind ends with an `error` frame and without `done`, so that an
EventSource reconnects and resumes from the log; one that ends without either was closed by
the bus (the gateway is shutting down). Frames waiting together are yielded as one chunk.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from gateway import events
from gateway.bus import EventBus, SubscriberOverflowError, Subscription
from gateway.engine.catalog import Catalog
from gateway.engine.eventlog import EventLog, Replay, ReplayUnavailableError
from gateway.events import DONE_FRAME, Event, retry_frame
from gateway.metrics import Metrics
from gateway.objects import ACTIVE_RUN_STATUSES
from gateway.types import AnyObj, Obj

# Events sent are added to the metric in steps of this many (and at the stream's end), not per
# send: the counter takes a lock.
COUNT_EVERY = 64
OVERFLOW_MESSAGE = (
    "The stream fell too far behind the run and was closed; the run goes on. "
    "Reconnect with Last-Event-ID to resume."
)
UNAVAILABLE_MESSAGE = (
    "The events after this position are no longer kept (or never were); the run's current "
    "state follows. Fetch the run's messages to catch up."
)


Subscribed = AbstractAsyncContextManager[Subscription]


class RunStream:
    """One client's stream of one run: iterate it once for its chunks of frames, and `close`
    it however the stream ends (finished, client gone, client stalled, never started).

    It holds the bus subscription it entered (an async context manager) and leaves it on
    close: the stream outlives the call that opened it, so no `async with` block can span it.
    (An AsyncExitStack would, at about 1.1 KiB more per idle stream, measured.)"""

    __slots__ = ("_chunks", "_subscribed", "closed_by", "run_id", "thread_id")

    def __init__(
        self,
        thread_id: str,
        run_id: str,
        chunks: Callable[[RunStream], AsyncGenerator[bytes]],
        subscribed: Subscribed | None = None,
    ) -> None:
        self.thread_id = thread_id
        self.run_id = run_id
        self._chunks = chunks(self)
        self._subscribed = subscribed
        # Why the client's side ended the stream, when it knows better than the stream
        # itself ("stalled": the client stopped reading); read by the chunks' own cleanup.
        self.closed_by: str | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks

    async def close(self, why: str | None = None) -> None:
        """End the stream: its counters, then its subscription. Harmless twice."""
        if why is not None and self.closed_by is None:
            self.closed_by = why
        try:
            await self._chunks.aclose()
        finally:
            subscribed, self._subscribed = self._subscribed, None
            if subscribed is not None:
                await subscribed.__aexit__(None, None, None)


class RunStreams:
    def __init__(
        self, bus: EventBus, log: EventLog, catalog: Catalog, metrics: Metrics, retry_ms: int
    ) -> None:
        self.bus = bus
        self.log = log
        self.catalog = catalog
        self.metrics = metrics
        self.retry_ms = retry_ms

    async def start(self, run_id: str, begin: Callable[[], Awaitable[AnyObj]]) -> RunStream:
        """Subscribe to `run_id`, call `begin()`, then stream the segment it began: earlier
        events still on their way (the end of the segment before tool outputs were submitted)
        are skipped by their numbers."""
        subscribed = self.bus.subscribe(run_id)
        subscription = await subscribed.__aenter__()
        try:
            run = await begin()
        except BaseException:
            await subscribed.__aexit__(None, None, None)
            raise
        after = (self.log.segment_start(run_id) or 1) - 1
        return RunStream(
            run["thread_id"],
            run_id,
            lambda stream: self._frames(stream, subscription, after=after),
            subscribed,
        )

    async def replay(self, thread_id: str, run_id: str, after: int | None) -> RunStream:
        """The run's events from its log after `after` (from its start for None), then live."""
        run = await self.catalog.get_run(thread_id, run_id)
        subscribed = self.bus.subscribe(run_id)
        subscription = await subscribed.__aenter__()
        try:
            replay = await self.log.replay(
                run_id,
                after,
                active=run["status"] in ACTIVE_RUN_STATUSES,
                since=subscription.since,
            )
        except ReplayUnavailableError:
            await subscribed.__aexit__(None, None, None)
            run = await self.catalog.get_run(thread_id, run_id)
            self.metrics.stream_ends.labels("unavailable").inc()
            return RunStream(thread_id, run_id, lambda _: self._unavailable(run))
        except BaseException:
            await subscribed.__aexit__(None, None, None)
            raise
        return RunStream(
            thread_id,
            run_id,
            lambda stream: self._frames(
                stream, subscription, replay, after=after or 0, retry_ms=self.retry_ms
            ),
            subscribed,
        )

    async def _frames(
        self,
        stream: RunStream,
        subscription: Subscription,
        replay: Replay | None = None,
        *,
        after: int = 0,
        retry_ms: int | None = None,
    ) -> AsyncGenerator[bytes]:
        """The run's events as SSE frames: `replay` first, then live ones, to the segment's
        end. Counts open streams, events sent and why the stream ended."""
        metrics = self.metrics
        metrics.active_streams.inc()
        reason = "client_gone"  # unless the stream gets to one of the ends below
        uncounted = 0
        try:
            head = [retry_frame(retry_ms)] if retry_ms is not None else []
            last = after
            if replay is not None:
                head += [e.frame for e in replay.events if e.name != events.STREAM_END]
                metrics.events_sent.inc(len(head) - (retry_ms is not None))
                if replay.events:
                    last = replay.events[-1].seq
                if not replay.live:
                    reason = "done"
                    head.append(DONE_FRAME)
                    yield b"".join(head)  # at rest: nothing live to wait for
                    return
                replay = None  # an idle stream keeps none of what it has sent
            if head:
                chunk = b"".join(head)
                head = []
                yield chunk
                del chunk  # a quiet stream holds none of what it has sent
            try:
                async for batch in subscription.batches():
                    out, ended = _live(batch, last)
                    if out:
                        last = batch[-1].seq or last
                        uncounted += len(out)
                        if uncounted >= COUNT_EVERY:
                            metrics.events_sent.inc(uncounted)
                            uncounted = 0
                    if ended:
                        reason = "done"
                        out.append(DONE_FRAME)
                        yield b"".join(out)
                        return
                    if out:
                        yield out[0] if len(out) == 1 else b"".join(out)
                reason = "closed"
            except SubscriberOverflowError:
                reason = "overflow"
                yield events.error(OVERFLOW_MESSAGE, code="stream_overflow").frame
        finally:
            if uncounted:
                metrics.events_sent.inc(uncounted)
            if stream.closed_by is not None:
                reason = stream.closed_by
            metrics.active_streams.dec()
            metrics.stream_ends.labels(reason).inc()

    async def _unavailable(self, run: Obj) -> AsyncGenerator[bytes]:
        """The answer to a position the log cannot serve: the run as it is now, an error,
        done."""
        error = events.error(
            UNAVAILABLE_MESSAGE, type_="invalid_request_error", code="replay_unavailable", run=run
        )
        yield b"".join(
            [retry_frame(self.retry_ms), events.run_status(run).frame, error.frame, DONE_FRAME]
        )


def _live(batch: list[Event], last: int) -> tuple[list[bytes], bool]:
    """The frames of `batch` not sent yet, and whether the segment ended in it."""
    out: list[bytes] = []
    for event in batch:
        if event.seq is not None and event.seq <= last:
            continue  # already sent from the log
        if event.name == events.STREAM_END:
            return out, True
        out.append(event.frame)
    return out, False
