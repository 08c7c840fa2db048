"""The run engine on a real SQLite store and the memory bus: event orders A-H and the rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Unpack

import pytest

from gateway import events, ids, objects
from gateway.bodies import AssistantChanges
from gateway.bus.memory import MemoryEventBus
from gateway.engine import RunEngine
from gateway.errors import ConflictError, InvalidRequestError
from gateway.events import Event
from gateway.models.base import (
    ModelBackend,
    ModelBackendError,
)
from gateway.models.local import LocalModelBackend
from gateway.store import Kind, StoreTx
from gateway.store.sqlite import SQLiteRunStore
from gateway.types import Obj
from gateway.wire import Assistant, Thread
from tests.backends import BreakingBackend
from tests.waiting import eventually_async

WEATHER = {"type": "function", "function": {"name": "get_weather"}}


class Harness:
    def __init__(self, store: SQLiteRunStore, bus: MemoryEventBus, engine: RunEngine) -> None:
        self.store, self.bus, self.engine = store, bus, engine

    async def assistant(self, **fields: Unpack[AssistantChanges]) -> Assistant:
        assistant = objects.assistant({"model": "local", **fields})

        async def write(tx: StoreTx) -> None:
            await tx.insert(Kind.ASSISTANT, assistant)

        await self.store.write(write)
        return assistant

    async def thread(self, *texts: str) -> Thread:
        return await self.engine.catalog.create_thread(
            {"messages": [{"role": "user", "content": t} for t in texts]}, project=""
        )

    async def run_events(self, start: Callable[[str], Any]) -> tuple[Obj, list[Event]]:
        """Subscribe to a new run id, start the run with it, and collect its events to the end."""
        run_id = ids.run_id()
        return await self.follow(run_id, lambda: start(run_id))

    async def follow(self, run_id: str, start: Callable[[], Any]) -> tuple[Obj, list[Event]]:
        """Collect the run's events up to the end of the segment (the engine's stream end)."""
        seen: list[Event] = []
        async with self.bus.subscribe(run_id) as subscription:
            result = await start()

            async def collect() -> None:
                async for event in subscription:
                    if event.name == events.STREAM_END:
                        return
                    seen.append(event)

            await asyncio.wait_for(collect(), timeout=10)
        return result, seen


@pytest.fixture
async def harness(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    marker = request.node.get_closest_marker("settings")
    options = dict(marker.kwargs) if marker else {}
    backend: ModelBackend = options.pop("backend", None) or LocalModelBackend(
        delay_ms=options.pop("local_model_delay_ms", 0)
    )
    store = SQLiteRunStore(tmp_path / "engine.db")
    await store.open()
    bus = MemoryEventBus(subscriber_buffer=10_000)
    engine = RunEngine(store, bus, lambda model: backend, **options)
    await engine.start()
    yield Harness(store, bus, engine)
    await engine.stop()
    await store.close()


def names(evs: list[Event]) -> list[str]:
    return [e.name for e in evs]


def squeeze(seq: list[str]) -> list[str]:
    """Collapse runs of the same delta event into one, to compare against canonical orders."""
    out: list[str] = []
    for name in seq:
        if not (out and out[-1] == name and name.endswith(".delta")):
            out.append(name)
    return out


RUN_START = [events.RUN_CREATED, events.RUN_QUEUED, events.RUN_IN_PROGRESS]
TEXT_BODY = [
    events.STEP_CREATED,
    events.STEP_IN_PROGRESS,
    events.MESSAGE_CREATED,
    events.MESSAGE_IN_PROGRESS,
    events.MESSAGE_DELTA,
    events.MESSAGE_COMPLETED,
    events.STEP_COMPLETED,
]


async def test_text_answer_follows_sequence_a(harness: Harness) -> None:
    """A plain answer emits sequence A, and its deltas add up to the completed message."""
    assistant = await harness.assistant()
    thread = await harness.thread("hello there")
    run, evs = await harness.run_events(
        lambda rid: harness.engine.create_run(
            thread["id"], {"assistant_id": assistant["id"]}, run_id=rid
        )
    )
    assert squeeze(names(evs)) == [*RUN_START, *TEXT_BODY, events.RUN_COMPLETED]
    deltas = [e.data for e in evs if e.name == events.MESSAGE_DELTA]
    assert deltas[0] is not None and deltas[0]["delta"]["content"][0]["text"]["annotations"] == []
    assert all("annotations" not in d["delta"]["content"][0]["text"] for d in deltas[1:] if d)
    text = "".join(d["delta"]["content"][0]["text"]["value"] for d in deltas if d)
    completed = next(e.data for e in evs if e.name == events.MESSAGE_COMPLETED)
    assert completed is not None
    assert completed["content"][0]["text"]["value"] == text == "You said: hello there"
    final = evs[-1].data
    assert final is not None and final["usage"]["total_tokens"] > 0
    assert final["expires_at"] is None and final["completed_at"] is not None
    assert run["status"] == "queued"
    stored = await harness.engine.get_run(thread["id"], run["id"])
    assert stored == final


async def test_create_thread_and_run_starts_with_thread_created(harness: Harness) -> None:
    """Create-thread-and-run is sequence B: thread.created first, then A."""
    assistant = await harness.assistant()
    _, evs = await harness.run_events(
        lambda rid: harness.engine.create_thread_and_run(
            {
                "assistant_id": assistant["id"],
                "thread": {"messages": [{"role": "user", "content": "hi"}]},
            },
            run_id=rid,
        )
    )
    assert squeeze(names(evs)) == [
        events.THREAD_CREATED,
        *RUN_START,
        *TEXT_BODY,
        events.RUN_COMPLETED,
    ]


async def test_function_call_then_continuation_follow_c_and_d(harness: Harness) -> None:
    """A named tool gives sequence C ending in requires_action; its outputs give sequence D."""
    assistant = await harness.assistant(tools=[WEATHER])
    thread = await harness.thread('get_weather please {"city": "Paris"}')
    run, evs = await harness.run_events(
        lambda rid: harness.engine.create_run(
            thread["id"], {"assistant_id": assistant["id"]}, run_id=rid
        )
    )
    assert squeeze(names(evs)) == [
        *RUN_START,
        events.STEP_CREATED,
        events.STEP_IN_PROGRESS,
        events.STEP_DELTA,
        events.RUN_REQUIRES_ACTION,
    ]
    step_deltas = [e.data for e in evs if e.name == events.STEP_DELTA]
    first = step_deltas[0]["delta"]["step_details"]["tool_calls"][0]  # type: ignore[index]
    assert first["function"] == {"name": "get_weather", "arguments": "", "output": None}
    arguments = "".join(
        d["delta"]["step_details"]["tool_calls"][0]["function"]["arguments"]  # type: ignore[index]
        for d in step_deltas
    )
    waiting = evs[-1].data
    assert waiting is not None
    call = waiting["required_action"]["submit_tool_outputs"]["tool_calls"][0]
    assert call["id"] == first["id"] and call["function"]["arguments"] == arguments
    assert arguments == '{"city":"Paris"}'
    assert waiting["usage"] is None

    _, cont = await harness.follow(
        run["id"],
        lambda: harness.engine.submit_tool_outputs(
            thread["id"], run["id"], [{"tool_call_id": call["id"], "output": "21C"}]
        ),
    )
    assert squeeze(names(cont)) == [
        events.STEP_COMPLETED,
        events.RUN_QUEUED,
        events.RUN_IN_PROGRESS,
        *TEXT_BODY,
        events.RUN_COMPLETED,
    ]
    done_step = cont[0].data
    assert done_step is not None
    assert done_step["step_details"]["tool_calls"][0]["function"]["output"] == "21C"
    assert done_step["usage"] is not None
    reply = next(e.data for e in cont if e.name == events.MESSAGE_COMPLETED)
    assert reply is not None and "21C" in reply["content"][0]["text"]["value"]


async def test_outputs_submitted_as_soon_as_the_run_reads_requires_action_come_after_its_end(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's status is saved before the events that end its segment are published. Outputs
    submitted in between (the client saw requires_action on GET at once) wait for that segment
    to finish: the bus carries the old segment's end, then the new segment, in order."""
    assistant = await harness.assistant(tools=[WEATHER])
    thread = await harness.thread('get_weather please {"city": "Paris"}')
    real_publish = harness.bus.publish

    async def slow_end(channel: str, event: Event) -> None:
        if event.name == events.RUN_REQUIRES_ACTION:
            await asyncio.sleep(0.2)  # the window, made wide: this delay is the point
        await real_publish(channel, event)

    monkeypatch.setattr(harness.bus, "publish", slow_end)
    run = await harness.engine.create_run(thread["id"], {"assistant_id": assistant["id"]})

    async def requires_action() -> Obj | None:
        found = await harness.store.get(Kind.RUN, run["id"])
        return found if found is not None and found["status"] == "requires_action" else None

    waiting = await eventually_async(
        requires_action, interval=0.005, what="the run saved in requires_action"
    )
    call = waiting["required_action"]["submit_tool_outputs"]["tool_calls"][0]
    seen: list[Event] = []
    async with harness.bus.subscribe(run["id"]) as subscription:
        await harness.engine.submit_tool_outputs(
            thread["id"], run["id"], [{"tool_call_id": call["id"], "output": "21C"}]
        )

        async def collect() -> None:
            async for event in subscription:
                seen.append(event)
                if event.name == events.RUN_COMPLETED:
                    return

        await asyncio.wait_for(collect(), timeout=10)
    numbers = [e.seq or 0 for e in seen]
    assert numbers == sorted(numbers), names(seen)
    assert names(seen)[:3] == [events.RUN_REQUIRES_ACTION, events.STREAM_END, events.STEP_COMPLETED]


