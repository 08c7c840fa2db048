"""End to end: faults of an OpenAI-compatible upstream, as a run sees them through the SDK.

A real gateway (uvicorn, SQLite) routes `fake-*` models to a `FakeUpstream` over real HTTP and
`down-*` models to a closed loopback port. Each test scripts the upstream, streams one run with
the sync openai SDK, and checks the run's final state (GET), the events streamed, that the API
key never shows, and that no connection to the upstream is left open.

Retries: 429s carry `retry-after-ms`, which the backend honours, so they wait for real but
briefly. Failures without such a header (5xx, connection refused) would wait out stamina's real
backoff (0.5 s and up); those tests use the `no_backoff` fixture, stamina's test switch with
`cap=True`, which drops the waits but keeps the configured number of attempts.

Open connections: the gateway's aiohttp pool keeps an idle keep-alive connection after an answer
that was read to the end, so "0 open" is asserted only where the answer was cut short (faulted,
timed out or cancelled), when the backend must close it. An error status (429, 5xx, 400) is a
complete response whose body the backend reads, so its connection may go back to the pool: there
the tests assert the attempts shared at most that one pooled connection.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import stamina
from openai.types.beta import FunctionToolParam
from openai.types.beta.threads import Run

from gateway.config import GatewayConfig, UpstreamConfig
from tests.fake_upstream import (
    DEFAULT_SCRIPT,
    FakeUpstream,
    Finish,
    Raw,
    Reset,
    Script,
    Sleep,
    Stall,
    Step,
    Text,
    ToolCall,
    Usage,
)
from tests.server import LiveServer
from tests.waiting import eventually

SECRET = "sk-fake-SECRET-7f3a9c1e5b2d4086"
FIRST_BYTE_TIMEOUT = 1.0
IDLE_TIMEOUT = 0.5
MAX_RETRIES = 2
# How long the fake may take to notice a connection the gateway closed.
CLOSE_BOUND = 2.0
TOOLS: list[FunctionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
TRACEBACK_MARKS = ("Traceback", 'File "', "\n", "<", "object at 0x")


def _closed_port() -> int:
    """A loopback port nothing listens on: bound once to pick it, then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _upstream(name: str, base_url: str, models: str) -> UpstreamConfig:
    return UpstreamConfig(
        name=name,
        base_url=base_url,
        models=(models,),
        api_key=SECRET,
        connect_timeout=1.0,
        first_byte_timeout=FIRST_BYTE_TIMEOUT,
        idle_timeout=IDLE_TIMEOUT,
        max_retries=MAX_RETRIES,
    )


@dataclass
class Outcome:
    """One streamed run as the client saw it, and its objects fetched afterwards."""

    run: Any
    events: list[str]
    messages: list[Any]
    steps: list[Any]
    seconds: float

    @property
    def error(self) -> str:
        assert self.run.last_error is not None, f"run {self.run.status} has no last_error"
        return str(self.run.last_error.message)


