"""HTTP routes for threads and their messages."""

from __future__ import annotations

from typing import cast

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.access import project_of
from gateway.api.context import catalog_of, engine_of
from gateway.api.docs import ACTIVE_RUN, MESSAGE, THREAD, deleted, listing, page
from gateway.api.http import ok, page_query, read_body
from gateway.api.requests import (
    CreateMessageRequest,
    CreateThreadRequest,
    ModifyMessageRequest,
    ModifyThreadRequest,
)
from gateway.api.routing import op, resource
from gateway.bodies import MessageBody, ThreadBody


async def create_thread(request: Request) -> Response:
    fields = cast(ThreadBody, await read_body(request, CreateThreadRequest))
    return ok(await catalog_of(request).create_thread(fields, project=project_of(request)))


async def get_thread(request: Request) -> Response:
    return ok(await catalog_of(request).get_thread(request.path_params["thread_id"]))


async def modify_thread(request: Request) -> Response:
    fields = cast(ThreadBody, await read_body(request, ModifyThreadRequest))
    thread_id, project = request.path_params["thread_id"], project_of(request)
    return ok(await catalog_of(request).modify_thread(thread_id, fields, project=project))


async def delete_thread(request: Request) -> Response:
    return ok(await engine_of(request).delete_thread(request.path_params["thread_id"]))


async def create_message(request: Request) -> Response:
    fields = cast(MessageBody, await read_body(request, CreateMessageRequest))
    return ok(await engine_of(request).create_message(request.path_params["thread_id"], fields))


async def list_messages(request: Request) -> Response:
    query = page_query(request)
    run_id = request.query_params.get("run_id") or ""
    thread_id = request.path_params["thread_id"]
    return ok(await catalog_of(request).list_messages(thread_id, query, run_id=run_id))


async def get_message(request: Request) -> Response:
    params = request.path_params
    return ok(await catalog_of(request).get_message(params["thread_id"], params["message_id"]))


async def modify_message(request: Request) -> Response:
    params = request.path_params
    fields = await read_body(request, ModifyMessageRequest)
    if "metadata" not in fields:
        message = await catalog_of(request).get_message(params["thread_id"], params["message_id"])
        return ok(message)
    message = await catalog_of(request).modify_message(
        params["thread_id"], params["message_id"], fields["metadata"]
    )
    return ok(message)


async def delete_message(request: Request) -> Response:
    params = request.path_params
    return ok(await catalog_of(request).delete_message(params["thread_id"], params["message_id"]))


routes = [
    resource(
        "/threads",
        creates=True,
        POST=op(create_thread, "Create a thread", THREAD, body=CreateThreadRequest),
    ),
    resource(
        "/threads/{thread_id}",
        GET=op(get_thread, "Retrieve a thread", THREAD),
        POST=op(modify_thread, "Modify a thread", THREAD, body=ModifyThreadRequest),
        DELETE=op(delete_thread, "Delete a thread", deleted("thread.deleted")),
    ),
    resource(
        "/threads/{thread_id}/messages",
        creates=True,
        POST=op(
            create_message,
            "Create a message",
            MESSAGE,
            body=CreateMessageRequest,
            refused=ACTIVE_RUN,
        ),
        GET=op(list_messages, "List messages", listing(MESSAGE), query=(*page("msg_"), "run_id")),
    ),
    resource(
        "/threads/{thread_id}/messages/{message_id}",
        GET=op(get_message, "Retrieve a message", MESSAGE),
        POST=op(modify_message, "Modify a message", MESSAGE, body=ModifyMessageRequest),
        DELETE=op(delete_message, "Delete a message", deleted("thread.message.deleted")),
    ),
]
