"""API keys and projects, through a live gateway and the openai SDK: every call needs a key once
one exists, and a project never reaches another project's objects (404, as for an id that does
not exist), lists never show them, and stream tokens are bound to their run."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from gateway.__main__ import main
from tests.http import call, ok
from tests.keys import make_key
from tests.server import LiveServer
from tests.waiting import eventually

WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}


def key_id(database: Path, project: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["keys", "--database", str(database), "list"]) == 0
    rows = [line.split() for line in out.getvalue().splitlines()[1:]]
    return next(row[0] for row in rows if row[1] == project)


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[LiveServer, str, str, Path]]:
    database = tmp_path / "tenants.db"
    alpha, beta = make_key(database, "alpha"), make_key(database, "beta")
    live = LiveServer(database).start()
    try:
        yield live, alpha, beta, database
    finally:
        live.stop()


def sdk(server: LiveServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def test_every_cross_project_call_is_refused(
    keyed: tuple[LiveServer, str, str, Path],
) -> None:
    """Project beta cannot read, change, list, run or stream anything of project alpha's; alpha's
    objects are untouched afterwards."""
    server, alpha_key, beta_key, _ = keyed
    alpha, beta = sdk(server, alpha_key), sdk(server, beta_key)
    a_asst = alpha.beta.assistants.create(model="local", tools=[WEATHER])  # type: ignore[list-item]
    a_thread = alpha.beta.threads.create(messages=[{"role": "user", "content": "hi there"}])
    a_run = alpha.beta.threads.runs.create_and_poll(
        thread_id=a_thread.id, assistant_id=a_asst.id, poll_interval_ms=20
    )
    assert a_run.status == "completed"
    a_message = alpha.beta.threads.messages.list(a_thread.id).data[0]
    a_step = alpha.beta.threads.runs.steps.list(a_run.id, thread_id=a_thread.id).data[0]
    b_asst = beta.beta.assistants.create(model="local")
    b_thread = beta.beta.threads.create()

    runs = beta.beta.threads.runs
    attempts: list[tuple[str, Callable[[], object]]] = [
        ("retrieve assistant", lambda: beta.beta.assistants.retrieve(a_asst.id)),
        ("modify assistant", lambda: beta.beta.assistants.update(a_asst.id, name="x")),
        ("delete assistant", lambda: beta.beta.assistants.delete(a_asst.id)),
        ("retrieve thread", lambda: beta.beta.threads.retrieve(a_thread.id)),
        ("modify thread", lambda: beta.beta.threads.update(a_thread.id, metadata={"k": "v"})),
        ("delete thread", lambda: beta.beta.threads.delete(a_thread.id)),
        (
            "create message",
            lambda: beta.beta.threads.messages.create(a_thread.id, role="user", content="x"),
        ),
        ("list messages", lambda: beta.beta.threads.messages.list(a_thread.id)),
        (
            "retrieve message",
            lambda: beta.beta.threads.messages.retrieve(a_message.id, thread_id=a_thread.id),
        ),
        (
            "modify message",
            lambda: beta.beta.threads.messages.update(
                a_message.id, thread_id=a_thread.id, metadata={"k": "v"}
            ),
        ),
        ("create run", lambda: runs.create(thread_id=a_thread.id, assistant_id=b_asst.id)),
        (
            "run with alpha's assistant",
            lambda: runs.create(thread_id=b_thread.id, assistant_id=a_asst.id),
        ),
        (
            "thread and run with alpha's assistant",
            lambda: beta.beta.threads.create_and_run(assistant_id=a_asst.id),
        ),
        (
            "streamed run",
            lambda: list(runs.create(thread_id=a_thread.id, assistant_id=b_asst.id, stream=True)),
        ),
        ("list runs", lambda: runs.list(thread_id=a_thread.id)),
        ("retrieve run", lambda: runs.retrieve(a_run.id, thread_id=a_thread.id)),
        (
            "modify run",
            lambda: runs.update(a_run.id, thread_id=a_thread.id, metadata={"k": "v"}),
        ),
        ("cancel run", lambda: runs.cancel(a_run.id, thread_id=a_thread.id)),
        (
            "submit tool outputs",
            lambda: runs.submit_tool_outputs(
                a_run.id, thread_id=a_thread.id, tool_outputs=[{"tool_call_id": "c", "output": "o"}]
            ),
        ),
        ("list steps", lambda: runs.steps.list(a_run.id, thread_id=a_thread.id)),
        (
            "retrieve step",
            lambda: runs.steps.retrieve(a_step.id, thread_id=a_thread.id, run_id=a_run.id),
        ),
    ]
    for label, attempt in attempts:
        with pytest.raises(openai.NotFoundError) as refused:
            attempt()
        assert refused.value.status_code == 404, label

    for method, path in (
        ("GET", f"/v1/threads/{a_thread.id}/runs/{a_run.id}/events"),
        ("POST", f"/v1/threads/{a_thread.id}/runs/{a_run.id}/stream_token"),
    ):
        answer = call(server, method, path, key=beta_key)
        assert answer.status == 404, (path, answer)
        assert answer.json()["error"]["code"] == "not_found"

    assert [a.id for a in beta.beta.assistants.list().data] == [b_asst.id]
    assert [a.id for a in alpha.beta.assistants.list().data] == [a_asst.id]
    assert alpha.beta.assistants.retrieve(a_asst.id).name is None
    assert alpha.beta.threads.retrieve(a_thread.id).metadata == {}
    assert len(alpha.beta.threads.messages.list(a_thread.id).data) == 2
    assert [r.id for r in alpha.beta.threads.runs.list(thread_id=a_thread.id).data] == [a_run.id]


def test_calls_without_a_good_key_get_401(keyed: tuple[LiveServer, str, str, Path]) -> None:
    """Once a key exists: no key, a malformed key and an unknown key are all 401 envelopes;
    health, readiness and metrics stay open."""
    server, alpha_key, _, _ = keyed
    forged = alpha_key[:-4] + ("AAAA" if not alpha_key.endswith("AAAA") else "BBBB")
    for key, code in (
        (None, "missing_api_key"),
        ("sk-not-ours", "invalid_api_key"),
        (forged, "invalid_api_key"),
    ):
        for method, path in (
            ("GET", "/v1/assistants"),
            ("POST", "/threads"),
            ("GET", "/v1/models"),
        ):
            answer = call(server, method, path, key=key)
            assert answer.status == 401, (key, path)
            assert answer.error()["code"] == code
            assert alpha_key not in answer.raw.decode()
    for path in ("/healthz", "/readyz", "/metrics"):
        assert call(server, "GET", path).status == 200


def test_a_revoked_key_stops_working_within_a_second(
    keyed: tuple[LiveServer, str, str, Path],
) -> None:
    """`gateway keys revoke` in another process: the running server refuses the key soon after;
    the other project's key still works."""
    server, alpha_key, beta_key, database = keyed
    assert call(server, "GET", "/v1/assistants", key=alpha_key).status == 200
    assert main(["keys", "--database", str(database), "revoke", key_id(database, "alpha")]) == 0
    eventually(
        lambda: call(server, "GET", "/v1/assistants", key=alpha_key).status != 200,
        timeout=3,
        interval=0.05,
        what="the revoked key to stop working",
    )
    refused = call(server, "GET", "/v1/assistants", key=alpha_key)
    assert refused.status == 401 and refused.error()["code"] == "invalid_api_key"
    assert call(server, "GET", "/v1/assistants", key=beta_key).status == 200


