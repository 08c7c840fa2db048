"""code_interpreter in runs, through a live gateway and the openai SDK, with the real bubblewrap
sandbox: the official math-tutor flow with the built-in model (polled and streamed) and with an
upstream model that calls the tool; state kept between calls of a thread; a plot comes back as
an image_file whose content is a PNG; the thread's files are in /mnt/data and files written
there come back; a cancelled run stops its code at once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import AssistantEventHandler
from openai.types.beta.threads.runs import (
    CodeInterpreterToolCall,
    ToolCall,
    ToolCallDelta,
    ToolCallsStepDetails,
)

from gateway.config import GatewayConfig, UpstreamConfig
from gateway.sandbox.bwrap import bwrap_path
from tests.conftest import need
from tests.fake_upstream import FakeUpstream, Finish, Script, Text, Usage
from tests.fake_upstream import ToolCall as Call
from tests.http import call
from tests.server import LiveServer
from tests.test_observability import sample
from tests.waiting import eventually
from tests.wire import assert_conforms

POLL = 20
TUTOR = "You are a personal math tutor. Write and run code to answer math questions."
SOLVE = "I need to solve the equation `3x + 11 = 14`. Can you help me?\n\n```python\nx = (14 - 11) / 3\nprint(f'x = {x}')\n```"  # noqa: E501
PLOT = (
    "Plot it:\n```python\nimport matplotlib.pyplot as plt\n"
    "plt.plot([1, 2, 3], [1, 4, 9])\nplt.show()\n```"
)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def live(tmp_path: Path, upstream: FakeUpstream) -> Iterator[LiveServer]:
    need(bwrap_path() is not None, "bubblewrap (bwrap) is not installed")
    config = GatewayConfig(
        upstreams=(UpstreamConfig(name="fake", base_url=upstream.base_url, models=("fake-*",)),),
        embeddings="none",
    )
    server = LiveServer(
        tmp_path / "ci.db", config=config, code_interpreter="bwrap", code_interpreter_call_seconds=5
    ).start()
    yield server
    server.stop()


@pytest.fixture
def client(live: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=live.base_url, api_key="x", max_retries=0) as c:
        yield c


def _calls(client: openai.OpenAI, thread_id: str, run_id: str) -> list[CodeInterpreterToolCall]:
    steps = client.beta.threads.runs.steps.list(run_id=run_id, thread_id=thread_id, order="asc")
    found = []
    for step in steps.data:
        if isinstance(step.step_details, ToolCallsStepDetails):
            found += [c for c in step.step_details.tool_calls if c.type == "code_interpreter"]
    return found


def _logs(call: CodeInterpreterToolCall) -> str:
    return "".join(o.logs for o in call.code_interpreter.outputs if o.type == "logs")


def _wire(obj: object) -> dict[str, Any]:
    dumped: dict[str, Any] = obj.model_dump(mode="json", exclude_unset=True)  # type: ignore[attr-defined]
    return dumped


def _answer(client: openai.OpenAI, thread_id: str, run_id: str) -> Any:
    (message,) = client.beta.threads.messages.list(thread_id, run_id=run_id).data
    return message


def test_math_tutor_with_the_built_in_model(client: openai.OpenAI) -> None:
    """The official example's flow, polled: the code runs, the step shows it and its output,
    the answer gives the output; a second call of the thread sees the first one's variables."""
    assistant = client.beta.assistants.create(
        name="Math Tutor", instructions=TUTOR, tools=[{"type": "code_interpreter"}], model="local"
    )
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content=SOLVE)
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
    )
    assert run.status == "completed", run.last_error
    (call,) = _calls(client, thread.id, run.id)
    assert call.code_interpreter.input == "x = (14 - 11) / 3\nprint(f'x = {x}')\n"
    assert _logs(call) == "x = 1.0\n"
    answer = _answer(client, thread.id, run.id)
    assert answer.content[0].text.value == "I ran the code. Its output:\n\nx = 1.0"

    client.beta.threads.messages.create(
        thread_id=thread.id, role="user", content="```python\nprint(x * 3 + 11)\n```"
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
    )
    assert run.status == "completed", run.last_error
    (call,) = _calls(client, thread.id, run.id)
    assert _logs(call) == "14.0\n"  # the session kept x


