"""`GET /openapi.json`: the gateway's own OpenAPI 3.1 document, made from the routes.

Each documented route declares its operations with their `Doc` (routing.op), so the document
lists exactly what is served. Request bodies are the JSON Schemas of the pydantic models the
handlers validate with (so the document cannot say one thing while the server checks another);
responses name the object each operation returns and the error envelope of every failure.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount

from gateway import __version__
from gateway.api.docs import CURSOR, EVENTS, QUERY_SCHEMAS, Doc, Parameter, Schema
from gateway.api.requests import Body
from gateway.api.routing import ApiRoute, resource
from gateway.api.validation import json_schemas

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


def operations(routes: Sequence[BaseRoute]) -> list[tuple[str, str, Doc]]:
    """(path, method, doc) of every documented operation among `routes` (mounts included),
    each once."""
    found: dict[tuple[str, str], Doc] = {}
    for route in _routes(routes):
        path = route.path.replace(":path}", "}")
        for method, doc in route.docs.items():
            found.setdefault((path, method), doc)
    return [(path, method, doc) for (path, method), doc in found.items()]


def _routes(routes: Sequence[BaseRoute]) -> Iterator[ApiRoute]:
    for route in routes:
        if isinstance(route, Mount):
            yield from _routes(route.routes)
        elif isinstance(route, ApiRoute):
            yield route


def _parameter(parameter: Parameter) -> Schema:
    if isinstance(parameter, str):
        name, schema = parameter, QUERY_SCHEMAS[parameter]
    else:
        name, schema = parameter
    where = "header" if name[0].isupper() else "query"
    return {"name": name, "in": where, "required": False, "schema": schema}


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


def document(routes: Sequence[BaseRoute]) -> Schema:
    """The whole OpenAPI document of the operations documented among `routes`."""
    served = operations(routes)
    bodies = {d.body for _, _, d in served if d.body is not None}
    forms = {d.form for _, _, d in served if d.form is not None}
    models = sorted(bodies | forms, key=lambda m: m.__name__)
    refs, definitions = json_schemas(models, "#/components/schemas/{model}")
    schemas = definitions.get("$defs", {})
    error = {"application/json": {"schema": ERROR}}
    paths: dict[str, dict[str, Schema]] = {}
    for path, method, doc in served:
        responses: Schema = {
            "200": {"description": "Success", "content": _content(doc)},
            "default": {"description": "An error, in OpenAI's error envelope", "content": error},
        }
        refused = [doc.refused] if doc.refused else []
        if any(isinstance(p, tuple) and p[1].get("description") == CURSOR for p in doc.query):
            refused.append("A cursor (`after`, `before`) names no object of this list.")
        if refused:
            # What a valid request may still be refused for: the state of what it names.
            responses["400"] = {"description": "Refused: " + " ".join(refused), "content": error}
        operation: Schema = {
            "operationId": f"{method}{path}".replace("/", "_").replace("{", "").replace("}", ""),
            "summary": doc.summary,
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in _path_params(path)
            ]
            + [_parameter(parameter) for parameter in doc.query],
            "responses": responses,
        }
        if doc.body is not None:
            operation["requestBody"] = {
                # An absent body is read as {}: required where {} lacks a required field.
                "required": bool(doc.body.model_json_schema().get("required")),
                "content": {"application/json": {"schema": refs[doc.body]}},
            }
        if doc.form is not None:
            operation["requestBody"] = {
                "required": True,
                "content": _form(doc.form, doc.file_field),
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


def _content(doc: Doc) -> Schema:
    if doc.response == EVENTS:
        return {"text/event-stream": {"schema": SSE_EVENT}}
    assert isinstance(doc.response, dict)
    if doc.raw:
        return {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    content: Schema = {"application/json": {"schema": doc.response}}
    if doc.streams:
        content["text/event-stream"] = {"schema": SSE_EVENT}
    return content


def _form(model: type[Body], file_field: str = "file") -> Schema:
    """A multipart body: the model's fields, each nested one's fields as `a[b]` (how the SDKs
    send them, and the only form a multipart body can carry), and a `file` part."""
    schema = model.model_json_schema()
    nested = schema.pop("$defs", {})
    properties: Schema = {}
    for name, field in schema["properties"].items():
        inner = _nested(field, nested)
        if inner is None:
            properties[name] = field
            continue
        for key, sub in inner.get("properties", {}).items():
            properties[f"{name}[{key}]"] = sub
    properties[file_field] = {"type": "string", "format": "binary"}
    return {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "additionalProperties": False,
                "properties": properties,
                "required": [*schema.get("required", []), file_field],
            }
        }
    }


def _nested(field: Schema, definitions: Schema) -> Schema | None:
    """The object a field holds (itself, or its one non-null choice), if it is one."""
    choices = [c for c in field.get("anyOf", [field]) if c.get("type") != "null"]
    if len(choices) != 1 or "$ref" not in choices[0]:
        return None
    found: Schema = definitions[choices[0]["$ref"].rsplit("/", 1)[-1]]
    return found


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


async def openapi_json(request: Request) -> Response:
    # Made once per app and kept as bytes, which no request can change for the next.
    state = request.app.state
    encoded: bytes | None = getattr(state, "openapi_document", None)
    if encoded is None:
        encoded = state.openapi_document = orjson.dumps(document(request.app.routes))
    return Response(encoded, media_type="application/json")


routes = [resource("/openapi.json", public=True, GET=openapi_json)]
