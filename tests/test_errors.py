"""Client mistakes over raw HTTP: OpenAI's error envelope, the right status, and no harm done."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import openai
import pytest

from tests.http import Answer, call
from tests.server import LiveServer
from tests.waiting import eventually

ENVELOPE_KEYS = {"message", "type", "param", "code"}
PREFIXES = ["/v1", ""]
UNCHECKED = object()
GET_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
GET_TIME = {"type": "function", "function": {"name": "get_time"}}
CALL_WEATHER = 'call get_weather {"city": "Paris"}'
TERMINAL = {"completed", "incomplete", "failed", "cancelled", "expired"}


# --- raw HTTP -----------------------------------------------------------------------------------


def send(
    server: LiveServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request as the SDK would send it: `body` goes as JSON, `raw` as given bytes."""
    sent = {"Authorization": "Bearer sk-test", "OpenAI-Beta": "assistants=v2", **(headers or {})}
    return call(server, method, path, body, raw=raw, headers=sent)


def ok(server: LiveServer, method: str, path: str, body: Any = None) -> Any:
    reply = send(server, method, path, body)
    assert reply.status == 200, (method, path, reply)
    return reply.json()


def assert_envelope(
    reply: Answer, status: int, *, param: object = UNCHECKED, contains: str | None = None
) -> dict[str, Any]:
    """The reply is `status` with exactly OpenAI's four-field invalid_request_error envelope."""
    assert reply.status == status, reply
    assert reply.headers.get("content-type", "").startswith("application/json"), reply
    body = reply.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == ENVELOPE_KEYS, error
    assert error["type"] == "invalid_request_error", error
    assert isinstance(error["message"], str) and error["message"], error
    assert error["param"] is None or isinstance(error["param"], str), error
    assert error["code"] is None or isinstance(error["code"], str), error
    if param is not UNCHECKED:
        assert error["param"] == param, error
    if contains is not None:
        assert contains in error["message"], error
    return error


def assert_healthy(server: LiveServer) -> None:
    """A normal request still works after an error."""
    page = ok(server, "GET", "/v1/assistants?limit=1")
    assert page["object"] == "list"


def fail(
    server: LiveServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    status: int,
    param: object = UNCHECKED,
    contains: str | None = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Send a mistake, check its envelope, then check the server still serves normally."""
    reply = send(server, method, path, body, raw=raw, headers=headers)
    error = assert_envelope(reply, status, param=param, contains=contains)
    assert_healthy(server)
    return error


# --- objects to make mistakes about ---------------------------------------------------------------


def wait_for_status(server: LiveServer, thread_id: str, run_id: str, status: str) -> dict[str, Any]:
    """Poll the run until it reaches `status` (bounded); fail on any other terminal status."""

    def reached() -> dict[str, Any] | None:
        run: dict[str, Any] = ok(server, "GET", f"/v1/threads/{thread_id}/runs/{run_id}")
        assert run["status"] == status or run["status"] not in TERMINAL, run
        return run if run["status"] == status else None

    return eventually(reached, what=f"run {run_id} to reach {status}")


def start_run(server: LiveServer, tools: list[Any], text: str) -> tuple[str, str, str]:
    """An assistant with `tools`, a thread whose one message is `text`, and a run on it."""
    assistant = ok(server, "POST", "/v1/assistants", {"model": "local", "tools": tools})
    thread = ok(server, "POST", "/v1/threads", {"messages": [{"role": "user", "content": text}]})
    run = ok(server, "POST", f"/v1/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]})
    return assistant["id"], thread["id"], run["id"]


@dataclass(frozen=True)
class World:
    """Ids of real objects, to put into path and body templates."""

    assistant: str
    thread: str
    run: str
    step: str
    message: str
    other_thread: str
    other_message: str

    def fill(self, value: Any) -> Any:
        """`value` with {assistant}, {thread}, ... replaced by this world's ids."""
        if isinstance(value, str):
            return value.format(**asdict(self))
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        return value


def build_world(server: LiveServer) -> World:
    """An assistant, a thread with a completed run and its step, and a second thread."""
    assistant, thread, run = start_run(server, [], "hello")
    wait_for_status(server, thread, run, "completed")
    step = ok(server, "GET", f"/v1/threads/{thread}/runs/{run}/steps")["data"][0]["id"]
    message = ok(server, "GET", f"/v1/threads/{thread}/messages?order=asc")["data"][0]["id"]
    other = ok(server, "POST", "/v1/threads", {"messages": [{"role": "user", "content": "hi"}]})
    other_message = ok(server, "GET", f"/v1/threads/{other['id']}/messages")["data"][0]["id"]
    return World(assistant, thread, run, step, message, other["id"], other_message)


@pytest.fixture
def world(server: LiveServer) -> World:
    """A fresh world on the test's own gateway."""
    return build_world(server)


@dataclass
class WaitingRun:
    thread: str
    run: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.run["id"])

    @property
    def call_ids(self) -> list[str]:
        calls = self.run["required_action"]["submit_tool_outputs"]["tool_calls"]
        return [call["id"] for call in calls]

    @property
    def path(self) -> str:
        return f"/v1/threads/{self.thread}/runs/{self.id}"


