"""End to end through a real uvicorn, driven by the official openai SDK's `client.beta` calls."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai.types.beta import FunctionToolParam
from openai.types.beta.threads import Run
from openai.types.beta.threads.runs import FunctionToolCall, RunStepInclude, ToolCallsStepDetails
from pydantic import BaseModel

from tests.server import LiveServer
from tests.stores import every_backend  # noqa: F401  (runs each test per store backend)
from tests.waiting import eventually
from tests.wire import assert_conforms, wire_errors

WEATHER: FunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CLOCK: FunctionToolParam = {"type": "function", "function": {"name": "get_time"}}
POLL = 20


def wire(obj: BaseModel) -> dict[str, Any]:
    """The object as the server sent it (the SDK keeps every field it received)."""
    return obj.model_dump(mode="json", exclude_unset=True)


def conforms(obj: BaseModel) -> None:
    assert_conforms(wire(obj))


def test_function_call_round_trip_as_a_new_user_would(client: openai.OpenAI) -> None:
    """The acceptance flow: requires_action with the call, outputs, completed, steps, schemas."""
    assistant = client.beta.assistants.create(
        model="gpt-4o", name="Weather bot", instructions="Be brief.", tools=[WEATHER]
    )
    conforms(assistant)
    thread = client.beta.threads.create()
    conforms(thread)
    message = client.beta.threads.messages.create(
        thread.id, role="user", content='What is the get_weather for {"city": "Paris"}?'
    )
    conforms(message)

    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
    )
    conforms(run)
    assert run.status == "requires_action"
    assert run.required_action is not None
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert [c.function.name for c in calls] == ["get_weather"]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert calls[0].id.startswith("call_")

    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": calls[0].id, "output": '{"temp_c": 21}'}],
        poll_interval_ms=POLL,
    )
    conforms(run)
    assert run.status == "completed"
    assert run.usage is not None and run.usage.total_tokens > 0
    assert run.expires_at is None and run.completed_at is not None

    messages = client.beta.threads.messages.list(thread.id, run_id=run.id)
    conforms(messages)
    [reply] = messages.data
    assert reply.role == "assistant" and reply.run_id == run.id
    assert reply.assistant_id == assistant.id
    assert '{"temp_c": 21}' in reply.content[0].text.value  # type: ignore[union-attr]

    steps = client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id, order="asc")
    conforms(steps)
    assert [(s.type, s.status) for s in steps.data] == [
        ("tool_calls", "completed"),
        ("message_creation", "completed"),
    ]
    details = steps.data[0].step_details
    assert isinstance(details, ToolCallsStepDetails)
    tool_call = details.tool_calls[0]
    assert isinstance(tool_call, FunctionToolCall) and tool_call.function.output == '{"temp_c": 21}'
    assert steps.data[1].step_details.message_creation.message_id == reply.id  # type: ignore[union-attr]
    assert all(s.usage is not None for s in steps.data)
    step = client.beta.threads.runs.steps.retrieve(
        steps.data[0].id, thread_id=thread.id, run_id=run.id
    )
    conforms(step)


def test_parallel_calls_and_parallel_off(client: openai.OpenAI) -> None:
    """Two named tools give two calls in one step, or one when parallel_tool_calls is false."""
    assistant = client.beta.assistants.create(model="local", tools=[WEATHER, CLOCK])
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": 'get_time and get_weather {"city": "Oslo"}'}]
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
    )
    assert run.required_action is not None
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert [c.function.name for c in calls] == ["get_time", "get_weather"]
    assert len({c.id for c in calls}) == 2
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[
            {"tool_call_id": calls[1].id, "output": "sunny"},
            {"tool_call_id": calls[0].id, "output": "noon"},
        ],
        poll_interval_ms=POLL,
    )
    assert run.status == "completed"
    reply = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0]
    text = reply.content[0].text.value  # type: ignore[union-attr]
    assert "sunny" in text and "noon" in text

    client.beta.threads.messages.create(thread.id, role="user", content="get_time get_weather")
    single = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        parallel_tool_calls=False,
        poll_interval_ms=POLL,
    )
    assert single.required_action is not None
    assert len(single.required_action.submit_tool_outputs.tool_calls) == 1
    assert single.parallel_tool_calls is False


def test_tool_choice_is_honoured(client: openai.OpenAI) -> None:
    """tool_choice none answers in text, required and a named function force a call."""
    assistant = client.beta.assistants.create(model="local", tools=[WEATHER, CLOCK])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "get_weather"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, tool_choice="none", poll_interval_ms=POLL
    )
    assert run.status == "completed" and run.tool_choice == "none"

    client.beta.threads.messages.create(thread.id, role="user", content="nothing named")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        poll_interval_ms=POLL,
    )
    assert run.required_action is not None
    assert [c.function.name for c in run.required_action.submit_tool_outputs.tool_calls] == [
        "get_time"
    ]
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        tool_choice="required",
        poll_interval_ms=POLL,
    )
    assert run.status == "requires_action"


def test_every_crud_endpoint(client: openai.OpenAI) -> None:
    """Assistants, threads and messages: create, retrieve, modify, list, delete."""
    assistant = client.beta.assistants.create(
        model="gpt-4o", name="a", metadata={"team": "x"}, temperature=0.5
    )
    assert client.beta.assistants.retrieve(assistant.id) == assistant
    updated = client.beta.assistants.update(
        assistant.id, name="b", instructions="new", metadata={"v": "2"}
    )
    assert (updated.name, updated.instructions, updated.metadata) == ("b", "new", {"v": "2"})
    assert updated.temperature == 0.5 and updated.model == "gpt-4o"
    assert assistant.id in [a.id for a in client.beta.assistants.list()]

    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "one"}], metadata={"k": "v"}
    )
    assert client.beta.threads.retrieve(thread.id).metadata == {"k": "v"}
    thread2 = client.beta.threads.update(thread.id, metadata={"k": "w"})
    conforms(thread2)
    assert thread2.metadata == {"k": "w"}

    message = client.beta.threads.messages.create(
        thread.id,
        role="user",
        content=[
            {"type": "text", "text": "two"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        ],
    )
    conforms(message)
    assert message.status == "completed" and message.run_id is None
    got = client.beta.threads.messages.retrieve(message.id, thread_id=thread.id)
    assert got == message
    changed = client.beta.threads.messages.update(
        message.id, thread_id=thread.id, metadata={"a": "b"}
    )
    assert changed.metadata == {"a": "b"}
    listed = client.beta.threads.messages.list(thread.id, order="asc")
    assert [m.content[0].text.value for m in listed.data] == ["one", "two"]  # type: ignore[union-attr]

    deleted = client.beta.threads.messages.delete(message.id, thread_id=thread.id)
    conforms(deleted)
    assert deleted.deleted and deleted.object == "thread.message.deleted"
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.retrieve(message.id, thread_id=thread.id)

    gone = client.beta.threads.delete(thread.id)
    conforms(gone)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.retrieve(thread.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.list(thread.id)

    removed = client.beta.assistants.delete(assistant.id)
    conforms(removed)
    with pytest.raises(openai.NotFoundError):
        client.beta.assistants.retrieve(assistant.id)


def test_run_endpoints_and_overrides(client: openai.OpenAI) -> None:
    """Runs: create with overrides, list, retrieve, modify; the run snapshots its config."""
    assistant = client.beta.assistants.create(
        model="gpt-4o", instructions="Base.", tools=[WEATHER], temperature=0.3
    )
    thread = client.beta.threads.create()
    run = client.beta.threads.runs.create(
        thread_id=thread.id,
        assistant_id=assistant.id,
        model="other-model",
        additional_instructions="Extra.",
        additional_messages=[{"role": "user", "content": "added"}],
        metadata={"m": "1"},
        top_p=0.5,
        tools=[],
        truncation_strategy={"type": "last_messages", "last_messages": 3},
        response_format={"type": "json_object"},
    )
    conforms(run)
    assert run.status == "queued"
    assert (run.model, run.instructions, run.tools) == ("other-model", "Base.\n\nExtra.", [])
    assert (run.temperature, run.top_p) == (0.3, 0.5)
    assert run.truncation_strategy is not None and run.truncation_strategy.last_messages == 3
    client.beta.assistants.update(assistant.id, instructions="Changed.")
    run = client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=POLL)
    assert run.status == "completed" and run.instructions == "Base.\n\nExtra."
    reply = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0]
    assert json.loads(reply.content[0].text.value) == {"reply": "You said: added"}  # type: ignore[union-attr]

    modified = client.beta.threads.runs.update(run.id, thread_id=thread.id, metadata={"m": "2"})
    assert modified.metadata == {"m": "2"} and modified.status == "completed"
    runs = client.beta.threads.runs.list(thread.id)
    conforms(runs)
    assert [r.id for r in runs.data] == [run.id]
    assert client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).metadata == {"m": "2"}


def test_create_and_run_poll(client: openai.OpenAI) -> None:
    """create_and_run_poll creates the thread, runs it and polls it to completed."""
    assistant = client.beta.assistants.create(model="gpt-4o")
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "ping"}], "metadata": {"t": "1"}},
        poll_interval_ms=POLL,
    )
    assert run.status == "completed"
    assert client.beta.threads.retrieve(run.thread_id).metadata == {"t": "1"}
    texts = [m.content[0].text.value for m in client.beta.threads.messages.list(run.thread_id)]  # type: ignore[union-attr]
    assert texts == ["You said: ping", "ping"]


def test_auto_paging_and_cursors(client: openai.OpenAI) -> None:
    """The SDK's auto-paging walks every page; after/before cursors and has_more are exact."""
    created = [client.beta.assistants.create(model="m", name=str(i)).id for i in range(7)]
    newest_first = list(reversed(created))
    assert [a.id for a in client.beta.assistants.list(limit=2)] == newest_first
    assert [a.id for a in client.beta.assistants.list(limit=3, order="asc")] == created
    page = client.beta.assistants.list(limit=7, order="asc")
    assert page.has_more is False and len(page.data) == 7
    page = client.beta.assistants.list(limit=2, order="asc", after=created[2])
    assert [a.id for a in page.data] == created[3:5] and page.has_more is True
    page = client.beta.assistants.list(limit=2, order="asc", before=created[4])
    assert [a.id for a in page.data] == created[2:4] and page.has_more is True
    page = client.beta.assistants.list(limit=5, order="desc", before=created[4])
    assert [a.id for a in page.data] == newest_first[:2] and page.has_more is False

    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": f"m{i}"} for i in range(5)]
    )
    assistant = client.beta.assistants.create(model="m")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
    )
    texts = [m.content[0].text.value for m in client.beta.threads.messages.list(thread.id, limit=2)]  # type: ignore[union-attr]
    assert texts == ["You said: m4", "m4", "m3", "m2", "m1", "m0"]
    steps = list(client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id, limit=1))
    assert [s.type for s in steps] == ["message_creation"]


