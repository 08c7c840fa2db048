"""HTTP routes for assistants: create, list, retrieve, modify, delete."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway import objects
from gateway.api.context import store_of
from gateway.api.http import ok, page_query, read_body
from gateway.api.lists import list_response
from gateway.api.requests import CreateAssistantRequest, ModifyAssistantRequest
from gateway.api.routing import resource
from gateway.errors import not_found
from gateway.store import Kind, StoreTx
from gateway.types import Obj


async def create_assistant(request: Request) -> Response:
    fields = await read_body(request, CreateAssistantRequest)
    assistant = objects.assistant(fields)

    async def write(tx: StoreTx) -> None:
        await tx.insert(Kind.ASSISTANT, assistant)

    await store_of(request).write(write)
    return ok(assistant)


async def list_assistants(request: Request) -> Response:
    return await list_response(request, Kind.ASSISTANT, page_query(request))


async def get_assistant(request: Request) -> Response:
    assistant_id = request.path_params["assistant_id"]
    assistant = await store_of(request).get(Kind.ASSISTANT, assistant_id)
    if assistant is None:
        raise not_found("assistant", assistant_id)
    return ok(assistant)


async def modify_assistant(request: Request) -> Response:
    assistant_id = request.path_params["assistant_id"]
    fields = await read_body(request, ModifyAssistantRequest)

    async def write(tx: StoreTx) -> Obj:
        assistant = await tx.get(Kind.ASSISTANT, assistant_id)
        if assistant is None:
            raise not_found("assistant", assistant_id)
        assistant.update(_modified(fields))
        await tx.save(Kind.ASSISTANT, assistant)
        return assistant

    return ok(await store_of(request).write(write))


def _modified(fields: dict[str, Any]) -> dict[str, Any]:
    """Fields as stored after a modify: null resets a field to its default."""
    changes: dict[str, Any] = {}
    defaults: dict[str, Any] = {
        "tools": [],
        "metadata": {},
        "tool_resources": {},
        "temperature": 1.0,
        "top_p": 1.0,
        "response_format": "auto",
    }
    for name, value in fields.items():
        if name == "reasoning_effort":
            continue  # accepted but, as at OpenAI, not echoed in the assistant object
        if name == "model" and value is None:
            continue  # the model cannot be unset
        changes[name] = defaults.get(name) if value is None else value
    return changes


async def delete_assistant(request: Request) -> Response:
    assistant_id = request.path_params["assistant_id"]

    async def write(tx: StoreTx) -> bool:
        return await tx.delete(Kind.ASSISTANT, assistant_id)

    if not await store_of(request).write(write):
        raise not_found("assistant", assistant_id)
    return ok(objects.deleted(assistant_id, "assistant.deleted"))


routes = [
    resource("/assistants", POST=create_assistant, GET=list_assistants),
    resource(
        "/assistants/{assistant_id}",
        GET=get_assistant,
        POST=modify_assistant,
        DELETE=delete_assistant,
    ),
]