@pytest.mark.settings(local_model_delay_ms=20)
async def test_cancel_mid_answer_follows_sequence_e(harness: Harness) -> None:
    """Cancelling while text streams ends message, step and run in the order of sequence E."""
    assistant = await harness.assistant()
    thread = await harness.thread(" ".join(["word"] * 200))
    run_id = ids.run_id()
    async with harness.bus.subscribe(run_id) as sub:
        await harness.engine.create_run(
            thread["id"], {"assistant_id": assistant["id"]}, run_id=run_id
        )
        seen: list[Event] = []

        async def until_delta_then_end() -> None:
            async for event in sub:
                if event.name == events.STREAM_END:
                    return
                seen.append(event)
                if event.name == events.MESSAGE_DELTA and len(seen) < 12:
                    cancelled = await harness.engine.cancel_run(thread["id"], run_id)
                    assert cancelled["status"] in ("cancelling", "cancelled")

        await asyncio.wait_for(until_delta_then_end(), timeout=10)
    tail = [n for n in names(seen) if n != events.MESSAGE_DELTA][-4:]
    assert tail == [
        events.RUN_CANCELLING,
        events.MESSAGE_INCOMPLETE,
        events.STEP_CANCELLED,
        events.RUN_CANCELLED,
    ]
    message = next(e.data for e in seen if e.name == events.MESSAGE_INCOMPLETE)
    assert message is not None and message["incomplete_details"] == {"reason": "run_cancelled"}
    assert message["content"][0]["text"]["value"].startswith("You")
    final = await harness.engine.get_run(thread["id"], run_id)
    assert final["status"] == "cancelled" and final["cancelled_at"] is not None
    # Generation stopped at once: the reply is far shorter than the 200-word echo.
    assert len(message["content"][0]["text"]["value"].split()) < 50


