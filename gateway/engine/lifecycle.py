"""Status changes of runs, steps and messages: checked against the transition table, saved,
then announced, in that order, so that a client who saw an event finds the same state on GET.

Each `end_*` method closes what is open (message first, then step, then run), the order of the
canonical stream sequences E to H.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from gateway import events
from gateway.engine.durable import until_stored
from gateway.engine.eventlog import EventLog
from gateway.engine.handle import RunHandle
from gateway.engine.leases import LeaseLostError
from gateway.events import Event
from gateway.metrics import Metrics
from gateway.objects import (
    MessageStatus,
    RunStatus,
    StepStatus,
    check_run_transition,
    check_step_transition,
    now,
    text_part,
    usage,
)
from gateway.store import Kind, RunStore, StoreTx
from gateway.types import AnyObj, Obj
from gateway.wire import LastError, Message, Run, Step


class Lifecycle:
    def __init__(self, store: RunStore, log: EventLog, metrics: Metrics, owner: str) -> None:
        self.store = store
        self.log = log
        self.metrics = metrics
        self.owner = owner  # this process's name on its runs' leases

    async def publish(self, handle: RunHandle, *evs: Event) -> None:
        for event in evs:
            await self.log.publish(handle.id, event)

    async def save(
        self, handle: RunHandle, *objs: tuple[Kind, AnyObj], own_metadata: bool = False
    ) -> None:
        """Save objects of `handle`'s run in one transaction, retrying while the database
        refuses writes.

        On a shared store the transaction first checks, and locks, that this process still
        holds the run's lease: a process that lost it (another took the run over after this
        one stalled past its lease, or took its waiting run for tool outputs) gets
        LeaseLostError and writes nothing. The run's metadata may have been modified by
        another process meanwhile; unless `own_metadata` (the save of such a modification),
        the saved run keeps the stored metadata, which the run in memory takes too."""
        write = self._writer(handle, objs, own_metadata=own_metadata)
        async for attempt in until_stored(f"saving run {handle.id} in {self.store.where}"):
            with attempt:
                await self.store.write(write)

    async def end_segment(
        self,
        handle: RunHandle,
        objs: Sequence[tuple[Kind, AnyObj]],
        announce: Callable[[], Sequence[Event]],
    ) -> None:
        """Save `objs` as `save` does, and with them, in the same transaction, the run's events
        up to the end of this segment (requires_action or terminal): what `announce()` builds
        from the saved objects, then the marker that ends the run's streams. Then publish."""
        await self.log.seal(handle.id, self._writer(handle, objs), announce)

    def _writer(
        self, handle: RunHandle, objs: Sequence[tuple[Kind, AnyObj]], *, own_metadata: bool = False
    ) -> Callable[[StoreTx], Awaitable[None]]:
        shared = self.store.shared

        async def write(tx: StoreTx) -> None:
            stored = await tx.hold_run(handle.id, self.owner) if shared else None
            if shared and stored is None:
                raise LeaseLostError(handle.id)
            for kind, obj in objs:
                if stored is not None and kind is Kind.RUN and not own_metadata:
                    # Metadata is the one field other processes change (modify run): theirs.
                    # The run saved is always the handle's, so taking it there saves it too.
                    assert obj is handle.run
                    handle.run["metadata"] = stored["metadata"]
                await tx.save(kind, obj)

        return write

    # --- runs -----------------------------------------------------------------------------

    async def set_metadata(self, handle: RunHandle, metadata: dict[str, str]) -> None:
        """Replace the run's metadata (modify run), saved as this run's own."""
        handle.run["metadata"] = metadata
        await self.save(handle, (Kind.RUN, handle.run), own_metadata=True)

    async def accept_outputs(self, handle: RunHandle, outputs: dict[str, str]) -> None:
        """Answer the waiting tool calls (`outputs` by call id, every call's): the tool step
        completes and the run is queued again, saved, then announced."""
        step = handle.step
        assert step is not None and step["type"] == "tool_calls"
        for call in step["step_details"]["tool_calls"]:
            call["function"]["output"] = outputs[call["id"]]
        self.set_step_status(step, StepStatus.COMPLETED, usage=usage(*handle.step_usage))
        self.set_run_status(handle.run, RunStatus.QUEUED)
        handle.step = None
        await self.save(handle, (Kind.STEP, step), (Kind.RUN, handle.run))
        await self.publish(handle, events.step_status(step), events.run_status(handle.run))

    def set_run_status(self, run: Run, status: RunStatus) -> None:
        check_run_transition(run["status"], status)
        run["status"] = status.value
        self.metrics.run_statuses.labels(status.value).inc()
        stamp = now()
        if status is RunStatus.IN_PROGRESS and run["started_at"] is None:
            run["started_at"] = stamp
        elif status is RunStatus.COMPLETED:
            run["completed_at"] = stamp
        elif status is RunStatus.CANCELLED:
            run["cancelled_at"] = stamp
        elif status is RunStatus.FAILED:
            run["failed_at"] = stamp
        if status is not RunStatus.REQUIRES_ACTION:
            run["required_action"] = None
        if status in (
            RunStatus.COMPLETED,
            RunStatus.INCOMPLETE,
            RunStatus.FAILED,
            RunStatus.CANCELLED,
            RunStatus.EXPIRED,
        ):
            run["expires_at"] = None

    async def run_status(self, handle: RunHandle, status: RunStatus) -> None:
        self.set_run_status(handle.run, status)
        await self.save(handle, (Kind.RUN, handle.run))
        await self.publish(handle, events.run_status(handle.run))

    def _final_usage(self, handle: RunHandle) -> None:
        handle.run["usage"] = usage(handle.prompt_tokens, handle.completion_tokens)

    # --- steps and messages ---------------------------------------------------------------

    @staticmethod
    def set_step_status(step: Step, status: StepStatus, **fields: object) -> None:
        check_step_transition(step["status"], status)
        step["status"] = status.value
        stamp_field = {
            StepStatus.COMPLETED: "completed_at",
            StepStatus.CANCELLED: "cancelled_at",
            StepStatus.FAILED: "failed_at",
            StepStatus.EXPIRED: "expired_at",
        }[status]
        changed: Obj = {stamp_field: now(), **fields}
        step.update(changed)  # type: ignore[typeddict-item]  # fields of Step, by name

    @staticmethod
    def close_message(message: Message, content: Sequence[Obj], reason: str | None) -> None:
        """Complete the message (reason None) or mark it incomplete for `reason`."""
        message["content"] = list(content)
        if reason is None:
            message["status"] = MessageStatus.COMPLETED.value
            message["completed_at"] = now()
        else:
            message["status"] = MessageStatus.INCOMPLETE.value
            message["incomplete_at"] = now()
            message["incomplete_details"] = {"reason": reason}

    # --- endings --------------------------------------------------------------------------

    async def end(
        self,
        handle: RunHandle,
        run_status: RunStatus,
        *,
        step_status: StepStatus,
        message_reason: str | None,
        content: Sequence[Obj] = (),
        step_fields: dict[str, object] | None = None,
        trailer: Sequence[Event] = (),
    ) -> None:
        """Close the open message and step, then bring the run to `run_status`, atomically with
        the run's events to the end of the stream: theirs, then `trailer`, then the marker."""
        run = handle.run
        changed: list[tuple[Kind, AnyObj]] = []
        if handle.message is not None:
            self.close_message(handle.message, content, message_reason)
            changed.append((Kind.MESSAGE, handle.message))
        if handle.step is not None:
            self.set_step_status(handle.step, step_status, **(step_fields or {}))
            changed.append((Kind.STEP, handle.step))
        self.set_run_status(run, run_status)
        self._final_usage(handle)
        changed.append((Kind.RUN, run))
        handle.message = handle.step = None
        handle.fragments = []

        def announce() -> list[Event]:
            # Built after the save, which may have brought the run metadata set elsewhere.
            return [
                events.run_status(obj)
                if kind is Kind.RUN
                else events.message_status(obj)
                if kind is Kind.MESSAGE
                else events.step_status(obj)
                for kind, obj in changed
            ] + list(trailer)

        await self.end_segment(handle, changed, announce)

    async def end_cancelled(self, handle: RunHandle) -> None:
        if handle.run["status"] != RunStatus.CANCELLING:
            await self.run_status(handle, RunStatus.CANCELLING)
        await self.end(
            handle,
            RunStatus.CANCELLED,
            step_status=StepStatus.CANCELLED,
            message_reason="run_cancelled",
            content=_partial(handle),
        )

    async def end_expired(self, handle: RunHandle) -> None:
        await self.end(
            handle,
            RunStatus.EXPIRED,
            step_status=StepStatus.EXPIRED,
            message_reason="run_expired",
            content=_partial(handle),
        )

    async def end_failed(
        self, handle: RunHandle, message: str, code: str = "server_error", *, internal: bool = False
    ) -> None:
        """Fail the run. An `internal` failure (the gateway's own, not the model's) is also sent
        to streams as an `error` event after thread.run.failed, so that the SDK raises."""
        error: LastError = {"code": code, "message": message}
        handle.run["last_error"] = error
        step_code = code if code in ("server_error", "rate_limit_exceeded") else "server_error"
        await self.end(
            handle,
            RunStatus.FAILED,
            step_status=StepStatus.FAILED,
            message_reason="run_failed",
            content=_partial(handle),
            step_fields={"last_error": {"code": step_code, "message": message}},
            trailer=[events.error(message)] if internal else (),
        )


def _partial(handle: RunHandle) -> list[Obj]:
    """The content written so far into the open message."""
    return [text_part("".join(handle.fragments))] if handle.fragments else []
