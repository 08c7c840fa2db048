"""The bus's shared pieces on their own: a Subscriber's bounded buffer, batches, overflow and
close (gateway/bus/subscriber.py), and the Fanout that hands events to a channel's subscribers
(gateway/bus/fanout.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway import events
from gateway.bus.base import SubscriberOverflowError
from gateway.bus.fanout import Fanout
from gateway.bus.memory import MemoryEventBus
from gateway.bus.subscriber import Subscriber
from gateway.events import Event

# A bound on every wait, so that a broken wake-up fails the test instead of hanging it.
WAIT = 1.0


class RecordingHub:
    """A hub that records who joins and leaves and what `since` was asked."""

    def __init__(self) -> None:
        self.joined: list[Subscriber] = []
        self.left: list[Subscriber] = []
        self.asked: list[tuple[Subscriber, int]] = []

    async def join(self, subscriber: Subscriber) -> None:
        self.joined.append(subscriber)

    def leave(self, subscriber: Subscriber) -> None:
        self.left.append(subscriber)

    async def since(self, subscriber: Subscriber, seq: int) -> list[Event]:
        self.asked.append((subscriber, seq))
        return [ev(seq + 1)]


def ev(n: int) -> Event:
    return Event.of(events.MESSAGE_DELTA, {"n": n}).numbered(n)


def subscriber(bound: int = 10, channel: str = "run_a") -> Subscriber:
    return Subscriber(RecordingHub(), channel, bound)


async def next_batch(batches: AsyncIterator[list[Event]]) -> list[Event]:
    return await asyncio.wait_for(anext(batches), WAIT)


async def drain(sub: Subscriber) -> list[Event]:
    """Every event `sub` yields until its iteration ends (within WAIT)."""

    async def collect() -> list[Event]:
        return [event async for event in sub]

    return await asyncio.wait_for(collect(), WAIT)


async def still_waiting(batches: AsyncIterator[list[Event]]) -> asyncio.Task[list[Event]]:
    """A task waiting for the next batch, checked to be waiting (nothing pending)."""
    task = asyncio.ensure_future(anext(batches))
    for _ in range(3):
        await asyncio.sleep(0)
    assert not task.done()
    return task


# --- Subscriber -----------------------------------------------------------------------------


async def test_pending_events_come_as_one_batch_in_order() -> None:
    """Every event offered before a read comes in one batch, in the order offered."""
    sub = subscriber()
    for n in (1, 2, 3):
        sub.offer(ev(n))
    assert await next_batch(sub.batches()) == [ev(1), ev(2), ev(3)]


async def test_an_offer_wakes_a_waiting_reader() -> None:
    """A reader waiting on an empty buffer gets the next offered event as a batch of one."""
    sub = subscriber()
    batches = sub.batches()
    waiting = await still_waiting(batches)
    sub.offer(ev(1))
    assert await asyncio.wait_for(waiting, WAIT) == [ev(1)]


async def test_buffer_holds_exactly_its_bound() -> None:
    """`bound` unread events are all kept and delivered, with no overflow."""
    sub = subscriber(bound=3)
    for n in (1, 2, 3):
        sub.offer(ev(n))
    sub.close()
    assert await drain(sub) == [ev(1), ev(2), ev(3)]


async def test_bound_counts_only_unread_events() -> None:
    """A batch read frees its room: a reader that keeps up never overflows, however many
    events pass through."""
    sub = subscriber(bound=2)
    batches = sub.batches()
    for start in (1, 3, 5):
        sub.offer(ev(start))
        sub.offer(ev(start + 1))
        assert await next_batch(batches) == [ev(start), ev(start + 1)]


async def test_one_more_than_the_bound_overflows_and_drops_the_buffer() -> None:
    """The event past the bound disconnects the subscriber: the events it held are dropped
    too (none is delivered) and the reader gets SubscriberOverflowError."""
    sub = subscriber(bound=2)
    for n in (1, 2, 3):
        sub.offer(ev(n))
    received: list[Event] = []
    with pytest.raises(SubscriberOverflowError):
        async for batch in sub.batches():
            received += batch
    assert received == []


async def test_bound_zero_overflows_on_the_first_event() -> None:
    """A subscriber with no room overflows on its first event."""
    sub = subscriber(bound=0)
    sub.offer(ev(1))
    with pytest.raises(SubscriberOverflowError):
        await next_batch(sub.batches())


async def test_overflow_wakes_a_waiting_reader_with_the_error() -> None:
    """A reader waiting for events is woken by an overflow and raises."""
    sub = subscriber(bound=1)
    batches = sub.batches()
    sub.offer(ev(1))
    assert await next_batch(batches) == [ev(1)]
    waiting = await still_waiting(batches)
    sub.overflow()
    with pytest.raises(SubscriberOverflowError):
        await asyncio.wait_for(waiting, WAIT)


async def test_overflow_drops_pending_events() -> None:
    """overflow() discards what the subscriber had not read yet: the next read raises."""
    sub = subscriber()
    sub.offer(ev(1))
    sub.offer(ev(2))
    sub.overflow()
    with pytest.raises(SubscriberOverflowError):
        await next_batch(sub.batches())


async def test_offers_after_overflow_are_ignored() -> None:
    """Once overflowed, a subscriber takes no more events: it stays disconnected."""
    sub = subscriber(bound=1)
    sub.offer(ev(1))
    sub.offer(ev(2))  # overflows
    sub.offer(ev(3))
    with pytest.raises(SubscriberOverflowError):
        await next_batch(sub.batches())


async def test_close_delivers_what_is_pending_then_ends() -> None:
    """close() keeps the unread events: the reader gets them, then its iteration ends."""
    sub = subscriber()
    sub.offer(ev(1))
    sub.offer(ev(2))
    sub.close()
    assert await drain(sub) == [ev(1), ev(2)]


async def test_close_ends_a_waiting_reader() -> None:
    """A reader waiting on an empty buffer is woken by close() and its iteration ends."""
    sub = subscriber()
    batches = sub.batches()
    waiting = await still_waiting(batches)
    sub.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, WAIT)


async def test_offers_after_close_are_ignored() -> None:
    """A closed subscriber takes no more events."""
    sub = subscriber()
    sub.offer(ev(1))
    sub.close()
    sub.offer(ev(2))
    assert await drain(sub) == [ev(1)]


async def test_offers_after_close_never_overflow() -> None:
    """Offers past the bound after close() neither overflow nor drop what was pending."""
    sub = subscriber(bound=1)
    sub.offer(ev(1))
    sub.close()
    sub.offer(ev(2))
    assert await drain(sub) == [ev(1)]


async def test_overflow_after_close_is_ignored() -> None:
    """overflow() on a closed subscriber changes nothing: its pending events are still read and
    the iteration ends without error."""
    sub = subscriber()
    sub.offer(ev(1))
    sub.close()
    sub.overflow()
    assert await drain(sub) == [ev(1)]


async def test_overflow_wins_over_a_later_close() -> None:
    """A subscriber that overflowed and is then closed still reports the overflow."""
    sub = subscriber()
    sub.offer(ev(1))
    sub.overflow()
    sub.close()
    with pytest.raises(SubscriberOverflowError):
        await drain(sub)


async def test_iterating_yields_single_events() -> None:
    """`async for` over a subscriber yields the events of its batches one at a time."""
    sub = subscriber()
    sub.offer(ev(1))
    sub.offer(ev(2))
    iterator = aiter(sub)
    assert await asyncio.wait_for(anext(iterator), WAIT) == ev(1)
    assert await asyncio.wait_for(anext(iterator), WAIT) == ev(2)
    sub.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(iterator), WAIT)


async def test_context_joins_on_entry_and_leaves_on_exit_even_on_error() -> None:
    """Entering a subscriber joins its hub (and gives the subscriber itself); leaving quits
    it, also when the body raises."""
    hub = RecordingHub()
    sub = Subscriber(hub, "run_a", 10)
    with pytest.raises(RuntimeError):
        async with sub as entered:
            assert entered is sub
            assert (hub.joined, hub.left) == ([sub], [])
            raise RuntimeError("body failed")
    assert (hub.joined, hub.left) == ([sub], [sub])


async def test_since_asks_the_hub_for_this_subscriber() -> None:
    """since(seq) is the hub's answer for this subscriber and that number."""
    hub = RecordingHub()
    sub = Subscriber(hub, "run_a", 10)
    assert await sub.since(4) == [ev(5)]
    assert hub.asked == [(sub, 4)]