def waiting_run_for(server: LiveServer, tools: list[Any], text: str) -> WaitingRun:
    _, thread, run_id = start_run(server, tools, text)
    return WaitingRun(thread, wait_for_status(server, thread, run_id, "requires_action"))


@pytest.fixture
def waiting(server: LiveServer) -> WaitingRun:
    """A run the local model left in requires_action with one get_weather call."""
    return waiting_run_for(server, [GET_WEATHER], CALL_WEATHER)


def assert_still_waiting(server: LiveServer, waiting: WaitingRun) -> None:
    """The run and its tool-call step are exactly as before a rejected submission."""
    run = ok(server, "GET", waiting.path)
    assert run["status"] == "requires_action"
    assert run["required_action"] == waiting.run["required_action"]
    steps = ok(server, "GET", f"{waiting.path}/steps")["data"]
    tool_steps = [s for s in steps if s["type"] == "tool_calls"]
    assert len(tool_steps) == 1
    assert tool_steps[0]["status"] == "in_progress"
    calls = tool_steps[0]["step_details"]["tool_calls"]
    assert [c["id"] for c in calls] == waiting.call_ids
    assert all(c["function"]["output"] is None for c in calls)


# --- mistakes that write nothing, on one shared gateway ------------------------------------------

NOT_FOUND: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/assistants/asst_nope", None, "asst_nope"),
    ("POST", "/assistants/asst_nope", {"name": "x"}, "asst_nope"),
    ("DELETE", "/assistants/asst_nope", None, "asst_nope"),
    ("GET", "/threads/thread_nope", None, "thread_nope"),
    ("POST", "/threads/thread_nope", {"metadata": {}}, "thread_nope"),
    ("DELETE", "/threads/thread_nope", None, "thread_nope"),
    ("GET", "/threads/thread_nope/messages", None, "thread_nope"),
    ("POST", "/threads/thread_nope/messages", {"role": "user", "content": "x"}, "thread_nope"),
    ("GET", "/threads/{thread}/messages/msg_nope", None, "msg_nope"),
    ("POST", "/threads/{thread}/messages/msg_nope", {"metadata": {}}, "msg_nope"),
    ("DELETE", "/threads/{thread}/messages/msg_nope", None, "msg_nope"),
    ("GET", "/threads/{thread}/messages/{other_message}", None, "{other_message}"),
    ("GET", "/threads/thread_nope/runs", None, "thread_nope"),
    ("POST", "/threads/thread_nope/runs", {"assistant_id": "{assistant}"}, "thread_nope"),
    ("POST", "/threads/{thread}/runs", {"assistant_id": "asst_nope"}, "asst_nope"),
    ("POST", "/threads/runs", {"assistant_id": "asst_nope"}, "asst_nope"),
    ("GET", "/threads/{thread}/runs/run_nope", None, "run_nope"),
    ("GET", "/threads/{other_thread}/runs/{run}", None, "{run}"),
    ("POST", "/threads/{thread}/runs/run_nope", {"metadata": {}}, "run_nope"),
    (
        "POST",
        "/threads/{thread}/runs/run_nope/submit_tool_outputs",
        {"tool_outputs": []},
        "run_nope",
    ),
    ("POST", "/threads/{thread}/runs/run_nope/cancel", None, "run_nope"),
    ("GET", "/threads/{thread}/runs/run_nope/steps", None, "run_nope"),
    ("GET", "/threads/{thread}/runs/run_nope/steps/{step}", None, "run_nope"),
    ("GET", "/threads/{thread}/runs/{run}/steps/step_nope", None, "step_nope"),
]

BODY_ENDPOINTS = [
    "/v1/assistants",
    "/v1/assistants/{assistant}",
    "/v1/threads",
    "/v1/threads/{thread}",
    "/v1/threads/{thread}/messages",
    "/v1/threads/{other_thread}/runs",
    "/v1/threads/runs",
    "/v1/threads/{thread}/runs/{run}",
    "/v1/threads/{thread}/runs/{run}/submit_tool_outputs",
]

