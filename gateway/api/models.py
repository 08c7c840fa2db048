"""GET /models: the model names a run can use, as the routing configuration serves them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.context import completions_of
from gateway.api.docs import MODEL, listing
from gateway.api.http import ok
from gateway.api.routing import op, resource


async def list_models(request: Request) -> Response:
    return ok({"object": "list", "data": await completions_of(request).models()})


async def get_model(request: Request) -> Response:
    return ok(await completions_of(request).model(request.path_params["model_id"]))


routes = [
    resource("/models", GET=op(list_models, "List the models runs can use", listing(MODEL))),
    resource("/models/{model_id:path}", GET=op(get_model, "Retrieve a model", MODEL)),
]
