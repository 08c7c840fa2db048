"""In-process event bus: one bounded buffer per subscriber, overflow disconnects the subscriber."""

from __future__ import annotations

from gateway.bus.subscriber import Subscriber
from gateway.events import Event


class MemoryEventBus:
    def __init__(self, *, subscriber_buffer: int = 10_000) -> None:
        self._bound = subscriber_buffer
        self._channels: dict[str, set[Subscriber]] = {}

    async def publish(self, channel: str, event: Event) -> None:
        for subscriber in self._channels.get(channel, ()):
            subscriber.offer(event)

    def subscribe(self, channel: str) -> Subscriber:
        return Subscriber(self, channel, self._bound)

    async def join(self, subscriber: Subscriber) -> None:
        self._channels.setdefault(subscriber.channel, set()).add(subscriber)

    def leave(self, subscriber: Subscriber) -> None:
        subscribers = self._channels.get(subscriber.channel)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._channels[subscriber.channel]

    async def since(self, subscriber: Subscriber, seq: int) -> list[Event]:
        return []  # nothing is kept: the event log in memory covers what came before

    def subscriber_count(self, channel: str) -> int:
        return len(self._channels.get(channel, ()))

    async def check(self) -> None:
        return None  # in this process: always there

    async def close(self) -> None:
        for subscribers in self._channels.values():
            for subscriber in subscribers:
                subscriber.close()
        self._channels.clear()
