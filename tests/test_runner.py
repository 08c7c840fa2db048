"""One segment of a run (gateway/engine/runner.py) from what a model streams: text, tool calls
in any interleaving, and each finish reason, on a real SQLite store. What the stream announced
is what GET finds afterwards."""

from __future__ import annotations

import orjson
import pytest

from gateway import events, objects
from gateway.bus.memory import MemoryEventBus
from gateway.engine.eventlog import EventLog
from gateway.engine.handle import RunHandle
from gateway.engine.lifecycle import Lifecycle
from gateway.engine.runner import Runner
from gateway.engine.tools import unavailable_tools
from gateway.metrics import Metrics
from gateway.models.base import (
    Finish,
    ModelBackendError,
    ModelChunk,
    TextChunk,
    ToolCallChunk,
)
from gateway.objects import RunStatus
from gateway.store import Kind, RunStore, StoreTx
from gateway.types import Obj
from tests.backends import ScriptedBackend

ASSISTANT = objects.assistant({"model": "m"})


async def segment(store: RunStore, *chunks: ModelChunk) -> RunHandle:
    """Run one segment of a new queued run on a thread with one user message, the model
    streaming `chunks`."""
    thread = objects.thread({})
    run = objects.run(thread_id=thread["id"], assistant=ASSISTANT, fields={}, expiry_seconds=600)
    question = objects.user_message(thread["id"], {"role": "user", "content": "hi"})

    async def write(tx: StoreTx) -> None:
        await tx.insert(Kind.ASSISTANT, ASSISTANT)
        await tx.insert(Kind.THREAD, thread)
        await tx.insert(Kind.MESSAGE, question)
        await tx.insert(Kind.RUN, run)

    await store.write(write)
    log = EventLog(store, MemoryEventBus())
    metrics = Metrics()
    lifecycle = Lifecycle(store, log, metrics, "test")
    runner = Runner(store, lifecycle, lambda model: backend, metrics, unavailable_tools())
    backend = ScriptedBackend(*chunks)
    handle = RunHandle(run=run)
    await runner.run_segment(handle)
    return handle


async def logged(store: RunStore, run_id: str) -> list[tuple[str, Obj]]:
    """The run's logged events: name and data."""
    return [
        (e.name, orjson.loads(e.frame.split(b"\ndata: ", 1)[1]))
        for e in await store.events_after(run_id, 0)
        if e.name != events.STREAM_END
    ]


async def stored(store: RunStore, kind: Kind, object_id: str) -> Obj:
    found = await store.get(kind, object_id)
    assert found is not None
    return found


async def steps_of(store: RunStore, run_id: str) -> list[Obj]:
    return await store.list_all(Kind.STEP, run_id=run_id)


def call(
    index: int, call_id: str | None = None, name: str | None = None, args: str = ""
) -> ToolCallChunk:
    return ToolCallChunk(index=index, id=call_id, name=name, arguments=args)


async def test_text_then_calls_complete_the_message_before_the_tool_step(store: RunStore) -> None:
    """Text, then two calls whose argument fragments interleave: the message step completes with
    the text before the tool step opens; each call gets its own arguments, in the stream's
    deltas, in the stored step and in the run's required_action alike."""
    handle = await segment(
        store,
        TextChunk("Let me "),
        TextChunk("check."),
        call(0, "call_a", "weather"),
        call(1, "call_b", "time"),
        call(0, args='{"city":'),
        call(1, args='{"tz":'),
        call(0, args='"Oslo"}'),
        call(1, args='"UTC"}'),
        Finish("tool_calls", 7, 11),
    )
    run = await stored(store, Kind.RUN, handle.id)
    assert run["status"] == RunStatus.REQUIRES_ACTION
    message_step, tool_step = await steps_of(store, handle.id)
    assert (message_step["type"], message_step["status"]) == ("message_creation", "completed")
    message_id = message_step["step_details"]["message_creation"]["message_id"]
    message = await stored(store, Kind.MESSAGE, message_id)
    assert message["status"] == "completed"
    assert message["content"] == [objects.text_part("Let me check.")]

    assert (tool_step["type"], tool_step["status"]) == ("tool_calls", "in_progress")
    stored_calls = tool_step["step_details"]["tool_calls"]
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in stored_calls] == [
        ("call_a", "weather", '{"city":"Oslo"}'),
        ("call_b", "time", '{"tz":"UTC"}'),
    ]
    required = run["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert [(c["id"], c["function"]["arguments"]) for c in required] == [
        ("call_a", '{"city":"Oslo"}'),
        ("call_b", '{"tz":"UTC"}'),
    ]
    assert all("output" not in c["function"] for c in required)

    # What a stream client assembles from the step deltas is what GET gives.
    streamed: dict[int, str] = {}
    for name, data in await logged(store, handle.id):
        if name == events.STEP_DELTA:
            for delta in data["delta"]["step_details"]["tool_calls"]:
                streamed[delta["index"]] = (
                    streamed.get(delta["index"], "") + delta["function"]["arguments"]
                )
    assert streamed == {0: '{"city":"Oslo"}', 1: '{"tz":"UTC"}'}
    names = [name for name, _ in await logged(store, handle.id)]
    assert names.index(events.STEP_COMPLETED) < names.index(events.STEP_DELTA)
    assert names[-1] == events.RUN_REQUIRES_ACTION


