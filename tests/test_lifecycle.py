"""Status changes of runs, steps and messages (gateway/engine/lifecycle.py): the transition
table enforced, the timestamps each status sets, and the endings that close message, step and
run in that order, saved with their events on a real SQLite store."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import cast

import pytest

from gateway import events, objects
from gateway.bus.memory import MemoryEventBus
from gateway.engine.eventlog import EventLog
from gateway.engine.handle import RunHandle
from gateway.engine.lifecycle import Lifecycle
from gateway.metrics import Metrics
from gateway.objects import (
    RUN_TRANSITIONS,
    IllegalTransitionError,
    MessageStatus,
    RunStatus,
    StepStatus,
)
from gateway.store import Kind, RunStore, StoreTx
from gateway.types import Obj
from gateway.wire import Run, Step

ASSISTANT = objects.assistant({"model": "m"})
TERMINAL_STAMPS = {
    RunStatus.COMPLETED: "completed_at",
    RunStatus.CANCELLED: "cancelled_at",
    RunStatus.FAILED: "failed_at",
}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The lifecycle's clock reads 100, 200, 300... one step per reading."""
    ticks = itertools.count(100, 100)
    monkeypatch.setattr("gateway.engine.lifecycle.now", lambda: next(ticks))
    yield


def pure_lifecycle(metrics: Metrics | None = None) -> Lifecycle:
    """A lifecycle for the methods that touch neither the store nor the log."""
    return Lifecycle(cast(RunStore, None), cast(EventLog, None), metrics or Metrics(), "test")


def a_run(status: RunStatus = RunStatus.QUEUED) -> Run:
    thread = objects.thread({})
    run = objects.run(thread_id=thread["id"], assistant=ASSISTANT, fields={}, expiry_seconds=600)
    run["status"] = status.value
    return run


def a_step(run: Run) -> Step:
    return objects.step(run, {"type": "message_creation", "message_creation": {"message_id": "m"}})


# --- runs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "new"), list(itertools.product(list(RunStatus), list(RunStatus)))
)
def test_run_status_follows_the_transition_table(current: RunStatus, new: RunStatus) -> None:
    """A run status change in the table is made; any other raises IllegalTransitionError and
    leaves the run as it was."""
    run = a_run(current)
    before = dict(run)
    if new in RUN_TRANSITIONS[current]:
        pure_lifecycle().set_run_status(run, new)
        assert run["status"] == new.value
    else:
        with pytest.raises(IllegalTransitionError):
            pure_lifecycle().set_run_status(run, new)
        assert run == before


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("queued", "completed"),
        ("requires_action", "in_progress"),
        ("requires_action", "completed"),
        ("completed", "in_progress"),
        ("cancelled", "cancelling"),
        ("expired", "queued"),
        ("queued", "queued"),
    ],
)
def test_forbidden_run_transitions(current: str, new: str) -> None:
    """Runs never skip a status (queued to completed, requires_action back to in_progress
    without queueing), never leave a terminal status and never repeat one."""
    with pytest.raises(IllegalTransitionError, match=f"from {current} to {new}"):
        pure_lifecycle().set_run_status(a_run(RunStatus(current)), RunStatus(new))


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("queued", "in_progress"),
        ("in_progress", "requires_action"),
        ("requires_action", "queued"),
        ("queued", "cancelling"),
        ("cancelling", "completed"),
        ("cancelling", "cancelled"),
        ("requires_action", "expired"),
    ],
)
def test_allowed_run_transitions(current: str, new: str) -> None:
    """The run's ordinary path, and a cancellation overtaken by the run completing, are allowed."""
    run = a_run(RunStatus(current))
    pure_lifecycle().set_run_status(run, RunStatus(new))
    assert run["status"] == new


def test_started_at_is_set_by_the_first_in_progress_only(clock: None) -> None:
    """in_progress stamps started_at once: a run that goes on after tool outputs keeps the time
    it first started."""
    lc, run = pure_lifecycle(), a_run()
    lc.set_run_status(run, RunStatus.IN_PROGRESS)
    assert run["started_at"] == 100
    lc.set_run_status(run, RunStatus.REQUIRES_ACTION)
    lc.set_run_status(run, RunStatus.QUEUED)
    lc.set_run_status(run, RunStatus.IN_PROGRESS)
    assert run["started_at"] == 100


@pytest.mark.parametrize("status", [*TERMINAL_STAMPS, RunStatus.INCOMPLETE, RunStatus.EXPIRED])
def test_terminal_status_stamps_and_clears_expiry(clock: None, status: RunStatus) -> None:
    """Completed, cancelled and failed stamp their own *_at field and no other; incomplete and
    expired stamp none; every terminal status clears expires_at."""
    run = a_run(RunStatus.CANCELLING)
    assert run["expires_at"] is not None
    pure_lifecycle().set_run_status(run, status)
    stamps = {field: run[field] for field in ("completed_at", "cancelled_at", "failed_at")}
    expected: dict[str, int | None] = {field: None for field in stamps}
    if status in TERMINAL_STAMPS:
        expected[TERMINAL_STAMPS[status]] = 100
    assert stamps == expected
    assert run["expires_at"] is None


