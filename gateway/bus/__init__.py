"""Per-run publish/subscribe: the protocol and its backends, chosen by URL scheme."""

from __future__ import annotations

from gateway.bus.base import (
    BusUnavailableError,
    EventBus,
    SubscriberOverflowError,
    Subscription,
)


def open_bus(url: str, *, subscriber_buffer: int) -> EventBus:
    """The bus named by `url`: `memory://` (one process) or `redis://host:port/db` (any
    number; `?prefix=` names its keys' prefix). Backends are imported only when chosen."""
    scheme = url.partition("://")[0]
    if scheme == "memory":
        from gateway.bus.memory import MemoryEventBus

        return MemoryEventBus(subscriber_buffer=subscriber_buffer)
    if scheme in ("redis", "rediss", "unix"):
        from gateway.bus.redis import RedisEventBus

        return RedisEventBus(url, subscriber_buffer=subscriber_buffer)
    raise ValueError(f"unsupported bus URL scheme {scheme!r}: use memory:// or redis://")


__all__ = [
    "BusUnavailableError",
    "EventBus",
    "SubscriberOverflowError",
    "Subscription",
    "open_bus",
]