WRONG_TYPES = [
    ("/v1/assistants", {"model": 123}, "model"),
    ("/v1/assistants", {"model": "m", "temperature": "hot"}, "temperature"),
    ("/v1/assistants", {"model": "m", "metadata": "x"}, "metadata"),
    ("/v1/assistants", {"model": "m", "tools": {}}, "tools"),
    ("/v1/assistants", {"model": "m", "name": 5}, "name"),
    ("/v1/assistants", {"model": "m", "top_p": True}, "top_p"),
    ("/v1/assistants/{assistant}", {"temperature": "hot"}, "temperature"),
    ("/v1/threads", {"messages": "hi"}, "messages"),
    ("/v1/threads", {"metadata": ["a"]}, "metadata"),
    ("/v1/threads/{thread}/messages", {"role": "user", "content": 5}, "content"),
    ("/v1/threads/{other_thread}/runs", {"assistant_id": 5}, "assistant_id"),
    ("/v1/threads/{other_thread}/runs", {"assistant_id": "a", "stream": "yes"}, "stream"),
    ("/v1/threads/{thread}/runs/{run}/submit_tool_outputs", {"tool_outputs": "x"}, "tool_outputs"),
]

UNKNOWN_FIELDS = [
    ("/v1/assistants", {"model": "m", "bogus": 1}, "bogus"),
    ("/v1/assistants/{assistant}", {"bogus": 1}, "bogus"),
    ("/v1/threads", {"bogus": 1}, "bogus"),
    ("/v1/threads/{thread}", {"bogus": 1}, "bogus"),
    ("/v1/threads/{thread}/messages", {"role": "user", "content": "x", "bogus": 1}, "bogus"),
    ("/v1/threads/{thread}/messages/{message}", {"bogus": 1}, "bogus"),
    ("/v1/threads/{other_thread}/runs", {"assistant_id": "{assistant}", "bogus": 1}, "bogus"),
    (
        "/v1/threads/{other_thread}/runs",
        {"assistant_id": "{assistant}", "tool_resources": {}},
        "tool_resources",
    ),
    (
        "/v1/threads/runs",
        {"assistant_id": "{assistant}", "additional_messages": []},
        "additional_messages",
    ),
    ("/v1/threads/{thread}/runs/{run}", {"bogus": 1}, "bogus"),
]

MISSING_FIELDS = [
    ("/v1/assistants", {"name": "x"}, "model"),
    ("/v1/assistants", {}, "model"),
    ("/v1/threads/{other_thread}/runs", {}, "assistant_id"),
    ("/v1/threads/{other_thread}/runs", {"model": "m"}, "assistant_id"),
    ("/v1/threads/runs", {}, "assistant_id"),
    ("/v1/threads/{thread}/messages", {"content": "x"}, "role"),
    ("/v1/threads/{thread}/messages", {"role": "user"}, "content"),
    ("/v1/threads/{thread}/runs/{run}/submit_tool_outputs", {}, "tool_outputs"),
]

TOO_MUCH_METADATA = {
    "17-pairs": {f"k{i}": "v" for i in range(17)},
    "65-char-key": {"k" * 65: "v"},
    "513-char-value": {"k": "v" * 513},
}
METADATA_ENDPOINTS = [
    ("/v1/assistants", {"model": "m"}),
    ("/v1/assistants/{assistant}", {}),
    ("/v1/threads", {}),
    ("/v1/threads/{thread}", {}),
    ("/v1/threads/{thread}/messages", {"role": "user", "content": "x"}),
    ("/v1/threads/{thread}/messages/{message}", {}),
    ("/v1/threads/{other_thread}/runs", {"assistant_id": "{assistant}"}),
    ("/v1/threads/{thread}/runs/{run}", {}),
]

LISTS = [
    "/v1/assistants",
    "/v1/threads/{thread}/messages",
    "/v1/threads/{thread}/runs",
    "/v1/threads/{thread}/runs/{run}/steps",
]
BAD_QUERIES = [
    ("limit=0", "limit"),
    ("limit=101", "limit"),
    ("limit=abc", "limit"),
    ("limit=-1", "limit"),
    ("limit=1.5", "limit"),
    ("order=sideways", "order"),
    ("after=nope_123", "after"),
    ("before=nope_123", "before"),
]


def nested(depth: int) -> dict[str, Any]:
    """A JSON schema whose objects nest `depth` levels deep."""
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(depth - 1):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def deep_tool(depth: int) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "f", "parameters": nested(depth)}}


def deep_format(depth: int) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "f", "schema": nested(depth)}}