class Rig:
    """The fake upstream, a gateway routed to it, an SDK client and one assistant."""

    def __init__(self, fake: FakeUpstream, live: LiveServer, client: openai.OpenAI) -> None:
        self.fake = fake
        self.live = live
        self.client = client
        self.assistant = client.beta.assistants.create(model="fake-model", tools=TOOLS)

    def stream_run(self, *scripts: Script, model: str | None = None) -> Outcome:
        """Queue `scripts`, stream a run on a new thread to its end, and fetch what it left."""
        self.fake.enqueue(*scripts)
        thread = self.client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
        started = time.monotonic()
        with self.client.beta.threads.runs.create(
            thread_id=thread.id,
            assistant_id=self.assistant.id,
            stream=True,
            model=model or openai.omit,
        ) as stream:
            events = list(stream)
        seconds = time.monotonic() - started
        for event in events:
            assert SECRET not in event.data.model_dump_json()
        created = events[0].data
        assert isinstance(created, Run)
        return self.outcome(thread.id, created.id, [e.event for e in events], seconds)

    def outcome(self, thread_id: str, run_id: str, events: list[str], seconds: float) -> Outcome:
        runs = self.client.beta.threads.runs
        run = runs.retrieve(run_id, thread_id=thread_id)
        messages = self.client.beta.threads.messages.list(thread_id, order="asc").data
        steps = runs.steps.list(run_id, thread_id=thread_id, order="asc").data
        for item in [run, *messages, *steps]:
            assert SECRET not in item.model_dump_json()
        return Outcome(run, events, [m for m in messages if m.role == "assistant"], steps, seconds)


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def rig(fake: FakeUpstream, tmp_path: Path) -> Iterator[Rig]:
    config = GatewayConfig(
        upstreams=(
            _upstream("fake", fake.base_url, "fake-*"),
            _upstream("down", f"http://127.0.0.1:{_closed_port()}/v1", "down-*"),
        )
    )
    live = LiveServer(tmp_path / "gateway.db", config=config).start()
    try:
        with openai.OpenAI(
            base_url=live.base_url, api_key="x", max_retries=0, timeout=10
        ) as client:
            yield Rig(fake, live, client)
    finally:
        live.stop()


@pytest.fixture
def no_backoff() -> Iterator[None]:
    """stamina's test switch: no waits between attempts; `cap` keeps the configured count."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


def _text(message: Any) -> str:
    return "".join(part.text.value for part in message.content if part.type == "text")


def _assert_failed(outcome: Outcome, code: str = "server_error") -> None:
    assert outcome.run.status == "failed"
    assert outcome.run.last_error.code == code
    assert outcome.events[-1] == "thread.run.failed"
    assert "error" not in outcome.events
    for mark in TRACEBACK_MARKS:
        assert mark not in outcome.error


def _assert_partial(outcome: Outcome, text: str) -> None:
    """The run failed after `text` streamed: the message keeps it, marked incomplete."""
    (message,) = outcome.messages
    assert message.status == "incomplete"
    assert message.incomplete_details.reason == "run_failed"
    assert _text(message) == text
    assert outcome.events[-3:] == [
        "thread.message.incomplete",
        "thread.run.step.failed",
        "thread.run.failed",
    ]
    (step,) = outcome.steps
    assert step.status == "failed"


def _assert_closed(fake: FakeUpstream) -> None:
    fake.wait_open_connections(0, CLOSE_BOUND)


def _assert_pooled(fake: FakeUpstream) -> None:
    """Answers read to their end: at most one idle keep-alive connection stays in the pool."""
    eventually(
        lambda: fake.open_connections <= 1,
        timeout=CLOSE_BOUND,
        what=lambda: f"one pooled connection at most ({fake.open_connections} open)",
    )


# --- errors before the first token ---------------------------------------------------------


def test_rate_limit_with_retry_after_then_success(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """A 429 with retry-after-ms is retried after that delay and the run completes; the log
    says which upstream failed and why, then that it recovered (never the key)."""
    limited = Script([Text("slow down")], status=429, headers={"retry-after-ms": "150"})
    answer = Script([Text("Second "), Text("time lucky"), Finish("stop"), Usage(4, 3)])

    caplog.set_level(logging.INFO, logger="gateway.retrying")
    outcome = rig.stream_run(limited, answer)

    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.retrying"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("upstream 'fake' failed (1 time so far): ") and "429" in lines[0]
    assert lines[1].startswith("upstream 'fake': succeeded after 1 failed attempts")
    assert all(SECRET not in line for line in lines)

    assert outcome.run.status == "completed"
    assert outcome.run.last_error is None
    (message,) = outcome.messages
    assert _text(message) == "Second time lucky"
    assert outcome.events[-1] == "thread.run.completed"
    first, second = rig.fake.requests
    assert second.at - first.at >= 0.15
    assert first.headers["authorization"] == f"Bearer {SECRET}"


def test_server_errors_exhaust_retries(rig: Rig, no_backoff: None) -> None:
    """Three 500s with max_retries=2 fail the run with server_error naming upstream and status."""
    rig.fake.enqueue(*[Script([], status=500)] * 3, DEFAULT_SCRIPT)

    outcome = rig.stream_run()

    _assert_failed(outcome, "server_error")
    assert "'fake'" in outcome.error
    assert "500" in outcome.error
    assert len(rig.fake.requests) == MAX_RETRIES + 1
    assert outcome.messages == []
    _assert_pooled(rig.fake)


def test_rate_limit_exhausts_retries(rig: Rig) -> None:
    """A 429 on every attempt fails the run with rate_limit_exceeded."""
    limited = Script([Text("quota")], status=429, headers={"retry-after-ms": "20"})

    outcome = rig.stream_run(*[limited] * 3, DEFAULT_SCRIPT)

    _assert_failed(outcome, "rate_limit_exceeded")
    assert "'fake'" in outcome.error
    assert "429" in outcome.error
    assert len(rig.fake.requests) == MAX_RETRIES + 1
    _assert_pooled(rig.fake)


def test_client_error_is_not_retried(rig: Rig) -> None:
    """A 400 fails the run at once with the upstream's own message."""
    detail = "Unrecognized request argument supplied: frobnicate"

    outcome = rig.stream_run(Script([Text(detail)], status=400), DEFAULT_SCRIPT)

    _assert_failed(outcome, "server_error")
    assert detail in outcome.error
    assert "'fake'" in outcome.error
    assert len(rig.fake.requests) == 1
    _assert_pooled(rig.fake)


