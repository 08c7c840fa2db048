"""Idempotency-Key on the creating POSTs, through a live gateway: a retry returns the first
answer and creates nothing; another request under the same key is a 400."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from typing import Any

import openai
import pytest
from openai.types.beta import FunctionToolParam
from openai.types.beta.thread_create_and_run_params import Thread as NewThread
from openai.types.beta.threads.run_submit_tool_outputs_params import ToolOutput

from gateway.engine import idempotency
from tests.http import Answer, call
from tests.server import LiveServer
from tests.sse_client import is_event, parse

WEATHER: FunctionToolParam = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}


def post(server: LiveServer, path: str, body: dict[str, Any], key: str | None) -> Answer:
    """POST `body` as JSON, under Idempotency-Key `key` unless it is None."""
    return call(server, "POST", path, body, headers=None if key is None else key_header(key))


def key_header(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def test_a_retried_create_run_yields_one_run(server: LiveServer, client: openai.OpenAI) -> None:
    """The same key and body twice: the second answer is the first, marked replayed, and the
    thread has one run."""
    assistant = client.beta.assistants.create(model="local")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    body = {"assistant_id": assistant.id}
    path = f"/v1/threads/{thread.id}/runs"
    first = post(server, path, body, "retry-1")
    again = post(server, path, body, "retry-1")
    assert first.status == again.status == 200
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    runs = client.beta.threads.runs.list(thread_id=thread.id).data
    assert [r.id for r in runs] == [first.json()["id"]]


def test_every_create_honours_the_key(server: LiveServer, client: openai.OpenAI) -> None:
    """Assistant, thread, message, thread-and-run and tool outputs: each retried through the SDK
    with its key gives the same object, and one of it."""
    a1 = client.beta.assistants.create(
        model="local", tools=[WEATHER], extra_headers=key_header("a")
    )
    a2 = client.beta.assistants.create(
        model="local", tools=[WEATHER], extra_headers=key_header("a")
    )
    assert a1.id == a2.id and len(client.beta.assistants.list().data) == 1
    t1 = client.beta.threads.create(extra_headers=key_header("t"))
    t2 = client.beta.threads.create(extra_headers=key_header("t"))
    assert t1.id == t2.id
    m1 = client.beta.threads.messages.create(
        t1.id, role="user", content="x", extra_headers=key_header("m")
    )
    m2 = client.beta.threads.messages.create(
        t1.id, role="user", content="x", extra_headers=key_header("m")
    )
    assert m1.id == m2.id and len(client.beta.threads.messages.list(t1.id).data) == 1
    thread: NewThread = {"messages": [{"role": "user", "content": "Weather in Paris?"}]}
    r1 = client.beta.threads.create_and_run(
        assistant_id=a1.id, thread=thread, extra_headers=key_header("tr")
    )
    r2 = client.beta.threads.create_and_run(
        assistant_id=a1.id, thread=thread, extra_headers=key_header("tr")
    )
    assert (r1.id, r1.thread_id) == (r2.id, r2.thread_id)
    waiting = client.beta.threads.runs.poll(r1.id, thread_id=r1.thread_id, poll_interval_ms=20)
    assert waiting.status == "requires_action" and waiting.required_action is not None
    call = waiting.required_action.submit_tool_outputs.tool_calls[0]
    outputs: list[ToolOutput] = [{"tool_call_id": call.id, "output": "sunny"}]
    s1 = client.beta.threads.runs.submit_tool_outputs(
        r1.id,
        thread_id=r1.thread_id,
        tool_outputs=outputs,
        extra_headers=key_header("s"),
    )
    s2 = client.beta.threads.runs.submit_tool_outputs(
        r1.id,
        thread_id=r1.thread_id,
        tool_outputs=outputs,
        extra_headers=key_header("s"),
    )
    assert s1.id == s2.id == r1.id  # the second is the first answer, not a state error
    done = client.beta.threads.runs.poll(r1.id, thread_id=r1.thread_id, poll_interval_ms=20)
    assert done.status == "completed"


def test_the_same_key_for_another_request_is_refused(
    server: LiveServer, client: openai.OpenAI
) -> None:
    """Another body, or another path, under a used key: a 400 naming the header; nothing made."""
    post(server, "/v1/assistants", {"model": "local"}, "k")
    for path, body in (("/v1/assistants", {"model": "other"}), ("/v1/threads", {})):
        answer = post(server, path, body, "k")
        assert answer.status == 400
        error = answer.json()["error"]
        assert (error["code"], error["param"]) == ("idempotency_key_reused", "Idempotency-Key")
    assert len(client.beta.assistants.list().data) == 1


def test_errors_are_answered_again_but_server_errors_are_not_kept(server: LiveServer) -> None:
    """A 4xx is the request's answer, given again to a retry; a bad key header is a 400."""
    path = "/v1/threads/thread_missing/messages"
    first = post(server, path, {"role": "user", "content": "x"}, "e")
    again = post(server, path, {"role": "user", "content": "x"}, "e")
    assert first.status == again.status == 404
    assert again.raw == first.raw and again.headers.get("idempotent-replayed") == "true"
    answer = post(server, "/v1/threads", {}, "x" * 256)
    assert answer.status == 400 and answer.json()["error"]["code"] == "invalid_idempotency_key"


