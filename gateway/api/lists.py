"""The list envelope of every list endpoint, with cursor errors turned into 400s."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway import objects
from gateway.api.context import store_of
from gateway.api.http import ok
from gateway.errors import InvalidRequestError
from gateway.store import CursorNotFoundError, Kind, PageQuery


async def list_response(request: Request, kind: Kind, query: PageQuery, **filters: str) -> Response:
    try:
        items, has_more = await store_of(request).list_page(kind, query, **filters)
    except CursorNotFoundError as exc:
        raise InvalidRequestError(
            f"Invalid '{exc.param}': no object with id '{exc.cursor}' in this list.",
            param=exc.param,
        ) from None
    return ok(objects.page(items, has_more))
