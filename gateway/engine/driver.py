"""The tasks that drive runs: one per segment of a run (spawned, driven to the segment's end,
stopped for a cancel, an expiry or a shutdown), the expiry timer, and the tasks that end a run
stopped while nothing drives it. Every task is owned here and awaited, bounded, at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable

from gateway import logs, objects
from gateway.engine.handle import RunHandle, StopReason
from gateway.engine.leases import LeaseLostError
from gateway.engine.lifecycle import Lifecycle
from gateway.engine.registry import Registry
from gateway.engine.runner import Runner
from gateway.models.base import ModelBackendError
from gateway.objects import ACTIVE_RUN_STATUSES, RunStatus
from gateway.periodic import Periodic

log = logging.getLogger("gateway.engine")


class Driver:
    def __init__(
        self,
        registry: Registry,
        runner: Runner,
        lc: Lifecycle,
        *,
        expiry_check_seconds: float,
        shutdown_grace_seconds: float,
    ) -> None:
        self.registry = registry
        self.runner = runner
        self.lc = lc
        self.grace_seconds = shutdown_grace_seconds
        self._tasks: set[asyncio.Task[None]] = set()
        self._expiry = Periodic(
            "run-expiry", expiry_check_seconds, self._expire_due, "could not expire runs"
        )

    def start(self) -> None:
        self._expiry.start()

    async def stop(self) -> None:
        """Stop every run's task (in-progress runs fail; queued and waiting runs stay for the
        next start) and wait for them, bounded by the grace period."""
        await self._expiry.stop()
        for handle in self.registry.handles():
            if handle.task is not None:
                handle.stop_reason = handle.stop_reason or StopReason.SHUTDOWN
                if handle.started:
                    handle.task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)

    # --- driving ----------------------------------------------------------------------------

    def spawn(self, handle: RunHandle) -> None:
        """Drive the run's next segment in a task of its own."""
        handle.started = False
        handle.task = asyncio.create_task(self._drive(handle), name=f"run-{handle.id}")
        self._own(handle.task)

    async def wait_segment(self, handle: RunHandle) -> None:
        """Wait (bounded) for the task driving the run's segment to finish, if one does."""
        if handle.task is not None:
            await asyncio.wait([handle.task], timeout=self.grace_seconds)

    async def _drive(self, handle: RunHandle) -> None:
        logs.run_id.set(handle.id)  # this task's log lines name its run
        logs.project.set(handle.project or None)
        handle.started = True
        interrupted = handle.stop_reason is not None
        try:
            if not interrupted:
                await self.runner.run_segment(handle)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            handle.stop_reason = handle.stop_reason or StopReason.SHUTDOWN
            interrupted = True
        except LeaseLostError:
            self.let_go(handle)
            return
        except ModelBackendError as exc:
            await self.guard(self.lc.end_failed(handle, exc.message, exc.code), handle)
        except Exception:
            log.exception("run %s failed inside the gateway", handle.id)
            await self.guard(
                self.lc.end_failed(
                    handle, "The server had an error while processing the run.", internal=True
                ),
                handle,
            )
        if interrupted:
            await self.guard(self._finish_stopped(handle), handle)
        handle.task = None
        self.registry.settle(handle)

    # --- stopping ---------------------------------------------------------------------------

    async def stop_and_wait(self, handle: RunHandle, reason: StopReason) -> None:
        """Stop the run for `reason` and wait (bounded) until it is terminal."""
        self.stop_run(handle, reason)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(handle.done.wait(), timeout=self.grace_seconds)

    def stop_run(self, handle: RunHandle, reason: StopReason) -> None:
        if handle.stop_reason is not None:
            return
        handle.stop_reason = reason
        if handle.task is not None:
            # A task that has not started yet sees the reason on its first line and ends the run.
            if handle.started:
                handle.task.cancel()
            return
        if handle.run["status"] == RunStatus.QUEUED:
            return  # its task is about to be spawned and will end it
        # Waiting in requires_action: nothing runs, so end it here, in a task we own.
        self._own(asyncio.create_task(self._finish_stopped_now(handle)))

    async def _finish_stopped_now(self, handle: RunHandle) -> None:
        await self.guard(self._finish_stopped(handle), handle)
        self.registry.settle(handle)

    async def _finish_stopped(self, handle: RunHandle) -> None:
        status = handle.run["status"]
        if status not in ACTIVE_RUN_STATUSES:
            return
        if handle.stop_reason is StopReason.CANCEL:
            await self.lc.end_cancelled(handle)
        elif handle.stop_reason is StopReason.EXPIRE:
            await self.lc.end_expired(handle)
        elif status in (RunStatus.IN_PROGRESS, RunStatus.CANCELLING):
            await self.lc.end_failed(
                handle, "The gateway shut down while this run was in progress.", internal=True
            )
        # On shutdown, queued and requires_action runs stay as they are: the next start resumes.

    async def _expire_due(self) -> None:
        stamp = objects.now()
        for handle in self.registry.handles():
            expires_at = handle.run["expires_at"]
            if expires_at is not None and expires_at <= stamp and handle.stop_reason is None:
                self.stop_run(handle, StopReason.EXPIRE)

    # --- closing work -----------------------------------------------------------------------

    async def guard(self, work: Awaitable[None], handle: RunHandle) -> None:
        """Await a run's closing work; a failure there is logged, never raised into the task."""
        try:
            await work
        except LeaseLostError:
            self.let_go(handle)
        except Exception:
            log.exception("could not close run %s", handle.id)

    def let_go(self, handle: RunHandle) -> None:
        """Another process holds the run now: stop holding it here, writing nothing more."""
        log.warning("run %s was taken over by another process; letting it go", handle.id)
        handle.task = None
        self.registry.forget(handle)

    def _own(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
