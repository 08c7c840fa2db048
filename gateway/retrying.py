"""Waiting out a dependency that is down for a while (the database refusing writes, Redis
restarting, an upstream refusing): attempts with stamina's backoff, and log lines that say what
failed and why.

stamina's own log line (`stamina.retry_scheduled`) names neither what is retried nor the
error, so the gateway turns it off (`quiet_stamina`) and logs through `retrying` instead: the
first failure that is retried (as its retry begins), then at most one line every
`QUIET_SECONDS` while failures go on, and one line when an attempt succeeds after them.

Nearly every attempt succeeds the first time, and building stamina's retry context (a tenacity
`AsyncRetrying` with its hooks, checked with `inspect` on every step) cost about 30 us a use,
several times per run. So the first attempt runs bare; only after it fails with an error
that is retried does stamina's context take over, after the first wait, for the attempts left.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import stamina
import stamina.instrumentation

log = logging.getLogger("gateway.retrying")

# Between attempts: 50 ms doubling to 2 s (stamina adds up to 0.1 s of jitter); a cancellation
# (shutdown, a run's cancel or expiry) ends the wait.
FIRST_WAIT = 0.05
LONGEST_WAIT = 2.0
# While failures go on, at most one line this often.
QUIET_SECONDS = 30.0


# What is retried: exception types, or stamina's backoff hook (True, False, or the seconds to
# wait, say from a Retry-After header).
RetryOn = type[Exception] | tuple[type[Exception], ...] | Callable[[BaseException], bool | float]


def forever(on: RetryOn, what: str) -> AsyncIterator[Any]:
    """Attempts until one succeeds: `async for attempt in forever(E, "what"): with attempt:
    ...`. Only `on` is retried; any other error is raised at once."""
    return retrying(
        what, on=on, attempts=None, wait_initial=FIRST_WAIT, wait_max=LONGEST_WAIT, jitter=0.1
    )


def retrying(
    what: str,
    *,
    on: RetryOn,
    attempts: int | None,
    wait_initial: float,
    wait_max: float,
    jitter: float,
) -> AsyncIterator[Any]:
    """`async for attempt in retrying(...): with attempt: ...`: up to `attempts` attempts (None:
    no limit) with stamina's exponential backoff, logging the failures that are retried under
    `what` (say "Redis bus: sending events to redis://host:6379/0"). The first attempt runs
    without stamina (see the module's docstring)."""
    return _Retrying(what, on, attempts, (wait_initial, wait_max, jitter))


class _Retrying:
    def __init__(
        self, what: str, on: RetryOn, attempts: int | None, waits: tuple[float, float, float]
    ) -> None:
        self.what = what
        self.on = on
        self.attempts = attempts
        self.waits = waits
        self.first: _FirstAttempt | None = None
        self.rest: _Logged | None = None

    def __aiter__(self) -> _Retrying:
        return self

    async def __anext__(self) -> Any:
        if self.rest is not None:
            return await anext(self.rest)
        if self.first is None:
            self.first = _FirstAttempt(self)
            return self.first
        failed = self.first.error
        if failed is None:  # the first attempt succeeded
            raise StopAsyncIteration
        await asyncio.sleep(self.first.wait)
        wait_initial, wait_max, jitter = self.waits
        left = None if self.attempts is None else self.attempts - 1
        # stamina's first attempt goes at once (the first wait is over), and its waits start
        # where the first one left off: twice as long, as they would have under stamina alone.
        context = stamina.retry_context(
            on=self.on,
            attempts=left,
            timeout=None,
            wait_initial=min(2 * wait_initial, wait_max),
            wait_max=wait_max,
            wait_jitter=jitter,
        )
        self.rest = _Logged(context, self.what, failed)
        return await anext(self.rest)

    def retried(self, error: Exception) -> float | None:
        """The seconds to wait before retrying after the first attempt failed with `error`, or
        None when it is not retried."""
        if self.attempts is not None and self.attempts <= 1:
            return None
        on = self.on
        if isinstance(on, type | tuple):
            decision: bool | float = isinstance(error, on)
        else:
            decision = on(error)
        if decision is False:
            return None
        if stamina.is_testing():  # stamina's test switch: no waits
            return 0.0
        if decision is True:
            wait_initial, _, jitter = self.waits
            return wait_initial + random.uniform(0, jitter)  # jitter, not a secret
        return float(decision)


class _FirstAttempt:
    """The first attempt: an error that is retried is kept (and swallowed, as stamina's attempts
    do), so that the loop goes on to stamina's attempts."""

    def __init__(self, owner: _Retrying) -> None:
        self._owner = owner
        self.error: Exception | None = None
        self.wait = 0.0

    def __enter__(self) -> _FirstAttempt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if not isinstance(exc, Exception):
            return False  # success, or a cancellation: nothing to retry
        wait = self._owner.retried(exc)
        if wait is None:
            return False
        self.error, self.wait = exc, wait
        return True


def quiet_stamina() -> None:
    """Turn off stamina's own retry hooks (its log line and its Prometheus counter in the
    default registry): `logged` says more, and the gateway's metrics have their own registry."""
    stamina.instrumentation.set_on_retry_hooks([])


class _Logged:
    def __init__(self, attempts: Any, what: str, error: BaseException | None = None) -> None:
        self._attempts = aiter(attempts)
        self.what = what
        self.error: BaseException | None = error  # the last attempt's failure
        self.failures = 0
        self.started = 0.0
        self.last_line = 0.0

    def __aiter__(self) -> _Logged:
        return self

    async def __anext__(self) -> _Attempt:
        attempt = await anext(self._attempts)
        if self.error is not None:  # the last attempt failed, and this one retries it
            now = time.monotonic()
            self.failures += 1
            if self.failures == 1:
                self.started = now
            if self.failures == 1 or now - self.last_line >= QUIET_SECONDS:
                self.last_line = now
                log.warning(
                    "%s failed (%d time%s so far): %s; retrying",
                    self.what,
                    self.failures,
                    "" if self.failures == 1 else "s",
                    _describe(self.error),
                )
            self.error = None
        return _Attempt(attempt, self)


class _Attempt:
    def __init__(self, attempt: Any, owner: _Logged) -> None:
        self._attempt = attempt
        self._owner = owner

    def __enter__(self) -> Any:
        return self._attempt.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        owner = self._owner
        owner.error = exc
        if exc is None and owner.failures:
            log.info(
                "%s: succeeded after %d failed attempts (%.1f s)",
                owner.what,
                owner.failures,
                time.monotonic() - owner.started,
            )
        result: bool | None = self._attempt.__exit__(exc_type, exc, tb)
        return result


def _describe(error: BaseException) -> str:
    """The error's class and message (for a store's refusal, its cause, not the 503's text)."""
    detail = getattr(error, "detail", None)
    text = detail if isinstance(detail, str) and detail else str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