def test_math_tutor_streamed(client: openai.OpenAI) -> None:
    """Streamed through an AssistantEventHandler: the call is created, its code arrives as an
    input delta and its logs as an output delta, then the answer's text."""
    assistant = client.beta.assistants.create(
        instructions=TUTOR, tools=[{"type": "code_interpreter"}], model="local"
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": SOLVE}])
    seen: dict[str, Any] = {"created": [], "input": "", "logs": "", "text": ""}

    class Handler(AssistantEventHandler):
        def on_tool_call_created(self, tool_call: ToolCall) -> None:
            seen["created"].append(tool_call.type)

        def on_tool_call_delta(self, delta: ToolCallDelta, snapshot: ToolCall) -> None:
            if delta.type == "code_interpreter" and delta.code_interpreter is not None:
                seen["input"] += delta.code_interpreter.input or ""
                for output in delta.code_interpreter.outputs or ():
                    if output.type == "logs":
                        seen["logs"] += output.logs or ""

        def on_text_done(self, text: Any) -> None:
            seen["text"] = text.value

    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=Handler()
    ) as stream:
        stream.until_done()
    assert seen["created"] == ["code_interpreter"]
    assert seen["input"] == "x = (14 - 11) / 3\nprint(f'x = {x}')\n"
    assert seen["logs"] == "x = 1.0\n"
    assert seen["text"] == "I ran the code. Its output:\n\nx = 1.0"


def test_an_upstream_model_calls_the_tool(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    """The upstream is offered code_interpreter, its call runs in the sandbox, and the output
    goes back to it as the tool's answer in the same run."""
    upstream.enqueue(
        Script(
            [
                Call(0, "call_ci", "code_interpreter", '{"code": "print(3 * 7)"}'),
                Finish("tool_calls"),
                Usage(10, 5),
            ]
        ),
        Script([Text("The answer is 21."), Finish("stop"), Usage(20, 5)]),
    )
    assistant = client.beta.assistants.create(
        instructions=TUTOR, tools=[{"type": "code_interpreter"}], model="fake-large"
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "3 times 7?"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
    )
    assert run.status == "completed", run.last_error
    (call,) = _calls(client, thread.id, run.id)
    assert (call.id, call.code_interpreter.input, _logs(call)) == (
        "call_ci",
        "print(3 * 7)",
        "21\n",
    )
    chats = [r.body for r in upstream.requests if r.path.endswith("/chat/completions")]
    assert [t["function"]["name"] for t in chats[0]["tools"]] == ["code_interpreter"]
    tool = [m for m in chats[1]["messages"] if m["role"] == "tool"]
    assert tool == [{"role": "tool", "tool_call_id": "call_ci", "content": "21\n"}]
    assert _answer(client, thread.id, run.id).content[0].text.value == "The answer is 21."


def test_a_plot_comes_back_as_a_png_image_file(client: openai.OpenAI) -> None:
    assistant = client.beta.assistants.create(tools=[{"type": "code_interpreter"}], model="local")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": PLOT}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
    )
    assert run.status == "completed", run.last_error
    (call,) = _calls(client, thread.id, run.id)
    (image,) = [o for o in call.code_interpreter.outputs if o.type == "image"]
    answer = _answer(client, thread.id, run.id)
    parts = [p for p in answer.content if p.type == "image_file"]
    assert [p.image_file.file_id for p in parts] == [image.image.file_id]
    assert_conforms(_wire(answer))
    for step in client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id).data:
        assert_conforms(_wire(step))
    content = client.files.content(image.image.file_id).read()
    assert content.startswith(b"\x89PNG\r\n\x1a\n") and len(content) > 1000
    assert client.files.retrieve(image.image.file_id).purpose == "assistants_output"


