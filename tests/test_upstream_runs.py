"""Runs routed to an OpenAI-compatible upstream (faked over real HTTP): what the upstream is
sent, what streams back, routing, /v1/models and the chat-completions pass-through."""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.beta import FunctionToolParam
from openai.types.beta.threads.runs import ToolCallDeltaObject
from openai.types.shared_params.response_format_json_schema import JSONSchema

from gateway.config import GatewayConfig, UpstreamConfig
from tests.fake_upstream import FakeUpstream, Finish, Script, Sleep, Text, ToolCall, Usage
from tests.server import LiveServer
from tests.sse_client import post_stream

SECRET = "sk-upstream-secret-1234"
WEATHER: FunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
POLL = 20


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        fake.models = ["fake-large", "fake-small", "unrouted-model"]
        yield fake


@pytest.fixture
def live(tmp_path: Path, upstream: FakeUpstream) -> Iterator[LiveServer]:
    config = GatewayConfig(
        upstreams=(
            UpstreamConfig(
                name="fake",
                base_url=upstream.base_url,
                models=("fake-*", "exact-name"),
                api_key=SECRET,
                idle_timeout=5,
            ),
        )
    )
    server = LiveServer(tmp_path / "gateway.db", config=config).start()
    yield server
    server.stop()


@pytest.fixture
def client(live: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=live.base_url, api_key="x", max_retries=0) as c:
        yield c


def chat_requests(upstream: FakeUpstream) -> list[Any]:
    return [r for r in upstream.requests if r.path.endswith("/chat/completions")]


def test_what_the_upstream_is_sent(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    """Instructions, messages with image parts, tools and sampling reach the upstream as
    chat-completions fields, with the key in the Authorization header."""
    assistant = client.beta.assistants.create(
        model="fake-large", instructions="Be brief.", tools=[WEATHER], temperature=0.2
    )
    thread = client.beta.threads.create(
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "inserted answer"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://x.test/a.png", "detail": "low"},
                    },
                    {"type": "image_file", "image_file": {"file_id": "file-1"}},
                ],
            },
        ]
    )
    schema: JSONSchema = {"name": "answer", "schema": {"type": "object"}, "strict": True}
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        additional_instructions="Extra.",
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        response_format={"type": "json_schema", "json_schema": schema},
        top_p=0.9,
        max_completion_tokens=300,
        poll_interval_ms=POLL,
    )
    assert run.status == "completed"
    [sent] = chat_requests(upstream)
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert sent.body == {
        "model": "fake-large",
        "messages": [
            {"role": "system", "content": "Be brief.\n\nExtra."},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "inserted answer"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://x.test/a.png", "detail": "low"},
                    },
                    {"type": "text", "text": "[image file file-1 is not available]"},
                ],
            },
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": schema},
        "temperature": 0.2,
        "top_p": 0.9,
        "max_completion_tokens": 300,
    }


def test_tool_round_trip_sends_calls_and_outputs_back(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    """Parallel tool calls stream as step deltas; their outputs go back as assistant tool_calls
    and tool messages in the continuation request."""
    upstream.enqueue(
        Script(
            [
                ToolCall(0, "call_a", "get_weather", ""),
                ToolCall(0, None, None, '{"city":'),
                ToolCall(0, None, None, '"Oslo"}'),
                ToolCall(1, "call_b", "get_weather", '{"city":"Rome"}'),
                Finish("tool_calls"),
                Usage(11, 7),
            ]
        ),
        Script([Text("Oslo is cold, "), Text("Rome is warm."), Finish("stop"), Usage(20, 5)]),
    )
    assistant = client.beta.assistants.create(model="fake-small", tools=[WEATHER])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "weather?"}])
    events = list(
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id, stream=True)
    )
    fragments = [
        (c.index, c.function.arguments)  # type: ignore[union-attr]
        for e in events
        if e.event == "thread.run.step.delta"
        for c in e.data.delta.step_details.tool_calls  # type: ignore[union-attr]
    ]
    assert fragments == [(0, ""), (0, '{"city":'), (0, '"Oslo"}'), (1, ""), (1, '{"city":"Rome"}')]
    run = events[-1].data
    calls = run.required_action.submit_tool_outputs.tool_calls  # type: ignore[union-attr]
    assert [(c.id, c.function.arguments) for c in calls] == [
        ("call_a", '{"city":"Oslo"}'),
        ("call_b", '{"city":"Rome"}'),
    ]
    final = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,  # type: ignore[union-attr]
        thread_id=thread.id,
        tool_outputs=[
            {"tool_call_id": "call_a", "output": "-3C"},
            {"tool_call_id": "call_b", "output": "24C"},
        ],
        poll_interval_ms=POLL,
    )
    assert final.status == "completed"
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (31, 12)
    continuation = chat_requests(upstream)[-1].body["messages"]
    assert continuation[-3:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "-3C"},
        {"role": "tool", "tool_call_id": "call_b", "content": "24C"},
    ]
    [reply] = client.beta.threads.messages.list(thread.id, run_id=final.id).data
    assert reply.content[0].text.value == "Oslo is cold, Rome is warm."  # type: ignore[union-attr]