def test_stream_tokens_are_bound_to_their_run(keyed: tuple[LiveServer, str, str, Path]) -> None:
    """A stream token stands in for the key on its own run's event stream only: with another
    project's key, or on another run, it is refused."""
    server, alpha_key, beta_key, _ = keyed
    alpha, beta = sdk(server, alpha_key), sdk(server, beta_key)

    def finished_run(client: openai.OpenAI) -> tuple[str, str, str]:
        assistant = client.beta.assistants.create(model="local")
        run = client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id,
            thread={"messages": [{"role": "user", "content": "hello"}]},
            poll_interval_ms=20,
        )
        path = f"/v1/threads/{run.thread_id}/runs/{run.id}"
        token = ok(server, "POST", path + "/stream_token", key=client.api_key)
        return run.thread_id, run.id, token["token"]

    a_thread, a_run, a_token = finished_run(alpha)
    _, _, b_token = finished_run(beta)
    events = f"/v1/threads/{a_thread}/runs/{a_run}/events?token="
    answer = call(server, "GET", events + a_token)
    assert answer.status == 200 and answer.raw.endswith(b"event: done\ndata: [DONE]\n\n")
    assert call(server, "GET", events + a_token, key=beta_key).status == 404
    answer = call(server, "GET", events + b_token)
    assert answer.status == 401 and answer.json()["error"]["code"] == "invalid_stream_token"
    answer = call(server, "GET", f"/v1/threads/{a_thread}/runs/{a_run}/events")
    assert answer.status == 401 and answer.json()["error"]["code"] == "missing_api_key"


