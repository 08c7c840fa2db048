"""MemoryEventBus: ordered delivery, no history, bounded buffers that disconnect, clean exits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway import events
from gateway.bus.base import SubscriberOverflowError, Subscription
from gateway.bus.memory import MemoryEventBus
from gateway.events import Event

CHANNEL = "run_test"
# Long enough to see an event that was going to arrive, short enough to keep the suite fast.
ABSENT = 0.05


def _event(n: int) -> Event:
    return events.message_text_delta("msg_test", 0, f"part {n}", first=n == 0)


async def _take(subscription: Subscription, count: int) -> list[Event]:
    """The next `count` events of `subscription`, failing fast instead of hanging."""

    async def collect() -> list[Event]:
        taken: list[Event] = []
        async for event in subscription:
            taken.append(event)
            if len(taken) == count:
                break
        return taken

    return await asyncio.wait_for(collect(), 1)


async def _assert_nothing_pending(subscription: Subscription) -> None:
    iterator: AsyncIterator[Event] = aiter(subscription)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(iterator), ABSENT)


async def test_subscriber_receives_events_in_order() -> None:
    """Events published after subscribing arrive in publish order."""
    bus = MemoryEventBus()
    sent = [_event(n) for n in range(5)]
    async with bus.subscribe(CHANNEL) as subscription:
        for event in sent:
            await bus.publish(CHANNEL, event)
        assert await _take(subscription, 5) == sent
        await _assert_nothing_pending(subscription)


async def test_events_before_subscribing_are_not_received() -> None:
    """The bus keeps no history: a new subscriber sees only what is published later."""
    bus = MemoryEventBus()
    await bus.publish(CHANNEL, _event(0))
    async with bus.subscribe(CHANNEL) as subscription:
        await _assert_nothing_pending(subscription)
        await bus.publish(CHANNEL, _event(1))
        assert await _take(subscription, 1) == [_event(1)]


async def test_two_subscribers_both_receive_everything() -> None:
    """Every subscriber of a channel gets every event."""
    bus = MemoryEventBus()
    sent = [_event(n) for n in range(3)]
    async with bus.subscribe(CHANNEL) as first, bus.subscribe(CHANNEL) as second:
        assert bus.subscriber_count(CHANNEL) == 2
        for event in sent:
            await bus.publish(CHANNEL, event)
        assert await _take(first, 3) == sent
        assert await _take(second, 3) == sent


async def test_channels_are_separate() -> None:
    """A subscriber hears only its own channel."""
    bus = MemoryEventBus()
    async with bus.subscribe(CHANNEL) as subscription:
        await bus.publish("run_other", _event(0))
        await _assert_nothing_pending(subscription)


async def test_publish_without_subscribers_is_a_no_op() -> None:
    """Publishing to a channel nobody listens to neither fails nor creates the channel."""
    bus = MemoryEventBus()
    await bus.publish(CHANNEL, _event(0))
    assert bus.subscriber_count(CHANNEL) == 0


async def test_buffer_full_but_not_exceeded_delivers_all() -> None:
    """Exactly `subscriber_buffer` unconsumed events are kept and delivered."""
    bus = MemoryEventBus(subscriber_buffer=3)
    sent = [_event(n) for n in range(3)]
    async with bus.subscribe(CHANNEL) as subscription:
        for event in sent:
            await bus.publish(CHANNEL, event)
        assert await _take(subscription, 3) == sent


async def test_overflow_disconnects_only_the_slow_subscriber() -> None:
    """A subscriber more than its buffer behind gets SubscriberOverflowError; others go on."""
    bus = MemoryEventBus(subscriber_buffer=3)
    async with bus.subscribe(CHANNEL) as slow, bus.subscribe(CHANNEL) as fast:
        for n in range(4):
            await bus.publish(CHANNEL, _event(n))
            assert await _take(fast, 1) == [_event(n)]
        with pytest.raises(SubscriberOverflowError):
            await _take(slow, 1)

        await bus.publish(CHANNEL, _event(4))
        assert await _take(fast, 1) == [_event(4)]
        # The overflow is final: later events do not revive the dropped subscriber.
        with pytest.raises(SubscriberOverflowError):
            await _take(slow, 1)


async def test_leaving_the_context_removes_the_subscriber() -> None:
    """Exiting subscribe() unregisters the subscriber, even when the body raises."""
    bus = MemoryEventBus()
    async with bus.subscribe(CHANNEL):
        assert bus.subscriber_count(CHANNEL) == 1
    assert bus.subscriber_count(CHANNEL) == 0

    with pytest.raises(RuntimeError):
        async with bus.subscribe(CHANNEL):
            raise RuntimeError("body failed")
    assert bus.subscriber_count(CHANNEL) == 0
    await bus.publish(CHANNEL, _event(0))


async def test_close_ends_live_subscriptions() -> None:
    """close() ends the iteration of every live subscriber after what it already had."""
    bus = MemoryEventBus()
    waiting = asyncio.Event()

    async def listen() -> list[Event]:
        async with bus.subscribe(CHANNEL) as subscription:
            waiting.set()
            return [event async for event in subscription]

    listeners = [asyncio.create_task(listen()) for _ in range(2)]
    await waiting.wait()
    # Both tasks subscribe in their first step, before this test resumes.
    assert bus.subscriber_count(CHANNEL) == 2
    await bus.publish(CHANNEL, _event(0))
    await bus.close()
    results = await asyncio.wait_for(asyncio.gather(*listeners), 1)
    assert results == [[_event(0)], [_event(0)]]
    assert bus.subscriber_count(CHANNEL) == 0
