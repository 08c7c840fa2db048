"""Run streams on the wire: SSE framing, canonical event orders, SDK helpers, timing, faults."""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import socket
import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import AssistantEventHandler
from openai.types.beta import AssistantStreamEvent, FunctionToolParam
from openai.types.beta.threads import Message, Run, Text, TextDelta, TextDeltaBlock
from openai.types.beta.threads.runs import (
    FunctionToolCallDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallDeltaObject,
)

from tests.backends import BreakingBackend
from tests.server import LiveServer
from tests.sse_client import Stream, post_stream
from tests.waiting import eventually
from tests.wire import assert_conforms

WEATHER: FunctionToolParam = {"type": "function", "function": {"name": "get_weather"}}
POLL = 20

RUN_START = ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
TEXT_BODY = [
    "thread.run.step.created",
    "thread.run.step.in_progress",
    "thread.message.created",
    "thread.message.in_progress",
    "thread.message.delta",
    "thread.message.completed",
    "thread.run.step.completed",
]
SEQUENCE_A = [*RUN_START, *TEXT_BODY, "thread.run.completed"]
SEQUENCE_C = [
    *RUN_START,
    "thread.run.step.created",
    "thread.run.step.in_progress",
    "thread.run.step.delta",
    "thread.run.requires_action",
]


def squeeze(names: Sequence[str]) -> list[str]:
    """Collapse repeats of the same delta event, to compare with the canonical orders."""
    out: list[str] = []
    for name in names:
        if not (out and out[-1] == name and name.endswith(".delta")):
            out.append(name)
    return out


def event_names(stream: Any) -> list[str]:
    return [event.event for event in stream]


@pytest.fixture
def assistant(client: openai.OpenAI) -> Any:
    return client.beta.assistants.create(model="local", tools=[WEATHER])


def thread_with(client: openai.OpenAI, text: str) -> Any:
    return client.beta.threads.create(messages=[{"role": "user", "content": text}])


# --- the canonical orders, through the SDK's raw stream=True calls ----------------------------


def delta_text(data: Any) -> str:
    """The text of a message delta's first part (checked to be a text part)."""
    [block] = data.delta.content
    assert isinstance(block, TextDeltaBlock) and block.text is not None
    return block.text.value or ""


def call_arguments(data: Any) -> str:
    """The arguments fragment of a step delta's first tool call."""
    function = first_call_delta(data).function
    assert function is not None
    return function.arguments or ""


def first_call_delta(data: Any) -> FunctionToolCallDelta:
    """The first tool call of a step delta (checked to be a function call)."""
    details = data.delta.step_details
    assert isinstance(details, ToolCallDeltaObject) and details.tool_calls
    call = details.tool_calls[0]
    assert isinstance(call, FunctionToolCallDelta) and call.function is not None
    return call


def test_sequence_a_text(client: openai.OpenAI, assistant: Any) -> None:
    """runs.create(stream=True) yields sequence A, and the final run matches GET."""
    thread = thread_with(client, "hello there")
    events = list(
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id, stream=True)
    )
    assert squeeze([e.event for e in events]) == SEQUENCE_A
    text = "".join(delta_text(e.data) for e in events if e.event == "thread.message.delta")
    assert text == "You said: hello there"
    final = events[-1].data
    got = client.beta.threads.runs.retrieve(final.id, thread_id=thread.id)  # type: ignore[union-attr]
    assert got == final


def test_sequence_b_create_thread_and_run(client: openai.OpenAI, assistant: Any) -> None:
    """threads.create_and_run(stream=True) sends thread.created first, then sequence A."""
    events = list(
        client.beta.threads.create_and_run(
            assistant_id=assistant.id,
            thread={"messages": [{"role": "user", "content": "hi"}]},
            stream=True,
        )
    )
    assert squeeze([e.event for e in events]) == ["thread.created", *SEQUENCE_A]
    assert events[0].data.id == events[1].data.thread_id  # type: ignore[union-attr]