def test_steps_accept_include(client: openai.OpenAI) -> None:
    """steps.list and steps.retrieve accept the file_search include[] value."""
    assistant = client.beta.assistants.create(model="m", tools=[WEATHER])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "get_weather"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
    )
    include: list[RunStepInclude] = ["step_details.tool_calls[*].file_search.results[*].content"]
    steps = client.beta.threads.runs.steps.list(
        run_id=run.id,
        thread_id=thread.id,
        include=include,
    )
    [step] = steps.data
    assert step.status == "in_progress" and step.usage is None  # waiting for outputs
    again = client.beta.threads.runs.steps.retrieve(
        step.id,
        thread_id=thread.id,
        run_id=run.id,
        include=include,
    )
    assert again.id == step.id


@pytest.mark.settings(local_model_delay_ms=30)
def test_cancel_stops_a_running_run(client: openai.OpenAI) -> None:
    """Cancel on a run that is writing ends it cancelled, its message incomplete."""
    assistant = client.beta.assistants.create(model="m")
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": " ".join(["word"] * 100)}]
    )
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    eventually(
        lambda: client.beta.threads.messages.list(thread.id, run_id=run.id).data,
        timeout=5,
        interval=0.02,
        what="the run to start writing its message",
    )
    cancelled = client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert cancelled.status in ("cancelling", "cancelled")
    final = client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=POLL)
    assert final.status == "cancelled" and final.cancelled_at is not None
    [message] = client.beta.threads.messages.list(thread.id, run_id=run.id).data
    assert message.status == "incomplete"
    assert message.incomplete_details is not None
    assert message.incomplete_details.reason == "run_cancelled"
    [step] = client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id).data
    assert step.status == "cancelled" and step.cancelled_at is not None
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    # The thread is free again.
    client.beta.threads.messages.create(thread.id, role="user", content="next")