def test_history_is_trimmed_before_it_is_sent(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    """truncation_strategy last_messages and max_prompt_tokens limit the messages sent."""
    assistant = client.beta.assistants.create(model="fake-large")
    thread = client.beta.threads.create(
        messages=[
            {"role": "user", "content": "x" * 2000},
            {"role": "user", "content": "second"},
            {"role": "user", "content": "third"},
        ]
    )
    client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        truncation_strategy={"type": "last_messages", "last_messages": 2},
        poll_interval_ms=POLL,
    )
    sent = chat_requests(upstream)[-1].body["messages"]
    assert [m["content"] for m in sent] == ["second", "third"]
    client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, max_prompt_tokens=300, poll_interval_ms=POLL
    )
    sent = chat_requests(upstream)[-1].body["messages"]
    assert [m["content"] for m in sent][:2] == ["second", "third"]  # the 2000-char message went


def test_deltas_keep_the_upstream_timing(
    live: LiveServer, client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    """One message delta per upstream content chunk, each forwarded as it arrives."""
    steps: list[Any] = []
    for i in range(8):
        steps += [Text(f"t{i} "), Sleep(0.05)]
    upstream.enqueue(Script([*steps, Finish("stop")]))
    assistant = client.beta.assistants.create(model="fake-large")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    stream = post_stream(
        live, f"/threads/{thread.id}/runs", {"assistant_id": assistant.id, "stream": True}
    )
    deltas = [f for f in stream.frames() if not f.is_comment and f.event == "thread.message.delta"]
    stream.close()
    assert [d.data["delta"]["content"][0]["text"]["value"] for d in deltas] == [
        f"t{i} " for i in range(8)
    ]
    gaps = [b.at - a.at for a, b in itertools.pairwise(deltas)]
    assert min(gaps) > 0.03, gaps
    assert 0.04 <= statistics.median(gaps) <= 0.08, gaps


def test_routing_first_match_and_default(tmp_path: Path) -> None:
    """The first upstream whose pattern matches serves a model; others go to the default."""
    with FakeUpstream() as first, FakeUpstream() as second:
        config = GatewayConfig(
            upstreams=(
                UpstreamConfig(name="first", base_url=first.base_url, models=("shared-*",)),
                UpstreamConfig(name="second", base_url=second.base_url, models=("shared-*", "two")),
            )
        )
        server = LiveServer(tmp_path / "r.db", config=config).start()
        try:
            with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as c:
                replies = []
                for model in ("shared-a", "two", "elsewhere"):
                    assistant = c.beta.assistants.create(model=model)
                    run = c.beta.threads.create_and_run_poll(
                        assistant_id=assistant.id,
                        thread={"messages": [{"role": "user", "content": "hi"}]},
                        poll_interval_ms=POLL,
                    )
                    reply = c.beta.threads.messages.list(run.thread_id, run_id=run.id).data[0]
                    replies.append(reply.content[0].text.value)  # type: ignore[union-attr]
                assert replies == ["Hello from upstream", "Hello from upstream", "You said: hi"]
        finally:
            server.stop()
        assert [r.body["model"] for r in chat_requests(first)] == ["shared-a"]
        assert [r.body["model"] for r in chat_requests(second)] == ["two"]


def test_models_lists_what_is_routable(client: openai.OpenAI) -> None:
    """/v1/models lists the upstream's models its patterns route, its literal names and local."""
    ids = sorted(m.id for m in client.models.list().data)
    assert ids == ["exact-name", "fake-large", "fake-small", "local"]
    assert client.models.retrieve("fake-large").owned_by == "fake"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("unrouted-model")


def test_hosted_tools_are_offered_as_functions(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    """Declared file_search and code_interpreter reach the upstream as functions of the same
    name beside the run's own, and a tool_choice naming one becomes that function."""
    assistant = client.beta.assistants.create(
        model="fake-large",
        tools=[WEATHER, {"type": "file_search"}, {"type": "code_interpreter"}],
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "find it"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        tool_choice={"type": "file_search"},
        poll_interval_ms=POLL,
    )
    assert run.status == "completed"
    (sent,) = chat_requests(upstream)
    names = [t["function"]["name"] for t in sent.body["tools"]]
    assert names == ["get_weather", "file_search", "code_interpreter"]
    assert sent.body["tool_choice"] == {"type": "function", "function": {"name": "file_search"}}


def test_a_hosted_tool_that_cannot_run_fails_the_run(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    """The model calls code_interpreter, turned off on this gateway: the run fails with a
    last_error naming the tool and why, the tool step fails with it (its code shown), and
    nothing is left in_progress."""
    upstream.enqueue(
        Script(
            [
                ToolCall(0, "call_ci", "code_interpreter", '{"code": "print(1 + 1)"}'),
                Finish("tool_calls"),
                Usage(9, 4),
            ]
        )
    )
    assistant = client.beta.assistants.create(
        model="fake-large", tools=[{"type": "code_interpreter"}]
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "add"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
    )
    assert run.status == "failed" and run.last_error is not None
    assert run.last_error.code == "server_error"
    assert "code_interpreter" in run.last_error.message
    assert "turned off" in run.last_error.message
    (step,) = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
    assert step.status == "failed" and step.last_error is not None
    assert step.step_details.type == "tool_calls"
    (call,) = step.step_details.tool_calls
    assert call.type == "code_interpreter" and call.id == "call_ci"
    assert call.code_interpreter.outputs == []

    # Streamed: the call's delta, the step and the run failing, and the stream's end.
    upstream.enqueue(
        Script([ToolCall(0, "call_s", "code_interpreter", "{}"), Finish("tool_calls")])
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "again"}])
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as s:
        seen = [(e.event, e.data) for e in s]
    names = [name for name, _ in seen]
    assert names[-2:] == ["thread.run.step.failed", "thread.run.failed"]
    deltas = [d for name, d in seen if name == "thread.run.step.delta"]
    details = deltas[0].delta.step_details  # type: ignore[union-attr]
    assert isinstance(details, ToolCallDeltaObject) and details.tool_calls is not None
    assert details.tool_calls[0].type == "code_interpreter"


def test_chat_completions_pass_through(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    """Routed models are proxied unchanged (plain and streamed); others use the local model."""
    reply = client.chat.completions.create(
        model="fake-large", messages=[{"role": "user", "content": "yo"}], seed=7
    )
    assert reply.choices[0].message.content == "Hello from upstream"
    assert chat_requests(upstream)[-1].body == {
        "model": "fake-large",
        "messages": [{"role": "user", "content": "yo"}],
        "seed": 7,
    }
    upstream.enqueue(Script([Text("a"), Text("b"), Finish("stop")]))
    parts = [
        c.choices[0].delta.content
        for c in client.chat.completions.create(
            model="fake-large", messages=[{"role": "user", "content": "yo"}], stream=True
        )
        if c.choices and c.choices[0].delta.content
    ]
    assert parts == ["a", "b"]
    local = client.chat.completions.create(
        model="not-routed", messages=[{"role": "user", "content": "echo me"}]
    )
    assert local.choices[0].message.content == "You said: echo me"
    assert local.usage is not None and local.usage.completion_tokens == 4
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="not-routed", messages=[{"role": "user", "content": "echo me"}], stream=True
        )
        if c.choices
    )
    assert streamed == "You said: echo me"