# --- Fanout ---------------------------------------------------------------------------------


def fanout_with(*channels: str, bound: int = 10) -> tuple[Fanout, list[Subscriber]]:
    fanout = Fanout()
    subs = [subscriber(bound, channel) for channel in channels]
    for sub in subs:
        fanout.add(sub)
    return fanout, subs


def test_remove_says_when_the_channel_became_empty() -> None:
    """remove() is False while the channel has another subscriber and True for the last one,
    which also drops the channel."""
    fanout, (first, second) = fanout_with("run_a", "run_a")
    assert fanout.count("run_a") == 2
    assert fanout.remove(first) is False
    assert fanout.count("run_a") == 1
    assert fanout.remove(second) is True
    assert fanout.count("run_a") == 0


def test_remove_of_an_unknown_subscriber() -> None:
    """Removing a subscriber that is not there is False and changes nothing: one that never
    joined a live channel, one already removed, one of a channel nobody joined."""
    fanout, (sub,) = fanout_with("run_a")
    stranger = subscriber(channel="run_a")
    assert fanout.remove(stranger) is False
    assert fanout.count("run_a") == 1
    assert fanout.remove(sub) is True
    assert fanout.remove(sub) is False
    assert fanout.remove(subscriber(channel="run_b")) is False


def test_adding_the_same_subscriber_twice_counts_once() -> None:
    """A channel holds each subscriber once."""
    fanout, (sub,) = fanout_with("run_a")
    fanout.add(sub)
    assert fanout.count("run_a") == 1
    assert fanout.remove(sub) is True