def test_keys_cli_shows_a_key_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    """`keys create` prints the key once; `keys list` and the database never hold its secret;
    a bad project name and an unknown id to revoke are errors."""
    database = tmp_path / "cli.db"
    key = make_key(database, "team-1")
    listing = io.StringIO()
    with contextlib.redirect_stdout(listing):
        assert main(["keys", "--database", str(database), "list"]) == 0
    secret = key.split("_", 2)[2]
    assert "team-1" in listing.getvalue() and secret not in listing.getvalue()
    assert secret.encode() not in database.read_bytes()
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert main(["keys", "--database", str(database), "create", "--project", "no spaces"]) == 2
    assert "invalid project name" in err.getvalue()
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["keys", "--database", str(database), "revoke", "key_missing"]) == 1


def test_keys_revoke_takes_the_key_itself(tmp_path: Path) -> None:
    """`keys revoke gwk_...` revokes that key (its id read from it, its secret checked); a key
    with a wrong secret, one of another database, or revoked already is refused, and revokes
    nothing."""
    database = tmp_path / "keys.db"
    key, other = make_key(database, "alpha"), make_key(database, "beta")
    forged = key[: key.rindex("_") + 1] + "x" * 43
    stranger = make_key(tmp_path / "elsewhere.db", "alpha")
    for wrong in (forged, stranger, "gwk_"):
        with contextlib.redirect_stderr(io.StringIO()) as err:
            assert main(["keys", "revoke", wrong, "--database", str(database)]) == 1
        assert "not a live key of this database" in err.getvalue()
    assert main(["keys", "revoke", key, "--database", str(database)]) == 0
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["keys", "revoke", key, "--database", str(database)]) == 1
    listing = io.StringIO()
    with contextlib.redirect_stdout(listing):
        assert main(["keys", "list", "--database", str(database)]) == 0
    rows = {line.split()[1]: line.split()[-1] for line in listing.getvalue().splitlines()[1:]}
    assert rows["beta"] == "-" and rows["alpha"] != "-"  # only alpha's key was revoked
    assert other.startswith("gwk_")


def test_open_server_refuses_a_public_address(tmp_path: Path) -> None:
    """With no key the server serves loopback only, unless --insecure; a key lifts that."""
    database = tmp_path / "open.db"
    with contextlib.redirect_stderr(io.StringIO()) as err:
        status = main(["serve", "--host", "0.0.0.0", "--port", "0", "--database", str(database)])
    assert status == 2
    assert "refusing to listen on 0.0.0.0 with no API key" in err.getvalue()
    from gateway.__main__ import _check_exposure
    from gateway.settings import Settings

    _check_exposure(Settings(host="0.0.0.0", insecure=True), keys=0)
    _check_exposure(Settings(host="0.0.0.0"), keys=1)
    _check_exposure(Settings(host="::1"), keys=0)
    _check_exposure(Settings(host="localhost"), keys=0)
