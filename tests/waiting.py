"""Waiting for a condition, bounded: the one poll loop of the tests.

`eventually(check)` calls `check()` until it returns something truthy and returns that; past
`timeout` it fails the test with an AssertionError that says what was awaited (`what`) and the
last value `check` gave. `eventually_async` is the same for a coroutine check, on the running
event loop (it sleeps with asyncio.sleep, so the loop goes on meanwhile).

A check that returns a bool gives back True; one that returns a value or None gives back the
value, typed. `what` may be a callable, for a message built from the state at the timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast, overload

T = TypeVar("T")

Described = str | Callable[[], str]


def _timed_out(timeout: float, what: Described, last: object) -> AssertionError:
    said = (what() if callable(what) else what) or "the condition"
    return AssertionError(f"not within {timeout} s: {said} (last seen: {last!r})")


@overload
def eventually(
    check: Callable[[], bool],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    what: Described = "",
) -> bool: ...


@overload
def eventually(
    check: Callable[[], T | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    what: Described = "",
) -> T: ...


def eventually(
    check: Callable[[], T | bool | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    what: Described = "",
) -> T | bool:
    """Call `check` every `interval` seconds until it returns something truthy; return that.
    Fails (AssertionError naming `what` and the last value) once `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return cast(T, value)
        if time.monotonic() >= deadline:
            raise _timed_out(timeout, what, value)
        time.sleep(interval)


@overload
async def eventually_async(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109  (the bound of the polling, not a cancel scope)
    interval: float = 0.01,
    what: Described = "",
) -> bool: ...


@overload
async def eventually_async(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109  (the bound of the polling, not a cancel scope)
    interval: float = 0.01,
    what: Described = "",
) -> T: ...


async def eventually_async(
    check: Callable[[], Awaitable[T | bool | None]],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109  (the bound of the polling, not a cancel scope)
    interval: float = 0.01,
    what: Described = "",
) -> T | bool:
    """`eventually` for a coroutine check: await `check()` every `interval` seconds (the loop
    runs meanwhile) until it gives something truthy; return that, or fail past `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return cast(T, value)
        if loop.time() >= deadline:
            raise _timed_out(timeout, what, value)
        await asyncio.sleep(interval)
