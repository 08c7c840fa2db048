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
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response

from gateway import __version__
from gateway.api import requests as bodies
from gateway.api.routing import resource

Schema = dict[str, Any]

_PAGE = ["limit", "order", "after", "before"]
_INCLUDE = ["include[]"]


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


# (path, method, summary, request model, response, query parameters, may stream)
Operation = tuple[str, str, str, type[BaseModel] | None, Schema | str, list[str], bool]
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
    ("/assistants", "get", "List assistants", None, _list(ASSISTANT), _PAGE, False),
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
        [*_PAGE, "run_id"],
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
    ("/threads/{thread_id}/runs", "get", "List runs", None, _list(RUN), _PAGE, False),
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
        ["after", "token"],
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
        [*_PAGE, *_INCLUDE],
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
    "after": {"type": "string"},
    "before": {"type": "string"},
    "run_id": {"type": "string"},
    "include[]": {"type": "string"},
    "token": {"type": "string"},
}


def document() -> Schema:
    """The whole OpenAPI document."""
    models = sorted({op[3] for op in OPERATIONS if op[3] is not None}, key=lambda m: m.__name__)
    refs, definitions = models_json_schema(
        [(model, "validation") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Schema]] = {}
    for path, method, summary, model, response, query, streams in OPERATIONS:
        operation: Schema = {
            "operationId": f"{method}{path}".replace("/", "_").replace("{", "").replace("}", ""),
            "summary": summary,
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in _path_params(path)
            ]
            + [
                {"name": name, "in": "query", "required": False, "schema": _QUERY_SCHEMAS[name]}
                for name in query
            ],
            "responses": {
                "200": {"description": "Success", "content": _content(response, streams)},
                "default": {
                    "description": "An error, in OpenAI's error envelope",
                    "content": {"application/json": {"schema": ERROR}},
                },
            },
        }
        if model is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(model, "validation")]}},
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
            "schemas": definitions.get("$defs", {}),
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
