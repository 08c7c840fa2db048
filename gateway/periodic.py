"""Background work on a timer: one owned task per job, started and stopped with its owner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("gateway.periodic")


class Periodic:
    """Awaits `work()` every `seconds`, in a task named `name`, from start() until stop(). A
    round that raises is logged as `failure` and the next round comes all the same."""

    def __init__(
        self, name: str, seconds: float, work: Callable[[], Awaitable[object]], failure: str
    ) -> None:
        self.name = name
        self.seconds = seconds
        self.work = work
        self.failure = failure
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.seconds)
            try:
                await self.work()
            except Exception:
                log.exception(self.failure)