def test_error_echoing_the_api_key_does_not_leak_it(rig: Rig) -> None:
    """An upstream error message that quotes the API key reaches the run without the key."""
    echo = Script([Text(f"Incorrect API key provided: {SECRET}.")], status=401)

    outcome = rig.stream_run(echo, DEFAULT_SCRIPT)

    assert outcome.run.status == "failed"
    assert SECRET not in outcome.error
    assert "Incorrect API key provided" in outcome.error
    assert len(rig.fake.requests) == 1


def test_stall_before_first_byte(rig: Rig) -> None:
    """An upstream that never starts answering fails the run after first_byte_timeout."""
    outcome = rig.stream_run(Script([Stall()]))

    _assert_failed(outcome)
    assert "did not start answering" in outcome.error
    assert "'fake'" in outcome.error
    assert FIRST_BYTE_TIMEOUT <= outcome.seconds < FIRST_BYTE_TIMEOUT + 2
    assert outcome.messages == []
    assert rig.fake.wait_disconnects(1, CLOSE_BOUND)
    _assert_closed(rig.fake)


def test_connection_refused(rig: Rig, no_backoff: None) -> None:
    """An upstream nobody listens on fails the run quickly, naming it, with no traceback."""
    outcome = rig.stream_run(model="down-model")

    _assert_failed(outcome)
    assert "'down'" in outcome.error
    assert "reach" in outcome.error
    assert outcome.seconds < 3
    assert rig.fake.requests == []


# --- faults after the first token ----------------------------------------------------------


def test_reset_mid_stream(rig: Rig) -> None:
    """A connection reset after some text fails the run and keeps the partial text; no retry."""
    script = Script([Text("Partial "), Text("answer"), Sleep(0.2), Reset()])

    outcome = rig.stream_run(script, DEFAULT_SCRIPT)

    _assert_failed(outcome)
    _assert_partial(outcome, "Partial answer")
    assert "'fake'" in outcome.error
    assert len(rig.fake.requests) == 1
    _assert_closed(rig.fake)


def test_idle_timeout_mid_stream(rig: Rig) -> None:
    """An upstream that goes silent after some text fails the run after idle_timeout."""
    outcome = rig.stream_run(Script([Text("Thinking"), Stall()]))

    _assert_failed(outcome)
    _assert_partial(outcome, "Thinking")
    assert "sent nothing for 0.5 s" in outcome.error
    assert IDLE_TIMEOUT <= outcome.seconds < 3
    assert rig.fake.wait_disconnects(1, CLOSE_BOUND)
    _assert_closed(rig.fake)