# Free-form JSON (a tool's parameters, a response schema) nested past the limit, wherever a
# request can carry it: 150 levels of schema (about 300 of JSON) parse, and once failed to be
# saved (a 500).
TOO_DEEP = 150
DEEP_JSON = [
    (
        "/v1/assistants",
        {"model": "m", "tools": [deep_tool(TOO_DEEP)]},
        "tools[0].function.parameters",
    ),
    (
        "/v1/assistants",
        {"model": "m", "response_format": deep_format(TOO_DEEP)},
        "response_format.json_schema.schema",
    ),
    (
        "/v1/assistants/{assistant}",
        {"tools": [deep_tool(TOO_DEEP)]},
        "tools[0].function.parameters",
    ),
    (
        "/v1/threads/{other_thread}/runs",
        {"assistant_id": "{assistant}", "tools": [deep_tool(TOO_DEEP)]},
        "tools[0].function.parameters",
    ),
    (
        "/v1/threads/{other_thread}/runs",
        {"assistant_id": "{assistant}", "stream": True, "response_format": deep_format(TOO_DEEP)},
        "response_format.json_schema.schema",
    ),
    (
        "/v1/threads/runs",
        {"assistant_id": "{assistant}", "tools": [deep_tool(TOO_DEEP)]},
        "tools[0].function.parameters",
    ),
    (
        "/v1/threads/runs",
        {"assistant_id": "{assistant}", "stream": True, "tools": [deep_tool(TOO_DEEP)]},
        "tools[0].function.parameters",
    ),
]


# Integers too large to save, in fields that take 300.0 for 300: 1e30 would be an integer no
# encoder writes (a 500 on save, once).
TOO_BIG = [
    (
        "/v1/threads/runs",
        {"assistant_id": "{assistant}", "max_prompt_tokens": 1e30},
        "max_prompt_tokens",
    ),
    (
        "/v1/threads/{other_thread}/runs",
        {"assistant_id": "{assistant}", "max_completion_tokens": 2**63},
        "max_completion_tokens",
    ),
    (
        "/v1/threads/{other_thread}/runs",
        {
            "assistant_id": "{assistant}",
            "truncation_strategy": {"type": "last_messages", "last_messages": 1e25},
        },
        "truncation_strategy.last_messages",
    ),
]