def test_sequences_c_and_d_function_call(client: openai.OpenAI, assistant: Any) -> None:
    """A named tool streams sequence C; submit_tool_outputs(stream=True) streams sequence D."""
    thread = thread_with(client, 'get_weather {"city": "Rome"}')
    events = list(
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id, stream=True)
    )
    assert squeeze([e.event for e in events]) == SEQUENCE_C
    deltas = [e.data for e in events if e.event == "thread.run.step.delta"]
    first = first_call_delta(deltas[0])
    function = first.function
    assert function is not None
    assert (first.index, first.type, function.name, function.arguments) == (
        0,
        "function",
        "get_weather",
        "",
    )
    assert first.id is not None and first.id.startswith("call_")
    arguments = "".join(call_arguments(d) for d in deltas)
    assert arguments == '{"city":"Rome"}'
    run = events[-1].data
    assert isinstance(run, Run) and run.required_action is not None
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    assert call.id == first.id and call.function.arguments == arguments

    continuation = list(
        client.beta.threads.runs.submit_tool_outputs(
            run.id,
            thread_id=thread.id,
            tool_outputs=[{"tool_call_id": call.id, "output": "warm"}],
            stream=True,
        )
    )
    assert squeeze([e.event for e in continuation]) == [
        "thread.run.step.completed",
        "thread.run.queued",
        "thread.run.in_progress",
        *TEXT_BODY,
        "thread.run.completed",
    ]
    assert "thread.run.created" not in [e.event for e in continuation]


def test_outputs_streamed_the_moment_a_run_reads_requires_action_stream_only_the_new_segment(
    server: LiveServer, client: openai.OpenAI, assistant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's requires_action is saved before the events ending its segment are published.
    Tool outputs streamed as soon as a poll sees it (here the end's publishing is held back a
    third of a second) stream sequence D, not the old segment's end and done."""
    assert server.app is not None
    bus = server.app.state.bus
    real_publish = bus.publish

    async def slow_end(channel: str, event: Any) -> None:
        if event.name == "thread.run.requires_action":
            await asyncio.sleep(0.3)  # the delay is the point: a window to submit outputs in
        await real_publish(channel, event)

    monkeypatch.setattr(bus, "publish", slow_end)
    thread = thread_with(client, 'get_weather {"city": "Rome"}')
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    waiting = client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=5)
    assert waiting.status == "requires_action" and waiting.required_action is not None
    call = waiting.required_action.submit_tool_outputs.tool_calls[0]
    continuation = event_names(
        client.beta.threads.runs.submit_tool_outputs(
            run.id,
            thread_id=thread.id,
            tool_outputs=[{"tool_call_id": call.id, "output": "warm"}],
            stream=True,
        )
    )
    assert squeeze(continuation) == [
        "thread.run.step.completed",
        "thread.run.queued",
        "thread.run.in_progress",
        *TEXT_BODY,
        "thread.run.completed",
    ], continuation


@pytest.mark.settings(local_model_delay_ms=20)
def test_sequence_e_cancel_mid_stream(
    server: LiveServer, client: openai.OpenAI, assistant: Any
) -> None:
    """Cancelling from another client while text streams ends the stream as sequence E."""
    thread = thread_with(client, " ".join(["word"] * 200))
    names: list[str] = []
    stream = client.beta.threads.runs.create(
        thread_id=thread.id, assistant_id=assistant.id, stream=True
    )
    run_id = ""
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as other:
        for event in stream:
            names.append(event.event)
            if event.event == "thread.run.created":
                run_id = event.data.id
            if names.count("thread.message.delta") == 3 and names[-1] == "thread.message.delta":
                other.beta.threads.runs.cancel(run_id, thread_id=thread.id)
    tail = [n for n in names if n != "thread.message.delta"][-4:]
    assert tail == [
        "thread.run.cancelling",
        "thread.message.incomplete",
        "thread.run.step.cancelled",
        "thread.run.cancelled",
    ]
    assert names.count("thread.message.delta") < 20  # generation stopped at once


def test_sequence_f_model_failure(client: openai.OpenAI, assistant: Any) -> None:
    """A failing model ends the stream as sequence F: message, step, then run failed."""
    thread = thread_with(client, "please [[fail]]")
    events = list(
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id, stream=True)
    )
    assert squeeze([e.event for e in events])[-3:] == [
        "thread.message.incomplete",
        "thread.run.step.failed",
        "thread.run.failed",
    ]
    run = events[-1].data
    assert run.last_error is not None and run.last_error.code == "server_error"  # type: ignore[union-attr]
    assert events[-3].data.incomplete_details.reason == "run_failed"  # type: ignore[union-attr]


