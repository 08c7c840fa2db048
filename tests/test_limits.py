"""The configured limits, through a live gateway: each refused with its status, envelope and,
where waiting helps, Retry-After."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.beta.thread_create_and_run_params import Thread as NewThread

from tests.http import call
from tests.keys import make_key
from tests.server import LiveServer


@pytest.mark.settings(max_body_bytes=1000)
def test_a_body_over_the_limit_is_413(server: LiveServer, client: openai.OpenAI) -> None:
    """Too large by its Content-Length, or by its chunks without one: 413 either way, nothing
    stored, and the server answers on."""
    answer = call(server, "POST", "/v1/assistants", {"model": "local", "name": "x" * 2000})
    assert answer.status == 413 and answer.error()["code"] == "request_too_large"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        chunk = json.dumps({"model": "local", "description": "y" * 1500}).encode()
        sock.sendall(
            b"POST /v1/assistants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk)
        )
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413") and b'"request_too_large"' in reply
    assert client.beta.assistants.list().data == []
    assert call(server, "POST", "/v1/assistants", {"model": "local"}).status == 200


@pytest.mark.settings(
    max_message_chars=10, max_instructions_chars=20, max_tools=1, max_tool_outputs=1
)
def test_text_and_list_limits_are_400s_naming_the_field(
    server: LiveServer, client: openai.OpenAI
) -> None:
    assistant = client.beta.assistants.create(model="local")
    thread = client.beta.threads.create()
    tool = {"type": "function", "function": {"name": "f"}}
    cases = [
        (
            "/v1/threads",
            {"messages": [{"role": "user", "content": "x" * 11}]},
            "messages[0].content",
        ),
        (f"/v1/threads/{thread.id}/messages", {"role": "user", "content": "x" * 11}, "content"),
        (
            f"/v1/threads/{thread.id}/messages",
            {"role": "user", "content": [{"type": "text", "text": "x" * 11}]},
            "content",
        ),
        ("/v1/assistants", {"model": "local", "instructions": "x" * 21}, "instructions"),
        ("/v1/assistants", {"model": "local", "tools": [tool, tool]}, "tools"),
        (
            f"/v1/threads/{thread.id}/runs",
            {"assistant_id": assistant.id, "additional_instructions": "x" * 21},
            "additional_instructions",
        ),
        (
            "/v1/threads/runs",
            {
                "assistant_id": assistant.id,
                "thread": {"messages": [{"role": "user", "content": "x" * 11}]},
            },
            "thread.messages[0].content",
        ),
        (
            f"/v1/threads/{thread.id}/runs/run_x/submit_tool_outputs",
            {
                "tool_outputs": [
                    {"tool_call_id": "a", "output": "1"},
                    {"tool_call_id": "b", "output": "2"},
                ]
            },
            "tool_outputs",
        ),
    ]
    for path, body, param in cases:
        answer = call(server, "POST", path, body)
        assert answer.status == 400, (path, answer)
        error = answer.error()
        assert (error["code"], error["param"]) == ("limit_exceeded", param), path
    assert client.beta.threads.messages.list(thread.id).data == []
    assert len(client.beta.assistants.list().data) == 1


@pytest.fixture
def keyed(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[LiveServer, str, str]]:
    marker = request.node.get_closest_marker("settings")
    database = tmp_path / "limits.db"
    one, two = make_key(database, "one"), make_key(database, "two")
    live = LiveServer(database, **(dict(marker.kwargs) if marker else {})).start()
    try:
        yield live, one, two
    finally:
        live.stop()


@pytest.mark.settings(rate_limit_per_second=2, rate_limit_burst=5)
def test_a_key_over_its_rate_gets_429_with_retry_after(
    keyed: tuple[LiveServer, str, str],
) -> None:
    """A burst of 5, then 429 with Retry-After; another key is not affected; after waiting,
    the key works again."""
    server, one, two = keyed
    statuses = [call(server, "GET", "/v1/assistants", key=one).status for _ in range(5)]
    assert statuses == [200] * 5
    refused = call(server, "GET", "/v1/assistants", key=one)
    assert refused.status == 429
    error = refused.error()
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert int(refused.headers["retry-after"]) >= 1
    assert call(server, "GET", "/v1/assistants", key=two).status == 200
    # Time passing is what is tested: at 2 a second the bucket holds a token again after 0.5 s,
    # so the key works after a fixed wait (no condition to await but the clock).
    time.sleep(0.6)
    assert call(server, "GET", "/v1/assistants", key=one).status == 200


@pytest.mark.settings(max_active_runs_per_project=2, local_model_delay_ms=5000)
def test_a_project_at_its_active_run_limit_gets_429(keyed: tuple[LiveServer, str, str]) -> None:
    """Two runs in progress fill project one: its third is a 429 with Retry-After, project two
    still runs, and once one run ends project one may start another."""
    server, one, two = keyed
    sdk = {k: openai.OpenAI(base_url=server.base_url, api_key=k, max_retries=0) for k in (one, two)}

    def start(key: str) -> Any:
        client = sdk[key]
        assistant = client.beta.assistants.create(model="local")
        return client.beta.threads.create_and_run(
            assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "a b"}]}
        )

    first, _ = start(one), start(one)
    with pytest.raises(openai.RateLimitError) as refused:
        start(one)
    assert refused.value.code == "too_many_active_runs"
    assert int(refused.value.response.headers["retry-after"]) >= 1
    start(two)
    sdk[one].beta.threads.runs.cancel(first.id, thread_id=first.thread_id)
    sdk[one].beta.threads.runs.poll(first.id, thread_id=first.thread_id, poll_interval_ms=20)
    start(one)


def test_a_key_at_its_active_run_limit_gets_429_while_its_projects_other_key_runs(
    tmp_path: Path,
) -> None:
    """Two keys of one project, one active run each at most: the first key's second run is a
    429, the other key still starts one, and the first key may start again once its run ends."""
    database = tmp_path / "keys.db"
    first_key, second_key = make_key(database, "team"), make_key(database, "team")
    server = LiveServer(database, max_active_runs_per_key=1, local_model_delay_ms=5000).start()
    try:
        sdk = {
            k: openai.OpenAI(base_url=server.base_url, api_key=k, max_retries=0)
            for k in (first_key, second_key)
        }
        assistant = sdk[first_key].beta.assistants.create(model="local")
        thread: NewThread = {"messages": [{"role": "user", "content": "a b"}]}

        def start(key: str) -> Any:
            return sdk[key].beta.threads.create_and_run(
                assistant_id=assistant.id,
                thread=thread,
            )

        first = start(first_key)
        with pytest.raises(openai.RateLimitError) as refused:
            start(first_key)
        assert refused.value.code == "too_many_active_runs"
        assert "API key" in refused.value.message
        start(second_key)
        sdk[first_key].beta.threads.runs.cancel(first.id, thread_id=first.thread_id)
        sdk[first_key].beta.threads.runs.poll(
            first.id, thread_id=first.thread_id, poll_interval_ms=20
        )
        start(first_key)
    finally:
        server.stop()


@pytest.mark.settings(max_active_runs=1, local_model_delay_ms=5000)
def test_a_full_gateway_answers_503_with_retry_after(
    server: LiveServer, client: openai.OpenAI
) -> None:
    assistant = client.beta.assistants.create(model="local")
    thread: NewThread = {"messages": [{"role": "user", "content": "a b"}]}
    client.beta.threads.create_and_run(assistant_id=assistant.id, thread=thread)
    answer = call(
        server, "POST", "/v1/threads/runs", {"assistant_id": assistant.id, "thread": thread}
    )
    assert answer.status == 503
    assert answer.error()["code"] == "overloaded"
    assert int(answer.headers["retry-after"]) >= 1


@pytest.mark.sqlite_only
@pytest.mark.settings(database_busy_ms=200)
def test_a_locked_database_is_a_503_and_service_comes_back(
    server: LiveServer, client: openai.OpenAI
) -> None:
    """Another process holds the database's write lock: writes answer 503 store_unavailable with
    Retry-After (not a hang, not a 500), reads still work, nothing is half-written, and once the
    lock goes writes succeed again."""
    import sqlite3

    kept = client.beta.assistants.create(model="local")
    holder = sqlite3.connect(server.settings.database, isolation_level=None, timeout=1)
    try:
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        answer = call(server, "POST", "/v1/assistants", {"model": "local", "name": "refused"})
        assert answer.status == 503, answer
        assert answer.error()["code"] == "store_unavailable"
        assert int(answer.headers["retry-after"]) >= 1
        assert time.monotonic() - started < 5
        assert [a.id for a in client.beta.assistants.list().data] == [kept.id]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    made = client.beta.assistants.create(model="local", name="after")
    assert {a.id for a in client.beta.assistants.list().data} == {kept.id, made.id}
    with sqlite3.connect(server.settings.database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