def test_files_go_in_and_come_out(client: openai.OpenAI) -> None:
    """The assistant's code_interpreter.file_ids are in /mnt/data; a file the code writes
    there becomes a file of purpose assistants_output."""
    data = client.files.create(file=("data.csv", b"a,b\n1,2\n3,4\n"), purpose="assistants")
    assistant = client.beta.assistants.create(
        tools=[{"type": "code_interpreter"}],
        tool_resources={"code_interpreter": {"file_ids": [data.id]}},
        model="local",
    )
    code = (
        "```python\nimport pandas as pd\ndf = pd.read_csv('/mnt/data/data.csv')\n"
        "df['c'] = df.a + df.b\ndf.to_csv('/mnt/data/out.csv', index=False)\n"
        "print(df.c.sum())\n```"
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": code}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
    )
    assert run.status == "completed", run.last_error
    (call,) = _calls(client, thread.id, run.id)
    assert _logs(call).startswith("10\n")
    assert "/mnt/data/out.csv" in _logs(call)
    (out,) = client.files.list(purpose="assistants_output").data
    assert out.filename == "out.csv"
    assert client.files.content(out.id).read() == b"a,b,c\n1,2,3\n3,4,7\n"


def test_a_limit_is_an_error_output_and_cancel_stops_the_code(client: openai.OpenAI) -> None:
    """Code past the call's time limit is stopped and the model told; a run cancelled while
    its code runs ends at once; other runs are served meanwhile."""
    assistant = client.beta.assistants.create(tools=[{"type": "code_interpreter"}], model="local")
    forever = "```python\nwhile True:\n    pass\n```"
    thread = client.beta.threads.create(messages=[{"role": "user", "content": forever}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    # Meanwhile another thread's run (no tools) completes.
    other = client.beta.threads.create_and_run_poll(
        assistant_id=client.beta.assistants.create(model="local").id,
        thread={"messages": [{"role": "user", "content": "hi"}]},
        poll_interval_ms=POLL,
    )
    assert other.status == "completed"
    eventually(
        lambda: bool(_calls(client, thread.id, run.id)),
        timeout=10,
        what="the code to start",
    )
    started = time.monotonic()
    client.beta.threads.runs.cancel(run_id=run.id, thread_id=thread.id)
    eventually(
        lambda: (
            client.beta.threads.runs.retrieve(run_id=run.id, thread_id=thread.id).status
            == "cancelled"
        ),
        timeout=5,
        what="the run to be cancelled",
    )
    assert time.monotonic() - started < 3

    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
    )
    assert run.status == "completed", run.last_error
    (call,) = _calls(client, thread.id, run.id)
    assert "KeyboardInterrupt" in _logs(call)
    assert "time limit" in _logs(call)


def test_metrics_count_sessions_calls_and_limits(client: openai.OpenAI, live: LiveServer) -> None:
    assistant = client.beta.assistants.create(tools=[{"type": "code_interpreter"}], model="local")
    for code in ("print(1)", "1 / 0", "while True:\n    pass"):
        thread = client.beta.threads.create(
            messages=[{"role": "user", "content": f"```python\n{code}\n```"}]
        )
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
        )
        assert run.status == "completed", run.last_error
    metrics = call(live, "GET", "/metrics").raw.decode()
    for outcome in ("ok", "error", "time"):
        assert sample(metrics, "gateway_code_interpreter_calls_total", f'outcome="{outcome}"') == 1
    assert sample(metrics, "gateway_code_interpreter_sessions") == 3
    cold = sample(metrics, "gateway_code_interpreter_call_seconds_count", 'session="cold"')
    assert cold == 3
    # A deleted thread's session ends with it.
    client.beta.threads.delete(thread.id)
    metrics = call(live, "GET", "/metrics").raw.decode()
    assert sample(metrics, "gateway_code_interpreter_sessions") == 2


def test_a_lost_session_starts_afresh_with_the_threads_files(
    client: openai.OpenAI, live: LiveServer
) -> None:
    """After the process that held a thread's session is gone (here: restarted), the next call
    runs in a fresh session: the variables are gone, the thread's files are back."""
    data = client.files.create(file=("notes.txt", b"kept"), purpose="assistants")
    assistant = client.beta.assistants.create(tools=[{"type": "code_interpreter"}], model="local")
    thread = client.beta.threads.create(
        tool_resources={"code_interpreter": {"file_ids": [data.id]}},
        messages=[{"role": "user", "content": "```python\nsecret = 42\nprint(secret)\n```"}],
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
    )
    assert run.status == "completed", run.last_error
    live.restart()
    code = "print('secret' in dir(), open('/mnt/data/notes.txt').read())"
    client.beta.threads.messages.create(
        thread_id=thread.id, role="user", content=f"```python\n{code}\n```"
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
    )
    assert run.status == "completed", run.last_error
    (call_,) = _calls(client, thread.id, run.id)
    assert _logs(call_) == "False kept\n"


