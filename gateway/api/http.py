"""Request decoding and response encoding shared by the route modules.

Bodies are decoded with orjson and validated by the models of `requests.py` (`validation.py`); every
failure becomes a `GatewayError` that names the bad field. Responses are encoded once, with orjson.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.limits import check_fields
from gateway.api.requests import Body
from gateway.api.validation import validate
from gateway.errors import InvalidRequestError, UnsupportedMediaTypeError
from gateway.settings import Settings
from gateway.types import AnyObj, PageQuery

_JSON_TYPES = ("application/json", "text/json")


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def read_body(request: Request, model: type[Body]) -> dict[str, Any]:
    """The request's JSON body validated by `model`, as a dict of the fields the client set."""
    raw = await request.body()
    if not raw:  # no body at all is no fields (the SDKs send none to cancel); blanks are not JSON
        data: object = {}
    else:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type and content_type not in _JSON_TYPES and not content_type.endswith("+json"):
            raise UnsupportedMediaTypeError(
                f"Unsupported content type {content_type!r}: send the body as application/json."
            )
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequestError(
                f"We could not parse the JSON body of your request ({exc}). The OpenAI API "
                "expects a JSON payload.",
                code="invalid_json",
            ) from None
    if not isinstance(data, dict):
        raise InvalidRequestError("The request body must be a JSON object.", code="invalid_type")
    fields = validate(model, data)
    check_fields(fields, cast(Settings, request.app.state.settings))
    return fields


def page_query(request: Request) -> PageQuery:
    params = request.query_params
    raw_limit = params.get("limit", "20")
    try:
        limit = int(raw_limit)
    except ValueError:
        raise InvalidRequestError(
            f"Invalid 'limit': expected an integer from 1 to 100, got {raw_limit!r}.",
            param="limit",
            code="integer_below_min_value" if raw_limit.startswith("-") else None,
        ) from None
    if not 1 <= limit <= 100:
        raise InvalidRequestError(
            f"Invalid 'limit': {limit} is out of range; it must be from 1 to 100.",
            param="limit",
            code="integer_below_min_value" if limit < 1 else "integer_above_max_value",
        )
    order = params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequestError(
            f"Invalid 'order': expected 'asc' or 'desc', got {order!r}.", param="order"
        )
    return PageQuery(
        limit=limit,
        order="asc" if order == "asc" else "desc",
        after=params.get("after") or None,
        before=params.get("before") or None,
    )


def ok(obj: AnyObj) -> JSONResponse:
    return JSONResponse(obj)
