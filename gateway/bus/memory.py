"""In-process event bus: one bounded buffer per subscriber, overflow disconnects the subscriber."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from gateway.bus.base import SubscriberOverflowError
from gateway.events import Event


class _Subscriber:
    """One subscription, and its own context manager: entering joins the channel, leaving
    quits it (lighter than a generator-based context manager, which an idle stream would
    hold for its whole life)."""

    __slots__ = ("_bound", "_bus", "_channel", "_closed", "_overflowed", "_pending", "_waiter")

    def __init__(self, bus: MemoryEventBus, channel: str, bound: int) -> None:
        self._bus = bus
        self._channel = channel
        self._bound = bound
        self._pending: list[Event] = []
        # The future the subscriber is waiting on, if it is waiting: one per wait, set by the
        # first event that comes (a bare future costs less than an asyncio.Event here, which
        # is paid once per subscriber per event).
        self._waiter: asyncio.Future[None] | None = None
        self._overflowed = False
        self._closed = False

    async def __aenter__(self) -> _Subscriber:
        self._bus._channels.setdefault(self._channel, set()).add(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        subscribers = self._bus._channels.get(self._channel)
        if subscribers is not None:
            subscribers.discard(self)
            if not subscribers:
                del self._bus._channels[self._channel]

    def offer(self, event: Event) -> None:
        if self._overflowed or self._closed:
            return
        if len(self._pending) >= self._bound:
            # Dropping single events would corrupt text deltas; drop the subscriber instead.
            self._overflowed = True
            self._pending = []
        else:
            self._pending.append(event)
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def __aiter__(self) -> AsyncIterator[Event]:
        async for batch in self.batches():
            for event in batch:
                yield event

    async def batches(self) -> AsyncIterator[list[Event]]:
        loop = asyncio.get_running_loop()
        while True:
            if self._pending:
                batch, self._pending = self._pending, []
                yield batch
                continue
            if self._overflowed:
                raise SubscriberOverflowError("subscriber fell behind and was disconnected")
            if self._closed:
                return
            waiter = self._waiter = loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None


class MemoryEventBus:
    def __init__(self, *, subscriber_buffer: int = 10_000) -> None:
        self._bound = subscriber_buffer
        self._channels: dict[str, set[_Subscriber]] = {}

    async def publish(self, channel: str, event: Event) -> None:
        for subscriber in self._channels.get(channel, ()):
            subscriber.offer(event)

    def subscribe(self, channel: str) -> _Subscriber:
        return _Subscriber(self, channel, self._bound)

    def subscriber_count(self, channel: str) -> int:
        return len(self._channels.get(channel, ()))

    async def close(self) -> None:
        for subscribers in self._channels.values():
            for subscriber in subscribers:
                subscriber.close()
        self._channels.clear()