@pytest.mark.settings(
    backend=BreakingBackend("Hello ", "wor", error=ModelBackendError("upstream went away"))
)
async def test_backend_failure_follows_sequence_f(harness: Harness) -> None:
    """A failing model ends message, step and run as in sequence F, with last_error set."""
    assistant = await harness.assistant()
    thread = await harness.thread("hi")
    _, evs = await harness.run_events(
        lambda rid: harness.engine.create_run(
            thread["id"], {"assistant_id": assistant["id"]}, run_id=rid
        )
    )
    assert squeeze(names(evs))[-3:] == [
        events.MESSAGE_INCOMPLETE,
        events.STEP_FAILED,
        events.RUN_FAILED,
    ]
    run = evs[-1].data
    assert run is not None
    assert run["last_error"] == {"code": "server_error", "message": "upstream went away"}
    assert run["failed_at"] is not None
    message = evs[-3].data
    assert message is not None and message["content"][0]["text"]["value"] == "Hello wor"
    assert events.ERROR not in names(evs)  # a model failure is the run's, not the stream's
    step = evs[-2].data
    assert step is not None and step["last_error"]["code"] == "server_error"


@pytest.mark.settings(backend=BreakingBackend("Hel", error=RuntimeError("bug")))
async def test_internal_failure_adds_an_error_event_after_run_failed(harness: Harness) -> None:
    """A failure of the gateway itself ends with thread.run.failed, then an error event."""
    assistant = await harness.assistant()
    thread = await harness.thread("hi")
    _, evs = await harness.run_events(
        lambda rid: harness.engine.create_run(
            thread["id"], {"assistant_id": assistant["id"]}, run_id=rid
        )
    )
    assert names(evs)[-2:] == [events.RUN_FAILED, events.ERROR]
    error = evs[-1].data
    assert error is not None and error["error"]["type"] == "server_error"
    assert "bug" not in error["message"]  # internals stay in the log


