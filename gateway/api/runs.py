"""HTTP routes for runs and run steps."""

from __future__ import annotations

from typing import cast

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.access import key_of, project_of
from gateway.api.context import catalog_of, engine_of, settings_of
from gateway.api.docs import (
    ACTIVE_RUN,
    EVENTS,
    RUN,
    STEP,
    TOKEN,
    Parameter,
    Schema,
    listing,
    page,
)
from gateway.api.http import JSONResponse, ok, page_query, read_body
from gateway.api.requests import (
    CreateRunRequest,
    CreateThreadAndRunRequest,
    ModifyRunRequest,
    SubmitToolOutputsRunRequest,
)
from gateway.api.routing import op, resource
from gateway.api.streaming import MAX_EVENT_ID_DIGITS, run_events, stream_response
from gateway.bodies import RunBody, ThreadAndRunBody
from gateway.errors import InvalidRequestError
from gateway.objects import now
from gateway.tokens import StreamTokens
from gateway.types import AnyObj

INCLUDABLE = frozenset({"step_details.tool_calls[*].file_search.results[*].content"})


def run_response(request: Request, run: AnyObj) -> Response:
    """A run, with the hint the SDK's poll helpers use to pace their GETs."""
    return JSONResponse(
        run, headers={"openai-poll-after-ms": str(settings_of(request).poll_after_ms)}
    )


def _check_include(request: Request) -> bool:
    """Whether the request asks for file_search results' content (the one thing to include)."""
    values = request.query_params.getlist("include[]") + request.query_params.getlist("include")
    for value in values:
        if value not in INCLUDABLE:
            raise InvalidRequestError(
                f"Invalid value for 'include[]': {value!r}. Supported values are: "
                + ", ".join(sorted(INCLUDABLE))
                + ".",
                param="include",
            )
    return bool(values)


async def create_run(request: Request) -> Response:
    _check_include(request)
    fields = cast(RunBody, await read_body(request, CreateRunRequest))
    engine, thread_id = engine_of(request), request.path_params["thread_id"]
    project, key = project_of(request), key_of(request)
    if fields.get("stream"):
        stream = await engine.stream_run(thread_id, fields, project=project, key=key)
        return stream_response(request, stream)
    return run_response(
        request, await engine.create_run(thread_id, fields, project=project, key=key)
    )


async def create_thread_and_run(request: Request) -> Response:
    fields = cast(ThreadAndRunBody, await read_body(request, CreateThreadAndRunRequest))
    engine, project, key = engine_of(request), project_of(request), key_of(request)
    if fields.get("stream"):
        stream = await engine.stream_thread_and_run(fields, project=project, key=key)
        return stream_response(request, stream)
    return run_response(
        request, await engine.create_thread_and_run(fields, project=project, key=key)
    )


async def list_runs(request: Request) -> Response:
    query = page_query(request)
    return ok(await catalog_of(request).list_runs(request.path_params["thread_id"], query))


async def get_run(request: Request) -> Response:
    params = request.path_params
    return run_response(
        request, await engine_of(request).get_run(params["thread_id"], params["run_id"])
    )


async def modify_run(request: Request) -> Response:
    params = request.path_params
    fields = await read_body(request, ModifyRunRequest)
    engine = engine_of(request)
    if "metadata" not in fields:
        return run_response(request, await engine.get_run(params["thread_id"], params["run_id"]))
    run = await engine.modify_run(params["thread_id"], params["run_id"], fields["metadata"])
    return run_response(request, run)


async def submit_tool_outputs(request: Request) -> Response:
    params = request.path_params
    fields = await read_body(request, SubmitToolOutputsRunRequest)
    engine = engine_of(request)
    thread_id, run_id, outputs = params["thread_id"], params["run_id"], fields["tool_outputs"]
    if fields.get("stream"):
        stream = await engine.stream_tool_outputs(thread_id, run_id, outputs)
        return stream_response(request, stream)
    return run_response(request, await engine.submit_tool_outputs(thread_id, run_id, outputs))


