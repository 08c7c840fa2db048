"""A subscription with a bounded buffer, shared by the bus backends: a backend hands it events
(`offer`) and the stream reads them in batches. Overflow disconnects the subscriber instead of
dropping single events, which would corrupt text deltas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

from gateway.bus.base import SubscriberOverflowError
from gateway.events import Event


class Hub(Protocol):
    """What a bus does when a subscriber joins or leaves a channel."""

    async def join(self, subscriber: Subscriber) -> None: ...
    def leave(self, subscriber: Subscriber) -> None: ...
    async def since(self, subscriber: Subscriber, seq: int) -> list[Event]: ...


class Subscriber:
    """One subscription, and its own context manager: entering joins the channel, leaving
    quits it (lighter than a generator-based context manager, which an idle stream would
    hold for its whole life)."""

    __slots__ = (
        "_bound",
        "_closed",
        "_hub",
        "_overflowed",
        "_pending",
        "_waiter",
        "channel",
    )

    def __init__(self, hub: Hub, channel: str, bound: int) -> None:
        self._hub = hub
        self.channel = channel
        self._bound = bound
        self._pending: list[Event] = []
        # The future the subscriber is waiting on, if it is waiting: one per wait, set by the
        # first event that comes (a bare future costs less than an asyncio.Event here, which
        # is paid once per subscriber per event).
        self._waiter: asyncio.Future[None] | None = None
        self._overflowed = False
        self._closed = False

    async def __aenter__(self) -> Subscriber:
        await self._hub.join(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._hub.leave(self)

    async def since(self, seq: int) -> list[Event]:
        """The events numbered after `seq` that the bus holds now, those published before this
        subscription began among them (a bus that holds none returns [])."""
        return await self._hub.since(self, seq)

    def offer(self, event: Event) -> None:
        if self._overflowed or self._closed:
            return
        if len(self._pending) >= self._bound:
            self._overflowed = True
            self._pending = []
        else:
            self._pending.append(event)
        self._wake()

    def overflow(self) -> None:
        """Drop the subscriber: it can no longer be given every event (it resumes from the log)."""
        if not self._closed:
            self._overflowed = True
            self._pending = []
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
