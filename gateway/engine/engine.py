"""The run engine: owns every active run, every task that drives one, and the rules of the API.

The engine keeps one `RunHandle` per active run. Its in-memory state is the truth for that run:
each operation checks and changes it without awaiting in between, so two concurrent requests can
never both pass a check (one active run per thread, outputs submitted once, cancel once). Changes
are then saved and announced through the `Lifecycle`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway import events, ids, logs, objects
from gateway.bus import BusUnavailableError, EventBus
from gateway.engine.catalog import Catalog
from gateway.engine.eventlog import EventLog
from gateway.engine.handle import RunHandle, StopReason
from gateway.engine.leases import LeaseLostError, Leases, default_owner
from gateway.engine.lifecycle import Lifecycle
from gateway.engine.runner import Runner
from gateway.engine.streams import RunStream, RunStreams
from gateway.errors import (
    ConflictError,
    InvalidRequestError,
    RateLimitError,
    ServiceUnavailableError,
    not_found,
)
from gateway.metrics import Metrics
from gateway.models.base import ModelBackend, ModelBackendError
from gateway.objects import ACTIVE_RUN_STATUSES, RunStatus, StepStatus, usage
from gateway.periodic import Periodic
from gateway.store import Kind, RunStore, StoreTx
from gateway.types import Obj

log = logging.getLogger("gateway.engine")


class RunEngine:
    def __init__(
        self,
        store: RunStore,
        bus: EventBus,
        backend_for: Callable[[str], ModelBackend],
        *,
        run_expiry_seconds: int = 600,
        expiry_check_seconds: float = 1.0,
        shutdown_grace_seconds: float = 5.0,
        event_retention_seconds: float = 3600.0,
        event_flush_seconds: float = 0.02,
        event_prune_seconds: float = 60.0,
        persist_events: bool = True,
        max_active_runs: int = 2000,
        max_active_runs_per_project: int = 200,
        max_active_runs_per_key: int = 200,
        metrics: Metrics | None = None,
        owner: str = "",
        lease_seconds: float = 30.0,
        owner_cache_size: int = 10_000,
        stream_retry_ms: int = 1000,
    ) -> None:
        self.store = store
        self.catalog = Catalog(store, owner_cache_size=owner_cache_size)
        self.bus = bus
        self.metrics = metrics or Metrics()
        self.log = EventLog(
            store,
            bus,
            retention_seconds=event_retention_seconds,
            flush_seconds=event_flush_seconds,
            prune_seconds=event_prune_seconds,
            persist=persist_events,
        )
        self.streams = RunStreams(bus, self.log, self.catalog, self.metrics, stream_retry_ms)
        owner = owner or default_owner(0)
        self.lc = Lifecycle(store, self.log, self.metrics, owner)
        self.runner = Runner(store, self.lc, backend_for, self.metrics)
        self.run_expiry_seconds = run_expiry_seconds
        self.shutdown_grace_seconds = shutdown_grace_seconds
        self._handles: dict[str, RunHandle] = {}
        self._active_by_thread: dict[str, str] = {}
        self.max_active_runs = max_active_runs
        self.max_active_runs_per_project = max_active_runs_per_project
        self.max_active_runs_per_key = max_active_runs_per_key
        self._active_by_project: dict[str, int] = {}
        self._active_by_key: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._expiry = Periodic(
            "run-expiry", expiry_check_seconds, self._expire_due, "could not expire runs"
        )
        self.leases = Leases(
            store,
            owner=owner,
            seconds=lease_seconds,
            held=lambda: set(self._handles),
            on_renewed=self._renewed,
            adopt=self._adopt,
        )
        self._stopping = False

    # --- lifecycle of the engine ----------------------------------------------------------

    async def start(self) -> None:
        await self.log.start()
        await self._recover()
        self._expiry.start()
        self.leases.start()

    async def stop(self) -> None:
        """End what is running (in-progress runs fail; queued and waiting runs stay for the
        next start) and refuse new runs. Calling it again is harmless."""
        self._stopping = True
        await self._expiry.stop()
        await self.leases.stop()
        for handle in list(self._handles.values()):
            if handle.task is not None:
                handle.stop_reason = handle.stop_reason or StopReason.SHUTDOWN
                if handle.started:
                    handle.task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.shutdown_grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        await self.log.stop()

    async def _recover(self) -> None:
        """Take over the runs a previous process left active, so that none stays active
        forever. With a shared store, only those no live process holds (see leases.py)."""
        force = not self.store.shared  # one process per SQLite file: every active run is ours
        for run in await self.store.orphaned_runs(self.leases.owner, time.time()):
            claimed = await self.leases.claim(run["id"], force=force)
            if claimed is not None:
                await self._adopt(claimed)

    async def _adopt(self, run: Obj, *, orphan: bool = True) -> None:
        """Hold an active run whose process is gone (`orphan`): an interrupted segment ends
        failed, a cancelling run ends cancelled, a queued run starts, a waiting run waits on.
        Not an orphan: a waiting run taken from a live process, whose log ends its segment
        (even if that end is not stored yet)."""
        await self.log.attach(run["id"])
        project = await self.store.project_of(Kind.THREAD, run["thread_id"])
        handle = self._register(run, project or "")
        steps = await self.store.list_all(Kind.STEP, run_id=run["id"])
        handle.step = next((s for s in reversed(steps) if s["status"] == "in_progress"), None)
        if handle.step is not None and handle.step["type"] == "message_creation":
            message_id = handle.step["step_details"]["message_creation"]["message_id"]
            handle.message = await self.store.get(Kind.MESSAGE, message_id)
            # The text streamed before the crash, as far as the log kept it: the message
            # ends with what a client resuming from the log has been sent.
            handle.fragments = await self.log.text_of(run["id"], message_id)
        status = run["status"]
        if status == RunStatus.QUEUED:
            self._spawn(handle)
        elif status == RunStatus.CANCELLING:
            await self._guard(self.lc.end_cancelled(handle), handle)
            self._settle(handle)
        elif status == RunStatus.IN_PROGRESS:
            await self._guard(
                self.lc.end_failed(handle, "The run was interrupted by a restart of the gateway."),
                handle,
            )
            self._settle(handle)
        elif orphan and not self.log.at_rest(run["id"]):
            # Waiting in requires_action, but the crash lost the end of its segment: mark
            # it, so that its streams end instead of waiting for events that never come.
            await self._guard(self.lc.end_segment(handle, (), list), handle)

    def _renewed(self, renewed: dict[str, str | None]) -> None:
        """After a lease renewal: carry out stops asked elsewhere, and let go of waiting runs
        that another process has taken over (tool outputs submitted there)."""
        for handle in list(self._handles.values()):
            if handle.id not in renewed:
                waiting = handle.task is None and handle.run["status"] == RunStatus.REQUIRES_ACTION
                if waiting and handle.stop_reason is None:
                    log.info("run %s was taken over by another process", handle.id)
                    self._forget(handle)
            elif renewed[handle.id] == StopReason.CANCEL.value:
                self._stop(handle, StopReason.CANCEL)

    # --- threads and messages, where a run may be active ----------------------------------

    async def delete_thread(self, thread_id: str) -> Obj:
        if await self.store.get(Kind.THREAD, thread_id) is None:
            raise not_found("thread", thread_id)
        run_id = self._active_by_thread.get(thread_id)
        if run_id is not None:
            await self._stop_and_wait(self._handles[run_id], StopReason.CANCEL)
        elif (elsewhere := await self._active_elsewhere(thread_id)) is not None:
            await self._cancel_elsewhere(thread_id, elsewhere["id"])  # then deleted with it

        async def write(tx: StoreTx) -> bool:
            return await tx.delete(Kind.THREAD, thread_id)

        if not await self.store.write(write):
            raise not_found("thread", thread_id)
        return objects.deleted(thread_id, "thread.deleted")

    async def create_message(self, thread_id: str, fields: dict[str, Any]) -> Obj:
        if await self.store.get(Kind.THREAD, thread_id) is None:
            raise not_found("thread", thread_id)
        run_id = self._active_by_thread.get(thread_id)
        if run_id is None and (elsewhere := await self._active_elsewhere(thread_id)):
            run_id = elsewhere["id"]
        if run_id is not None:
            raise ConflictError(
                f"Can't add messages to {thread_id} while a run {run_id} is active."
            )
        message = objects.user_message(thread_id, fields)

        async def write(tx: StoreTx) -> None:
            await tx.insert(Kind.MESSAGE, message)

        await self.store.write(write)
        return message

    # --- runs -----------------------------------------------------------------------------

    async def create_run(
        self,
        thread_id: str,
        fields: dict[str, Any],
        *,
        run_id: str | None = None,
        project: str | None = None,
        key: str = "",
    ) -> Obj:
        """Create a queued run and start it; with a `project`, the assistant must belong to it.
        `run_id` (from `gateway.ids.run_id()`) is for a caller that subscribed to it first
        (see `stream_run`)."""
        self._check_open()
        # Both looked up at once: each read is a hop to the store's thread (see store/sqlite.py).
        thread, assistant = await asyncio.gather(
            self.store.get(Kind.THREAD, thread_id),
            self.store.get(Kind.ASSISTANT, fields["assistant_id"], project=project),
        )
        if thread is None:
            raise not_found("thread", thread_id)
        if assistant is None:
            raise not_found("assistant", fields["assistant_id"])
        self._check_no_active_run(thread_id)
        run = objects.run(
            thread_id=thread_id,
            assistant=assistant,
            fields=fields,
            expiry_seconds=self.run_expiry_seconds,
            run_id=run_id,
        )
        messages = [
            objects.user_message(thread_id, m) for m in fields.get("additional_messages") or []
        ]
        self._check_capacity(project or "", key)
        handle = self._register(run, project or "", key)

        async def write(tx: StoreTx) -> None:
            for message in messages:
                await tx.insert(Kind.MESSAGE, message)
            await tx.insert(Kind.RUN, run)
            if self.leases.active:  # a SQLite file has one process: no lease to keep
                await tx.lease_run(run["id"], self.leases.owner, self.leases.until())

        await self._start_run(handle, write, [])
        return copy.deepcopy(run)

    async def create_thread_and_run(
        self,
        fields: dict[str, Any],
        *,
        run_id: str | None = None,
        project: str = "",
        key: str = "",
    ) -> Obj:
        """Create a thread in `project` and a run on it; the assistant must be in `project`."""
        self._check_open()
        assistant = await self._assistant(fields["assistant_id"], project=project)
        thread_fields = fields.get("thread") or {}
        thread = objects.thread(
            {**thread_fields, "tool_resources": fields.get("tool_resources")}
            if fields.get("tool_resources") is not None
            else thread_fields
        )
        messages = [
            objects.user_message(thread["id"], m) for m in thread_fields.get("messages") or []
        ]
        run = objects.run(
            thread_id=thread["id"],
            assistant=assistant,
            fields=fields,
            expiry_seconds=self.run_expiry_seconds,
            run_id=run_id,
        )
        self._check_capacity(project, key)
        handle = self._register(run, project, key)

        async def write(tx: StoreTx) -> None:
            await tx.insert(Kind.THREAD, thread, project=project)
            for message in messages:
                await tx.insert(Kind.MESSAGE, message)
            await tx.insert(Kind.RUN, run)
            if self.leases.active:  # a SQLite file has one process: no lease to keep
                await tx.lease_run(run["id"], self.leases.owner, self.leases.until())

        await self._start_run(handle, write, [events.snapshot(events.THREAD_CREATED, thread)])
        return copy.deepcopy(run)

    async def stream_run(
        self, thread_id: str, fields: dict[str, Any], *, project: str, key: str = ""
    ) -> RunStream:
        """`create_run`, and the stream of the run from its first event."""
        run_id = ids.run_id()
        return await self.streams.start(
            run_id,
            lambda: self.create_run(thread_id, fields, run_id=run_id, project=project, key=key),
        )

    async def stream_thread_and_run(
        self, fields: dict[str, Any], *, project: str, key: str = ""
    ) -> RunStream:
        """`create_thread_and_run`, and the stream of the run from its first event."""
        run_id = ids.run_id()
        return await self.streams.start(
            run_id,
            lambda: self.create_thread_and_run(fields, run_id=run_id, project=project, key=key),
        )

    async def stream_tool_outputs(
        self, thread_id: str, run_id: str, tool_outputs: list[dict[str, str]]
    ) -> RunStream:
        """`submit_tool_outputs`, and the stream of the segment the outputs begin."""
        return await self.streams.start(
            run_id, lambda: self.submit_tool_outputs(thread_id, run_id, tool_outputs)
        )

    async def run_events(self, thread_id: str, run_id: str, after: int | None) -> RunStream:
        """The run's stream from its log after event `after` (from its start for None), then
        live, to the end of the segment."""
        return await self.streams.replay(thread_id, run_id, after)

    async def _start_run(
        self,
        handle: RunHandle,
        write: Callable[[StoreTx], Awaitable[None]],
        first_events: list[events.Event],
    ) -> None:
        try:
            await self.store.write(write)
        except BaseException:
            self._forget(handle)
            raise
        await self.lc.publish(
            handle,
            *first_events,
            events.snapshot(events.RUN_CREATED, handle.run),
            events.snapshot(events.RUN_QUEUED, handle.run),
        )
        self._spawn(handle)

    async def get_run(self, thread_id: str, run_id: str) -> Obj:
        return await self.catalog.get_run(thread_id, run_id)

    async def modify_run(self, thread_id: str, run_id: str, metadata: dict[str, str] | None) -> Obj:
        await self.get_run(thread_id, run_id)
        handle = self._handles.get(run_id)
        if handle is not None:
            handle.run["metadata"] = metadata or {}
            await self.lc.save(handle, (Kind.RUN, handle.run), own_metadata=True)
            return copy.deepcopy(handle.run)

        # Held by no one, or by another process: change the stored run's metadata only (that
        # process keeps it at its next save of the run, see Lifecycle.save).
        async def write(tx: StoreTx) -> Obj:
            stored = await tx.get(Kind.RUN, run_id)
            if stored is None:
                raise not_found("run", run_id)
            stored["metadata"] = metadata or {}
            await tx.save(Kind.RUN, stored)
            return stored

        return await self.store.write(write)

    async def submit_tool_outputs(
        self, thread_id: str, run_id: str, tool_outputs: list[dict[str, str]]
    ) -> Obj:
        self._check_open()
        run = await self.get_run(thread_id, run_id)
        handle = self._handles.get(run_id)
        if handle is None and self.store.shared and run["status"] == RunStatus.REQUIRES_ACTION:
            # Waiting on another process: nothing runs there, so this one takes it over (that
            # one lets go at its next lease renewal) and continues it here.
            claimed = await self.leases.claim(
                run_id, force=True, status=RunStatus.REQUIRES_ACTION.value
            )
            if claimed is not None:
                await self._adopt(claimed, orphan=False)
                handle = self._handles.get(run_id)
        if handle is not None and handle.task is not None:
            # The segment that brought the run to requires_action saves that status before it
            # publishes its last events: let it finish, so that those come before these (else
            # a stream of the outputs could begin with the old segment's end, and stop there).
            await asyncio.wait([handle.task], timeout=self.shutdown_grace_seconds)
        status = handle.run["status"] if handle is not None else run["status"]
        if handle is None or status != RunStatus.REQUIRES_ACTION or handle.stop_reason:
            raise ConflictError(
                f'Runs in status "{status}" do not accept tool outputs.', param="tool_outputs"
            )
        step = handle.step
        assert step is not None, "a run in requires_action has an open tool_calls step"
        outputs = _match_outputs(step, tool_outputs)
        for call in step["step_details"]["tool_calls"]:
            call["function"]["output"] = outputs[call["id"]]
        self.lc.set_step_status(step, StepStatus.COMPLETED, usage=usage(*handle.step_usage))
        self.lc.set_run_status(handle.run, RunStatus.QUEUED)
        handle.step = None
        await self.lc.save(handle, (Kind.STEP, step), (Kind.RUN, handle.run))
        await self.lc.publish(handle, events.step_status(step), events.run_status(handle.run))
        self._spawn(handle)
        return copy.deepcopy(handle.run)

    async def cancel_run(self, thread_id: str, run_id: str) -> Obj:
        run = await self.get_run(thread_id, run_id)
        handle = self._handles.get(run_id)
        if handle is None and self.store.shared and run["status"] in ACTIVE_RUN_STATUSES:
            return await self._cancel_elsewhere(thread_id, run_id)
        if handle is None:
            raise ConflictError(f"Cannot cancel run with status '{run['status']}'.")
        if handle.stop_reason is None:
            await self._stop_and_wait(handle, StopReason.CANCEL)
        return await self.get_run(thread_id, run_id)

    async def _active_elsewhere(self, thread_id: str) -> Obj | None:
        """The thread's active run when another process may hold it (a shared store)."""
        if not self.store.shared:
            return None

        async def active(tx: StoreTx) -> Obj | None:
            return await tx.active_run(thread_id)

        return await self.store.write(active)

    async def _cancel_elsewhere(self, thread_id: str, run_id: str) -> Obj:
        """Cancel a run another process holds: ask its owner (it sees the request at its next
        lease renewal) and wait, bounded, until the run is terminal."""

        async def request(tx: StoreTx) -> bool:
            return await tx.request_stop(run_id, StopReason.CANCEL.value)

        if await self.store.write(request):
            deadline = time.monotonic() + self.shutdown_grace_seconds + self.leases.beat
            while time.monotonic() < deadline:
                run = await self.get_run(thread_id, run_id)
                if run["status"] not in ACTIVE_RUN_STATUSES:
                    return run
                await asyncio.sleep(0.05)
        run = await self.get_run(thread_id, run_id)
        if run["status"] not in ACTIVE_RUN_STATUSES and run["status"] != RunStatus.CANCELLED:
            raise ConflictError(f"Cannot cancel run with status '{run['status']}'.")
        return run

    # --- stopping runs --------------------------------------------------------------------

    async def _stop_and_wait(self, handle: RunHandle, reason: StopReason) -> None:
        """Stop the run for `reason` and wait (bounded) until it is terminal."""
        self._stop(handle, reason)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(handle.done.wait(), timeout=self.shutdown_grace_seconds)

    def _stop(self, handle: RunHandle, reason: StopReason) -> None:
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
        await self._guard(self._finish_stopped(handle), handle)
        self._settle(handle)

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
        for handle in list(self._handles.values()):
            expires_at = handle.run["expires_at"]
            if expires_at is not None and expires_at <= stamp and handle.stop_reason is None:
                self._stop(handle, StopReason.EXPIRE)

    # --- tasks and handles ----------------------------------------------------------------

    def _check_capacity(self, project: str, key: str = "") -> None:
        """Room for one more active run, in the gateway, in `project` and for `key`."""
        if len(self._handles) >= self.max_active_runs:
            raise ServiceUnavailableError(
                f"The gateway is at its limit of {self.max_active_runs} active runs; retry in a "
                "moment.",
                code="overloaded",
                retry_after=1,
            )
        if self._active_by_project.get(project, 0) >= self.max_active_runs_per_project:
            raise RateLimitError(
                f"This project has {self.max_active_runs_per_project} active runs, its limit; "
                "retry when one has ended.",
                code="too_many_active_runs",
                retry_after=1,
            )
        if key and self._active_by_key.get(key, 0) >= self.max_active_runs_per_key:
            raise RateLimitError(
                f"This API key has {self.max_active_runs_per_key} active runs, its limit; "
                "retry when one has ended.",
                code="too_many_active_runs",
                retry_after=1,
            )

    def _register(self, run: Obj, project: str = "", key: str = "") -> RunHandle:
        handle = RunHandle(run=run, project=project, key=key)
        self._handles[run["id"]] = handle
        self.metrics.active_runs.inc()
        self._active_by_thread[run["thread_id"]] = run["id"]
        _count(self._active_by_project, project, 1)
        if key:
            _count(self._active_by_key, key, 1)
        return handle

    def _forget(self, handle: RunHandle) -> None:
        self.log.release(handle.id)
        if self._handles.pop(handle.id, None) is not None:
            self.metrics.active_runs.dec()
            _count(self._active_by_project, handle.project, -1)
            if handle.key:
                _count(self._active_by_key, handle.key, -1)
        if self._active_by_thread.get(handle.thread_id) == handle.id:
            del self._active_by_thread[handle.thread_id]
        handle.done.set()

    def _settle(self, handle: RunHandle) -> None:
        if handle.run["status"] not in ACTIVE_RUN_STATUSES:
            self._forget(handle)

    def _own(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spawn(self, handle: RunHandle) -> None:
        handle.started = False
        handle.task = asyncio.create_task(self._drive(handle), name=f"run-{handle.id}")
        self._own(handle.task)

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
            self._let_go(handle)
            return
        except ModelBackendError as exc:
            await self._guard(self.lc.end_failed(handle, exc.message, exc.code), handle)
        except Exception:
            log.exception("run %s failed inside the gateway", handle.id)
            await self._guard(
                self.lc.end_failed(
                    handle, "The server had an error while processing the run.", internal=True
                ),
                handle,
            )
        if interrupted:
            await self._guard(self._finish_stopped(handle), handle)
        handle.task = None
        self._settle(handle)

    async def _guard(self, work: Awaitable[None], handle: RunHandle) -> None:
        """Await a run's closing work; a failure there is logged, never raised into the task."""
        try:
            await work
        except LeaseLostError:
            self._let_go(handle)
        except Exception:
            log.exception("could not close run %s", handle.id)

    def _let_go(self, handle: RunHandle) -> None:
        """Another process holds the run now: stop holding it here, writing nothing more."""
        log.warning("run %s was taken over by another process; letting it go", handle.id)
        handle.task = None
        self._forget(handle)

    # --- checks ---------------------------------------------------------------------------

    async def readiness(self, seconds: float) -> dict[str, str]:
        """Whether the database and the bus each answer within `seconds`: "ok" or
        "unavailable" for each (the reason goes to the log)."""

        async def database() -> str:
            try:
                async with asyncio.timeout(seconds):
                    await self.catalog.check_database()
            except Exception as exc:
                log.warning("readiness: the database does not answer: %s", str(exc) or repr(exc))
                return "unavailable"
            return "ok"

        async def bus() -> str:
            try:
                async with asyncio.timeout(seconds):
                    await self.bus.check()
            except (BusUnavailableError, TimeoutError) as exc:
                log.warning("readiness: %s", str(exc) or "the bus does not answer")
                return "unavailable"
            return "ok"

        found = await asyncio.gather(database(), bus())
        return dict(zip(("database", "bus"), found, strict=True))

    async def _assistant(self, assistant_id: str, *, project: str | None = None) -> Obj:
        assistant = await self.store.get(Kind.ASSISTANT, assistant_id, project=project)
        if assistant is None:
            raise not_found("assistant", assistant_id)
        return assistant

    @property
    def stopping(self) -> bool:
        return self._stopping

    def _check_open(self) -> None:
        if self._stopping:
            raise ServiceUnavailableError(
                "The gateway is shutting down; retry in a moment.", retry_after=1
            )

    def _check_no_active_run(self, thread_id: str) -> None:
        run_id = self._active_by_thread.get(thread_id)
        if run_id is not None:
            raise ConflictError(f"Thread {thread_id} already has an active run {run_id}.")


def _count(counts: dict[str, int], name: str, change: int) -> None:
    """Add `change` to `counts[name]`, dropping the entry at zero."""
    left = counts.get(name, 0) + change
    if left > 0:
        counts[name] = left
    else:
        counts.pop(name, None)


def _match_outputs(step: Obj, tool_outputs: list[dict[str, str]]) -> dict[str, str]:
    """Each pending call's output; every call answered exactly once, nothing else (else 400)."""
    expected = [c["id"] for c in step["step_details"]["tool_calls"]]
    outputs: dict[str, str] = {}
    for i, item in enumerate(tool_outputs):
        call_id = item["tool_call_id"]
        if call_id not in expected:
            raise InvalidRequestError(
                f"No tool call found with id '{call_id}' in this run's required action.",
                param=f"tool_outputs[{i}].tool_call_id",
            )
        if call_id in outputs:
            raise InvalidRequestError(
                f"Duplicate output for tool call '{call_id}'.",
                param=f"tool_outputs[{i}].tool_call_id",
            )
        outputs[call_id] = item["output"]
    missing = [c for c in expected if c not in outputs]
    if missing:
        raise InvalidRequestError(
            f"Expected tool outputs for call_ids {expected}, got values for {list(outputs)}.",
            param="tool_outputs",
        )
    return outputs