async def test_token_limit_follows_sequence_g(harness: Harness) -> None:
    """max_completion_tokens reached gives sequence G and an incomplete run with its reason."""
    assistant = await harness.assistant()
    thread = await harness.thread(" ".join(["word"] * 300))
    _, evs = await harness.run_events(
        lambda rid: harness.engine.create_run(
            thread["id"],
            {"assistant_id": assistant["id"], "max_completion_tokens": 256},
            run_id=rid,
        )
    )
    assert squeeze(names(evs))[-3:] == [
        events.MESSAGE_INCOMPLETE,
        events.STEP_COMPLETED,
        events.RUN_INCOMPLETE,
    ]
    run = evs[-1].data
    assert run is not None
    assert run["incomplete_details"] == {"reason": "max_completion_tokens"}
    assert run["usage"]["completion_tokens"] == 256
    message = evs[-3].data
    assert message is not None and message["incomplete_details"] == {"reason": "max_tokens"}


@pytest.mark.settings(run_expiry_seconds=1, expiry_check_seconds=0.05)
async def test_requires_action_expires_as_sequence_h(harness: Harness) -> None:
    """A run left in requires_action past expires_at expires with its step (sequence H)."""
    assistant = await harness.assistant(tools=[WEATHER])
    thread = await harness.thread("get_weather")
    run, _ = await harness.run_events(
        lambda rid: harness.engine.create_run(
            thread["id"], {"assistant_id": assistant["id"]}, run_id=rid
        )
    )
    _, evs = await harness.follow(run["id"], lambda: asyncio.sleep(0))
    assert names(evs) == [events.STEP_EXPIRED, events.RUN_EXPIRED]
    assert evs[0].data is not None and evs[0].data["expired_at"] is not None
    final = await harness.engine.get_run(thread["id"], run["id"])
    assert final["status"] == "expired" and final["expires_at"] is None


async def test_one_active_run_per_thread_and_no_messages_meanwhile(harness: Harness) -> None:
    """While a run waits for outputs, a second run and a new message are refused with 400."""
    assistant = await harness.assistant(tools=[WEATHER])
    thread = await harness.thread("get_weather")
    run, _ = await harness.run_events(
        lambda rid: harness.engine.create_run(
            thread["id"], {"assistant_id": assistant["id"]}, run_id=rid
        )
    )
    with pytest.raises(ConflictError, match="already has an active run"):
        await harness.engine.create_run(thread["id"], {"assistant_id": assistant["id"]})
    with pytest.raises(ConflictError, match="Can't add messages"):
        await harness.engine.create_message(thread["id"], {"role": "user", "content": "x"})
    with pytest.raises(InvalidRequestError):
        await harness.engine.submit_tool_outputs(thread["id"], run["id"], [])
    assert (await harness.engine.get_run(thread["id"], run["id"]))["status"] == "requires_action"