async def test_publish_reaches_every_subscriber_of_the_channel_only() -> None:
    """publish() gives the event to each subscriber of its channel and to no other channel."""
    fanout, (a1, a2, b) = fanout_with("run_a", "run_a", "run_b")
    fanout.publish("run_a", ev(1))
    fanout.publish("run_a", ev(2))
    fanout.close()
    assert await drain(a1) == [ev(1), ev(2)]
    assert await drain(a2) == [ev(1), ev(2)]
    assert await drain(b) == []


def test_publish_to_a_channel_nobody_joined_creates_nothing() -> None:
    """Publishing to a channel without subscribers is a no-op that leaves no empty channel."""
    fanout = Fanout()
    fanout.publish("run_a", ev(1))
    fanout.deliver("run_a", [ev(1)])
    assert fanout.count("run_a") == 0
    assert fanout._channels == {}


async def test_deliver_gives_events_in_order_to_every_subscriber() -> None:
    """deliver() hands every subscriber of the channel all the events, in the given order."""
    fanout, (a1, a2, b) = fanout_with("run_a", "run_a", "run_b")
    fanout.deliver("run_a", (ev(n) for n in (1, 2, 3)))
    fanout.close()
    assert await drain(a1) == [ev(1), ev(2), ev(3)]
    assert await drain(a2) == [ev(1), ev(2), ev(3)]
    assert await drain(b) == []


async def test_delivery_overflows_only_the_subscriber_that_is_full() -> None:
    """A subscriber whose own buffer is exceeded is dropped; one with room gets everything."""
    fanout = Fanout()
    small, large = subscriber(bound=1), subscriber(bound=5)
    fanout.add(small)
    fanout.add(large)
    fanout.deliver("run_a", [ev(1), ev(2)])
    with pytest.raises(SubscriberOverflowError):
        await next_batch(small.batches())
    assert await next_batch(large.batches()) == [ev(1), ev(2)]


async def test_overflow_drops_only_that_channels_subscribers() -> None:
    """overflow(channel) disconnects every subscriber of that channel, leaves other channels'
    subscribers and their events alone, and keeps the dropped ones counted until they leave."""
    fanout, (a1, a2, b) = fanout_with("run_a", "run_a", "run_b")
    fanout.publish("run_a", ev(1))
    fanout.publish("run_b", ev(2))
    fanout.overflow("run_a")
    for sub in (a1, a2):
        with pytest.raises(SubscriberOverflowError):
            await next_batch(sub.batches())
    assert await next_batch(b.batches()) == [ev(2)]
    assert (fanout.count("run_a"), fanout.count("run_b")) == (2, 1)


def test_overflow_of_an_unknown_channel_is_a_no_op() -> None:
    """overflow() of a channel nobody joined does nothing (and creates no channel)."""
    fanout = Fanout()
    fanout.overflow("run_a")
    assert fanout._channels == {}


async def test_close_ends_every_subscription_and_forgets_every_channel() -> None:
    """close() ends each subscriber's iteration after its pending events, on every channel, and
    leaves no subscriber counted (a later remove finds nothing)."""
    fanout, (a, b) = fanout_with("run_a", "run_b")
    fanout.publish("run_a", ev(1))
    fanout.close()
    assert await drain(a) == [ev(1)]
    assert await drain(b) == []
    assert (fanout.count("run_a"), fanout.count("run_b")) == (0, 0)
    assert fanout.remove(a) is False


async def test_memory_bus_subscription_joins_and_leaves_its_fanout() -> None:
    """Through MemoryEventBus, a subscription counts while its context is open, gets what is
    published on its channel meanwhile, and stops counting when it exits."""
    bus = MemoryEventBus(subscriber_buffer=4)
    async with bus.subscribe("run_a") as sub:
        assert bus.subscriber_count("run_a") == 1
        await bus.publish("run_a", ev(1))
        await bus.publish("run_b", ev(2))
        assert await next_batch(sub.batches()) == [ev(1)]
        assert await sub.since(0) == []
    assert bus.subscriber_count("run_a") == 0
    await bus.close()
