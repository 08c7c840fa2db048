"""HTTP routes for assistants: create, list, retrieve, modify, delete."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway import objects
from gateway.api.access import project_of
from gateway.api.context import store_of
from gateway.api.http import ok, page_query, read_body, refuse_unserved_tools
from gateway.api.lists import list_response
from gateway.api.requests import CreateAssistantRequest, ModifyAssistantRequest
from gateway.api.routing import resource
from gateway.api.writes import delete, modify
from gateway.errors import not_found
from gateway.store import Kind, StoreTx


async def create_assistant(request: Request) -> Response:
    fields = await read_body(request, CreateAssistantRequest)
    refuse_unserved_tools(fields)
    assistant = objects.assistant(fields)

    project = project_of(request)

    async def write(tx: StoreTx) -> None:
        await tx.insert(Kind.ASSISTANT, assistant, project=project)

    await store_of(request).write(write)
    return ok(assistant)


async def list_assistants(request: Request) -> Response:
    return await list_response(
        request, Kind.ASSISTANT, page_query(request), project=project_of(request)
    )


async def get_assistant(request: Request) -> Response:
    assistant_id = request.path_params["assistant_id"]
    assistant = await store_of(request).get(Kind.ASSISTANT, assistant_id)
    if assistant is None:
        raise not_found("assistant", assistant_id)
    return ok(assistant)


async def modify_assistant(request: Request) -> Response:
    assistant_id = request.path_params["assistant_id"]
    changes = _modified(await read_body(request, ModifyAssistantRequest))
    refuse_unserved_tools(changes)
    assistant = await modify(
        store_of(request), Kind.ASSISTANT, assistant_id, lambda a: a.update(changes)
    )
    return ok(assistant)


def _modified(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields a modify changes. reasoning_effort is accepted but, as at OpenAI, not echoed;
    a null is "not set" and was already dropped by validation."""
    return {name: value for name, value in fields.items() if name != "reasoning_effort"}


async def delete_assistant(request: Request) -> Response:
    assistant_id = request.path_params["assistant_id"]

    await delete(store_of(request), Kind.ASSISTANT, assistant_id)
    return ok(objects.deleted(assistant_id, "assistant.deleted"))


routes = [
    resource("/assistants", creates=True, POST=create_assistant, GET=list_assistants),
    resource(
        "/assistants/{assistant_id}",
        GET=get_assistant,
        POST=modify_assistant,
        DELETE=delete_assistant,
    ),
]