async def test_concurrent_creates_leave_exactly_one_active_run(harness: Harness) -> None:
    """Ten simultaneous create-run calls on one thread start exactly one run."""
    assistant = await harness.assistant(tools=[WEATHER])
    thread = await harness.thread("get_weather")
    results = await asyncio.gather(
        *(
            harness.engine.create_run(thread["id"], {"assistant_id": assistant["id"]})
            for _ in range(10)
        ),
        return_exceptions=True,
    )
    created = [r for r in results if isinstance(r, dict)]
    assert len(created) == 1
    assert all(isinstance(r, ConflictError) for r in results if not isinstance(r, dict))


async def test_restart_resumes_waiting_runs_and_fails_interrupted_ones(tmp_path: Path) -> None:
    """A new engine on the same file keeps requires_action runs and ends in_progress ones."""
    store = SQLiteRunStore(tmp_path / "r.db")
    await store.open()
    bus = MemoryEventBus()
    local = LocalModelBackend()
    engine = RunEngine(store, bus, lambda m: local)
    await engine.start()
    h = Harness(store, bus, engine)
    assistant = await h.assistant(tools=[WEATHER])
    waiting_thread = await h.thread("get_weather")
    waiting, _ = await h.run_events(
        lambda rid: engine.create_run(
            waiting_thread["id"], {"assistant_id": assistant["id"]}, run_id=rid
        )
    )
    # A run left in_progress by a crash: written straight into the store.
    crashed_thread = await h.thread("hi")
    crashed = objects.run(
        thread_id=crashed_thread["id"], assistant=assistant, fields={}, expiry_seconds=600
    )
    crashed["status"] = "in_progress"

    async def write(tx: StoreTx) -> None:
        await tx.insert(Kind.RUN, crashed)

    await store.write(write)
    await engine.stop()

    engine2 = RunEngine(store, bus, lambda m: local)
    await engine2.start()
    try:
        failed = await engine2.get_run(crashed_thread["id"], crashed["id"])
        assert failed["status"] == "failed" and failed["last_error"]["code"] == "server_error"
        still = await engine2.get_run(waiting_thread["id"], waiting["id"])
        assert still["status"] == "requires_action"
        call = still["required_action"]["submit_tool_outputs"]["tool_calls"][0]
        h2 = Harness(store, bus, engine2)
        _, evs = await h2.follow(
            waiting["id"],
            lambda: engine2.submit_tool_outputs(
                waiting_thread["id"], waiting["id"], [{"tool_call_id": call["id"], "output": "ok"}]
            ),
        )
        assert evs[-1].name == events.RUN_COMPLETED
    finally:
        await engine2.stop()
        await store.close()


async def test_max_prompt_tokens_truncates_then_gives_up(harness: Harness) -> None:
    """Auto truncation drops old messages to fit max_prompt_tokens; a newest message that alone
    is too long ends the run incomplete with reason max_prompt_tokens."""
    assistant = await harness.assistant()
    thread = await harness.thread(" ".join(["old"] * 300), "short question")
    _, evs = await harness.run_events(
        lambda rid: harness.engine.create_run(
            thread["id"], {"assistant_id": assistant["id"], "max_prompt_tokens": 256}, run_id=rid
        )
    )
    fitted = evs[-1].data
    assert fitted is not None and fitted["status"] == "completed"
    assert fitted["usage"]["prompt_tokens"] == 2

    long_thread = await harness.thread(" ".join(["long"] * 300))
    _, evs = await harness.run_events(
        lambda rid: harness.engine.create_run(
            long_thread["id"],
            {"assistant_id": assistant["id"], "max_prompt_tokens": 256},
            run_id=rid,
        )
    )
    assert names(evs)[-1] == events.RUN_INCOMPLETE
    assert events.STEP_CREATED not in names(evs)
    final = evs[-1].data
    assert final is not None and final["incomplete_details"] == {"reason": "max_prompt_tokens"}
