"""GET /models: the model names a run can use, as the routing configuration serves them."""

from __future__ import annotations

from typing import cast

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.http import ok
from gateway.api.routing import resource
from gateway.errors import not_found
from gateway.models.router import ModelRouter


def _router(request: Request) -> ModelRouter:
    return cast(ModelRouter, request.app.state.router)


async def list_models(request: Request) -> Response:
    return ok({"object": "list", "data": await _router(request).models()})


async def get_model(request: Request) -> Response:
    model_id = request.path_params["model_id"]
    for model in await _router(request).models():
        if model["id"] == model_id:
            return ok(model)
    raise not_found("model", model_id)


routes = [
    resource("/models", GET=list_models),
    resource("/models/{model_id:path}", GET=get_model),
]
