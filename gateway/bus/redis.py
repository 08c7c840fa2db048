"""The Redis event bus (redis-py's asyncio client), for several gateway processes: a run's
events, published by the process that runs it, reach its streams on every process.

Each run has a Redis stream (`<prefix>run:<run id>`) whose entry ids are the events' own
sequence numbers (`<seq>-0`), so any process can read a run from any event on: a stream that
replayed the stored log up to event S asks for what follows S (`since`) and then goes live,
with no gap. Streams are trimmed to about `maxlen` entries and expire `ttl_seconds` after
their last event; the event log in the database stays the durable record.

Publishing never waits for Redis: events join an outbox that one task sends in pipelined
batches, in order. While Redis is unreachable the outbox keeps them (bounded) and sends them
once it is back, so a Redis restart loses nothing that fits; past the bound the oldest are
dropped, and streams that would miss them are told to resume from the log instead.

Each process reads with one task on one connection: a blocking XREAD over every channel it has
subscribers for, plus a wake-up stream of its own, written when a channel joins, so that the
read starts over with the new set at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from gateway.bus.base import BusUnavailableError
from gateway.bus.fanout import Fanout
from gateway.bus.subscriber import Subscriber
from gateway.errors import ServiceUnavailableError
from gateway.events import Event, follows
from gateway.retrying import forever

log = logging.getLogger("gateway.bus")

BLOCK_MS = 5_000  # one XREAD waits at most this long (the socket timeout is longer)
CHECK_SECONDS = 3.0  # how long a health check waits for Redis to answer
READ_COUNT = 1_000  # entries per channel per read
# The connections a process opens to Redis for commands, and how long a command waits for one
# of them when all are in use (then the bus is unavailable: a 503 with Retry-After).
POOL_CONNECTIONS = 64
POOL_WAIT_SECONDS = 10.0
_REDIS_DOWN = (RedisError, OSError)  # retried with backoff until Redis answers again


# Stream entries as redis-py returns them without decoding: (id, {field: value}).
Entries = list[tuple[bytes, dict[bytes, bytes]]]


def _seq_of(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


def _unavailable(exc: BaseException) -> ServiceUnavailableError:
    log.warning("Redis bus unavailable: %s", exc)
    return ServiceUnavailableError(
        "The event bus cannot be reached right now; retry in a moment.",
        code="bus_unavailable",
        retry_after=1,
    )


class RedisEventBus:
    def __init__(
        self,
        url: str,
        *,
        subscriber_buffer: int = 10_000,
        maxlen: int = 10_000,
        ttl_seconds: int = 3600,
        outbox_limit: int = 100_000,
    ) -> None:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        self.prefix = query.pop("prefix", ["gateway:"])[0]
        rest = "&".join(f"{k}={v}" for k, values in query.items() for v in values)
        server = urlunsplit(parts._replace(query=rest))
        # Redis, for messages: the URL without its credentials.
        self.where = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query=""))
        options: dict[str, Any] = {"socket_connect_timeout": 5, "health_check_interval": 30}
        # redis-py's default pool refuses a command ("Too many connections") once 100 are in
        # use: a herd of runs starting at once (each subscription's join is two round trips)
        # got 503s. This pool is bounded too, but a command waits for a free connection.
        pool = aioredis.BlockingConnectionPool.from_url(
            server,
            max_connections=POOL_CONNECTIONS,
            timeout=POOL_WAIT_SECONDS,
            socket_timeout=10,
            **options,
        )
        self._redis = aioredis.Redis.from_pool(pool)
        # The blocking reads get a connection of their own, with room for BLOCK_MS.
        self._reader_redis = aioredis.from_url(
            server, socket_timeout=BLOCK_MS / 1000 + 10, **options
        )
        self._bound = subscriber_buffer
        self.maxlen = maxlen
        self.ttl_seconds = ttl_seconds
        self.outbox_limit = outbox_limit
        self._fanout = Fanout()
        self._positions: dict[str, bytes] = {}  # channel -> last entry id read for it
        self._joining: dict[str, asyncio.Future[None]] = {}  # channel -> its first join
        self._wake_key = f"{self.prefix}wake:{uuid.uuid4().hex}"
        self._wake_position = b"0-0"
        self._outbox: list[tuple[str, Event]] = []
        self._sending: list[tuple[str, Event]] = []  # the batch out of the outbox, being sent
        self._outbox_ready = asyncio.Event()
        self._drained = asyncio.Event()  # set while the outbox is empty
        self._drained.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    def _key(self, channel: str) -> str:
        return f"{self.prefix}run:{channel}"

    def _started(self) -> None:
        if not self._tasks and not self._closed:
            self._tasks = [
                asyncio.create_task(self._send_loop(), name="redis-bus-send"),
                asyncio.create_task(self._read_loop(), name="redis-bus-read"),
            ]

    # --- publishing -----------------------------------------------------------------------

    async def publish(self, channel: str, event: Event) -> None:
        if event.seq is None:
            raise ValueError("the Redis bus carries numbered events only (from the event log)")
        self._started()
        self._outbox.append((channel, event))
        self._drained.clear()
        if len(self._outbox) > self.outbox_limit:
            lost_channel, _ = self._outbox.pop(0)
            log.error("Redis bus outbox full: dropped an event of %s", lost_channel)
            self._fanout.overflow(lost_channel)
        self._outbox_ready.set()

    async def _send_loop(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            while self._outbox:
                # Out of the outbox while it is sent (and resent while Redis is unreachable):
                # what the outbox drops when it is full is then never part of a batch.
                self._sending, self._outbox = self._outbox[:1000], self._outbox[1000:]
                async for attempt in forever(_REDIS_DOWN, f"Redis bus: sending to {self.where}"):
                    with attempt:
                        await self._send(self._sending)
                self._sending = []
            self._drained.set()

    async def _send(self, batch: Sequence[tuple[str, Event]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        keys: set[str] = set()
        for channel, event in batch:
            key = self._key(channel)
            keys.add(key)
            pipe.xadd(
                key,
                {b"n": event.name.encode(), b"b": event.body},
                id=f"{event.seq}-0",
                maxlen=self.maxlen,
                approximate=True,
            )
        for key in keys:
            pipe.expire(key, self.ttl_seconds)
        results = await pipe.execute(raise_on_error=False)
        for result in results:
            # An id Redis already has: the entry went out in a batch whose answer was lost.
            if isinstance(result, ResponseError) and "equal or smaller" in str(result):
                continue
            if isinstance(result, Exception):
                raise result

    # --- subscribing ----------------------------------------------------------------------

    def subscribe(self, channel: str) -> Subscriber:
        return Subscriber(self, channel, self._bound)

    async def join(self, subscriber: Subscriber) -> None:
        self._started()
        channel = subscriber.channel
        joining = self._joining.get(channel)
        if joining is not None:  # another subscriber is finding where the channel starts
            await asyncio.shield(joining)
        if channel not in self._positions:
            self._joining[channel] = joining = asyncio.get_running_loop().create_future()
            try:
                if any(queued == channel for queued, _ in (*self._sending, *self._outbox)):
                    # What this process published before the join is not for this
                    # subscriber: let it reach Redis first, so the top read below is after it.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._drained.wait(), 5)
                try:
                    self._positions[channel] = await self._top(channel)
                    await self._wake()
                except (RedisError, OSError) as exc:
                    raise _unavailable(exc) from exc
            finally:
                del self._joining[channel]
                joining.set_result(None)
        self._fanout.add(subscriber)

    def leave(self, subscriber: Subscriber) -> None:
        if self._fanout.remove(subscriber):
            self._positions.pop(subscriber.channel, None)

    def subscriber_count(self, channel: str) -> int:
        """Subscribers of `channel` in this process."""
        return self._fanout.count(channel)

    async def since(self, subscriber: Subscriber, seq: int) -> list[Event]:
        """What the run's Redis stream holds after `seq` now: up to where the subscriber began,
        and maybe past it (the stream skips by number what it has already sent)."""
        try:
            entries = cast(
                Entries, await self._redis.xrange(self._key(subscriber.channel), f"({seq}-0")
            )
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        return [Event(f[b"n"].decode(), f[b"b"], _seq_of(i)) for i, f in entries]

    async def _top(self, channel: str) -> bytes:
        """The id of the stream's newest entry (0-0 for none): where live delivery begins."""
        newest = cast(Entries, await self._redis.xrevrange(self._key(channel), count=1))
        return newest[0][0] if newest else b"0-0"

    async def _wake(self) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:  # one round trip
            pipe.xadd(self._wake_key, {b"w": b"1"}, maxlen=10, approximate=False)
            pipe.expire(self._wake_key, 3600)
            await pipe.execute()

    async def _read_loop(self) -> None:
        while not self._closed:
            async for attempt in forever(_REDIS_DOWN, f"Redis bus: reading {self.where}"):
                with attempt:
                    answer = await self._read()
            for key, entries in answer or ():
                self._deliver(key.decode(), entries)

    async def _read(self) -> list[tuple[bytes, Entries]] | None:
        """One blocking read of every followed channel, from where each has got to."""
        streams: dict[Any, Any] = {self._key(c): p for c, p in self._positions.items()}
        streams[self._wake_key] = self._wake_position
        return cast(
            list[tuple[bytes, Entries]] | None,
            await self._reader_redis.xread(streams, count=READ_COUNT, block=BLOCK_MS),
        )

    def _deliver(self, key: str, entries: Entries) -> None:
        if key == self._wake_key:
            self._wake_position = entries[-1][0]
            return
        channel = key[len(self.prefix) + 4 :]
        position = self._positions.get(channel)
        if position is None:
            return  # its last subscriber left while the read was out
        self._positions[channel] = entries[-1][0]
        batch = [Event(f[b"n"].decode(), f[b"b"], _seq_of(i)) for i, f in entries]
        last = _seq_of(position)
        if last and not follows(last, batch[0].seq or 0):
            # Redis lost entries (it restarted before they were read): these subscribers
            # cannot be given every event, so they are dropped and resume from the log.
            log.warning(
                "Redis bus: events %d to %d of %s were lost", last + 1, batch[0].seq, channel
            )
            self._fanout.overflow(channel)
            return
        self._fanout.deliver(channel, batch)

    # --- health ---------------------------------------------------------------------------

    async def check(self) -> None:
        try:
            async with asyncio.timeout(CHECK_SECONDS):
                await self._redis.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            reason = str(exc) or f"no answer within {CHECK_SECONDS:g} s"
            raise BusUnavailableError(
                f"cannot reach the Redis bus {self.where}: {reason}"
            ) from None

    # --- closing --------------------------------------------------------------------------

    async def close(self) -> None:
        """Send what the outbox holds (bounded wait), end every subscription, disconnect."""
        self._closed = True
        if (self._outbox or self._sending) and self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), 5)
        for task in self._tasks:
            await _stop(task)
        self._tasks = []
        self._fanout.close()
        self._positions.clear()
        await self._redis.aclose()
        await self._reader_redis.aclose()


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel one of the bus's loops and wait for it to end, cancelling again while it goes on
    (bounded): redis-py (seen with 8.2) can lose a cancellation that lands inside a command, and
    the read loop then went on to block in a new read, so that close() hung (tests/test_bus.py
    hung in a third of its runs)."""
    for _ in range(20):
        task.cancel()
        await asyncio.wait([task], timeout=0.25)
        if task.done():
            break
    else:
        log.error("a Redis bus task did not stop: %s", task.get_name())
        return
    if not task.cancelled() and task.exception() is not None:
        log.error("a Redis bus task failed", exc_info=task.exception())
