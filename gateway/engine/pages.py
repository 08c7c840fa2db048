"""One page of a list of stored objects, in OpenAI's list envelope."""

from __future__ import annotations

from gateway import objects
from gateway.errors import InvalidRequestError
from gateway.store import CursorNotFoundError, Kind, RunStore
from gateway.types import PageQuery
from gateway.wire import Page


async def page_of(store: RunStore, kind: Kind, query: PageQuery, **filters: str) -> Page:
    """One page of `kind` in the list envelope; a cursor naming nothing listed is a 400."""
    try:
        items, has_more = await store.list_page(kind, query, **filters)
    except CursorNotFoundError as exc:
        raise InvalidRequestError(
            f"Invalid '{exc.param}': no object with id '{exc.cursor}' in this list.",
            param=exc.param,
        ) from None
    return objects.page(items, has_more)
