"""HTTP routes for assistants: create, list, retrieve, modify, delete."""

from __future__ import annotations

from typing import cast

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.access import project_of
from gateway.api.context import catalog_of
from gateway.api.docs import ASSISTANT, deleted, listing, page
from gateway.api.http import ok, page_query, read_body
from gateway.api.requests import CreateAssistantRequest, ModifyAssistantRequest
from gateway.api.routing import op, resource
from gateway.bodies import AssistantBody, AssistantChanges


async def create_assistant(request: Request) -> Response:
    fields = cast(AssistantBody, await read_body(request, CreateAssistantRequest))
    return ok(await catalog_of(request).create_assistant(fields, project=project_of(request)))


async def list_assistants(request: Request) -> Response:
    query = page_query(request)
    return ok(await catalog_of(request).list_assistants(query, project=project_of(request)))


async def get_assistant(request: Request) -> Response:
    return ok(await catalog_of(request).get_assistant(request.path_params["assistant_id"]))


async def modify_assistant(request: Request) -> Response:
    changes = cast(AssistantChanges, await read_body(request, ModifyAssistantRequest))
    assistant_id = request.path_params["assistant_id"]
    catalog = catalog_of(request)
    return ok(await catalog.modify_assistant(assistant_id, changes, project=project_of(request)))


async def delete_assistant(request: Request) -> Response:
    return ok(await catalog_of(request).delete_assistant(request.path_params["assistant_id"]))


routes = [
    resource(
        "/assistants",
        creates=True,
        POST=op(create_assistant, "Create an assistant", ASSISTANT, body=CreateAssistantRequest),
        GET=op(list_assistants, "List assistants", listing(ASSISTANT), query=page("asst_")),
    ),
    resource(
        "/assistants/{assistant_id}",
        GET=op(get_assistant, "Retrieve an assistant", ASSISTANT),
        POST=op(modify_assistant, "Modify an assistant", ASSISTANT, body=ModifyAssistantRequest),
        DELETE=op(delete_assistant, "Delete an assistant", deleted("assistant.deleted")),
    ),
]