def test_chat_completions_upstream_down_is_502(tmp_path: Path) -> None:
    """A proxied call to an upstream that cannot be reached answers 502 in the envelope."""
    with FakeUpstream() as fake:
        dead = fake.base_url
    config = GatewayConfig(upstreams=(UpstreamConfig(name="gone", base_url=dead, models=("*",)),))
    server = LiveServer(tmp_path / "d.db", config=config).start()
    try:
        with (
            openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as c,
            pytest.raises(openai.InternalServerError) as caught,
        ):
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert caught.value.status_code == 502 and "gone" in str(caught.value.message)
    finally:
        server.stop()


def test_bad_config_file_is_one_line_at_start(tmp_path: Path) -> None:
    """`gateway serve --config` with a broken file exits with one line naming file and line."""
    config = tmp_path / "gateway.toml"
    config.write_text('[[upstream]]\nname = "x"\nbase_url = "ftp://nope"\nmodels = ["a"]\n')
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", "0", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert f"{config}:3:" in lines[0] and "base_url" in lines[0]


def test_the_key_never_leaves_the_gateway(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    """The upstream key appears in no object the API returns, even when the upstream fails."""
    upstream.enqueue(Script([], status=401))
    assistant = client.beta.assistants.create(model="fake-large")
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "hi"}]},
        poll_interval_ms=POLL,
    )
    assert run.status == "failed"
    dumped = json.dumps(
        [
            run.model_dump(),
            [
                s.model_dump()
                for s in client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id)
            ],
            [m.model_dump() for m in client.beta.threads.messages.list(run.thread_id)],
            [m.model_dump() for m in client.models.list().data],
        ]
    )
    assert SECRET not in dumped
    assert run.last_error is not None and "401" in run.last_error.message