def test_gaps_shorter_than_the_idle_timeout_never_fail_a_long_stream(rig: Rig) -> None:
    """The idle timeout is per silence, not per stream: text every 0.3 s for well over the
    0.5 s timeout completes, however long the whole stream takes."""
    steps: list[Any] = []
    for word in ("one ", "two ", "three ", "four ", "five ", "six "):
        steps += [Sleep(0.3), Text(word)]
    outcome = rig.stream_run(Script([*steps, Finish("stop")]))

    assert outcome.run.status == "completed", outcome.run.last_error
    assert outcome.seconds >= 1.8 > 3 * IDLE_TIMEOUT
    assert outcome.messages[0].content[0].text.value == "one two three four five six "


def test_malformed_chunk(rig: Rig) -> None:
    """A chunk that is not JSON fails the run with a message saying so."""
    # Stall: the upstream keeps the stream open, so the backend must close it.
    script = Script([Text("Some"), Raw(b"data: {not json\n\n"), Text(" more"), Stall()])

    outcome = rig.stream_run(script)

    _assert_failed(outcome)
    _assert_partial(outcome, "Some")
    assert "malformed" in outcome.error
    assert len(rig.fake.requests) == 1
    assert rig.fake.wait_disconnects(1, CLOSE_BOUND)
    _assert_closed(rig.fake)


def test_stream_ends_without_finish(rig: Rig) -> None:
    """A stream that ends cleanly with neither finish_reason nor [DONE] fails the run."""
    chunk = {
        "id": "chatcmpl-cut",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake-model",
        "choices": [{"index": 0, "delta": {"content": "Half"}, "finish_reason": None}],
    }
    frame = f"data: {json.dumps(chunk)}\n\n".encode()
    # With a Content-Length, aiohttp's writer drops what the fake appends past it ([DONE]).
    cut = Script([Raw(frame)], headers={"Content-Length": str(len(frame))})

    outcome = rig.stream_run(cut)

    _assert_failed(outcome)
    _assert_partial(outcome, "Half")
    assert "ended its stream before the answer finished" in outcome.error
    assert len(rig.fake.requests) == 1


# --- framing and finish reasons ------------------------------------------------------------


def _awkward(*steps: Step) -> Script:
    """A script framed every legal awkward way: one-byte writes, CRLF, comments, split data."""
    return Script(list(steps), chunk_size=1, line_ending="\r\n", comments=True, multiline_data=True)


def test_one_byte_chunks_crlf_comments_multiline(rig: Rig) -> None:
    """Text and tool-call arguments split into one-byte chunks arrive intact."""
    arguments = '{"city": "Zürich ☃", "note": "a\\nb"}'
    calls = _awkward(
        Text("Let me "),
        Text("check — ☀"),
        ToolCall(0, "call_w1", "get_weather", ""),
        ToolCall(0, None, None, arguments[:9]),
        ToolCall(0, None, None, arguments[9:20]),
        ToolCall(0, None, None, arguments[20:]),
        Finish("tool_calls"),
    )
    answer = _awkward(Text("Sunny, "), Text("22 °C."), Finish("stop"), Usage(9, 4))

    outcome = rig.stream_run(calls)

    assert outcome.run.status == "requires_action"
    assert outcome.events[-1] == "thread.run.requires_action"
    (call,) = outcome.run.required_action.submit_tool_outputs.tool_calls
    assert call.id == "call_w1"
    assert call.function.name == "get_weather"
    assert call.function.arguments == arguments
    assert _text(outcome.messages[0]) == "Let me check — ☀"

    rig.fake.enqueue(answer)
    thread_id = outcome.run.thread_id
    with rig.client.beta.threads.runs.submit_tool_outputs(
        run_id=outcome.run.id,
        thread_id=thread_id,
        tool_outputs=[{"tool_call_id": "call_w1", "output": "sunny"}],
        stream=True,
    ) as stream:
        events: list[str] = [event.event for event in stream]
    done = rig.outcome(thread_id, outcome.run.id, events, 0.0)

    assert done.run.status == "completed"
    assert events[-1] == "thread.run.completed"
    assert [_text(m) for m in done.messages] == ["Let me check — ☀", "Sunny, 22 °C."]
    sent = rig.fake.requests[-1].body["messages"]
    assert sent[-2]["tool_calls"][0]["function"]["arguments"] == arguments
    assert sent[-1] == {"role": "tool", "tool_call_id": "call_w1", "content": "sunny"}