def test_cancel_in_requires_action(client: openai.OpenAI) -> None:
    """Cancelling a run waiting for tool outputs cancels it and its tool_calls step."""
    assistant = client.beta.assistants.create(model="m", tools=[WEATHER])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "get_weather"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
    )
    assert run.status == "requires_action"
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    final = client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=POLL)
    assert final.status == "cancelled" and final.required_action is None
    [step] = client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id).data
    assert step.status == "cancelled"


@pytest.mark.settings(run_expiry_seconds=2, expiry_check_seconds=0.05)
def test_requires_action_expires(client: openai.OpenAI) -> None:
    """With a two-second expiry, a run left in requires_action becomes expired.

    (expires_at counts from created_at, a whole second, so one second could pass at once.)"""
    assistant = client.beta.assistants.create(model="m", tools=[WEATHER])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "get_weather"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
    )
    assert run.status == "requires_action" and run.expires_at == run.created_at + 2

    def settled() -> Run | None:
        found = client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
        return None if found.status == "requires_action" else found

    run = eventually(settled, timeout=5, interval=0.05, what="the run to expire")
    assert run.status == "expired"
    [step] = client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id).data
    assert step.status == "expired" and step.expired_at is not None
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_x", "output": "1"}]
        )


def test_token_limit_and_truncation(client: openai.OpenAI) -> None:
    """max_completion_tokens ends the run incomplete; last_messages limits the prompt."""
    assistant = client.beta.assistants.create(model="m")
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": " ".join(["w"] * 300)}]
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        max_completion_tokens=256,
        poll_interval_ms=POLL,
    )
    assert run.status == "incomplete"
    assert run.incomplete_details is not None
    assert run.incomplete_details.reason == "max_completion_tokens"
    assert run.usage is not None and run.usage.completion_tokens == 256

    client.beta.threads.messages.create(thread.id, role="user", content="just four words here")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        truncation_strategy={"type": "last_messages", "last_messages": 1},
        poll_interval_ms=POLL,
    )
    assert run.status == "completed" and run.usage is not None
    assert run.usage.prompt_tokens == 4


