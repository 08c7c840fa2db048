"""Waiting out a dependency that is down for a while (the database refusing writes, Redis
restarting, an upstream refusing): attempts with stamina's backoff, and log lines that say what
failed and why.

stamina's own log line (`stamina.retry_scheduled`) names neither what is retried nor the
error, so the gateway turns it off (`quiet_stamina`) and logs through `logged` instead: the
first failure that is retried (as its retry begins), then at most one line every
`QUIET_SECONDS` while failures go on, and one line when an attempt succeeds after them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
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


def forever(on: type[Exception] | tuple[type[Exception], ...], what: str) -> Any:
    """Attempts until one succeeds: `async for attempt in forever(E, "what"): with attempt:
    ...`. Only `on` is retried; any other error is raised at once."""
    return logged(
        stamina.retry_context(
            on=on,
            attempts=None,
            timeout=None,
            wait_initial=FIRST_WAIT,
            wait_max=LONGEST_WAIT,
            wait_jitter=0.1,
        ),
        what,
    )


def logged(attempts: Any, what: str) -> AsyncIterator[Any]:
    """stamina's `attempts` (a retry_context), logging the failures that are retried under
    `what` (say "Redis bus: sending events to redis://host:6379/0")."""
    return _Logged(attempts, what)


def quiet_stamina() -> None:
    """Turn off stamina's own retry hooks (its log line and its Prometheus counter in the
    default registry): `logged` says more, and the gateway's metrics have their own registry."""
    stamina.instrumentation.set_on_retry_hooks([])


class _Logged:
    def __init__(self, attempts: Any, what: str) -> None:
        self._attempts = aiter(attempts)
        self.what = what
        self.error: BaseException | None = None  # the last attempt's failure
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
