"""Wire objects, ids and event builders: the transition table and the shapes OpenAI specifies."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from gateway import events, ids, objects
from gateway.objects import (
    ACTIVE_RUN_STATUSES,
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    TERMINAL_RUN_STATUSES,
    IllegalTransitionError,
    RunStatus,
    StepStatus,
    check_run_transition,
    check_step_transition,
)
from gateway.types import AnyObj, Obj
from gateway.wire import Assistant, Run, Step
from tests.wire import wire_errors

TERMINAL_STEP_STATUSES = frozenset(StepStatus) - {StepStatus.IN_PROGRESS}

# -- run and step transitions --------------------------------------------------------------------


def test_transition_tables_cover_every_status() -> None:
    """Every run and step status has an entry, so no lookup can raise KeyError."""
    assert set(RUN_TRANSITIONS) == set(RunStatus)
    assert set(STEP_TRANSITIONS) == set(StepStatus)


@pytest.mark.parametrize("status", sorted(ACTIVE_RUN_STATUSES))
def test_every_active_run_can_be_cancelled(status: RunStatus) -> None:
    """An active run can move to cancelling, or is cancelling already."""
    if status is RunStatus.CANCELLING:
        assert RunStatus.CANCELLED in RUN_TRANSITIONS[status]
    else:
        check_run_transition(status, RunStatus.CANCELLING)


@pytest.mark.parametrize("status", sorted(TERMINAL_RUN_STATUSES))
def test_terminal_run_statuses_have_no_transitions(status: RunStatus) -> None:
    """A run in a terminal status cannot move to any status, itself included."""
    assert RUN_TRANSITIONS[status] == frozenset()
    for new in RunStatus:
        with pytest.raises(IllegalTransitionError):
            check_run_transition(status, new)


def test_terminal_and_active_run_statuses_partition_all() -> None:
    """Each run status is exactly one of active or terminal."""
    assert set(RunStatus) == ACTIVE_RUN_STATUSES | TERMINAL_RUN_STATUSES
    assert not ACTIVE_RUN_STATUSES & TERMINAL_RUN_STATUSES


def test_requires_action_can_return_to_queued() -> None:
    """Submitting tool outputs takes a run from requires_action back to queued."""
    check_run_transition("requires_action", "queued")


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("completed", "in_progress"),
        ("queued", "completed"),
        ("queued", "requires_action"),
        ("cancelling", "in_progress"),
        ("in_progress", "queued"),
        ("in_progress", "in_progress"),
    ],
)
def test_illegal_run_transitions_raise(current: str, new: str) -> None:
    """A status change outside the table raises IllegalTransitionError."""
    with pytest.raises(IllegalTransitionError, match=f"{current} to {new}"):
        check_run_transition(current, new)


def test_every_active_run_can_reach_a_terminal_status() -> None:
    """From each active status some chain of legal transitions ends in a terminal status."""
    for start in ACTIVE_RUN_STATUSES:
        seen, frontier = {start}, [start]
        while frontier:
            for new in RUN_TRANSITIONS[frontier.pop()]:
                if new not in seen:
                    seen.add(new)
                    frontier.append(new)
        assert seen & TERMINAL_RUN_STATUSES, start


@pytest.mark.parametrize("new", sorted(TERMINAL_STEP_STATUSES))
def test_in_progress_step_can_end_every_way(new: StepStatus) -> None:
    """An in-progress step may complete, fail, be cancelled or expire."""
    check_step_transition(StepStatus.IN_PROGRESS, new)


@pytest.mark.parametrize("status", sorted(TERMINAL_STEP_STATUSES))
def test_terminal_step_statuses_have_no_transitions(status: StepStatus) -> None:
    """A finished step cannot move to any status."""
    assert STEP_TRANSITIONS[status] == frozenset()
    for new in StepStatus:
        with pytest.raises(IllegalTransitionError):
            check_step_transition(status, new)


def test_completed_step_cannot_restart() -> None:
    """completed -> in_progress is illegal for a step."""
    with pytest.raises(IllegalTransitionError, match="completed to in_progress"):
        check_step_transition("completed", "in_progress")


def test_unknown_status_is_a_value_error() -> None:
    """A status string outside the enums is rejected, not silently allowed."""
    with pytest.raises(ValueError):
        check_run_transition("queued", "paused")
    with pytest.raises(ValueError):
        check_step_transition("running", "completed")


# -- builders against the official schema --------------------------------------------------------


def _built() -> dict[str, Callable[[], AnyObj]]:
    def assistant() -> Assistant:
        return objects.assistant({"model": "gateway-local"})

    def run() -> Run:
        return objects.run(
            thread_id=objects.thread({})["id"], assistant=assistant(), fields={}, expiry_seconds=600
        )

    def step() -> Step:
        details = {"type": "message_creation", "message_creation": {"message_id": "msg_x"}}
        return objects.step(run(), details)

    return {
        "assistant": assistant,
        "thread": lambda: objects.thread({}),
        "user message": lambda: objects.user_message("thread_x", {"role": "user", "content": "hi"}),
        "assistant message": lambda: objects.assistant_message(run()),
        "run": run,
        "run step": step,
    }


@pytest.mark.parametrize("name", list(_built()))
def test_builder_emits_every_field_of_its_type(name: str) -> None:
    """Each builder emits every field the openai package's type declares, each of the right
    type, and no field the type does not declare."""
    assert wire_errors(_built()[name]()) == []


def test_run_snapshots_assistant_and_overrides() -> None:
    """A run takes the assistant's settings unless the request overrides them."""
    assistant = objects.assistant(
        {"model": "m1", "instructions": "be brief", "tools": [{"type": "function"}]}
    )
    plain = objects.run(thread_id="thread_x", assistant=assistant, fields={}, expiry_seconds=600)
    assert (plain["model"], plain["instructions"], plain["tools"]) == (
        "m1",
        "be brief",
        [{"type": "function"}],
    )
    assert plain["expires_at"] == plain["created_at"] + 600
    assert plain["status"] == "queued"
    overridden = objects.run(
        thread_id="thread_x",
        assistant=assistant,
        fields={"model": "m2", "additional_instructions": "in French", "tools": []},
        expiry_seconds=600,
    )
    assert (overridden["model"], overridden["instructions"], overridden["tools"]) == (
        "m2",
        "be brief\n\nin French",
        [],
    )


