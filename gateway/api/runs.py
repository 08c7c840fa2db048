"""HTTP routes for runs and run steps."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.context import engine_of, store_of
from gateway.api.http import ok, page_query, read_body
from gateway.api.lists import list_response
from gateway.api.requests import (
    CreateRunRequest,
    CreateThreadAndRunRequest,
    ModifyRunRequest,
    SubmitToolOutputsRunRequest,
)
from gateway.api.threads import existing_thread
from gateway.errors import InvalidRequestError, not_found
from gateway.store import Kind

INCLUDABLE = frozenset({"step_details.tool_calls[*].file_search.results[*].content"})


def _no_stream_yet(fields: dict[str, Any]) -> None:
    if fields.get("stream"):
        raise InvalidRequestError(
            'Streaming responses are not available on this server yet; send "stream": false.',
            param="stream",
            code="unsupported_parameter",
        )


def _check_include(request: Request) -> None:
    for value in request.query_params.getlist("include[]") + request.query_params.getlist(
        "include"
    ):
        if value not in INCLUDABLE:
            raise InvalidRequestError(
                f"Invalid value for 'include[]': {value!r}. Supported values are: "
                + ", ".join(sorted(INCLUDABLE))
                + ".",
                param="include",
            )


async def create_run(request: Request) -> Response:
    _check_include(request)
    fields = await read_body(request, CreateRunRequest)
    _no_stream_yet(fields)
    return ok(await engine_of(request).create_run(request.path_params["thread_id"], fields))


async def create_thread_and_run(request: Request) -> Response:
    fields = await read_body(request, CreateThreadAndRunRequest)
    _no_stream_yet(fields)
    return ok(await engine_of(request).create_thread_and_run(fields))


async def list_runs(request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    query = page_query(request)
    await existing_thread(store_of(request), thread_id)
    return await list_response(request, Kind.RUN, query, thread_id=thread_id)


async def get_run(request: Request) -> Response:
    params = request.path_params
    return ok(await engine_of(request).get_run(params["thread_id"], params["run_id"]))


async def modify_run(request: Request) -> Response:
    params = request.path_params
    fields = await read_body(request, ModifyRunRequest)
    engine = engine_of(request)
    if "metadata" not in fields:
        return ok(await engine.get_run(params["thread_id"], params["run_id"]))
    return ok(await engine.modify_run(params["thread_id"], params["run_id"], fields["metadata"]))


async def submit_tool_outputs(request: Request) -> Response:
    params = request.path_params
    fields = await read_body(request, SubmitToolOutputsRunRequest)
    _no_stream_yet(fields)
    run = await engine_of(request).submit_tool_outputs(
        params["thread_id"], params["run_id"], fields["tool_outputs"]
    )
    return ok(run)


async def cancel_run(request: Request) -> Response:
    # Clients send Content-Type: application/json with an empty body here: never parse it.
    params = request.path_params
    return ok(await engine_of(request).cancel_run(params["thread_id"], params["run_id"]))


async def list_steps(request: Request) -> Response:
    params = request.path_params
    _check_include(request)
    query = page_query(request)
    await engine_of(request).get_run(params["thread_id"], params["run_id"])
    return await list_response(request, Kind.STEP, query, run_id=params["run_id"])


async def get_step(request: Request) -> Response:
    params = request.path_params
    _check_include(request)
    await engine_of(request).get_run(params["thread_id"], params["run_id"])
    step = await store_of(request).get(Kind.STEP, params["step_id"])
    if step is None or step["run_id"] != params["run_id"]:
        raise not_found("run step", params["step_id"])
    return ok(step)


routes = [
    Route("/threads/runs", create_thread_and_run, methods=["POST"]),
    Route("/threads/{thread_id}/runs", create_run, methods=["POST"]),
    Route("/threads/{thread_id}/runs", list_runs, methods=["GET"]),
    Route("/threads/{thread_id}/runs/{run_id}", get_run, methods=["GET"]),
    Route("/threads/{thread_id}/runs/{run_id}", modify_run, methods=["POST"]),
    Route(
        "/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
        submit_tool_outputs,
        methods=["POST"],
    ),
    Route("/threads/{thread_id}/runs/{run_id}/cancel", cancel_run, methods=["POST"]),
    Route("/threads/{thread_id}/runs/{run_id}/steps", list_steps, methods=["GET"]),
    Route("/threads/{thread_id}/runs/{run_id}/steps/{step_id}", get_step, methods=["GET"]),
]