class TestMistakesThatWriteNothing:
    """Rejected requests that must change nothing share one gateway and one world, for speed."""

    @pytest.fixture(scope="class")
    @classmethod
    def server(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
        """One gateway for the whole class; every case here leaves it as it found it."""
        live = LiveServer(tmp_path_factory.mktemp("shared") / "gateway.db").start()
        yield live
        live.stop()

    @pytest.fixture(scope="class")
    @classmethod
    def world(cls, server: LiveServer) -> World:
        """The class's objects to make mistakes about."""
        return build_world(server)

    @pytest.mark.parametrize("prefix", PREFIXES)
    @pytest.mark.parametrize(("method", "path", "body", "missing"), NOT_FOUND)
    def test_unknown_id_is_404(
        self,
        server: LiveServer,
        world: World,
        prefix: str,
        method: str,
        path: str,
        body: Any,
        missing: str,
    ) -> None:
        """An unknown (or another thread's) id is a 404 naming it, under /v1 and at the root."""
        fail(
            server,
            method,
            prefix + world.fill(path),
            world.fill(body),
            status=404,
            contains=world.fill(missing),
        )

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/v1/nope"),
            ("GET", "/v2/assistants"),
            ("GET", "/nope"),  # GET / itself leads to the playground (test_observability)
            ("POST", "/v1/threads/thread_x/runs/run_y/bogus"),
            ("GET", "/v1/assistants/asst_x/extra"),
        ],
    )
    def test_unknown_url_is_404(self, server: LiveServer, method: str, path: str) -> None:
        """A URL no route serves is a 404 with the envelope, naming the method and path."""
        fail(server, method, path, status=404, param=None, contains=path)

    @pytest.mark.parametrize("prefix", PREFIXES)
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("PUT", "/assistants"),
            ("PATCH", "/assistants/asst_x"),
            ("GET", "/threads"),
            ("DELETE", "/threads/thread_x/runs"),
            ("DELETE", "/threads/thread_x/runs/run_x"),
            ("GET", "/threads/thread_x/runs/run_x/cancel"),
            ("PUT", "/threads/thread_x/messages/msg_x"),
        ],
    )
    def test_wrong_method_is_405(
        self, server: LiveServer, prefix: str, method: str, path: str
    ) -> None:
        """A known path with a method it does not serve is a 405 with the envelope."""
        fail(server, method, prefix + path, status=405, param=None)

    @pytest.mark.parametrize(
        ("path", "allowed"),
        [
            ("/v1/assistants", {"GET", "POST"}),
            ("/v1/assistants/asst_x", {"GET", "POST", "DELETE"}),
            ("/v1/threads/thread_x/runs", {"GET", "POST"}),
        ],
    )
    def test_405_allow_header_lists_every_method(
        self, server: LiveServer, path: str, allowed: set[str]
    ) -> None:
        """A 405's Allow header lists every method the path serves (RFC 9110 15.5.6)."""
        reply = send(server, "PUT", path)
        assert_envelope(reply, 405)
        assert {m.strip() for m in reply.headers["allow"].split(",")} >= allowed, reply.headers

    @pytest.mark.parametrize("path", BODY_ENDPOINTS)
    @pytest.mark.parametrize(
        "raw",
        [
            *(b'{"model": ', b"{'model': 'x'}", b"not json", b'{"model": "m",}', b"\xff\xfe{}"),
            *(b"[]", b'["model"]', b'"gpt-4o"', b"42", b"true", b"null"),
        ],
    )
    def test_body_that_is_not_a_json_object_is_400(
        self, server: LiveServer, world: World, path: str, raw: bytes
    ) -> None:
        """A body that is not valid JSON, or JSON but not an object, is a 400, never a 500."""
        fail(
            server,
            "POST",
            world.fill(path),
            raw=raw,
            headers={"Content-Type": "application/json"},
            status=400,
            param=None,
        )

    @pytest.mark.parametrize(("path", "body", "param"), WRONG_TYPES)
    def test_wrong_type_is_400_naming_the_field(
        self, server: LiveServer, world: World, path: str, body: dict[str, Any], param: str
    ) -> None:
        """A field of the wrong JSON type is a 400 whose `param` names that field."""
        fail(server, "POST", world.fill(path), world.fill(body), status=400, param=param)

    @pytest.mark.parametrize(("path", "body", "param"), DEEP_JSON)
    def test_json_nested_too_deeply_is_400_naming_the_field(
        self, server: LiveServer, world: World, path: str, body: dict[str, Any], param: str
    ) -> None:
        """A tool's parameters or a response schema nested past the limit is a 400 naming the
        field, before anything is written, never a 500."""
        threads = ok(server, "GET", "/v1/assistants?limit=100")["data"]
        fail(server, "POST", world.fill(path), world.fill(body), status=400, param=param)
        assert ok(server, "GET", "/v1/assistants?limit=100")["data"] == threads
        assert ok(server, "GET", f"/v1/threads/{world.other_thread}/runs")["data"] == []

    @pytest.mark.parametrize(("path", "body", "param"), TOO_BIG)
    def test_an_integer_past_64_bits_is_400_naming_the_field(
        self, server: LiveServer, world: World, path: str, body: dict[str, Any], param: str
    ) -> None:
        """An integer field given a number no 64-bit integer holds is a 400 naming the field,
        before anything is written, never a 500."""
        fail(server, "POST", world.fill(path), world.fill(body), status=400, param=param)
        assert ok(server, "GET", f"/v1/threads/{world.other_thread}/runs")["data"] == []

    def test_a_deep_but_reasonable_schema_is_accepted(self, server: LiveServer) -> None:
        """Sixty levels of schema (119 of JSON), deeper than any real one, are kept whole."""
        made = ok(server, "POST", "/v1/assistants", {"model": "m", "tools": [deep_tool(60)]})
        assert made["tools"][0]["function"]["parameters"] == nested(60)
        ok(server, "DELETE", f"/v1/assistants/{made['id']}")

    @pytest.mark.parametrize(("path", "body", "param"), UNKNOWN_FIELDS)
    def test_unknown_field_is_400(
        self, server: LiveServer, world: World, path: str, body: dict[str, Any], param: str
    ) -> None:
        """A field the request schema does not have is 'Unrecognized request argument supplied'."""
        fail(
            server,
            "POST",
            world.fill(path),
            world.fill(body),
            status=400,
            param=param,
            contains="Unrecognized request argument supplied",
        )

    @pytest.mark.parametrize(("path", "body", "param"), MISSING_FIELDS)
    def test_missing_required_field_is_400(
        self, server: LiveServer, world: World, path: str, body: dict[str, Any], param: str
    ) -> None:
        """A required field left out is a 400 whose `param` names it."""
        fail(server, "POST", world.fill(path), world.fill(body), status=400, param=param)

    def test_empty_body_on_create_assistant_names_model(self, server: LiveServer) -> None:
        """An empty body where `model` is required is a 400 with param model, not a parse error."""
        fail(
            server,
            "POST",
            "/v1/assistants",
            raw=b"",
            headers={"Content-Type": "application/json"},
            status=400,
            param="model",
        )

    @pytest.mark.parametrize(("path", "base"), METADATA_ENDPOINTS)
    @pytest.mark.parametrize("metadata", TOO_MUCH_METADATA.values(), ids=TOO_MUCH_METADATA.keys())
    def test_metadata_over_limits_is_400(
        self,
        server: LiveServer,
        world: World,
        path: str,
        base: dict[str, Any],
        metadata: dict[str, str],
    ) -> None:
        """17 metadata pairs, a 65-char key or a 513-char value is a 400 with param metadata."""
        body = world.fill(base) | {"metadata": metadata}
        fail(server, "POST", world.fill(path), body, status=400, param="metadata")
        assert ok(server, "GET", f"/v1/threads/{world.other_thread}/runs")["data"] == []

    @pytest.mark.parametrize("path", LISTS)
    @pytest.mark.parametrize(("query", "param"), BAD_QUERIES)
    def test_bad_list_parameter_is_400(
        self, server: LiveServer, world: World, path: str, query: str, param: str
    ) -> None:
        """An out-of-range limit, an unknown order or an unknown cursor is a 400 naming it."""
        fail(server, "GET", f"{world.fill(path)}?{query}", status=400, param=param)

    def test_cursor_from_another_thread_is_400(self, server: LiveServer, world: World) -> None:
        """A message id of another thread is not a cursor in this thread's message list."""
        path = f"/v1/threads/{world.thread}/messages?after={world.other_message}"
        fail(server, "GET", path, status=400, param="after")

    def test_list_limits_at_bounds_are_accepted(self, server: LiveServer, world: World) -> None:
        """limit=1 and limit=100 are in range and answer a list."""
        for limit in (1, 100):
            page = ok(server, "GET", f"/v1/threads/{world.thread}/messages?limit={limit}")
            assert page["object"] == "list"

    @pytest.mark.parametrize(
        "path",
        [
            "/v1/threads/{thread}/runs/{run}/steps?include[]=bogus",
            "/v1/threads/{thread}/runs/{run}/steps?include%5B%5D=bogus",
            "/v1/threads/{thread}/runs/{run}/steps/{step}?include[]=bogus",
        ],
    )
    def test_unknown_include_is_400(self, server: LiveServer, world: World, path: str) -> None:
        """An include[] value other than the file_search content is a 400 with param include."""
        fail(server, "GET", world.fill(path), status=400, param="include")

    def test_known_include_is_accepted(self, server: LiveServer, world: World) -> None:
        """The one includable field is accepted on the steps list."""
        value = "step_details.tool_calls[*].file_search.results[*].content"
        page = ok(
            server, "GET", f"/v1/threads/{world.thread}/runs/{world.run}/steps?include[]={value}"
        )
        assert [step["id"] for step in page["data"]] == [world.step]

    @pytest.mark.parametrize(
        ("query", "headers", "param"),
        [
            ("after=9223372036854775809", {}, "after"),
            ("after=99999999999999999999999999", {}, "after"),
            ("", {"Last-Event-ID": "99999999999999999999"}, "Last-Event-ID"),
            ("after=1_0", {}, "after"),
            ("after=%2B5", {}, "after"),
            ("after=%D9%A1", {}, "after"),
            ("", {"Last-Event-ID": "-1"}, "Last-Event-ID"),
            ("after=0000000000000000001", {}, "after"),
        ],
        ids=[
            *("past-int64", "huge", "huge-header", "underscore", "plus", "arabic-digit"),
            *("negative", "19-digits"),
        ],
    )
    def test_an_event_position_that_is_no_event_id_is_400(
        self, server: LiveServer, world: World, query: str, headers: dict[str, str], param: str
    ) -> None:
        """A position that cannot be an event id (past 2**63 - 1, or not plain ASCII digits) is
        a 400 naming where it came from, never a 500 from the database."""
        path = f"/v1/threads/{world.thread}/runs/{world.run}/events?{query}"
        fail(server, "GET", path, status=400, param=param, headers=headers)

    @pytest.mark.parametrize("raw", [b"", b"{", b"not json"])
    def test_cancel_never_parses_its_body(
        self, server: LiveServer, world: World, raw: bytes
    ) -> None:
        """Cancel on an unknown run with a JSON content type and an empty or bad body is a 404."""
        fail(
            server,
            "POST",
            f"/v1/threads/{world.thread}/runs/run_nope/cancel",
            raw=raw,
            headers={"Content-Type": "application/json"},
            status=404,
            contains="run_nope",
        )


