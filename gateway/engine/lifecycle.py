"""The one writer of a live run's state: its run, its open step and message, the text written
so far and its token counts, all held by its RunHandle.

Every change is checked against the transition tables, saved, then announced, in that order, so
that a client who saw an event finds the same state on GET. The runner says what the model
produced (text, a tool call, a finish); the driver and the engine say what happened to the run
(cancel, expiry, failure, outputs, metadata); only this module writes the objects.

Each `end_*` method closes what is open (message first, then step, then run), the order of the
canonical stream sequences E to H.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

from gateway import citations, events, objects
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

    async def restore(self, handle: RunHandle) -> None:
        """Take up what an adopted run had open when its process stopped: the step in progress
        and, for a message step, its message with the text streamed before, as far as the log
        kept it (the message then ends with what a client resuming from the log was sent)."""
        steps = cast(list[Step], await self.store.list_all(Kind.STEP, run_id=handle.id))
        handle.sources = objects.search_sources(steps)
        handle.step = next((s for s in reversed(steps) if s["status"] == "in_progress"), None)
        if handle.step is not None and handle.step["type"] == "message_creation":
            message_id = handle.step["step_details"]["message_creation"]["message_id"]
            handle.message = cast(Message | None, await self.store.get(Kind.MESSAGE, message_id))
            handle.fragments = await self.log.text_of(handle.id, message_id)

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
            if call["type"] == "function":
                call["function"]["output"] = outputs[call["id"]]
        self.set_step_status(step, StepStatus.COMPLETED, usage=usage(*handle.step_usage))
        self.set_run_status(handle.run, RunStatus.QUEUED)
        handle.step = None
        await self.save(handle, (Kind.STEP, step), (Kind.RUN, handle.run))
        await self.publish(handle, _step_status(step), events.run_status(handle.run))

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

    # --- what the model writes ------------------------------------------------------------

    def count_tokens(self, handle: RunHandle, prompt: int, completion: int) -> None:
        """Add a segment's token usage to the run's (set on the run when it ends)."""
        handle.prompt_tokens += prompt
        handle.completion_tokens += completion

    async def open_message(self, handle: RunHandle) -> None:
        """Open a message_creation step and its assistant message, saved, then announced."""
        message = objects.assistant_message(handle.run)
        step = objects.step(
            handle.run,
            {"type": "message_creation", "message_creation": {"message_id": message["id"]}},
        )
        handle.step, handle.message, handle.fragments = step, message, []
        handle.annotations, handle.text_length, handle.text_tail = [], 0, ""
        await self.save(handle, (Kind.STEP, step), (Kind.MESSAGE, message))
        await self.publish(
            handle,
            events.snapshot(events.STEP_CREATED, step),
            events.snapshot(events.STEP_IN_PROGRESS, step),
            events.snapshot(events.MESSAGE_CREATED, message),
            events.snapshot(events.MESSAGE_IN_PROGRESS, message),
        )

    async def write_text(self, handle: RunHandle, text: str) -> None:
        """Add `text` to the open message (opened first if none is). The text is kept in the
        handle and in the log's delta events; the message is saved with it when it closes."""
        if handle.message is None:
            await self.open_message(handle)
        assert handle.message is not None
        first = not handle.fragments
        handle.fragments.append(text)
        # Straight to the log: the one event a token makes, on the hottest path there is.
        await self.log.publish(
            handle.id, events.message_text_delta(handle.message["id"], 0, text, first=first)
        )
        if handle.sources:
            await self._cite(handle, text)

    async def _cite(self, handle: RunHandle, text: str) -> None:
        """Annotate the citations `text` completes (a marker of a search result), on the
        message and in a delta of their own."""
        assert handle.message is not None
        window = handle.text_tail + text
        before = handle.text_length - len(handle.text_tail)
        handle.text_length += len(text)
        handle.text_tail = window[-CITATION_REACH:]
        found = []
        for number, start, end, marker in citations.cited(window):
            if end <= len(window) - len(text) or not 0 <= number < len(handle.sources):
                continue  # annotated with an earlier fragment, or no such result
            annotation = objects.file_citation(
                handle.sources[number], marker, before + start, before + end
            )
            found.append({"index": len(handle.annotations), **annotation})
            handle.annotations.append(annotation)
        if found:
            await self.log.publish(
                handle.id, events.message_annotations_delta(handle.message["id"], 0, found)
            )

    async def start_tool_call(self, handle: RunHandle, call_id: str, name: str) -> int:
        """Add a function call to the segment's tool_calls step (opened first if none is: the
        open message, if text came first, completes before it); returns the call's index."""
        function = {"name": name, "arguments": "", "output": None}
        return await self._add_call(handle, call_id, "function", function)

    async def start_hosted_call(self, handle: RunHandle, call_id: str, kind: str) -> int:
        """Add a call of a hosted tool (file_search, code_interpreter) to the segment's
        tool_calls step, as start_tool_call does for a function; returns the call's index."""
        details = objects.hosted_call_details(handle.run, kind)
        return await self._add_call(handle, call_id, kind, details)

    async def _add_call(self, handle: RunHandle, call_id: str, kind: str, details: Obj) -> int:
        """Add a call to the open tool step (opened first) and announce it: the call's first
        delta carries all of it."""
        if handle.step is None or handle.step["type"] != "tool_calls":
            await self._open_tool_step(handle)
        step = handle.step
        assert step is not None
        calls = step["step_details"]["tool_calls"]
        index = len(calls)
        calls.append({"id": call_id, "type": kind, kind: details})
        delta = {"index": index, "id": call_id, "type": kind, kind: dict(details)}
        await self.publish(handle, events.tool_call_delta(step["id"], delta))
        return index

    async def hosted_call_input(self, handle: RunHandle, index: int, text: str) -> None:
        """Set the input of the hosted call `index` (code_interpreter's code), saved, then sent
        as the call's delta, before the call runs."""
        step = handle.step
        assert step is not None and step["type"] == "tool_calls"
        call = step["step_details"]["tool_calls"][index]
        kind = call["type"]
        call[kind]["input"] = text
        await self.save(handle, (Kind.STEP, step))
        delta = {"index": index, "id": call["id"], "type": kind, kind: {"input": text}}
        await self.publish(handle, events.tool_call_delta(step["id"], delta))

    async def finish_hosted_call(self, handle: RunHandle, index: int, details: Obj) -> None:
        """Set what the hosted call `index` of the open step found or did, saved, then sent
        as the call's delta."""
        step = handle.step
        assert step is not None and step["type"] == "tool_calls"
        call = step["step_details"]["tool_calls"][index]
        kind = call["type"]
        call[kind] = details
        await self.save(handle, (Kind.STEP, step))
        if kind == "file_search":
            # Its results are the run's sources, numbered on from the earlier searches'.
            handle.sources += [result["file_id"] for result in details["results"]]
        shown = objects.step_shown(step)["step_details"]["tool_calls"][index][kind]
        if kind == "code_interpreter":
            # Its input went in a delta of its own; a delta's outputs carry their index.
            shown = {"outputs": [{"index": i, **o} for i, o in enumerate(shown["outputs"])]}
        delta = {"index": index, "id": call["id"], "type": kind, kind: shown}
        await self.publish(handle, events.tool_call_delta(step["id"], delta))

    async def complete_tool_step(self, handle: RunHandle, step_usage: tuple[int, int]) -> None:
        """Complete the open tool_calls step, all of whose calls the gateway ran; the run goes
        on (the model is called again with their results)."""
        step = handle.step
        assert step is not None and step["type"] == "tool_calls"
        self.set_step_status(step, StepStatus.COMPLETED, usage=usage(*step_usage))
        await self.save(handle, (Kind.STEP, step))
        await self.publish(handle, _step_status(step))
        handle.step = None

    async def add_tool_arguments(self, handle: RunHandle, index: int, arguments: str) -> None:
        """Add a fragment of the arguments of the open step's call `index`."""
        step = handle.step
        assert step is not None and step["type"] == "tool_calls"
        step["step_details"]["tool_calls"][index]["function"]["arguments"] += arguments
        delta = {"index": index, "type": "function", "function": {"arguments": arguments}}
        await self.publish(handle, events.tool_call_delta(step["id"], delta))

    async def _open_tool_step(self, handle: RunHandle) -> None:
        if handle.message is not None:
            # Text came before the calls: its message step completes before the tool step opens.
            message, step = handle.message, handle.step
            assert step is not None
            self.close_message(message, _partial(handle), None)
            self.set_step_status(step, StepStatus.COMPLETED, usage=usage(0, 0))
            await self.save(handle, (Kind.MESSAGE, message), (Kind.STEP, step))
            await self.publish(handle, events.message_status(message), events.step_status(step))
            handle.message, handle.fragments = None, []
        step = objects.step(handle.run, {"type": "tool_calls", "tool_calls": []})
        handle.step = step
        await self.save(handle, (Kind.STEP, step))
        await self.publish(
            handle,
            events.snapshot(events.STEP_CREATED, step),
            events.snapshot(events.STEP_IN_PROGRESS, step),
        )

    async def require_action(self, handle: RunHandle, step_usage: tuple[int, int]) -> None:
        """End the segment waiting for the outputs of the open step's calls: the run asks for
        them (requires_action), saved with the step and announced atomically with the end of
        the segment. `step_usage` is the segment's, set on the step when it completes."""
        step, run = handle.step, handle.run
        assert step is not None and step["type"] == "tool_calls"
        handle.step_usage = step_usage
        self.set_run_status(run, RunStatus.REQUIRES_ACTION)
        run["required_action"] = {
            "type": "submit_tool_outputs",
            "submit_tool_outputs": {
                "tool_calls": [
                    {
                        "id": call["id"],
                        "type": "function",
                        "function": {
                            "name": call["function"]["name"],
                            "arguments": call["function"]["arguments"],
                        },
                    }
                    for call in step["step_details"]["tool_calls"]
                    if call["type"] == "function"
                ]
            },
        }
        await self.end_segment(
            handle, [(Kind.STEP, step), (Kind.RUN, run)], lambda: [events.run_status(run)]
        )

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
                else _step_status(obj)
                for kind, obj in changed
            ] + list(trailer)

        await self.end_segment(handle, changed, announce)

    async def end_answered(
        self,
        handle: RunHandle,
        step_usage: tuple[int, int],
        incomplete: tuple[str, str] | None = None,
    ) -> None:
        """End the segment with the model's answer: the open message (an empty one if the model
        wrote no text) and its step complete, and the run completes; or, for `incomplete` =
        (the run's reason, the message's), the message and the run end incomplete."""
        if handle.message is None:
            await self.open_message(handle)
        assert handle.message is not None
        if handle.images:
            first = 1 if handle.fragments else 0
            parts = [
                (first + n, objects.image_file_part(file_id))
                for n, file_id in enumerate(handle.images)
            ]
            await self.publish(handle, events.message_parts_delta(handle.message["id"], parts))
        status, message_reason = RunStatus.COMPLETED, None
        if incomplete is not None:
            handle.run["incomplete_details"] = {"reason": incomplete[0]}
            status, message_reason = RunStatus.INCOMPLETE, incomplete[1]
        await self.end(
            handle,
            status,
            step_status=StepStatus.COMPLETED,
            message_reason=message_reason,
            content=_partial(handle),
            step_fields={"usage": usage(*step_usage)},
        )

    async def end_prompt_too_long(self, handle: RunHandle) -> None:
        """End the run incomplete before any model call: its prompt cannot be made to fit."""
        handle.run["incomplete_details"] = {"reason": "max_prompt_tokens"}
        await self.end(
            handle, RunStatus.INCOMPLETE, step_status=StepStatus.COMPLETED, message_reason=None
        )

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
    """The content written so far into the open message, with its citations and links to the
    files code_interpreter wrote, then the images it showed."""
    parts: list[Obj] = []
    if handle.fragments:
        text = "".join(handle.fragments)
        parts.append(text_part(text, [*handle.annotations, *_file_paths(handle, text)]))
    return parts + [objects.image_file_part(file_id) for file_id in handle.images]


def _file_paths(handle: RunHandle, text: str) -> list[Obj]:
    """A file_path annotation for each `sandbox:/mnt/data/<name>` of the text naming a file a
    code_interpreter call of the run wrote."""
    found = []
    for match in _SANDBOX_LINK.finditer(text):
        file_id = handle.sandbox_files.get(match.group(1))
        if file_id is not None:
            found.append(objects.file_path(file_id, match.group(0), match.start(), match.end()))
    return found


_SANDBOX_LINK = re.compile(r"sandbox:(/mnt/data/[^\s)\]\"'<>]+)")


def _step_status(step: Mapping[str, Any]) -> Event:
    """A step's status event, file_search results shown without their text."""
    return events.step_status(objects.step_shown(step))


# How far back a citation's start may be from the fragment that completes it.
CITATION_REACH = 256