class TimedHandler(openai.AssistantEventHandler):
    """Records when each tool-call fragment and text fragment arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, str]] = []

    def on_tool_call_created(self, tool_call: Any) -> None:
        self.arrivals.append((time.monotonic(), f"call:{tool_call.function.name}"))

    def on_tool_call_delta(self, delta: Any, snapshot: Any) -> None:
        if delta.function and delta.function.arguments:
            self.arrivals.append((time.monotonic(), delta.function.arguments))

    def on_text_delta(self, delta: Any, snapshot: Any) -> None:
        self.arrivals.append((time.monotonic(), delta.value or ""))


def test_streamed_round_trip_keeps_order_and_timing(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    """The SDK's streamed function-call round trip gets the upstream's tool call and tokens in
    order, each about when the upstream sent it (50 ms apart)."""
    gap = 0.05
    upstream.enqueue(
        Script(
            [
                ToolCall(0, "call_w", "get_weather", ""),
                Sleep(gap),
                ToolCall(0, None, None, '{"city":'),
                Sleep(gap),
                ToolCall(0, None, None, '"Paris"}'),
                Finish("tool_calls"),
            ]
        ),
        Script(
            [
                Text("It is "),
                Sleep(gap),
                Text("sunny "),
                Sleep(gap),
                Text("in Paris."),
                Finish("stop"),
            ]
        ),
    )
    assistant = client.beta.assistants.create(model="fake-large", tools=[WEATHER])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Paris?"}])
    first = TimedHandler()
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=first
    ) as stream:
        stream.until_done()
    run = stream.get_final_run()
    assert run.status == "requires_action"
    second = TimedHandler()
    with client.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": "call_w", "output": "sunny"}],
        event_handler=second,
    ) as stream2:
        stream2.until_done()
    assert stream2.get_final_run().status == "completed"
    assert [a for _, a in first.arrivals] == ["call:get_weather", '{"city":', '"Paris"}']
    assert [a for _, a in second.arrivals] == ["It is ", "sunny ", "in Paris."]
    # The first fragment of each stream follows a store write (the step or message is saved
    # before it is announced), so its own arrival may lag; the gaps after it show the pacing.
    gaps = [
        b - a
        for arrivals in (first.arrivals, second.arrivals)
        for (a, _), (b, _) in itertools.pairwise(arrivals[1:])
    ]
    assert len(gaps) == 2 and all(gap * 0.6 <= g <= gap * 3 for g in gaps), gaps
    assert second.arrivals[-1][0] - second.arrivals[0][0] >= 2 * gap * 0.8


def test_proxied_error_never_carries_the_key(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    """A proxied upstream error that quotes the gateway's key comes back with the key redacted."""
    upstream.enqueue(Script([Text(f"Incorrect API key provided: {SECRET}")], status=401))
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(
            model="fake-large", messages=[{"role": "user", "content": "x"}]
        )
    assert SECRET not in json.dumps(caught.value.body) and "***" in str(caught.value.message)
