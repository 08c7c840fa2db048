"""file_search in runs, through a live gateway and the openai SDK: the built-in model searches
the thread's and the assistant's vector stores and answers with a cited quote; an upstream
model's file_search calls run on the gateway and its citations become file_citation
annotations; steps show the results (their text only when include[] asks), streamed as OpenAI
does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import AssistantEventHandler
from openai.types.beta.threads import FileCitationAnnotation, Message, TextDelta
from openai.types.beta.threads.runs import (
    FileSearchToolCall,
    RunStepInclude,
    ToolCall,
    ToolCallsStepDetails,
)

from gateway.config import GatewayConfig, UpstreamConfig
from tests.fake_upstream import FakeUpstream, Finish, Script, Text, Usage
from tests.fake_upstream import ToolCall as Call
from tests.server import LiveServer
from tests.waiting import eventually
from tests.wire import assert_conforms

CATS = b"# Cats\n\nCats sleep for sixteen hours a day. They purr when they are content.\n"
ROCKETS = b"Rockets burn kerosene with liquid oxygen to climb into orbit.\n"
CONTENT: RunStepInclude = "step_details.tool_calls[*].file_search.results[*].content"
POLL = 20


def _wire(obj: object) -> dict[str, Any]:
    dumped: dict[str, Any] = obj.model_dump(mode="json", exclude_unset=True)  # type: ignore[attr-defined]
    return dumped


def _store(client: openai.OpenAI, *files: tuple[str, bytes]) -> tuple[str, list[str]]:
    ids = [client.files.create(file=f, purpose="assistants").id for f in files]
    store_id = client.vector_stores.create(file_ids=ids).id
    eventually(
        lambda: client.vector_stores.retrieve(store_id).status == "completed",
        timeout=30,
        what="the files to be ingested",
    )
    return store_id, ids


def _search_call(details: object) -> FileSearchToolCall:
    assert isinstance(details, ToolCallsStepDetails)
    (call,) = details.tool_calls
    assert isinstance(call, FileSearchToolCall)
    return call


def _citations(message: Message) -> list[FileCitationAnnotation]:
    part = message.content[0]
    assert part.type == "text"
    return [a for a in part.text.annotations if isinstance(a, FileCitationAnnotation)]


def test_the_built_in_model_searches_and_cites(client: openai.OpenAI) -> None:
    """An assistant with file_search and a store: the run's first step is the search (results
    without their text unless include[] asks), the answer quotes the best result and cites it
    with a file_citation whose span is the marker."""
    store_id, (cats_id, _) = _store(client, ("cats.md", CATS), ("rockets.txt", ROCKETS))
    assistant = client.beta.assistants.create(
        model="gpt-4o",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store_id]}},
    )
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "How long do cats sleep?"}]
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
    )
    assert run.status == "completed", run.last_error
    search, answer = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc")
    for step in (search, answer):
        assert_conforms(_wire(step))
    call = _search_call(search.step_details)
    assert call.file_search.results is not None
    best = call.file_search.results[0]
    assert best.file_id == cats_id and best.file_name == "cats.md" and 0 <= best.score <= 1
    assert best.content is None
    with_text = client.beta.threads.runs.steps.retrieve(
        search.id, thread_id=thread.id, run_id=run.id, include=[CONTENT]
    )
    results = _search_call(with_text.step_details).file_search.results
    assert results is not None and results[0].content is not None
    assert "sixteen hours" in (results[0].content[0].text or "")

    message = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0]
    assert_conforms(_wire(message))
    part = message.content[0]
    assert part.type == "text"
    assert part.text.value.startswith('According to cats.md: "# Cats Cats sleep for sixteen')
    (citation,) = _citations(message)
    assert citation.file_citation.file_id == cats_id
    assert part.text.value[citation.start_index : citation.end_index] == citation.text
    assert citation.text == "【0†cats.md】"


def test_a_streamed_run_brings_the_call_the_text_and_the_citations(
    client: openai.OpenAI,
) -> None:
    """client.beta.threads.runs.stream with an AssistantEventHandler: the file_search call,
    the text, and a citation delta the handler accumulates onto the final message."""
    store_id, (cats_id,) = _store(client, ("cats.md", CATS))
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}])
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "Do cats purr?"}],
        tool_resources={"file_search": {"vector_store_ids": [store_id]}},
    )
    seen: dict[str, list[Any]] = {"calls": [], "annotations": [], "events": []}

    class Handler(AssistantEventHandler):
        def on_tool_call_created(self, tool_call: ToolCall) -> None:
            seen["calls"].append(tool_call.type)

        def on_text_delta(self, delta: TextDelta, snapshot: Any) -> None:
            seen["annotations"] += delta.annotations or []

        def on_event(self, event: Any) -> None:
            seen["events"].append(event.event)

    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=Handler()
    ) as stream:
        stream.until_done()
        (final,) = stream.get_final_messages()
    assert seen["calls"] == ["file_search"]
    assert [a.file_citation.file_id for a in seen["annotations"]] == [cats_id]
    assert [c.file_citation.file_id for c in _citations(final)] == [cats_id]
    events = seen["events"]
    first_step = events.index("thread.run.step.created")
    assert events[first_step : first_step + 3] == [
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.run.step.delta",
    ]
    assert events.count("thread.run.step.completed") == 2
    assert events[-1] == "thread.run.completed"


def test_with_no_store_the_answer_says_nothing_was_found(client: openai.OpenAI) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}])
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "What is in my files?"}]},
        poll_interval_ms=POLL,
    )
    assert run.status == "completed"
    (message,) = client.beta.threads.messages.list(run.thread_id, run_id=run.id).data
    part = message.content[0]
    assert part.type == "text" and part.text.value == "I found nothing about that in the files."


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def live(tmp_path: Path, upstream: FakeUpstream) -> Iterator[LiveServer]:
    config = GatewayConfig(
        upstreams=(UpstreamConfig(name="fake", base_url=upstream.base_url, models=("fake-*",)),),
        embeddings="none",
    )
    server = LiveServer(tmp_path / "fs.db", config=config).start()
    yield server
    server.stop()


def test_an_upstream_models_search_runs_on_the_gateway(
    live: LiveServer, upstream: FakeUpstream
) -> None:
    """The upstream is offered file_search, calls it with its own query, gets the results as
    the tool's output (with their markers), and its cited answer is annotated; functions in
    the same turn still wait for their outputs."""
    upstream.enqueue(
        Script(
            [
                Call(0, "call_fs", "file_search", '{"query": "kerosene orbit"}'),
                Call(1, "call_fn", "get_time", "{}"),
                Finish("tool_calls"),
                Usage(10, 5),
            ]
        ),
        Script([Text("Kerosene and oxygen 【0†rockets.txt】."), Finish("stop"), Usage(20, 8)]),
    )
    with openai.OpenAI(base_url=live.base_url, api_key="x", max_retries=0) as client:
        store_id, (_, rockets_id) = _store(client, ("cats.md", CATS), ("rockets.txt", ROCKETS))
        assistant = client.beta.assistants.create(
            model="fake-large",
            tools=[
                {"type": "file_search"},
                {"type": "function", "function": {"name": "get_time"}},
            ],
            tool_resources={"file_search": {"vector_store_ids": [store_id]}},
        )
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "fuel?"}])
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
        )
        assert run.status == "requires_action" and run.required_action is not None
        waiting = run.required_action.submit_tool_outputs.tool_calls
        assert [c.id for c in waiting] == ["call_fn"]
        run = client.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run.id,
            thread_id=thread.id,
            tool_outputs=[{"tool_call_id": "call_fn", "output": "noon"}],
            poll_interval_ms=POLL,
        )
        assert run.status == "completed", run.last_error
        message = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0]
        assert [c.file_citation.file_id for c in _citations(message)] == [rockets_id]

    chats = [r.body for r in upstream.requests if r.path.endswith("/chat/completions")]
    assert [t["function"]["name"] for t in chats[0]["tools"]] == ["get_time", "file_search"]
    tool_messages = {
        m["tool_call_id"]: m["content"] for m in chats[1]["messages"] if m["role"] == "tool"
    }
    assert tool_messages["call_fn"] == "noon"
    assert "【0†rockets.txt】" in tool_messages["call_fs"]
    assert "liquid oxygen" in tool_messages["call_fs"]
    assert json.loads(chats[1]["messages"][-3]["tool_calls"][0]["function"]["arguments"]) == {}


def test_an_attachment_is_searched_in_the_threads_own_store(client: openai.OpenAI) -> None:
    """A message attaching a file for file_search: the thread gets a store of its own (made on
    the fly, expiring 7 days after last use), the run waits for the file to be indexed, and
    the answer cites it."""
    cats = client.files.create(file=("cats.md", CATS), purpose="assistants")
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}])
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": "How long do cats sleep?",
                "attachments": [{"file_id": cats.id, "tools": [{"type": "file_search"}]}],
            }
        ]
    )
    assert thread.tool_resources is not None and thread.tool_resources.file_search is not None
    (store_id,) = thread.tool_resources.file_search.vector_store_ids or []
    store = client.vector_stores.retrieve(store_id)
    assert store.expires_after is not None and store.expires_after.days == 7
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL
    )
    assert run.status == "completed"
    message = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0]
    assert [c.file_citation.file_id for c in _citations(message)] == [cats.id]
    # A later message's attachment goes into the same store.
    rockets = client.files.create(file=("rockets.txt", ROCKETS), purpose="assistants")
    client.beta.threads.messages.create(
        thread.id,
        role="user",
        content="And rockets?",
        attachments=[{"file_id": rockets.id, "tools": [{"type": "file_search"}]}],
    )
    files = client.vector_stores.files.list(store_id)
    assert sorted(f.id for f in files.data) == sorted([cats.id, rockets.id])


def test_the_vector_stores_helper_and_unknown_ids(client: openai.OpenAI) -> None:
    """tool_resources.file_search.vector_stores makes a store of its files and is echoed as
    its id; an unknown store or attached file is a 400 naming the field."""
    cats = client.files.create(file=("cats.md", CATS), purpose="assistants")
    assistant = client.beta.assistants.create(
        model="gpt-4o",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_stores": [{"file_ids": [cats.id]}]}},
    )
    resources = _wire(assistant)["tool_resources"]
    (store_id,) = resources["file_search"]["vector_store_ids"]
    assert set(resources["file_search"]) == {"vector_store_ids"}
    assert [f.id for f in client.vector_stores.files.list(store_id).data] == [cats.id]
    with pytest.raises(openai.BadRequestError) as unknown:
        client.beta.threads.create(
            tool_resources={"file_search": {"vector_store_ids": ["vs_missing"]}}
        )
    assert unknown.value.param == "tool_resources.file_search.vector_store_ids[0]"
    with pytest.raises(openai.BadRequestError) as attached:
        client.beta.threads.create(
            messages=[
                {
                    "role": "user",
                    "content": "x",
                    "attachments": [{"file_id": "file-gone", "tools": [{"type": "file_search"}]}],
                }
            ]
        )
    assert attached.value.param == "messages[0].attachments[0].file_id"