def test_root_paths_without_v1(server: LiveServer) -> None:
    """A client configured without /v1 reaches the same API at the root."""
    with openai.OpenAI(base_url=server.root_url, api_key="x", max_retries=0) as client:
        assistant = client.beta.assistants.create(model="m")
        run = client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id,
            thread={"messages": [{"role": "user", "content": "root"}]},
            poll_interval_ms=POLL,
        )
        assert run.status == "completed"


def test_restart_keeps_all_data(server: LiveServer, client: openai.OpenAI) -> None:
    """Everything created survives a restart of the server on the same database file."""
    assistant = client.beta.assistants.create(model="m", tools=[WEATHER])
    done = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "remember me"}]},
        poll_interval_ms=POLL,
    )
    waiting = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "get_weather"}]},
        poll_interval_ms=POLL,
    )
    assert waiting.status == "requires_action" and waiting.required_action is not None
    before = (
        client.beta.assistants.retrieve(assistant.id),
        client.beta.threads.runs.retrieve(done.id, thread_id=done.thread_id),
        client.beta.threads.messages.list(done.thread_id).data,
        client.beta.threads.runs.steps.list(run_id=done.id, thread_id=done.thread_id).data,
    )
    server.restart()
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as again:
        after = (
            again.beta.assistants.retrieve(assistant.id),
            again.beta.threads.runs.retrieve(done.id, thread_id=done.thread_id),
            again.beta.threads.messages.list(done.thread_id).data,
            again.beta.threads.runs.steps.list(run_id=done.id, thread_id=done.thread_id).data,
        )
        assert after == before
        call = waiting.required_action.submit_tool_outputs.tool_calls[0]
        resumed = again.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=waiting.id,
            thread_id=waiting.thread_id,
            tool_outputs=[{"tool_call_id": call.id, "output": "after restart"}],
            poll_interval_ms=POLL,
        )
        assert resumed.status == "completed"