# -- ids -----------------------------------------------------------------------------------------

ID_MAKERS = [
    ("asst_", ids.assistant_id),
    ("thread_", ids.thread_id),
    ("msg_", ids.message_id),
    ("run_", ids.run_id),
    ("step_", ids.step_id),
    ("call_", ids.call_id),
]


@pytest.mark.parametrize(("prefix", "make"), ID_MAKERS)
def test_ids_have_prefix_and_24_base62_chars(prefix: str, make: Callable[[], str]) -> None:
    """Every id is its prefix then 24 base62 characters, and 1000 draws are all distinct."""
    shape = re.compile(re.escape(prefix) + r"[A-Za-z0-9]{24}")
    drawn = [make() for _ in range(1000)]
    assert all(shape.fullmatch(one) for one in drawn), [d for d in drawn if not shape.fullmatch(d)]
    assert len(set(drawn)) == len(drawn)


@pytest.mark.parametrize(
    ("prefix", "build"),
    [
        ("asst_", lambda: objects.assistant({"model": "m"})),
        ("thread_", lambda: objects.thread({})),
        ("msg_", lambda: objects.user_message("thread_x", {"role": "user", "content": "hi"})),
    ],
)
def test_builders_use_the_right_id_prefix(prefix: str, build: Callable[[], Obj]) -> None:
    """Built objects carry an id of their kind."""
    assert build()["id"].startswith(prefix)


# -- events --------------------------------------------------------------------------------------


def test_message_text_delta_annotations_only_on_first() -> None:
    """The first text delta of a part carries an annotations list; later ones carry none."""
    first = events.message_text_delta("msg_x", 0, "Hel", first=True)
    later = events.message_text_delta("msg_x", 0, "lo", first=False)
    assert first.name == later.name == events.MESSAGE_DELTA
    assert first.data == {
        "id": "msg_x",
        "object": "thread.message.delta",
        "delta": {
            "content": [{"index": 0, "type": "text", "text": {"value": "Hel", "annotations": []}}]
        },
    }
    assert later.data is not None
    assert later.data["delta"]["content"] == [{"index": 0, "type": "text", "text": {"value": "lo"}}]


def test_error_event_has_flat_fields_and_error_key() -> None:
    """An error event's data holds message/type/param/code both flat and under "error"."""
    event = events.error("upstream died", type_="server_error", code="upstream_error")
    inner = {
        "message": "upstream died",
        "type": "server_error",
        "param": None,
        "code": "upstream_error",
    }
    assert event.name == events.ERROR
    assert event.data == {**inner, "error": inner}


def test_snapshot_is_independent_of_the_live_object() -> None:
    """Changing an object after building its event leaves the event unchanged."""
    run = objects.run(
        thread_id="thread_x",
        assistant=objects.assistant({"model": "m"}),
        fields={},
        expiry_seconds=600,
    )
    event = events.run_status(run)
    run["status"] = "in_progress"
    run["metadata"]["k"] = "v"
    assert event.name == events.RUN_QUEUED
    assert event.data is not None
    assert event.data["status"] == "queued"
    assert event.data["metadata"] == {}


def test_every_status_has_an_event() -> None:
    """Each run, step and message status maps to one of the named stream events."""
    assert set(events.RUN_STATUS_EVENTS) == set(RunStatus)
    assert set(events.STEP_STATUS_EVENTS) == set(StepStatus)
    assert set(events.MESSAGE_STATUS_EVENTS) == set(objects.MessageStatus)
    mapped = {
        *events.RUN_STATUS_EVENTS.values(),
        *events.STEP_STATUS_EVENTS.values(),
        *events.MESSAGE_STATUS_EVENTS.values(),
    }
    assert mapped <= events.ALL_EVENTS
    assert len(events.ALL_EVENTS) == 25
