"""Per-run publish/subscribe: the protocol and its backends, chosen by URL scheme."""

from __future__ import annotations

from gateway.bus.base import EventBus, SubscriberOverflowError, Subscription


def open_bus(url: str, *, subscriber_buffer: int) -> EventBus:
    """The bus named by `url` (`memory://` today); backends are imported only when chosen."""
    scheme = url.partition("://")[0]
    if scheme == "memory":
        from gateway.bus.memory import MemoryEventBus

        return MemoryEventBus(subscriber_buffer=subscriber_buffer)
    raise ValueError(f"unsupported bus URL scheme {scheme!r}: use memory://")


__all__ = ["EventBus", "SubscriberOverflowError", "Subscription", "open_bus"]
