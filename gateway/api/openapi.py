"""`GET /openapi.json`: the gateway's own OpenAPI 3.1 document.

Request bodies are the JSON Schemas of the pydantic models the handlers validate with (so the
document cannot say one thing while the server checks another); responses name the object each
operation returns and the error envelope of every failure. `OPERATIONS` lists every operation;
a test checks it against the routes, so a new route without an entry fails CI.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway import __version__
from gateway.api import requests as bodies
from gateway.api.http import UNSERVED_TOOLS
from gateway.api.requests import Body
from gateway.api.routing import resource
from gateway.api.runs import INCLUDABLE
from gateway.api.validation import json_schemas

Schema = dict[str, Any]

_INCLUDE: list[Parameter] = ["include[]"]
_CURSOR = "The id of an object of this list; one that names none is a 400."


def _page(prefix: str) -> list[str | tuple[str, Schema]]:
    """The list parameters, whose cursors are ids of the listed kind (an id of no object in
    the list is a 400 naming the cursor; empty is no cursor)."""
    cursor: Schema = {
        "type": "string",
        "pattern": f"^({prefix}[A-Za-z0-9]{{24}})?$",
        "description": _CURSOR,
    }
    return ["limit", "order", ("after", cursor), ("before", cursor)]


def _object(kind: str, **properties: Schema) -> Schema:
    """A response object whose `object` field is `kind`."""
    return {
        "type": "object",
        "required": ["object"],
        "properties": {"object": {"const": kind}, **properties},
    }


def _list(item: Schema) -> Schema:
    return _object(
        "list",
        data={"type": "array", "items": item},
        has_more={"type": "boolean"},
    )


ASSISTANT = _object("assistant", id={"type": "string"})
THREAD = _object("thread", id={"type": "string"})
MESSAGE = _object("thread.message", id={"type": "string"})
RUN = _object("thread.run", id={"type": "string"}, status={"type": "string"})
STEP = _object("thread.run.step", id={"type": "string"})
MODEL = _object("model", id={"type": "string"})
TOKEN: Schema = {
    "type": "object",
    "required": ["token"],
    "properties": {"token": {"type": "string"}},
}
EVENTS = "events"  # a text/event-stream of the run's events
ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def _deleted(kind: str) -> Schema:
    return _object(kind, id={"type": "string"}, deleted={"type": "boolean"})


# An event's id, as a stream's position (the query's `after` or the `Last-Event-ID` header):
# at most 18 digits; empty is no position.
_POSITION: Schema = {"type": "string", "pattern": "^[0-9]{0,18}$"}

# A query parameter by its name (its schema below), or a name and a schema of its own. A
# parameter named with a capital letter goes in a header (Last-Event-ID).
Parameter = str | tuple[str, Schema]
# (path, method, summary, request model, response, parameters, may stream)
Operation = tuple[str, str, str, type[Body] | None, Schema | str, list[Parameter], bool]
OPERATIONS: list[Operation] = [
    (
        "/assistants",
        "post",
        "Create an assistant",
        bodies.CreateAssistantRequest,
        ASSISTANT,
        [],
        False,
    ),
    ("/assistants", "get", "List assistants", None, _list(ASSISTANT), _page("asst_"), False),
    ("/assistants/{assistant_id}", "get", "Retrieve an assistant", None, ASSISTANT, [], False),
    (
        "/assistants/{assistant_id}",
        "post",
        "Modify an assistant",
        bodies.ModifyAssistantRequest,
        ASSISTANT,
        [],
        False,
    ),
    (
        "/assistants/{assistant_id}",
        "delete",
        "Delete an assistant",
        None,
        _deleted("assistant.deleted"),
        [],
        False,
    ),
    ("/threads", "post", "Create a thread", bodies.CreateThreadRequest, THREAD, [], False),
    ("/threads/{thread_id}", "get", "Retrieve a thread", None, THREAD, [], False),
    (
        "/threads/{thread_id}",
        "post",
        "Modify a thread",
        bodies.ModifyThreadRequest,
        THREAD,
        [],
        False,
    ),
    (
        "/threads/{thread_id}",
        "delete",
        "Delete a thread",
        None,
        _deleted("thread.deleted"),
        [],
        False,
    ),
    (
        "/threads/{thread_id}/messages",
        "post",
        "Create a message",
        bodies.CreateMessageRequest,
        MESSAGE,
        [],
        False,
    ),
    (
        "/threads/{thread_id}/messages",
        "get",
        "List messages",
        None,
        _list(MESSAGE),
        [*_page("msg_"), "run_id"],
        False,
    ),
    (
        "/threads/{thread_id}/messages/{message_id}",
        "get",
        "Retrieve a message",
        None,
        MESSAGE,
        [],
        False,
    ),
    (
        "/threads/{thread_id}/messages/{message_id}",
        "post",
        "Modify a message",
        bodies.ModifyMessageRequest,
        MESSAGE,
        [],
        False,
    ),
    (
        "/threads/{thread_id}/messages/{message_id}",
        "delete",
        "Delete a message",
        None,
        _deleted("thread.message.deleted"),
        [],
        False,
    ),
    (
        "/threads/runs",
        "post",
        "Create a thread and run it",
        bodies.CreateThreadAndRunRequest,
        RUN,
        [],
        True,
    ),
    (
        "/threads/{thread_id}/runs",
        "post",
        "Create a run",
        bodies.CreateRunRequest,
        RUN,
        _INCLUDE,
        True,
    ),
    ("/threads/{thread_id}/runs", "get", "List runs", None, _list(RUN), _page("run_"), False),
    ("/threads/{thread_id}/runs/{run_id}", "get", "Retrieve a run", None, RUN, [], False),
    (
        "/threads/{thread_id}/runs/{run_id}",
        "post",
        "Modify a run",
        bodies.ModifyRunRequest,
        RUN,
        [],
        False,
    ),
    (
        "/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
        "post",
        "Submit tool outputs to a run",
        bodies.SubmitToolOutputsRunRequest,
        RUN,
        [],
        True,
    ),
    ("/threads/{thread_id}/runs/{run_id}/cancel", "post", "Cancel a run", None, RUN, [], False),
    (
        "/threads/{thread_id}/runs/{run_id}/events",
        "get",
        "Stream a run's events (resumable with Last-Event-ID or ?after=)",
        None,
        EVENTS,
        [("after", _POSITION), "token", ("Last-Event-ID", _POSITION)],
        False,
    ),
    (
        "/threads/{thread_id}/runs/{run_id}/stream_token",
        "post",
        "Make a browser token for a run's event stream",
        None,
        TOKEN,
        [],
        False,
    ),
    (
        "/threads/{thread_id}/runs/{run_id}/steps",
        "get",
        "List run steps",
        None,
        _list(STEP),
        [*_page("step_"), *_INCLUDE],
        False,
    ),
    (
        "/threads/{thread_id}/runs/{run_id}/steps/{step_id}",
        "get",
        "Retrieve a run step",
        None,
        STEP,
        _INCLUDE,
        False,
    ),
    ("/models", "get", "List the models runs can use", None, _list(MODEL), [], False),
    ("/models/{model_id}", "get", "Retrieve a model", None, MODEL, [], False),
    (
        "/chat/completions",
        "post",
        "Chat completions (forwarded to the model's upstream, or the local model)",
        bodies.ChatCompletionRequest,
        _object("chat.completion"),
        [],
        True,
    ),
]

_QUERY_SCHEMAS: dict[str, Schema] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 100},
    "order": {"type": "string", "enum": ["asc", "desc"]},
    "run_id": {"type": "string"},
    "include[]": {"type": "string", "enum": sorted(INCLUDABLE)},
    "token": {"type": "string"},
}

# What a valid request may still be refused for, by the state of what it names (which no schema
# can say): documented as the operation's 400, with the cursors of lists.
_CONFLICTS = {
    "/threads/{thread_id}/messages": "The thread has an active run.",
    "/threads/{thread_id}/runs": "The thread has an active run.",
    "/threads/{thread_id}/runs/{run_id}/submit_tool_outputs": (
        "The run is not waiting for these tool outputs (its status, or the calls named)."
    ),
    "/threads/{thread_id}/runs/{run_id}/cancel": "The run is not active.",
}


def _parameter(parameter: Parameter) -> Schema:
    if isinstance(parameter, str):
        name, schema = parameter, _QUERY_SCHEMAS[parameter]
    else:
        name, schema = parameter
    where = "header" if name[0].isupper() else "query"
    return {"name": name, "in": where, "required": False, "schema": schema}


def _served_tools_only(definitions: dict[str, Schema]) -> None:
    """Drop, from every union of tools, the tools this gateway refuses (UNSERVED_TOOLS): the
    models parse them so that the refusal can name them, but a client must not send them."""
    for name in [n for n, d in definitions.items() if _tool_type(d) in UNSERVED_TOOLS]:
        del definitions[name]
        ref = f"#/components/schemas/{name}"
        for schema in _walk(definitions):
            for key in ("oneOf", "anyOf"):
                if key in schema:
                    schema[key] = [s for s in schema[key] if s.get("$ref") != ref]
            mapping = schema.get("discriminator", {}).get("mapping", {})
            for tag in [t for t, target in mapping.items() if target == ref]:
                del mapping[tag]


def _tool_type(definition: Schema) -> str | None:
    kind = definition.get("properties", {}).get("type", {})
    tool = kind.get("const")
    return tool if isinstance(tool, str) and definition.get("title", "").endswith("Tool") else None


def _walk(node: Any) -> list[Schema]:
    """Every schema object inside `node` (dicts at any depth)."""
    found: list[Schema] = []
    pending = [node]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            found.append(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return found


def document() -> Schema:
    """The whole OpenAPI document."""
    models = sorted({op[3] for op in OPERATIONS if op[3] is not None}, key=lambda m: m.__name__)
    refs, definitions = json_schemas(models, "#/components/schemas/{model}")
    schemas = definitions.get("$defs", {})
    if UNSERVED_TOOLS:
        _served_tools_only(schemas)
    error = {"application/json": {"schema": ERROR}}
    paths: dict[str, dict[str, Schema]] = {}
    for path, method, summary, model, response, query, streams in OPERATIONS:
        responses: Schema = {
            "200": {"description": "Success", "content": _content(response, streams)},
            "default": {"description": "An error, in OpenAI's error envelope", "content": error},
        }
        refused = [_CONFLICTS[path]] if method == "post" and path in _CONFLICTS else []
        if any(isinstance(p, tuple) and p[1].get("description") == _CURSOR for p in query):
            refused.append("A cursor (`after`, `before`) names no object of this list.")
        if refused:
            # What a valid request may still be refused for: the state of what it names.
            responses["400"] = {"description": "Refused: " + " ".join(refused), "content": error}
        operation: Schema = {
            "operationId": f"{method}{path}".replace("/", "_").replace("{", "").replace("}", ""),
            "summary": summary,
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in _path_params(path)
            ]
            + [_parameter(parameter) for parameter in query],
            "responses": responses,
        }
        if model is not None:
            schema = refs[model]
            operation["requestBody"] = {
                # An absent body is read as {}: required where {} lacks a required field.
                "required": bool(model.model_json_schema().get("required")),
                "content": {"application/json": {"schema": schema}},
            }
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Assistants Gateway",
            "version": __version__,
            "description": "The OpenAI Assistants API v2, served by the gateway.",
        },
        "servers": [{"url": "/v1"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}, {}],
    }


# One server-sent event: its name, its data (JSON of the event's object, or [DONE]) and, for
# logged events, its id.
SSE_EVENT: Schema = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string"},
        "id": {"type": "string"},
    },
}


def _content(response: Schema | str, streams: bool) -> Schema:
    if response == EVENTS:
        return {"text/event-stream": {"schema": SSE_EVENT}}
    assert isinstance(response, dict)
    content: Schema = {"application/json": {"schema": response}}
    if streams:
        content["text/event-stream"] = {"schema": SSE_EVENT}
    return content


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


@functools.cache
def _encoded() -> bytes:
    """The document, encoded once: bytes, which no request can change for the next."""
    return orjson.dumps(document())


async def openapi_json(request: Request) -> Response:
    return Response(_encoded(), media_type="application/json")


routes = [resource("/openapi.json", public=True, GET=openapi_json)]