async def test_text_after_the_calls_began_is_not_a_second_open_step(store: RunStore) -> None:
    """Text that comes after a call has started leaves the tool step the one open step: the run
    waits for the call's output, and no message is created for the late text."""
    handle = await segment(
        store,
        call(0, "call_a", "weather", '{"city":"Oslo"}'),
        TextChunk("by the way"),
        Finish("tool_calls", 1, 1),
    )
    run = await stored(store, Kind.RUN, handle.id)
    assert run["status"] == RunStatus.REQUIRES_ACTION
    (step,) = await steps_of(store, handle.id)
    assert (step["type"], step["status"]) == ("tool_calls", "in_progress")
    assert [c["id"] for c in run["required_action"]["submit_tool_outputs"]["tool_calls"]] == [
        "call_a"
    ]
    thread_messages = await store.list_all(Kind.MESSAGE, thread_id=handle.thread_id)
    assert [m["role"] for m in thread_messages] == ["user"]
    names = [name for name, _ in await logged(store, handle.id)]
    assert events.MESSAGE_CREATED not in names


async def test_a_call_without_id_and_name_fails_before_a_tool_step_opens(store: RunStore) -> None:
    """A model that starts a call with arguments alone is broken: the runner raises, and no
    empty tool step is left open."""
    with pytest.raises(ModelBackendError, match="without an id and a name"):
        await segment(store, call(0, args="{}"), Finish("tool_calls", 1, 1))


@pytest.mark.parametrize(
    ("reason", "run_reason", "message_reason"),
    [("length", "max_completion_tokens", "max_tokens"), ("content_filter",) * 3],
)
async def test_a_cut_answer_ends_incomplete_with_its_reasons(
    store: RunStore, reason: str, run_reason: str, message_reason: str
) -> None:
    """A finish other than stop leaves the text written in an incomplete message and the run
    incomplete, each with the reason OpenAI gives it; the step completes with the usage."""
    handle = await segment(store, TextChunk("Half an"), Finish(reason, 5, 2))  # type: ignore[arg-type]
    run = await stored(store, Kind.RUN, handle.id)
    assert (run["status"], run["incomplete_details"]) == ("incomplete", {"reason": run_reason})
    assert run["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    (step,) = await steps_of(store, handle.id)
    assert (step["status"], step["usage"]["total_tokens"]) == ("completed", 7)
    message = await stored(
        store, Kind.MESSAGE, step["step_details"]["message_creation"]["message_id"]
    )
    assert message["incomplete_details"] == {"reason": message_reason}
    assert message["content"] == [objects.text_part("Half an")]


async def test_an_answer_without_text_is_an_empty_completed_message(store: RunStore) -> None:
    """A model that stops without writing still answers with a message, empty, completed."""
    handle = await segment(store, Finish("stop", 3, 0))
    run = await stored(store, Kind.RUN, handle.id)
    assert run["status"] == "completed"
    (step,) = await steps_of(store, handle.id)
    message = await stored(
        store, Kind.MESSAGE, step["step_details"]["message_creation"]["message_id"]
    )
    assert (message["status"], message["content"]) == ("completed", [])
    assert (handle.step, handle.message, handle.fragments) == (None, None, [])