@pytest.mark.parametrize(
    ("finish", "run_reason", "message_reason"),
    [("length", "max_completion_tokens", "max_tokens"), ("content_filter",) * 3],
)
def test_truncating_finish_reasons(
    rig: Rig, finish: str, run_reason: str, message_reason: str
) -> None:
    """finish_reason length or content_filter ends the run and its message incomplete."""
    outcome = rig.stream_run(Script([Text("Cut "), Text("short"), Finish(finish)]))

    assert outcome.run.status == "incomplete"
    assert outcome.run.incomplete_details.reason == run_reason
    (message,) = outcome.messages
    assert message.status == "incomplete"
    assert message.incomplete_details.reason == message_reason
    assert _text(message) == "Cut short"
    assert outcome.events[-1] == "thread.run.incomplete"
    assert "thread.message.incomplete" in outcome.events


# --- cancel and recovery -------------------------------------------------------------------


def test_cancel_mid_stream_closes_upstream(rig: Rig) -> None:
    """Cancelling a run mid-answer ends it within a second and closes the upstream connection."""
    rig.fake.enqueue(Script([Text("Once upon"), Sleep(5), Text(" a time"), Finish("stop")]))
    thread = rig.client.beta.threads.create(messages=[{"role": "user", "content": "story"}])
    events: list[str] = []
    with (
        openai.OpenAI(base_url=rig.live.base_url, api_key="x", max_retries=0, timeout=10) as other,
        rig.client.beta.threads.runs.create(
            thread_id=thread.id, assistant_id=rig.assistant.id, stream=True
        ) as stream,
    ):
        for event in stream:
            events.append(event.event)
            if event.event == "thread.run.created":
                run_id = event.data.id
            if event.event == "thread.message.delta" and events.count(event.event) == 1:
                cancel_at = time.monotonic()
                cancelled = other.beta.threads.runs.cancel(run_id, thread_id=thread.id)
        ended = time.monotonic() - cancel_at

    assert cancelled.status == "cancelled"
    assert ended < 1.0
    assert events[-1] == "thread.run.cancelled"
    assert "thread.run.failed" not in events
    outcome = rig.outcome(thread.id, cancelled.id, events, ended)
    assert outcome.run.status == "cancelled"
    (message,) = outcome.messages
    assert _text(message) == "Once upon"
    assert rig.fake.wait_disconnects(1, 2)
    _assert_closed(rig.fake)


def test_gateway_healthy_after_faults(rig: Rig) -> None:
    """After resets, stalls, malformed chunks and errors, a normal run still completes."""
    faults = [
        Script([Text("no")], status=400),
        Script([Text("a"), Sleep(0.1), Reset()]),
        Script([Text("b"), Stall()]),
        Script([Text("c"), Raw(b"data: [oops\n\n")]),
        Script([Text("d"), Raw(b"data: [oops\n\n"), Stall()]),
    ]
    for fault in faults:
        assert rig.stream_run(fault).run.status == "failed"
    _assert_pooled(rig.fake)

    outcome = rig.stream_run(DEFAULT_SCRIPT)

    assert outcome.run.status == "completed"
    (message,) = outcome.messages
    assert _text(message) == "Hello from upstream"
    assert outcome.run.usage.prompt_tokens == 5
    assert len(rig.fake.requests) == len(faults) + 1
    _assert_pooled(rig.fake)
