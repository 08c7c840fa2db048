"""In-process event bus: one bounded buffer per subscriber, overflow disconnects the subscriber."""

from __future__ import annotations

from gateway.bus.fanout import Fanout
from gateway.bus.subscriber import Subscriber
from gateway.events import Event


class MemoryEventBus:
    def __init__(self, *, subscriber_buffer: int = 10_000) -> None:
        self._bound = subscriber_buffer
        self._fanout = Fanout()

    async def publish(self, channel: str, event: Event) -> None:
        self._fanout.publish(channel, event)

    def subscribe(self, channel: str) -> Subscriber:
        return Subscriber(self, channel, self._bound)

    async def join(self, subscriber: Subscriber) -> None:
        self._fanout.add(subscriber)

    def leave(self, subscriber: Subscriber) -> None:
        self._fanout.remove(subscriber)

    async def since(self, subscriber: Subscriber, seq: int) -> list[Event]:
        return []  # nothing is kept: the event log in memory covers what came before

    def subscriber_count(self, channel: str) -> int:
        return self._fanout.count(channel)

    async def check(self) -> None:
        return None  # in this process: always there

    async def close(self) -> None:
        self._fanout.close()
