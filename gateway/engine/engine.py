"""The run engine: owns every active run, every task that drives one, and the rules of the API.

The engine keeps one `RunHandle` per active run. Its in-memory state is the truth for that run:
each operation checks and changes it without awaiting in between, so two concurrent requests can
never both pass a check (one active run per thread, outputs submitted once, cancel once). Changes
are then saved and announced through the `Lifecycle`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import cast

from gateway import events, ids, objects
from gateway.bodies import MessageBody, RunBody, ThreadAndRunBody
from gateway.bus import BusUnavailableError, EventBus
from gateway.engine.catalog import Catalog
from gateway.engine.cluster import Cluster
from gateway.engine.code_interpreter import CodeInterpreterTool
from gateway.engine.driver import Driver
from gateway.engine.eventlog import EventLog
from gateway.engine.file_search import FileSearchTool
from gateway.engine.files import Files
from gateway.engine.handle import RunHandle, StopReason
from gateway.engine.ingestion import Ingestion
from gateway.engine.leases import Leases, default_owner
from gateway.engine.lifecycle import Lifecycle
from gateway.engine.registry import Registry
from gateway.engine.resources import Resources
from gateway.engine.runner import Runner
from gateway.engine.search import Search
from gateway.engine.streams import RunStream, RunStreams
from gateway.engine.tools import HostedTool, unavailable_tools
from gateway.engine.uploads import Uploads
from gateway.engine.vector_stores import VectorStores
from gateway.errors import (
    ConflictError,
    InvalidRequestError,
    ServiceUnavailableError,
    not_found,
)
from gateway.knowledge.embed import Embedder
from gateway.metrics import Metrics
from gateway.models.base import ModelBackend
from gateway.objects import ACTIVE_RUN_STATUSES, RunStatus
from gateway.periodic import Periodic
from gateway.sandbox.sessions import Sessions
from gateway.store import Kind, RunStore, StoreTx
from gateway.types import AnyObj, Obj
from gateway.wire import Deleted, Message, Run, Step

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
        tools: Mapping[str, HostedTool] | None = None,
        max_file_bytes: int = 512 * 1024 * 1024,
        embedder: Embedder | None = None,
        embedding_dimensions: int = 0,
        ingestion_timeout_seconds: float = 300.0,
        sessions: Sessions | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.metrics = metrics or Metrics()
        self.sessions = sessions
        self._reaper = (
            None
            if sessions is None
            else Periodic(
                "code-interpreter-reaper",
                min(60.0, sessions.idle_seconds),
                sessions.reap,
                "ending idle code_interpreter sessions failed",
            )
        )
        self.files = Files(store, max_bytes=max_file_bytes)
        self.uploads = Uploads(store, self.files)
        self.search = Search(store, embedder, dimensions=embedding_dimensions)
        self.vector_stores = VectorStores(
            store, self.files, searcher=self.search, wake=lambda: self.ingestion.wake()
        )
        self.resources = Resources(store, self.vector_stores)
        self.catalog = Catalog(store, self.resources, owner_cache_size=owner_cache_size)
        self.log = EventLog(
            store,
            bus,
            retention_seconds=event_retention_seconds,
            flush_seconds=event_flush_seconds,
            prune_seconds=event_prune_seconds,
            persist=persist_events,
        )
        self.streams = RunStreams(bus, self.log, self.catalog, self.metrics, stream_retry_ms)
        self.leases = Leases(store, owner=owner or default_owner(0), seconds=lease_seconds)
        self.lc = Lifecycle(store, self.log, self.metrics, self.leases.owner)
        self.ingestion = Ingestion(
            store,
            self.vector_stores,
            self.files,
            owner=self.leases.owner,
            embedder=embedder,
            lease_seconds=lease_seconds,
            timeout_seconds=ingestion_timeout_seconds,
        )
        self.registry = Registry(
            self.log,
            self.metrics,
            max_active_runs=max_active_runs,
            max_active_runs_per_project=max_active_runs_per_project,
            max_active_runs_per_key=max_active_runs_per_key,
        )
        self.driver = Driver(
            self.registry,
            Runner(store, self.lc, backend_for, self.metrics, tools or self._hosted_tools()),
            self.lc,
            expiry_check_seconds=expiry_check_seconds,
            shutdown_grace_seconds=shutdown_grace_seconds,
        )
        self.cluster = Cluster(
            store, self.catalog, self.log, self.lc, self.registry, self.driver, self.leases
        )
        self.run_expiry_seconds = run_expiry_seconds
        self._stopping = False

    def _hosted_tools(self) -> dict[str, HostedTool]:
        """The tools the gateway runs: file_search on the vector stores; code_interpreter in
        sandboxed sessions, when they are set up."""
        hosted = unavailable_tools()
        hosted["file_search"] = FileSearchTool(self.store, self.vector_stores, self.search)
        if self.sessions is not None:
            hosted["code_interpreter"] = CodeInterpreterTool(
                self.store, self.files, self.sessions, self.metrics
            )
            sessions = self.sessions
            self.metrics.code_sessions.set_function(lambda: float(len(sessions)))
        return hosted

    # --- lifecycle of the engine ----------------------------------------------------------

    async def start(self) -> None:
        await self.log.start()
        await self.cluster.start()
        self.driver.start()
        self.files.start()
        self.uploads.start()
        await self.ingestion.start()
        if self._reaper is not None:
            self._reaper.start()

    async def stop(self) -> None:
        """End what is running (in-progress runs fail; queued and waiting runs stay for the
        next start) and refuse new runs. Calling it again is harmless."""
        self._stopping = True
        await self.ingestion.stop()
        if self._reaper is not None:
            await self._reaper.stop()
        await self.uploads.stop()
        await self.files.stop()
        await self.cluster.stop()
        await self.driver.stop()
        if self.sessions is not None:
            await self.sessions.close()
        await self.log.stop()

    # --- files, which vector stores hold ---------------------------------------------------

    async def delete_file(self, file_id: str, *, project: str) -> Deleted:
        """Delete a file, after taking it out of every vector store that has it."""
        await self.files.get(file_id, project=project)
        await self.vector_stores.forget_file(file_id)
        return await self.files.delete(file_id, project=project)

    # --- threads and messages, where a run may be active ----------------------------------

    async def delete_thread(self, thread_id: str) -> Deleted:
        if await self.store.get(Kind.THREAD, thread_id) is None:
            raise not_found("thread", thread_id)
        active = self.registry.active_on(thread_id)
        if active is not None:
            await self.driver.stop_and_wait(active, StopReason.CANCEL)
        elif (elsewhere := await self.cluster.active_elsewhere(thread_id)) is not None:
            await self.cluster.cancel_elsewhere(thread_id, elsewhere["id"])  # then deleted with it

        async def write(tx: StoreTx) -> bool:
            return await tx.delete(Kind.THREAD, thread_id)

        if not await self.store.write(write):
            raise not_found("thread", thread_id)
        if self.sessions is not None:
            await self.sessions.end(thread_id)  # its code session, if this process has one
        return objects.deleted(thread_id, "thread.deleted")

    async def create_message(self, thread_id: str, fields: MessageBody) -> Message:
        if await self.store.get(Kind.THREAD, thread_id) is None:
            raise not_found("thread", thread_id)
        active = self.registry.active_on(thread_id)
        run_id = active.id if active is not None else None
        if run_id is None and (elsewhere := await self.cluster.active_elsewhere(thread_id)):
            run_id = elsewhere["id"]
        if run_id is not None:
            raise ConflictError(
                f"Can't add messages to {thread_id} while a run {run_id} is active."
            )
        project = await self.catalog.project_of_thread(thread_id) or ""
        await self.resources.check_attachments([fields], project=project, param="messages")
        await self.resources.attach(thread_id, [fields], project=project)
        message = objects.user_message(thread_id, fields)

        async def write(tx: StoreTx) -> None:
            await tx.insert(Kind.MESSAGE, message)

        await self.store.write(write)
        return message

    # --- runs -----------------------------------------------------------------------------

    async def create_run(
        self,
        thread_id: str,
        fields: RunBody,
        *,
        run_id: str | None = None,
        project: str | None = None,
        key: str = "",
    ) -> Run:
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
        self.registry.check_no_active_run(thread_id)
        run = objects.run(
            thread_id=thread_id,
            assistant=assistant,
            fields=fields,
            expiry_seconds=self.run_expiry_seconds,
            run_id=run_id,
        )
        added = fields.get("additional_messages") or []
        if added:
            where = project or ""
            await self.resources.check_attachments(
                added, project=where, param="additional_messages"
            )
            await self.resources.attach(thread_id, added, project=where)
        messages = [objects.user_message(thread_id, m) for m in added]
        self.registry.check_capacity(project or "", key)
        handle = self.registry.register(run, project or "", key)
        handle.known_steps = []  # a new run has none; the thread's messages are read

        async def write(tx: StoreTx) -> None:
            for message in messages:
                await tx.insert(Kind.MESSAGE, message)
            await tx.insert(Kind.RUN, run)
            if self.leases.active:  # a SQLite file has one process: no lease to keep
                await tx.lease_run(run["id"], self.leases.owner, self.leases.until())

        await self._start_run(handle, write, [])
        return objects.copied(run)

    async def create_thread_and_run(
        self,
        fields: ThreadAndRunBody,
        *,
        run_id: str | None = None,
        project: str = "",
        key: str = "",
    ) -> Run:
        """Create a thread in `project` and a run on it; the assistant must be in `project`."""
        self._check_open()
        assistant = await self._assistant(fields["assistant_id"], project=project)
        thread_fields = fields.get("thread") or {}
        requested = fields.get("tool_resources") or thread_fields.get("tool_resources")
        resources = await self.resources.prepare(requested, project=project)
        given = thread_fields.get("messages") or []
        await self.resources.check_attachments(given, project=project, param="thread.messages")
        thread = objects.thread({**thread_fields, "tool_resources": resources})
        await self.resources.attach_to_new(cast(Obj, thread), given, project=project)
        messages = [objects.user_message(thread["id"], m) for m in given]
        run = objects.run(
            thread_id=thread["id"],
            assistant=assistant,
            fields=fields,
            expiry_seconds=self.run_expiry_seconds,
            run_id=run_id,
        )
        self.registry.check_capacity(project, key)
        handle = self.registry.register(run, project, key)
        handle.known_messages = [cast(Obj, m) for m in messages]  # all there is
        handle.known_steps = []

        async def write(tx: StoreTx) -> None:
            await tx.insert(Kind.THREAD, thread, project=project)
            for message in messages:
                await tx.insert(Kind.MESSAGE, message)
            await tx.insert(Kind.RUN, run)
            if self.leases.active:  # a SQLite file has one process: no lease to keep
                await tx.lease_run(run["id"], self.leases.owner, self.leases.until())

        await self._start_run(handle, write, [events.snapshot(events.THREAD_CREATED, thread)])
        return objects.copied(run)

    async def stream_run(
        self, thread_id: str, fields: RunBody, *, project: str, key: str = ""
    ) -> RunStream:
        """`create_run`, and the stream of the run from its first event."""
        run_id = ids.run_id()
        return await self.streams.start(
            run_id,
            lambda: self.create_run(thread_id, fields, run_id=run_id, project=project, key=key),
        )

    async def stream_thread_and_run(
        self, fields: ThreadAndRunBody, *, project: str, key: str = ""
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
            self.registry.forget(handle)
            raise
        await self.lc.publish(
            handle,
            *first_events,
            events.snapshot(events.RUN_CREATED, handle.run),
            events.snapshot(events.RUN_QUEUED, handle.run),
        )
        self.driver.spawn(handle)

    async def get_run(self, thread_id: str, run_id: str) -> Obj:
        return await self.catalog.get_run(thread_id, run_id)

    async def modify_run(
        self, thread_id: str, run_id: str, metadata: dict[str, str] | None
    ) -> AnyObj:
        await self.get_run(thread_id, run_id)
        handle = self.registry.get(run_id)
        if handle is not None:
            await self.lc.set_metadata(handle, metadata or {})
            return objects.copied(handle.run)

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
    ) -> Run:
        self._check_open()
        run = await self.get_run(thread_id, run_id)
        handle = self.registry.get(run_id)
        if handle is None and self.store.shared and run["status"] == RunStatus.REQUIRES_ACTION:
            # Waiting on another process: continue it here (see Cluster.take_over_waiting).
            handle = await self.cluster.take_over_waiting(run_id)
        if handle is not None:
            # The segment that brought the run to requires_action saves that status before it
            # publishes its last events: let it finish, so that those come before these (else
            # a stream of the outputs could begin with the old segment's end, and stop there).
            await self.driver.wait_segment(handle)
        status = handle.run["status"] if handle is not None else run["status"]
        if handle is None or status != RunStatus.REQUIRES_ACTION or handle.stop_reason:
            raise ConflictError(
                f'Runs in status "{status}" do not accept tool outputs.', param="tool_outputs"
            )
        assert handle.step is not None, "a run in requires_action has an open tool_calls step"
        await self.lc.accept_outputs(handle, _match_outputs(handle.step, tool_outputs))
        self.driver.spawn(handle)
        return objects.copied(handle.run)

    async def cancel_run(self, thread_id: str, run_id: str) -> Obj:
        run = await self.get_run(thread_id, run_id)
        handle = self.registry.get(run_id)
        if handle is None and self.store.shared and run["status"] in ACTIVE_RUN_STATUSES:
            return await self.cluster.cancel_elsewhere(thread_id, run_id)
        if handle is None:
            raise ConflictError(f"Cannot cancel run with status '{run['status']}'.")
        if handle.stop_reason is None:
            await self.driver.stop_and_wait(handle, StopReason.CANCEL)
        return await self.get_run(thread_id, run_id)

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


def _match_outputs(step: Step, tool_outputs: list[dict[str, str]]) -> dict[str, str]:
    """Each pending call's output; every call answered exactly once, nothing else (else 400)."""
    expected = [c["id"] for c in step["step_details"]["tool_calls"] if c["type"] == "function"]
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