def test_sequence_g_token_limit(client: openai.OpenAI, assistant: Any) -> None:
    """max_completion_tokens ends the stream as sequence G with an incomplete run."""
    thread = thread_with(client, " ".join(["w"] * 300))
    events = list(
        client.beta.threads.runs.create(
            thread_id=thread.id, assistant_id=assistant.id, max_completion_tokens=256, stream=True
        )
    )
    assert squeeze([e.event for e in events])[-3:] == [
        "thread.message.incomplete",
        "thread.run.step.completed",
        "thread.run.incomplete",
    ]
    assert events[-1].data.incomplete_details.reason == "max_completion_tokens"  # type: ignore[union-attr]
    assert events[-3].data.incomplete_details.reason == "max_tokens"  # type: ignore[union-attr]


@pytest.mark.settings(local_model_delay_ms=40, run_expiry_seconds=1, expiry_check_seconds=0.05)
def test_sequence_h_expiry_mid_stream(client: openai.OpenAI, assistant: Any) -> None:
    """A run still writing when it expires ends the stream as sequence H."""
    thread = thread_with(client, " ".join(["slow"] * 200))
    events = list(
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id, stream=True)
    )
    assert squeeze([e.event for e in events])[-3:] == [
        "thread.message.incomplete",
        "thread.run.step.expired",
        "thread.run.expired",
    ]
    assert events[-3].data.incomplete_details.reason == "run_expired"  # type: ignore[union-attr]
    assert events[-2].data.expired_at is not None  # type: ignore[union-attr]


# --- the SDK's stream helpers ---------------------------------------------------------------


class Recorder(AssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.text = ""
        self.events: list[str] = []
        self.tool_calls_created: list[ToolCall] = []
        self.arguments = ""
        self.messages_done: list[Message] = []
        self.texts_done: list[Text] = []

    def on_event(self, event: AssistantStreamEvent) -> None:
        self.events.append(event.event)

    def on_text_delta(self, delta: TextDelta, snapshot: Text) -> None:
        self.text += delta.value or ""

    def on_text_done(self, text: Text) -> None:
        self.texts_done.append(text)

    def on_tool_call_created(self, tool_call: ToolCall) -> None:
        self.tool_calls_created.append(tool_call)

    def on_tool_call_delta(self, delta: ToolCallDelta, snapshot: ToolCall) -> None:
        if delta.type == "function" and delta.function and delta.function.arguments:
            self.arguments += delta.function.arguments

    def on_message_done(self, message: Message) -> None:
        self.messages_done.append(message)


def test_event_handler_round_trip(client: openai.OpenAI, assistant: Any) -> None:
    """runs.stream and submit_tool_outputs_stream fire the handler's callbacks as documented."""
    thread = thread_with(client, 'get_weather {"city": "Oslo"}')
    first = Recorder()
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=first
    ) as stream:
        stream.until_done()
    run = stream.get_final_run()
    assert run.status == "requires_action"
    assert [c.function.name for c in first.tool_calls_created] == ["get_weather"]  # type: ignore[union-attr]
    assert first.arguments == '{"city":"Oslo"}'
    assert squeeze(first.events) == SEQUENCE_C
    steps = stream.get_final_run_steps()
    assert steps[0].step_details.tool_calls[0].function.arguments == '{"city":"Oslo"}'  # type: ignore[union-attr]

    second = Recorder()
    call = run.required_action.submit_tool_outputs.tool_calls[0]  # type: ignore[union-attr]
    with client.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "cold"}],
        event_handler=second,
    ) as stream2:
        stream2.until_done()
    assert stream2.get_final_run().status == "completed"
    assert second.text == "Tool results: get_weather returned cold."
    [done] = second.messages_done
    assert done.content[0].text.value == second.text  # type: ignore[union-attr]
    assert [t.value for t in second.texts_done] == [second.text]
    assert stream2.get_final_messages()[0].id == done.id


def test_text_deltas_helper(client: openai.OpenAI, assistant: Any) -> None:
    """The helper's text_deltas iterator yields the answer fragment by fragment."""
    thread = thread_with(client, "one two three")
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as s:
        fragments = list(s.text_deltas)
    assert fragments == ["You ", "said: ", "one ", "two ", "three"]


