"""The event bus contract: publish a run's events, subscribe to them with a bounded buffer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from gateway.events import Event


class BusUnavailableError(Exception):
    """The bus cannot be reached now; the message says which and why."""


class SubscriberOverflowError(Exception):
    """The subscriber fell further behind than its buffer allows and was dropped.

    Its overflow policy is disconnect: the run and the other subscribers never wait for it.
    """


class Subscription(Protocol):
    def __aiter__(self) -> AsyncIterator[Event]: ...

    def batches(self) -> AsyncIterator[list[Event]]:
        """Every event as it comes, in lists of all that are waiting at once (never empty)."""
        ...

    async def since(self, seq: int) -> list[Event]:
        """The events numbered after `seq` that the bus holds now, every one published before
        the subscription began among them as far as the bus still keeps them: how a stream on
        another worker bridges from the stored log to the live events. A bus that holds none
        (memory) returns []."""
        ...


class EventBus(Protocol):
    async def publish(self, channel: str, event: Event) -> None:
        """Deliver `event` to every current subscriber of `channel`; never blocks on them."""
        ...

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        """Receive the events published to `channel` from now on, until the context exits."""
        ...

    async def check(self) -> None:
        """Raise BusUnavailableError unless the bus answers now (a bounded wait)."""
        ...

    async def close(self) -> None: ...