def test_wire_check_catches_a_broken_object(client: openai.OpenAI) -> None:
    """The check used above fails on a run with a missing field, a wrong type, an unknown
    status, a field no type declares (at any depth), and a list whose ids disagree."""
    assistant = client.beta.assistants.create(model="m")
    thread = client.beta.threads.create()
    run = wire(client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id))
    assert wire_errors(run) == []
    broken = {key: value for key, value in run.items() if key != "completed_at"}
    assert wire_errors(broken) == ["completed_at: missing"]
    assert any(e.startswith("created_at:") for e in wire_errors(run | {"created_at": "now"}))
    assert any(e.startswith("status:") for e in wire_errors(run | {"status": "paused"}))
    nested = run | {
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2, "x": 1}
    }
    assert wire_errors(nested) == ["Run.usage.x: not a field of the type"]
    page = {"object": "list", "data": [run], "first_id": "run_other", "last_id": run["id"]}
    assert wire_errors(page | {"has_more": False}) == [
        "first_id/last_id: do not name the first and last items"
    ]


def test_hosted_tool_declarations_are_echoed_as_openai_does(client: openai.OpenAI) -> None:
    """The official examples' assistants: code_interpreter and file_search are accepted, with
    file_search's ranking options and each tool's empty resources filled in; a run takes them
    from the assistant or its own tools, a thread keeps its resources."""
    assistant = client.beta.assistants.create(
        model="gpt-4o",
        name="Math Tutor",
        tools=[{"type": "code_interpreter"}, {"type": "file_search"}],
    )
    conforms(assistant)
    sent = wire(assistant)
    assert sent["tools"] == [
        {"type": "code_interpreter"},
        {
            "type": "file_search",
            "file_search": {
                "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.0}
            },
        },
    ]
    assert sent["tool_resources"] == {
        "code_interpreter": {"file_ids": []},
        "file_search": {"vector_store_ids": []},
    }
    changed = client.beta.assistants.update(
        assistant.id,
        tools=[
            {
                "type": "file_search",
                "file_search": {
                    "max_num_results": 7,
                    "ranking_options": {"ranker": "auto", "score_threshold": 0.5},
                },
            }
        ],
    )
    assert wire(changed)["tools"] == [
        {
            "type": "file_search",
            "file_search": {
                "max_num_results": 7,
                "ranking_options": {"ranker": "auto", "score_threshold": 0.5},
            },
        }
    ]
    # Resources stay when the tool that uses them goes: they are the user's to change.
    assert wire(changed)["tool_resources"] == sent["tool_resources"]

    thread = client.beta.threads.create(tool_resources={"code_interpreter": {}})
    conforms(thread)
    assert wire(thread)["tool_resources"] == {"code_interpreter": {"file_ids": []}}
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        tools=[{"type": "code_interpreter"}],
        poll_interval_ms=POLL,
    )
    conforms(run)
    assert run.status == "completed"
    assert wire(run)["tools"] == [{"type": "code_interpreter"}]