async def cancel_run(request: Request) -> Response:
    # Clients send Content-Type: application/json with an empty body here: never parse it.
    params = request.path_params
    run = await engine_of(request).cancel_run(params["thread_id"], params["run_id"])
    return run_response(request, run)


async def stream_token(request: Request) -> Response:
    """A token that opens this run's event stream from a browser, with its expiry."""
    params = request.path_params
    await engine_of(request).get_run(params["thread_id"], params["run_id"])
    tokens = cast(StreamTokens, request.app.state.tokens)
    token = tokens.mint(params["thread_id"], params["run_id"])
    path = f"/v1/threads/{params['thread_id']}/runs/{params['run_id']}/events"
    return JSONResponse(
        {
            "object": "run.stream_token",
            "token": token,
            "expires_at": now() + tokens.ttl_seconds,
            "url": f"{path}?token={token}",
        }
    )


async def list_steps(request: Request) -> Response:
    params = request.path_params
    content = _check_include(request)
    query = page_query(request)
    steps = await catalog_of(request).list_steps(
        params["thread_id"], params["run_id"], query, with_content=content
    )
    return ok(steps)


async def get_step(request: Request) -> Response:
    params = request.path_params
    content = _check_include(request)
    step = await catalog_of(request).get_step(
        params["thread_id"], params["run_id"], params["step_id"], with_content=content
    )
    return ok(step)


# An event's id, as a stream's position (the query's `after` or the `Last-Event-ID` header):
# at most 18 digits; empty is no position.
POSITION: Schema = {"type": "string", "pattern": f"^[0-9]{{0,{MAX_EVENT_ID_DIGITS}}}$"}
INCLUDE: Parameter = ("include[]", {"type": "string", "enum": sorted(INCLUDABLE)})

routes = [
    resource(
        "/threads/runs",
        creates=True,
        POST=op(
            create_thread_and_run,
            "Create a thread and run it",
            RUN,
            body=CreateThreadAndRunRequest,
            streams=True,
        ),
    ),
    resource(
        "/threads/{thread_id}/runs",
        creates=True,
        POST=op(
            create_run,
            "Create a run",
            RUN,
            body=CreateRunRequest,
            query=(INCLUDE,),
            streams=True,
            refused=ACTIVE_RUN,
        ),
        GET=op(list_runs, "List runs", listing(RUN), query=page("run_")),
    ),
    resource(
        "/threads/{thread_id}/runs/{run_id}",
        GET=op(get_run, "Retrieve a run", RUN),
        POST=op(modify_run, "Modify a run", RUN, body=ModifyRunRequest),
    ),
    resource(
        "/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
        creates=True,
        POST=op(
            submit_tool_outputs,
            "Submit tool outputs to a run",
            RUN,
            body=SubmitToolOutputsRunRequest,
            streams=True,
            refused=(
                "The run is not waiting for these tool outputs (its status, or the calls named)."
            ),
        ),
    ),
    resource(
        "/threads/{thread_id}/runs/{run_id}/cancel",
        POST=op(cancel_run, "Cancel a run", RUN, refused="The run is not active."),
    ),
    resource(
        "/threads/{thread_id}/runs/{run_id}/events",
        token_allowed=True,
        GET=op(
            run_events,
            "Stream a run's events (resumable with Last-Event-ID or ?after=)",
            EVENTS,
            query=(("after", POSITION), "token", ("Last-Event-ID", POSITION)),
        ),
    ),
    resource(
        "/threads/{thread_id}/runs/{run_id}/stream_token",
        POST=op(stream_token, "Make a browser token for a run's event stream", TOKEN),
    ),
    resource(
        "/threads/{thread_id}/runs/{run_id}/steps",
        GET=op(list_steps, "List run steps", listing(STEP), query=(*page("step_"), INCLUDE)),
    ),
    resource(
        "/threads/{thread_id}/runs/{run_id}/steps/{step_id}",
        GET=op(get_step, "Retrieve a run step", STEP, query=(INCLUDE,)),
    ),
]