# --- mistakes that need their own gateway -------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("text/plain", b"hello"),
        ("text/plain", b'{"model": "m"}'),
        ("application/x-www-form-urlencoded", b"model=m"),
        ("application/xml", b"<model>m</model>"),
    ],
)
def test_non_json_content_type_is_415_or_400(
    server: LiveServer, content_type: str, raw: bytes
) -> None:
    """A body sent with a non-JSON content type is rejected with the envelope, never a 500."""
    reply = send(server, "POST", "/v1/assistants", raw=raw, headers={"Content-Type": content_type})
    assert reply.status in (400, 415), reply
    assert_envelope(reply, reply.status)
    assert_healthy(server)
    assert ok(server, "GET", "/v1/assistants")["data"] == []


def test_metadata_at_limits_is_accepted(server: LiveServer) -> None:
    """16 pairs, 64-char keys and 512-char values are exactly at the limits and accepted."""
    metadata = {f"{i:02d}" + "k" * 62: "v" * 512 for i in range(16)}
    assistant = ok(server, "POST", "/v1/assistants", {"model": "m", "metadata": metadata})
    assert assistant["metadata"] == metadata


def test_cancel_with_json_content_type_and_empty_body_works(
    server: LiveServer, waiting: WaitingRun
) -> None:
    """The SDK's cancel (JSON content type, empty body) cancels a waiting run."""
    reply = send(
        server,
        "POST",
        f"{waiting.path}/cancel",
        raw=b"",
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 200, reply
    assert reply.json()["status"] in ("cancelling", "cancelled")
    wait_for_status(server, waiting.thread, waiting.id, "cancelled")


# --- state rules -----------------------------------------------------------------------------


def test_second_run_while_one_is_active_is_400(server: LiveServer, waiting: WaitingRun) -> None:
    """A run on a thread with an active run is a 400 naming both, and the first run stays."""
    assistant = waiting.run["assistant_id"]
    error = fail(
        server,
        "POST",
        f"/v1/threads/{waiting.thread}/runs",
        {"assistant_id": assistant},
        status=400,
    )
    assert error["message"] == (f"Thread {waiting.thread} already has an active run {waiting.id}.")
    runs = ok(server, "GET", f"/v1/threads/{waiting.thread}/runs")["data"]
    assert [run["id"] for run in runs] == [waiting.id]
    assert_still_waiting(server, waiting)


def test_new_message_while_a_run_is_active_is_400(server: LiveServer, waiting: WaitingRun) -> None:
    """A message on a thread with an active run is a 400, and nothing is written."""
    error = fail(
        server,
        "POST",
        f"/v1/threads/{waiting.thread}/messages",
        {"role": "user", "content": "one more thing"},
        status=400,
    )
    assert error["message"] == (
        f"Can't add messages to {waiting.thread} while a run {waiting.id} is active."
    )
    messages = ok(server, "GET", f"/v1/threads/{waiting.thread}/messages")["data"]
    assert [m["content"][0]["text"]["value"] for m in messages] == [CALL_WEATHER]
    assert_still_waiting(server, waiting)


def test_submit_with_a_missing_call_id_is_400(server: LiveServer) -> None:
    """Outputs for only some of the pending calls are a 400 and write none of them."""
    waiting = waiting_run_for(
        server, [GET_WEATHER, GET_TIME], 'call get_weather and get_time {"city": "Paris"}'
    )
    assert len(waiting.call_ids) == 2
    first = waiting.call_ids[0]
    fail(
        server,
        "POST",
        f"{waiting.path}/submit_tool_outputs",
        {"tool_outputs": [{"tool_call_id": first, "output": "sunny"}]},
        status=400,
        param="tool_outputs",
    )
    assert_still_waiting(server, waiting)


def test_submit_with_no_outputs_is_400(server: LiveServer, waiting: WaitingRun) -> None:
    """An empty tool_outputs list misses the pending call: a 400, and the run still waits."""
    fail(
        server,
        "POST",
        f"{waiting.path}/submit_tool_outputs",
        {"tool_outputs": []},
        status=400,
        param="tool_outputs",
    )
    assert_still_waiting(server, waiting)


def test_submit_with_an_unknown_call_id_is_400(server: LiveServer, waiting: WaitingRun) -> None:
    """An output for a call the run did not make is a 400, and the run still waits."""
    outputs = [
        {"tool_call_id": waiting.call_ids[0], "output": "sunny"},
        {"tool_call_id": "call_nope", "output": "?"},
    ]
    error = fail(
        server,
        "POST",
        f"{waiting.path}/submit_tool_outputs",
        {"tool_outputs": outputs},
        status=400,
        contains="call_nope",
    )
    assert error["param"] is not None and error["param"].startswith("tool_outputs")
    assert_still_waiting(server, waiting)


def test_submit_with_a_duplicate_call_id_is_400(server: LiveServer, waiting: WaitingRun) -> None:
    """Two outputs for the same call are a 400, and the run still waits."""
    call = waiting.call_ids[0]
    outputs = [
        {"tool_call_id": call, "output": "sunny"},
        {"tool_call_id": call, "output": "rainy"},
    ]
    error = fail(
        server,
        "POST",
        f"{waiting.path}/submit_tool_outputs",
        {"tool_outputs": outputs},
        status=400,
    )
    assert error["param"] is not None and error["param"].startswith("tool_outputs")
    assert_still_waiting(server, waiting)


def test_rejected_submissions_leave_the_run_resumable(
    server: LiveServer, waiting: WaitingRun
) -> None:
    """After every kind of rejected submission, a correct one still completes the run."""
    call = waiting.call_ids[0]
    for outputs in (
        [],
        [{"tool_call_id": "call_nope", "output": "x"}],
        [{"tool_call_id": call, "output": "a"}, {"tool_call_id": call, "output": "b"}],
        [{"tool_call_id": call}],
    ):
        reply = send(
            server, "POST", f"{waiting.path}/submit_tool_outputs", {"tool_outputs": outputs}
        )
        assert_envelope(reply, 400)
    assert_still_waiting(server, waiting)
    ok(
        server,
        "POST",
        f"{waiting.path}/submit_tool_outputs",
        {"tool_outputs": [{"tool_call_id": call, "output": '{"temp_c": 21}'}]},
    )
    wait_for_status(server, waiting.thread, waiting.id, "completed")


def test_submit_on_a_completed_run_is_400(server: LiveServer, world: World) -> None:
    """Tool outputs for a run that is not waiting for them are a 400, and the run is unchanged."""
    path = f"/v1/threads/{world.thread}/runs/{world.run}"
    before = ok(server, "GET", path)
    fail(
        server,
        "POST",
        f"{path}/submit_tool_outputs",
        {"tool_outputs": [{"tool_call_id": "call_x", "output": "x"}]},
        status=400,
        contains="completed",
    )
    assert ok(server, "GET", path) == before


def test_cancel_a_completed_run_is_400(server: LiveServer, world: World) -> None:
    """Cancelling a run that already completed is a 400, and the run stays completed."""
    path = f"/v1/threads/{world.thread}/runs/{world.run}"
    before = ok(server, "GET", path)
    fail(
        server,
        "POST",
        f"{path}/cancel",
        raw=b"",
        headers={"Content-Type": "application/json"},
        status=400,
    )
    assert ok(server, "GET", path) == before


def test_cancel_a_cancelled_run_and_submit_to_it_are_400(
    server: LiveServer, waiting: WaitingRun
) -> None:
    """Once a waiting run is cancelled, a second cancel and a late submission are 400s."""
    ok(server, "POST", f"{waiting.path}/cancel")
    wait_for_status(server, waiting.thread, waiting.id, "cancelled")
    fail(server, "POST", f"{waiting.path}/cancel", status=400)
    fail(
        server,
        "POST",
        f"{waiting.path}/submit_tool_outputs",
        {"tool_outputs": [{"tool_call_id": waiting.call_ids[0], "output": "x"}]},
        status=400,
    )
    assert ok(server, "GET", waiting.path)["status"] == "cancelled"


def test_thread_accepts_a_run_again_after_its_run_ends(
    server: LiveServer, waiting: WaitingRun
) -> None:
    """The active-run rule lifts once the run is terminal: no stale lock after a 400."""
    fail(
        server,
        "POST",
        f"/v1/threads/{waiting.thread}/runs",
        {"assistant_id": waiting.run["assistant_id"]},
        status=400,
    )
    ok(server, "POST", f"{waiting.path}/cancel")
    wait_for_status(server, waiting.thread, waiting.id, "cancelled")
    ok(server, "POST", f"/v1/threads/{waiting.thread}/messages", {"role": "user", "content": "hi"})
    run = ok(
        server,
        "POST",
        f"/v1/threads/{waiting.thread}/runs",
        {"assistant_id": waiting.run["assistant_id"], "tools": []},
    )
    wait_for_status(server, waiting.thread, run["id"], "completed")


# --- the SDK's view of the same errors ---------------------------------------------------------


def test_sdk_sees_not_found(client: openai.OpenAI) -> None:
    """The SDK raises NotFoundError for an unknown run, with the envelope's fields."""
    thread = client.beta.threads.create()
    with pytest.raises(openai.NotFoundError) as info:
        client.beta.threads.runs.retrieve("run_nope", thread_id=thread.id)
    assert info.value.status_code == 404
    assert isinstance(info.value.body, dict)
    assert info.value.body["type"] == "invalid_request_error"
    assert set(info.value.body) == ENVELOPE_KEYS
    assert "run_nope" in info.value.message


def test_sdk_sees_bad_request_with_param(client: openai.OpenAI) -> None:
    """The SDK raises BadRequestError with `param` for a bad type and for an unknown field."""
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.assistants.create(model="m", temperature="hot")  # type: ignore[arg-type]
    assert info.value.status_code == 400
    assert info.value.param == "temperature"
    assert info.value.type == "invalid_request_error"

    assistant = client.beta.assistants.create(model="m")
    thread = client.beta.threads.create()
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.runs.create(
            thread_id=thread.id, assistant_id=assistant.id, extra_body={"bogus": 1}
        )
    assert info.value.param == "bogus"
    assert "Unrecognized request argument supplied" in info.value.message
    assert client.beta.threads.runs.list(thread_id=thread.id).data == []


def test_sdk_sees_active_run_conflict_as_400(client: openai.OpenAI) -> None:
    """A second run while one waits is BadRequestError (400), not a retried 409 conflict."""
    assistant = client.beta.assistants.create(model="m", tools=[GET_WEATHER])  # type: ignore[list-item]
    thread = client.beta.threads.create(messages=[{"role": "user", "content": CALL_WEATHER}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    eventually(
        lambda: (
            client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status
            == "requires_action"
        ),
        what="the run to require action",
    )
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    assert info.value.status_code == 400
    assert run.id in info.value.message
