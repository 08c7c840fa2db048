"""The bus contract, once per backend (in memory; Redis): ordered delivery, nothing from before
subscribing, bounded buffers that disconnect, clean exits. Then what only Redis does: several
processes, catching up from an event id, surviving a restart of Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway import events
from gateway.bus.base import (
    BusUnavailableError,
    EventBus,
    SubscriberOverflowError,
    Subscription,
)
from gateway.bus.memory import MemoryEventBus
from gateway.bus.redis import POOL_CONNECTIONS, RedisEventBus
from gateway.events import Event
from tests.conftest import need
from tests.redis_server import REDIS_URL, PrivateRedis, forget_prefix, redis_missing
from tests.waiting import eventually_async

CHANNEL = "run_test"
MakeBus = Callable[..., EventBus]
# Long enough to see an event that was going to arrive, short enough to keep the suite fast.
ABSENT = 0.05


def _event(n: int) -> Event:
    """The event numbered n + 1, as the event log numbers them."""
    return events.message_text_delta("msg_test", 0, f"part {n}", first=n == 0).numbered(n + 1)


@pytest.fixture(params=["memory", "redis"])
async def make_bus(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., EventBus]]:
    """Buses of one backend; the Redis ones share a key prefix of the test's own."""
    made: list[EventBus] = []
    prefix = f"test:{uuid.uuid4().hex}:"
    if request.param == "redis":
        missing = redis_missing()
        need(missing is None, missing or "")

    def make(subscriber_buffer: int = 10_000) -> EventBus:
        bus = (
            MemoryEventBus(subscriber_buffer=subscriber_buffer)
            if request.param == "memory"
            else RedisEventBus(f"{REDIS_URL}?prefix={prefix}", subscriber_buffer=subscriber_buffer)
        )
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.close()
    if request.param == "redis":
        await forget_prefix(prefix)


async def _take(subscription: Subscription, count: int, seconds: float = 1) -> list[Event]:
    """The next `count` events of `subscription`, within `seconds` instead of hanging."""

    async def collect() -> list[Event]:
        taken: list[Event] = []
        async for event in subscription:
            taken.append(event)
            if len(taken) == count:
                break
        return taken

    return await asyncio.wait_for(collect(), seconds)


def count(bus: EventBus, channel: str) -> int:
    counted: int = bus.subscriber_count(channel)  # type: ignore[attr-defined]
    return counted


async def _assert_nothing_pending(subscription: Subscription) -> None:
    iterator: AsyncIterator[Event] = aiter(subscription)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(iterator), ABSENT)


async def test_subscriber_receives_events_in_order(make_bus: MakeBus) -> None:
    """Events published after subscribing arrive in publish order."""
    bus = make_bus()
    sent = [_event(n) for n in range(5)]
    async with bus.subscribe(CHANNEL) as subscription:
        for event in sent:
            await bus.publish(CHANNEL, event)
        assert await _take(subscription, 5) == sent
        await _assert_nothing_pending(subscription)


async def test_events_before_subscribing_are_not_received(make_bus: MakeBus) -> None:
    """The bus keeps no history: a new subscriber sees only what is published later."""
    bus = make_bus()
    await bus.publish(CHANNEL, _event(0))
    async with bus.subscribe(CHANNEL) as subscription:
        await _assert_nothing_pending(subscription)
        await bus.publish(CHANNEL, _event(1))
        assert await _take(subscription, 1) == [_event(1)]


async def test_two_subscribers_both_receive_everything(make_bus: MakeBus) -> None:
    """Every subscriber of a channel gets every event."""
    bus = make_bus()
    sent = [_event(n) for n in range(3)]
    async with bus.subscribe(CHANNEL) as first, bus.subscribe(CHANNEL) as second:
        assert count(bus, CHANNEL) == 2
        for event in sent:
            await bus.publish(CHANNEL, event)
        assert await _take(first, 3) == sent
        assert await _take(second, 3) == sent


async def test_channels_are_separate(make_bus: MakeBus) -> None:
    """A subscriber hears only its own channel."""
    bus = make_bus()
    async with bus.subscribe(CHANNEL) as subscription:
        await bus.publish("run_other", _event(0))
        await _assert_nothing_pending(subscription)