def test_a_link_to_a_written_file_is_a_file_path_annotation(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    """The model's answer links a file its code wrote (sandbox:/mnt/data/...): the link is
    annotated with the file the gateway made of it."""
    code = "open('/mnt/data/report.txt', 'w').write('all good')"
    link = "sandbox:/mnt/data/report.txt"
    upstream.enqueue(
        Script(
            [
                Call(0, "call_w", "code_interpreter", json.dumps({"code": code})),
                Finish("tool_calls"),
                Usage(10, 5),
            ]
        ),
        Script([Text(f"Here: [report]({link})."), Finish("stop"), Usage(20, 5)]),
    )
    assistant = client.beta.assistants.create(
        tools=[{"type": "code_interpreter"}], model="fake-large"
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "a report"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
    )
    assert run.status == "completed", run.last_error
    answer = _answer(client, thread.id, run.id)
    assert_conforms(_wire(answer))
    text = answer.content[0].text
    (annotation,) = text.annotations
    assert annotation.type == "file_path" and annotation.text == link
    assert text.value[annotation.start_index : annotation.end_index] == link
    assert client.files.content(annotation.file_path.file_id).read() == b"all good"
    assert client.files.retrieve(annotation.file_path.file_id).filename == "report.txt"


def test_an_upstream_models_call_streamed(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    """Streamed: the step's deltas carry the call, then its input, then its outputs, and the
    upstream's answer follows in the same stream."""
    upstream.enqueue(
        Script(
            [
                Call(0, "call_ci", "code_interpreter", '{"code": "print(6 * 7)"}'),
                Finish("tool_calls"),
                Usage(10, 5),
            ]
        ),
        Script([Text("42 it is."), Finish("stop"), Usage(20, 5)]),
    )
    assistant = client.beta.assistants.create(
        tools=[{"type": "code_interpreter"}], model="fake-large"
    )
    events = list(
        client.beta.threads.create_and_run(
            assistant_id=assistant.id,
            thread={"messages": [{"role": "user", "content": "6 times 7?"}]},
            stream=True,
        )
    )
    deltas = []
    for event in events:
        if event.event == "thread.run.step.delta":
            details = event.data.delta.step_details
            assert details is not None and details.type == "tool_calls" and details.tool_calls
            (call_delta,) = details.tool_calls
            assert call_delta.type == "code_interpreter" and call_delta.code_interpreter
            deltas.append(call_delta.code_interpreter)
    assert [(d.input, d.outputs) for d in deltas][:2] == [("", []), ("print(6 * 7)", None)]
    (outputs,) = [d.outputs for d in deltas[2:]]
    assert outputs is not None and [o.model_dump() for o in outputs] == [
        {"index": 0, "type": "logs", "logs": "42\n"}
    ]
    kinds = [e.event for e in events]
    assert kinds.index("thread.run.step.completed") < kinds.index("thread.message.delta")
    assert kinds[-1] == "thread.run.completed"


def test_a_machine_without_the_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without bwrap, `auto` serves and a run that calls the tool fails with a last_error
    saying why (the CLI's `bwrap`, which refuses to start, is in test_cli)."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    server = LiveServer(tmp_path / "none.db", code_interpreter="auto").start()
    try:
        with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
            assistant = client.beta.assistants.create(
                tools=[{"type": "code_interpreter"}], model="local"
            )
            run = client.beta.threads.create_and_run_poll(
                assistant_id=assistant.id,
                thread={"messages": [{"role": "user", "content": "```python\nprint(1)\n```"}]},
                poll_interval_ms=POLL,
            )
            assert run.status == "failed" and run.last_error is not None
            assert "bwrap is not installed" in run.last_error.message
    finally:
        server.stop()
