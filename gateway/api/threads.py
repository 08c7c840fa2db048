"""HTTP routes for threads and their messages."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway import objects
from gateway.api.access import project_of
from gateway.api.context import engine_of, store_of
from gateway.api.http import ok, page_query, read_body
from gateway.api.lists import list_response
from gateway.api.requests import (
    CreateMessageRequest,
    CreateThreadRequest,
    ModifyMessageRequest,
    ModifyThreadRequest,
)
from gateway.api.routing import resource
from gateway.api.writes import delete, modify
from gateway.errors import not_found
from gateway.store import Kind, RunStore
from gateway.types import Obj


async def existing_thread(store: RunStore, thread_id: str) -> Obj:
    thread = await store.get(Kind.THREAD, thread_id)
    if thread is None:
        raise not_found("thread", thread_id)
    return thread


async def create_thread(request: Request) -> Response:
    fields = await read_body(request, CreateThreadRequest)
    return ok(await engine_of(request).create_thread(fields, project=project_of(request)))


async def get_thread(request: Request) -> Response:
    return ok(await existing_thread(store_of(request), request.path_params["thread_id"]))


async def modify_thread(request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    fields = await read_body(request, ModifyThreadRequest)

    def apply(thread: Obj) -> None:
        if "metadata" in fields:
            thread["metadata"] = fields["metadata"] or {}
        if "tool_resources" in fields:
            thread["tool_resources"] = objects.tool_resources(fields["tool_resources"])

    return ok(await modify(store_of(request), Kind.THREAD, thread_id, apply))


async def delete_thread(request: Request) -> Response:
    return ok(await engine_of(request).delete_thread(request.path_params["thread_id"]))


async def create_message(request: Request) -> Response:
    fields = await read_body(request, CreateMessageRequest)
    return ok(await engine_of(request).create_message(request.path_params["thread_id"], fields))


async def list_messages(request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    query = page_query(request)
    store = store_of(request)
    await existing_thread(store, thread_id)
    run_id = request.query_params.get("run_id")
    filters = {"thread_id": thread_id} | ({"run_id": run_id} if run_id else {})
    return await list_response(request, Kind.MESSAGE, query, **filters)


async def _message(store: RunStore, thread_id: str, message_id: str) -> Obj:
    message = await store.get(Kind.MESSAGE, message_id)
    if message is None or message["thread_id"] != thread_id:
        await existing_thread(store, thread_id)
        raise not_found("message", message_id)
    return message


async def get_message(request: Request) -> Response:
    params = request.path_params
    return ok(await _message(store_of(request), params["thread_id"], params["message_id"]))


async def modify_message(request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    message_id = request.path_params["message_id"]
    fields = await read_body(request, ModifyMessageRequest)
    store = store_of(request)
    await _message(store, thread_id, message_id)

    def apply(message: Obj) -> None:
        if "metadata" in fields:
            message["metadata"] = fields["metadata"] or {}

    return ok(await modify(store, Kind.MESSAGE, message_id, apply))


async def delete_message(request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    message_id = request.path_params["message_id"]
    store = store_of(request)
    await _message(store, thread_id, message_id)

    await delete(store, Kind.MESSAGE, message_id)
    return ok(objects.deleted(message_id, "thread.message.deleted"))


routes = [
    resource("/threads", creates=True, POST=create_thread),
    resource("/threads/{thread_id}", GET=get_thread, POST=modify_thread, DELETE=delete_thread),
    resource("/threads/{thread_id}/messages", creates=True, POST=create_message, GET=list_messages),
    resource(
        "/threads/{thread_id}/messages/{message_id}",
        GET=get_message,
        POST=modify_message,
        DELETE=delete_message,
    ),
]