async def test_publish_without_subscribers_is_a_no_op(make_bus: MakeBus) -> None:
    """Publishing to a channel nobody listens to neither fails nor creates the channel."""
    bus = make_bus()
    await bus.publish(CHANNEL, _event(0))
    assert count(bus, CHANNEL) == 0


async def test_buffer_full_but_not_exceeded_delivers_all(make_bus: MakeBus) -> None:
    """Exactly `subscriber_buffer` unconsumed events are kept and delivered."""
    bus = make_bus(subscriber_buffer=3)
    sent = [_event(n) for n in range(3)]
    async with bus.subscribe(CHANNEL) as subscription:
        for event in sent:
            await bus.publish(CHANNEL, event)
        assert await _take(subscription, 3) == sent


async def test_overflow_disconnects_only_the_slow_subscriber(make_bus: MakeBus) -> None:
    """A subscriber more than its buffer behind gets SubscriberOverflowError; others go on."""
    bus = make_bus(subscriber_buffer=3)
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


async def test_leaving_the_context_removes_the_subscriber(make_bus: MakeBus) -> None:
    """Exiting subscribe() unregisters the subscriber, even when the body raises."""
    bus = make_bus()
    async with bus.subscribe(CHANNEL):
        assert count(bus, CHANNEL) == 1
    assert count(bus, CHANNEL) == 0

    with pytest.raises(RuntimeError):
        async with bus.subscribe(CHANNEL):
            raise RuntimeError("body failed")
    assert count(bus, CHANNEL) == 0
    await bus.publish(CHANNEL, _event(0))


async def test_close_ends_live_subscriptions(make_bus: MakeBus) -> None:
    """close() ends the iteration of every live subscriber after what it already had."""
    bus = make_bus()
    got: list[list[Event]] = [[], []]
    joined = [asyncio.Event(), asyncio.Event()]

    async def listen(index: int) -> list[Event]:
        async with bus.subscribe(CHANNEL) as subscription:
            joined[index].set()
            async for event in subscription:
                got[index].append(event)
            return got[index]

    listeners = [asyncio.create_task(listen(i)) for i in range(2)]
    for one in joined:
        await asyncio.wait_for(one.wait(), 5)
    assert count(bus, CHANNEL) == 2
    await bus.publish(CHANNEL, _event(0))

    async def both_have_it() -> bool:  # the Redis bus delivers from another task
        return all(got)

    await eventually_async(both_have_it, timeout=5, what="both subscribers to get the event")
    await bus.close()
    results = await asyncio.wait_for(asyncio.gather(*listeners), 1)
    assert results == [[_event(0)], [_event(0)]]
    assert count(bus, CHANNEL) == 0


# --- Redis: several processes, catching up, restarts --------------------------------------------


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    missing = redis_missing()
    need(missing is None, missing or "")
    prefix = f"test:{uuid.uuid4().hex}:"
    yield f"{REDIS_URL}?prefix={prefix}"
    await forget_prefix(prefix)


async def test_redis_events_cross_processes(redis_prefix: str) -> None:
    """What one process publishes, every process subscribed to the channel receives, in order."""
    publisher, reader = RedisEventBus(redis_prefix), RedisEventBus(redis_prefix)
    try:
        async with reader.subscribe(CHANNEL) as subscription:
            sent = [_event(n) for n in range(50)]
            for event in sent:
                await publisher.publish(CHANNEL, event)
            assert await _take(subscription, 50) == sent
    finally:
        await publisher.close()
        await reader.close()


async def test_redis_a_herd_of_subscriptions_waits_for_connections_instead_of_failing(
    redis_prefix: str,
) -> None:
    """Far more runs start at once than the pool has connections (each join is two round
    trips): every subscription joins and gets its run's events; none is refused."""
    publisher, reader = RedisEventBus(redis_prefix), RedisEventBus(redis_prefix)
    herd = 4 * POOL_CONNECTIONS
    try:
        async with contextlib.AsyncExitStack() as stack:
            subscriptions = await asyncio.gather(
                *(stack.enter_async_context(reader.subscribe(f"run_{n}")) for n in range(herd))
            )
            for n in range(herd):
                await publisher.publish(f"run_{n}", _event(n))
            got = await asyncio.gather(*(_take(s, 1) for s in subscriptions))
            assert got == [[_event(n)] for n in range(herd)]
    finally:
        await publisher.close()
        await reader.close()


