"""Who listens to what, shared by the bus backends: the subscribers of each channel in this
process, and delivery to them. A backend decides where events come from (the publisher itself
for the memory bus, a Redis read for the Redis bus); this hands them out. Never blocks: each
subscriber has its own bounded buffer (subscriber.py)."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.bus.subscriber import Subscriber
from gateway.events import Event


class Fanout:
    def __init__(self) -> None:
        self._channels: dict[str, set[Subscriber]] = {}

    def add(self, subscriber: Subscriber) -> None:
        self._channels.setdefault(subscriber.channel, set()).add(subscriber)

    def remove(self, subscriber: Subscriber) -> bool:
        """Remove `subscriber`; whether its channel has no subscriber left."""
        subscribers = self._channels.get(subscriber.channel)
        if subscribers is None:
            return False
        subscribers.discard(subscriber)
        if subscribers:
            return False
        del self._channels[subscriber.channel]
        return True

    def publish(self, channel: str, event: Event) -> None:
        """Give `event` to every subscriber of `channel` (the hot path of the memory bus)."""
        for subscriber in self._channels.get(channel, ()):
            subscriber.offer(event)

    def deliver(self, channel: str, events: Iterable[Event]) -> None:
        """Give `events`, in order, to every subscriber of `channel`."""
        subscribers = self._channels.get(channel)
        if not subscribers:
            return
        for event in events:
            for subscriber in subscribers:
                subscriber.offer(event)

    def overflow(self, channel: str) -> None:
        """Drop every subscriber of `channel`: they can no longer be given every event (they
        resume from the log)."""
        for subscriber in self._channels.get(channel, ()):
            subscriber.overflow()

    def count(self, channel: str) -> int:
        return len(self._channels.get(channel, ()))

    def close(self) -> None:
        """End every subscription (their streams end without `done`)."""
        for subscribers in self._channels.values():
            for subscriber in subscribers:
                subscriber.close()
        self._channels.clear()