# --- the bytes on the wire ------------------------------------------------------------------


def create_stream(server: LiveServer, client: openai.OpenAI, text: str, **body: Any) -> Stream:
    assistant = client.beta.assistants.create(model="local", tools=[WEATHER])
    thread = thread_with(client, text)
    return post_stream(
        server,
        f"/threads/{thread.id}/runs",
        {"assistant_id": assistant.id, "stream": True, **body},
    )


def test_sse_framing_byte_for_byte(server: LiveServer, client: openai.OpenAI) -> None:
    """Each frame is exactly `event:` + one `data:` line; the stream ends with done and closes."""
    stream = create_stream(server, client, "frame me")
    headers = {k.lower(): v for k, v in stream.response.getheaders()}
    assert stream.response.status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    frames = list(stream.frames())
    stream.close()
    assert frames[-1].raw == b"event: done\ndata: [DONE]"
    for frame in frames[:-1]:
        assert len(frame.lines) == 3, frame.raw
        assert frame.lines[0].startswith("id: ") and frame.lines[1].startswith("event: thread.")
        assert "\r" not in frame.raw.decode()
    ids = [f.id for f in frames[:-1]]
    assert ids == list(range(1, len(ids) + 1))  # the run's log numbers its events from 1
    body = b"".join(f.raw + b"\n\n" for f in frames)
    assert body.count(b"\n\n") == len(frames)
    data = [f.data for f in frames[:-1]]
    assert all(isinstance(d, dict) for d in data)


def test_every_payload_matches_its_schema_and_get(
    server: LiveServer, client: openai.OpenAI
) -> None:
    """Every event payload conforms to the openai package's type; final snapshots equal GET."""
    stream = create_stream(server, client, 'get_weather {"a": 1}')
    frames = [f for f in stream.frames() if f.event != "done"]
    stream.close()
    for frame in frames:
        assert_conforms(frame.data)
    run = frames[-1].data
    thread_id = run["thread_id"]
    call = run["required_action"]["submit_tool_outputs"]["tool_calls"][0]
    stream = post_stream(
        server,
        f"/threads/{thread_id}/runs/{run['id']}/submit_tool_outputs",
        {"tool_outputs": [{"tool_call_id": call["id"], "output": "x"}], "stream": True},
    )
    frames = [f for f in stream.frames() if f.event != "done"]
    stream.close()
    seen_created: set[str] = set()
    for frame in frames:
        assert_conforms(frame.data)
        if frame.event.endswith(".created"):
            seen_created.add(frame.data["id"])
        if frame.event.endswith(".delta"):
            assert frame.data["id"] in seen_created, "a delta came before its created event"
    by_event = {f.event: f.data for f in frames}
    message = by_event["thread.message.completed"]
    assert (
        wire(client.beta.threads.messages.retrieve(message["id"], thread_id=thread_id)) == message
    )
    step = by_event["thread.run.step.completed"]
    got_step = client.beta.threads.runs.steps.retrieve(
        step["id"], thread_id=thread_id, run_id=run["id"]
    )
    assert wire(got_step) == step
    got_run = client.beta.threads.runs.retrieve(run["id"], thread_id=thread_id)
    assert wire(got_run) == by_event["thread.run.completed"]


def wire(obj: Any) -> Any:
    return obj.model_dump(mode="json", exclude_unset=True)


def test_refusals_come_before_any_event(server: LiveServer, client: openai.OpenAI) -> None:
    """A refused stream request is a plain JSON error with its 4xx status, not an event."""
    assistant = client.beta.assistants.create(model="local", tools=[WEATHER])
    thread = thread_with(client, "get_weather")
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id="asst_nope", stream=True)
    list(
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id, stream=True)
    )
    with pytest.raises(openai.BadRequestError, match="already has an active run"):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id, stream=True)
    stream = post_stream(server, f"/threads/{thread.id}/runs", {"assistant_id": 5, "stream": True})
    assert stream.response.status == 400
    assert stream.response.getheader("content-type") == "application/json"
    stream.close()