async def test_redis_since_bridges_from_an_event_to_the_live_ones(redis_prefix: str) -> None:
    """A subscriber that joins late gets what followed a given event from `since`, then every
    later event live: together, each event once."""
    publisher, reader = RedisEventBus(redis_prefix), RedisEventBus(redis_prefix)
    try:
        for n in range(5):
            await publisher.publish(CHANNEL, _event(n))
        await publisher.close()  # sends what it holds
        publisher = RedisEventBus(redis_prefix)
        async with reader.subscribe(CHANNEL) as subscription:
            assert await subscription.since(2) == [_event(2), _event(3), _event(4)]
            assert await subscription.since(5) == []
            await publisher.publish(CHANNEL, _event(5))
            assert await _take(subscription, 1) == [_event(5)]
    finally:
        await publisher.close()
        await reader.close()


async def test_redis_restart_loses_nothing_the_publisher_held(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis restarts (losing every key) between events: the publisher keeps what it could not
    send and sends it once Redis is back; the subscriber gets every event, in order. The log
    says what failed, where and why, once while it lasts, and when it recovers."""
    need(PrivateRedis.missing() is None, PrivateRedis.missing() or "")
    server = PrivateRedis(tmp_path).start()
    publisher, reader = RedisEventBus(server.url), RedisEventBus(server.url)
    caplog.set_level(logging.INFO, logger="gateway.retrying")
    try:
        async with reader.subscribe(CHANNEL) as subscription:
            for n in range(3):
                await publisher.publish(CHANNEL, _event(n))
            assert await _take(subscription, 3) == [_event(n) for n in range(3)]
            server.stop()
            for n in range(3, 8):
                await publisher.publish(CHANNEL, _event(n))
            # A fixed wait is the point: Redis stays down long enough for both buses to meet the
            # closed port and retry a few times, so that "logged once" below means something.
            await asyncio.sleep(1.0)
            server.start()
            got = await _take(subscription, 5, seconds=15)
            assert got == [_event(n) for n in range(3, 8)]
    finally:
        await publisher.close()
        await reader.close()
        server.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.retrying"]
    sending = [line for line in lines if line.startswith(f"Redis bus: sending to {server.url}")]
    failed = [line for line in sending if " failed (" in line]
    assert len(failed) == 1, lines  # once, not at every attempt
    assert "ConnectionError" in failed[0], failed
    assert len([line for line in sending if "succeeded after" in line]) == 1, lines
    reading = [line for line in lines if line.startswith(f"Redis bus: reading {server.url}")]
    assert any(" failed (" in line for line in reading), lines


async def test_redis_check_names_the_bus_and_the_cause(tmp_path: Path) -> None:
    """check() passes while Redis answers, and names the bus (never its password) and the
    cause when it does not, within its bound."""
    need(PrivateRedis.missing() is None, PrivateRedis.missing() or "")
    server = PrivateRedis(tmp_path).start()
    bus = RedisEventBus(server.url.replace("redis://", "redis://:hunter2@"))
    try:
        await bus.check()
        server.stop()
        started = asyncio.get_running_loop().time()
        with pytest.raises(BusUnavailableError) as refused:
            await bus.check()
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        await bus.close()
        server.stop()
    assert server.url in str(refused.value) and "hunter2" not in str(refused.value)


async def test_redis_lost_entries_drop_the_subscriber_to_resume_from_the_log(
    redis_prefix: str,
) -> None:
    """Entries Redis lost (a restart before they were read) would be a silent gap: the
    subscriber is dropped instead (SubscriberOverflowError), so its stream resumes from the
    event log."""
    publisher, reader = RedisEventBus(redis_prefix), RedisEventBus(redis_prefix)
    try:
        async with reader.subscribe(CHANNEL) as subscription:
            await publisher.publish(CHANNEL, _event(0))
            assert await _take(subscription, 1) == [_event(0)]
            await publisher.publish(CHANNEL, _event(5))  # 2 to 5 never reached Redis
            with pytest.raises(SubscriberOverflowError):
                await _take(subscription, 1)
    finally:
        await publisher.close()
        await reader.close()
