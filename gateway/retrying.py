"""Waiting out a dependency that is down for a while (the database refusing writes, Redis
restarting): attempts with stamina's backoff, with no limit on their number or time."""

from __future__ import annotations

from typing import Any

import stamina

# Between attempts: 50 ms doubling to 2 s (stamina adds up to 0.1 s of jitter); a cancellation
# (shutdown, a run's cancel or expiry) ends the wait.
FIRST_WAIT = 0.05
LONGEST_WAIT = 2.0


def forever(on: type[Exception] | tuple[type[Exception], ...]) -> Any:
    """Attempts until one succeeds: `async for attempt in forever(E): with attempt: ...`.
    Only `on` is retried; any other error is raised at once."""
    return stamina.retry_context(
        on=on,
        attempts=None,
        timeout=None,
        wait_initial=FIRST_WAIT,
        wait_max=LONGEST_WAIT,
        wait_jitter=0.1,
    )