@pytest.mark.parametrize(
    "status", [RunStatus.IN_PROGRESS, RunStatus.REQUIRES_ACTION, RunStatus.CANCELLING]
)
def test_active_status_keeps_expiry(status: RunStatus) -> None:
    """A run still active keeps its expires_at."""
    run = a_run(RunStatus.IN_PROGRESS if status is RunStatus.REQUIRES_ACTION else RunStatus.QUEUED)
    expires_at = run["expires_at"]
    pure_lifecycle().set_run_status(run, status)
    assert run["expires_at"] == expires_at


def test_required_action_is_cleared_on_leaving_requires_action() -> None:
    """required_action stays while the run requires action and is cleared by the next status."""
    lc, run = pure_lifecycle(), a_run(RunStatus.IN_PROGRESS)
    run["required_action"] = {"type": "submit_tool_outputs"}
    lc.set_run_status(run, RunStatus.REQUIRES_ACTION)
    assert run["required_action"] == {"type": "submit_tool_outputs"}
    lc.set_run_status(run, RunStatus.QUEUED)
    assert run["required_action"] is None


def test_each_status_change_is_counted() -> None:
    """Every status a run enters is counted once under that status."""
    metrics = Metrics()
    lc, run = pure_lifecycle(metrics), a_run()
    for status in (RunStatus.IN_PROGRESS, RunStatus.REQUIRES_ACTION, RunStatus.QUEUED):
        lc.set_run_status(run, status)
    lc.set_run_status(run, RunStatus.IN_PROGRESS)

    def counted(status: str) -> float | None:
        return metrics.registry.get_sample_value(
            "gateway_run_status_changes_total", {"status": status}
        )

    assert (counted("in_progress"), counted("requires_action"), counted("queued")) == (2, 1, 1)
    assert counted("completed") is None


# --- steps and messages ---------------------------------------------------------------------

STEP_STAMPS = {
    StepStatus.COMPLETED: "completed_at",
    StepStatus.CANCELLED: "cancelled_at",
    StepStatus.FAILED: "failed_at",
    StepStatus.EXPIRED: "expired_at",
}


@pytest.mark.parametrize("status", list(STEP_STAMPS))
def test_step_end_stamps_its_own_field_and_takes_fields(clock: None, status: StepStatus) -> None:
    """Ending a step sets its status, stamps that status's *_at field only, and sets the fields
    given with it."""
    step = a_step(a_run(RunStatus.IN_PROGRESS))
    Lifecycle.set_step_status(step, status, usage=objects.usage(1, 2))
    assert step["status"] == status.value
    assert {field: dict(step)[field] for field in STEP_STAMPS.values()} == {
        field: 100 if field == STEP_STAMPS[status] else None for field in STEP_STAMPS.values()
    }
    assert step["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("in_progress", "in_progress"),
        ("completed", "failed"),
        ("failed", "completed"),
        ("cancelled", "expired"),
        ("expired", "in_progress"),
    ],
)
def test_an_ended_step_never_changes(current: str, new: str) -> None:
    """Only an in-progress step changes status, and only to an ending; the step is left as it
    was."""
    step = a_step(a_run())
    step["status"] = current
    before = dict(step)
    with pytest.raises(IllegalTransitionError):
        Lifecycle.set_step_status(step, StepStatus(new), usage=objects.usage(1, 1))
    assert step == before


def test_close_message_completes_with_its_content(clock: None) -> None:
    """Closing a message without a reason completes it with the given content."""
    message = objects.assistant_message(a_run())
    content = [objects.text_part("hi")]
    Lifecycle.close_message(message, content, None)
    assert (message["status"], message["completed_at"], message["incomplete_at"]) == (
        "completed",
        100,
        None,
    )
    assert message["content"] == content
    assert message["content"] is not content
    assert message["incomplete_details"] is None


def test_close_message_with_a_reason_is_incomplete(clock: None) -> None:
    """Closing a message with a reason marks it incomplete for that reason."""
    message = objects.assistant_message(a_run())
    Lifecycle.close_message(message, [], "run_cancelled")
    assert (message["status"], message["completed_at"], message["incomplete_at"]) == (
        "incomplete",
        None,
        100,
    )
    assert message["incomplete_details"] == {"reason": "run_cancelled"}


# --- endings, on a real store ---------------------------------------------------------------


async def writing(store: RunStore) -> tuple[Lifecycle, RunHandle]:
    """A lifecycle on `store`, and an in-progress run writing its message (2 + 3 tokens so far,
    "Hel" "lo" written), everything saved."""
    lc = Lifecycle(store, EventLog(store, MemoryEventBus()), Metrics(), "test")
    thread = objects.thread({})
    run = objects.run(thread_id=thread["id"], assistant=ASSISTANT, fields={}, expiry_seconds=600)
    lc.set_run_status(run, RunStatus.IN_PROGRESS)
    message = objects.assistant_message(run)
    step = objects.step(
        run, {"type": "message_creation", "message_creation": {"message_id": message["id"]}}
    )

    async def write(tx: StoreTx) -> None:
        await tx.insert(Kind.ASSISTANT, ASSISTANT)
        await tx.insert(Kind.THREAD, thread)
        await tx.insert(Kind.RUN, run)

    await store.write(write)
    handle = RunHandle(run=run, prompt_tokens=2, completion_tokens=3)
    handle.step, handle.message, handle.fragments = step, message, ["Hel", "lo"]
    await lc.save(handle, (Kind.STEP, step), (Kind.MESSAGE, message))
    return lc, handle