@pytest.mark.settings(local_model_delay_ms=20)
def test_deltas_arrive_as_they_are_produced(server: LiveServer, client: openai.OpenAI) -> None:
    """With 20 ms between tokens, deltas reach the client about 20 ms apart, never in a burst."""
    stream = create_stream(server, client, " ".join(["tick"] * 40))
    arrivals = [f.at for f in stream.frames() if f.event == "thread.message.delta"]
    stream.close()
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(gaps) == 41
    assert 0.015 <= statistics.median(gaps) <= 0.035, gaps
    bunched = [g for g in gaps if g < 0.005]
    assert len(bunched) <= 2, f"deltas arrived bunched together: {gaps}"


@pytest.mark.settings(local_model_delay_ms=100, stream_ping_seconds=0.05)
def test_keep_alive_pings(server: LiveServer, client: openai.OpenAI) -> None:
    """An idle stream carries `: ping` comments at the configured interval, with no id."""
    stream = create_stream(server, client, "a b c")
    frames = list(stream.frames())
    stream.close()
    pings = [f for f in frames if f.is_comment]
    assert len(pings) >= 3
    assert all(f.raw.startswith(b": ping") and b"id:" not in f.raw for f in pings)
    assert frames[-1].raw == b"event: done\ndata: [DONE]"


@pytest.mark.settings(local_model_delay_ms=10)
def test_client_disconnect_neither_cancels_nor_stalls_the_run(
    server: LiveServer, client: openai.OpenAI
) -> None:
    """A client that goes away mid-stream leaves the run to complete and frees its subscription."""
    stream = create_stream(server, client, " ".join(["go"] * 60))
    frames = stream.frames()
    created = next(f for f in frames if f.event == "thread.run.created").data
    next(f for f in frames if f.event == "thread.message.delta")
    stream.close()
    assert server.app is not None
    bus = server.app.state.bus
    run = client.beta.threads.runs.poll(
        created["id"], thread_id=created["thread_id"], poll_interval_ms=POLL
    )
    assert run.status == "completed"
    reply = client.beta.threads.messages.list(created["thread_id"], run_id=run.id).data[0]
    assert reply.content[0].text.value == "You said: " + " ".join(["go"] * 60)  # type: ignore[union-attr]
    eventually(
        lambda: bus.subscriber_count(created["id"]) == 0,
        timeout=5,
        interval=0.02,
        what="the stream's subscription to be freed",
    )


def _wait_for_no_subscriber(server: LiveServer, run_id: str, seconds: float) -> float:
    """Seconds until the run's channel had no subscriber (fails after `seconds`)."""
    assert server.app is not None
    bus = server.app.state.bus
    started = time.monotonic()
    eventually(
        lambda: bus.subscriber_count(run_id) == 0,
        timeout=seconds,
        what=f"the run's channel to have no subscriber ({run_id})",
    )
    return time.monotonic() - started


@pytest.mark.settings(local_model_delay_ms=3000)
def test_disconnect_of_a_quiet_stream_is_noticed_at_once(
    server: LiveServer, client: openai.OpenAI
) -> None:
    """A client that leaves while its stream has nothing to send frees the subscription at
    once, not at the next event or ping."""
    stream = create_stream(server, client, "one two three")
    frames = stream.frames()
    created = next(f for f in frames if f.event == "thread.run.created").data
    next(f for f in frames if f.event == "thread.message.delta")  # the next comes in 3 s
    stream.close()
    assert _wait_for_no_subscriber(server, created["id"], 1.0) < 1.0
    client.beta.threads.runs.cancel(created["id"], thread_id=created["thread_id"])


