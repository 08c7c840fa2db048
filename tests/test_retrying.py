"""gateway.retrying: the first attempt runs bare, later ones under stamina's backoff."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import stamina

from gateway.retrying import forever, retrying


class Flaky(Exception):
    pass


async def attempts_until(
    succeeds_on: int, it: AsyncIterator[Any], error: Exception | None = None
) -> int:
    """Run the attempts of `it`, failing (with `error`, by default Flaky) until attempt
    `succeeds_on`; how many were made."""
    error = error or Flaky("down")
    made = 0
    async for attempt in it:
        with attempt:
            made += 1
            if made < succeeds_on:
                raise error
    return made


async def test_a_first_attempt_that_succeeds_is_the_only_one() -> None:
    assert await attempts_until(1, forever(Flaky, "x")) == 1


async def test_a_failed_first_attempt_is_retried_after_the_first_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The retries wait (50 ms, then 100 ms: the schedule stamina alone would keep) and the log
    says what failed, once, and that it came back."""
    caplog.set_level(logging.INFO, logger="gateway.retrying")
    started = time.monotonic()
    assert await attempts_until(3, forever(Flaky, "saving run r")) == 3
    assert time.monotonic() - started >= 0.05 + 0.1
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.retrying"]
    assert lines[0] == "saving run r failed (1 time so far): Flaky: down; retrying"
    assert lines[-1].startswith("saving run r: succeeded after 2 failed attempts")


async def test_an_error_that_is_not_retried_is_raised_at_once() -> None:
    with pytest.raises(KeyError):
        await attempts_until(2, forever(Flaky, "x"), KeyError("other"))


async def test_the_attempts_are_counted_from_the_first() -> None:
    """attempts=1 retries nothing; attempts=3 makes three, then raises the last error."""
    one = retrying("x", on=Flaky, attempts=1, wait_initial=0.01, wait_max=0.01, jitter=0)
    with pytest.raises(Flaky):
        await attempts_until(2, one)
    made = 0

    async def count() -> None:
        nonlocal made
        three = retrying("x", on=Flaky, attempts=3, wait_initial=0.01, wait_max=0.01, jitter=0)
        async for attempt in three:
            with attempt:
                made += 1
                raise Flaky("still down")

    with pytest.raises(Flaky):
        await count()
    assert made == 3


async def test_a_backoff_hook_decides_and_sets_the_first_wait() -> None:
    """A hook that says False raises at once; one that names seconds (a Retry-After) makes the
    first retry wait that long."""

    def hook(error: BaseException) -> bool | float:
        return 0.2 if "later" in str(error) else False

    refuse = retrying("x", on=hook, attempts=3, wait_initial=5, wait_max=5, jitter=0)
    with pytest.raises(Flaky):
        await attempts_until(2, refuse, Flaky("never"))
    started = time.monotonic()
    wait = retrying("x", on=hook, attempts=3, wait_initial=5, wait_max=5, jitter=0)
    assert await attempts_until(2, wait, Flaky("try later")) == 2
    assert 0.2 <= time.monotonic() - started < 2


async def test_stamina_test_mode_waits_for_nothing() -> None:
    with stamina.set_testing(True, attempts=100, cap=True):
        started = time.monotonic()
        slow = retrying("x", on=Flaky, attempts=4, wait_initial=5, wait_max=5, jitter=0)
        assert await attempts_until(4, slow) == 4
    assert time.monotonic() - started < 1