async def logged(store: RunStore, run_id: str) -> list[tuple[int, str]]:
    return [(e.seq, e.name) for e in await store.events_after(run_id, 0)]


async def stored(store: RunStore, kind: Kind, object_id: str) -> Obj:
    found = await store.get(kind, object_id)
    assert found is not None
    return found


async def test_end_closes_message_then_step_then_run(store: RunStore) -> None:
    """end() saves the message, step and run closed, with usage, and logs their events in that
    order, then the marker that ends the segment."""
    lc, handle = await writing(store)
    message, step = handle.message, handle.step
    assert message is not None and step is not None
    await lc.end(
        handle,
        RunStatus.COMPLETED,
        step_status=StepStatus.COMPLETED,
        message_reason=None,
        content=[objects.text_part("Hello")],
    )
    assert await logged(store, handle.id) == [
        (1, events.MESSAGE_COMPLETED),
        (2, events.STEP_COMPLETED),
        (3, events.RUN_COMPLETED),
        (4, events.STREAM_END),
    ]
    run = await stored(store, Kind.RUN, handle.id)
    assert run["status"] == "completed"
    assert run["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    saved_message = await stored(store, Kind.MESSAGE, message["id"])
    assert saved_message["status"] == MessageStatus.COMPLETED
    assert saved_message["content"] == [objects.text_part("Hello")]
    assert (await stored(store, Kind.STEP, step["id"]))["status"] == "completed"
    assert (handle.message, handle.step, handle.fragments) == (None, None, [])


async def test_internal_failure_adds_an_error_event_and_keeps_partial_text(
    store: RunStore,
) -> None:
    """end_failed(internal) records the error on the run (its own code) and on the step (as
    server_error), leaves the written text in an incomplete message, and logs an error event
    after thread.run.failed."""
    lc, handle = await writing(store)
    message, step = handle.message, handle.step
    assert message is not None and step is not None
    await lc.end_failed(handle, "it broke", code="invalid_prompt", internal=True)
    assert [name for _, name in await logged(store, handle.id)] == [
        events.MESSAGE_INCOMPLETE,
        events.STEP_FAILED,
        events.RUN_FAILED,
        events.ERROR,
        events.STREAM_END,
    ]
    run = await stored(store, Kind.RUN, handle.id)
    assert (run["status"], run["last_error"]) == (
        "failed",
        {"code": "invalid_prompt", "message": "it broke"},
    )
    saved_step = await stored(store, Kind.STEP, step["id"])
    assert saved_step["last_error"] == {"code": "server_error", "message": "it broke"}
    saved_message = await stored(store, Kind.MESSAGE, message["id"])
    assert saved_message["incomplete_details"] == {"reason": "run_failed"}
    assert saved_message["content"] == [objects.text_part("Hello")]


async def test_model_failure_keeps_a_rate_limit_code_on_the_step(store: RunStore) -> None:
    """A failure coded rate_limit_exceeded keeps that code on the step too, and one that is not
    internal logs no error event."""
    lc, handle = await writing(store)
    step = handle.step
    assert step is not None
    await lc.end_failed(handle, "slow down", code="rate_limit_exceeded")
    assert events.ERROR not in [name for _, name in await logged(store, handle.id)]
    saved_step = await stored(store, Kind.STEP, step["id"])
    assert saved_step["last_error"] == {"code": "rate_limit_exceeded", "message": "slow down"}


async def test_cancel_passes_through_cancelling(store: RunStore) -> None:
    """end_cancelled() on an in-progress run announces cancelling first, then closes the message
    (run_cancelled), the step and the run as cancelled."""
    lc, handle = await writing(store)
    await lc.end_cancelled(handle)
    assert [name for _, name in await logged(store, handle.id)] == [
        events.RUN_CANCELLING,
        events.MESSAGE_INCOMPLETE,
        events.STEP_CANCELLED,
        events.RUN_CANCELLED,
        events.STREAM_END,
    ]
    run = await stored(store, Kind.RUN, handle.id)
    assert run["status"] == "cancelled"
    assert run["cancelled_at"] is not None


async def test_cancel_of_a_cancelling_run_announces_cancelling_once(store: RunStore) -> None:
    """A run already cancelling goes straight to cancelled: no second cancelling event."""
    lc, handle = await writing(store)
    await lc.run_status(handle, RunStatus.CANCELLING)
    await lc.end_cancelled(handle)
    names = [name for _, name in await logged(store, handle.id)]
    assert names.count(events.RUN_CANCELLING) == 1
    assert names[-2:] == [events.RUN_CANCELLED, events.STREAM_END]