@pytest.mark.settings(stream_send_timeout_seconds=0.5)
def test_a_client_that_stops_reading_is_dropped(server: LiveServer, client: openai.OpenAI) -> None:
    """A stream whose client accepts no more bytes is closed after the send timeout and counted
    as stalled; the run completes regardless."""
    assistant = client.beta.assistants.create(model="local")
    thread = thread_with(client, " ".join(["word"] * 40_000))  # ~8 MB of deltas
    body = json.dumps({"assistant_id": assistant.id, "stream": True}).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window fills fast
    sock.connect(("127.0.0.1", server.port))
    try:
        sock.sendall(
            b"POST /v1/threads/%s/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (thread.id.encode(), len(body), body)
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")  # then read nothing more
        runs = client.beta.threads.runs.list(thread_id=thread.id).data
        run = client.beta.threads.runs.poll(runs[0].id, thread_id=thread.id, poll_interval_ms=POLL)
        assert run.status == "completed"
        _wait_for_no_subscriber(server, run.id, 10.0)
        assert server.app is not None
        metrics = server.app.state.metrics
        assert metrics.stream_ends.labels("stalled")._value.get() == 1
        assert metrics.active_streams._value.get() == 0
    finally:
        sock.close()


def test_head_of_an_event_stream_answers_headers_only(
    server: LiveServer, client: openai.OpenAI
) -> None:
    """HEAD on a run's event stream gets the stream's headers and an empty body at once, and
    leaves no subscription behind."""
    assistant = client.beta.assistants.create(model="local")
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "hi"}]},
        poll_interval_ms=POLL,
    )
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("HEAD", f"/v1/threads/{run.thread_id}/runs/{run.id}/events")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("content-type", "").startswith("text/event-stream")
        assert response.read() == b""
    finally:
        conn.close()
    _wait_for_no_subscriber(server, run.id, 1.0)


# --- failures inside the gateway ------------------------------------------------------------


@pytest.fixture
def broken_server(tmp_path: Path) -> Iterator[LiveServer]:
    backend = BreakingBackend("partial ", error=RuntimeError("a bug"))
    live = LiveServer(tmp_path / "broken.db", backend_for=lambda model: backend).start()
    yield live
    live.stop()


def test_internal_failure_ends_with_run_failed_then_error(broken_server: LiveServer) -> None:
    """A gateway failure mid-stream sends thread.run.failed, then an error event the SDK raises
    on, then done; the run is failed on GET."""
    with openai.OpenAI(base_url=broken_server.base_url, api_key="x", max_retries=0) as client:
        assistant = client.beta.assistants.create(model="local")
        thread = thread_with(client, "hi")
        seen: list[str] = []
        with pytest.raises(openai.APIError) as caught:
            for event in client.beta.threads.runs.create(
                thread_id=thread.id, assistant_id=assistant.id, stream=True
            ):
                seen.append(event.event)
        assert seen[-3:] == [
            "thread.message.incomplete",
            "thread.run.step.failed",
            "thread.run.failed",
        ]
        assert caught.value.code == "server_error"
        [run] = client.beta.threads.runs.list(thread.id).data
        assert run.status == "failed" and run.last_error is not None

        handler = Recorder()
        thread2 = thread_with(client, "again")
        with (
            pytest.raises(openai.APIError),
            client.beta.threads.runs.stream(
                thread_id=thread2.id, assistant_id=assistant.id, event_handler=handler
            ) as stream,
        ):
            stream.until_done()
        assert stream.current_run is not None and stream.current_run.status == "failed"


def test_error_frame_shape(broken_server: LiveServer) -> None:
    """The error frame carries the flat error fields and the same object under "error"."""
    with openai.OpenAI(base_url=broken_server.base_url, api_key="x", max_retries=0) as client:
        assistant = client.beta.assistants.create(model="local")
        thread = thread_with(client, "hi")
    stream = post_stream(
        broken_server,
        f"/threads/{thread.id}/runs",
        {"assistant_id": assistant.id, "stream": True},
    )
    frames = list(stream.frames())
    stream.close()
    assert [f.event for f in frames[-3:]] == ["thread.run.failed", "error", "done"]
    error = frames[-2].data
    inner = {k: error[k] for k in ("message", "type", "param", "code")}
    assert error["error"] == inner and inner["type"] == "server_error"


@pytest.mark.settings(local_model_delay_ms=100)
def test_shutdown_ends_open_streams_promptly(server: LiveServer, client: openai.OpenAI) -> None:
    """Stopping the server ends a run in progress and its stream (run.failed, error, done) at
    once, instead of holding shutdown until the graceful timeout."""
    stream = create_stream(server, client, " ".join(["slow"] * 100))
    frames = stream.frames()
    created = next(f for f in frames if f.event == "thread.run.created").data
    next(f for f in frames if f.event == "thread.message.delta")
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    tail = [f.event for f in frames if not f.is_comment]
    stream.close()
    assert tail[-3:] == ["thread.run.failed", "error", "done"]
    server.start()
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as again:
        run = again.beta.threads.runs.retrieve(created["id"], thread_id=created["thread_id"])
    assert run.status == "failed" and run.last_error is not None