def test_a_retried_streamed_create_replays_the_same_run(
    server: LiveServer, client: openai.OpenAI
) -> None:
    """A streamed create retried with its key streams the same run again, from its log."""
    assistant = client.beta.assistants.create(model="local")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "stream me"}])
    path = f"/v1/threads/{thread.id}/runs"
    body = {"assistant_id": assistant.id, "stream": True}
    first = post(server, path, body, "s1")
    again = post(server, path, body, "s1")
    assert first.status == again.status == 200

    def run_ids(raw: bytes) -> set[str]:
        created = [f for f in parse(raw) if is_event(f) and f.event == "thread.run.created"]
        return {f.data["id"] for f in created}

    assert run_ids(first.raw) == run_ids(again.raw) and len(run_ids(first.raw)) == 1
    assert again.raw.endswith(b"event: done\ndata: [DONE]\n\n")
    assert again.headers.get("idempotent-replayed") == "true"
    assert len(client.beta.threads.runs.list(thread_id=thread.id).data) == 1
    # The replay's header belongs to its own response: later streams do not carry it.
    other = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    later = post(server, f"/v1/threads/{other.id}/runs", body, None)
    assert later.status == 200 and "idempotent-replayed" not in later.headers, later.headers


def test_concurrent_duplicates_make_one_run(server: LiveServer, client: openai.OpenAI) -> None:
    """Eight identical requests at once under one key: one run, eight identical answers."""
    assistant = client.beta.assistants.create(model="local")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    path = f"/v1/threads/{thread.id}/runs"
    answers: list[Answer] = []
    lock = threading.Lock()

    def one() -> None:
        answer = post(server, path, {"assistant_id": assistant.id}, "together")
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(answers) == 8 and {a.status for a in answers} == {200}
    assert len({a.json()["id"] for a in answers}) == 1
    assert len(client.beta.threads.runs.list(thread_id=thread.id).data) == 1


def test_an_expired_key_starts_afresh(
    server: LiveServer, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key older than its time to live is forgotten: the same request creates again."""
    first = client.beta.assistants.create(model="local", extra_headers=key_header("old"))
    monkeypatch.setattr(idempotency, "TTL_SECONDS", -10)  # every stored key is now expired
    second = client.beta.assistants.create(model="local", extra_headers=key_header("old"))
    assert first.id != second.id


@pytest.mark.sqlite_only
def test_a_claim_its_process_never_answered_is_taken_over(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key claimed by a request whose process died (a pending claim no process will answer)
    is waited for up to WAIT_SECONDS from its claim, then taken over: the retry is served as
    a first request, not refused as in use for the key's whole life."""
    monkeypatch.setattr(idempotency, "WAIT_SECONDS", 2)
    body = json.dumps({"model": "local", "name": "orphaned"}).encode()
    fingerprint = hashlib.sha256(b"POST /assistants\n" + body).digest()
    with sqlite3.connect(server.settings.database) as db:
        db.execute(
            "INSERT INTO idempotency_keys (project, key, fingerprint, created_at)"
            " VALUES ('', 'orphan', ?, ?)",
            (fingerprint, int(time.time())),
        )
    started = time.monotonic()
    answer = post(server, "/v1/assistants", json.loads(body), "orphan")
    waited = time.monotonic() - started
    assert answer.status == 200 and "idempotent-replayed" not in answer.headers
    assert answer.json()["name"] == "orphaned"
    assert 2 <= waited < 5, waited
