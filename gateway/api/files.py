"""HTTP routes for files: upload (multipart), list, retrieve, delete, download."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.api.access import project_of
from gateway.api.context import engine_of
from gateway.api.docs import FILE, deleted, listing
from gateway.api.forms import chunks, filename, multipart
from gateway.api.http import ok
from gateway.api.requests import CreateFileForm
from gateway.api.routing import op, resource
from gateway.errors import InvalidRequestError
from gateway.types import PageQuery


async def create_file(request: Request) -> Response:
    async with multipart(request, CreateFileForm, file_field="file") as (upload, fields):
        file = await engine_of(request).files.create(
            chunks(upload),
            project=project_of(request),
            filename=filename(upload, "file"),
            purpose=fields["purpose"],
            expires_after=(fields.get("expires_after") or {}).get("seconds"),
        )
    return ok(file)


async def list_files(request: Request) -> Response:
    params = request.query_params
    query = _file_page(params.get("limit"), params.get("order"), params.get("after"))
    purpose = params.get("purpose") or None
    engine = engine_of(request)
    return ok(await engine.files.list(query, project=project_of(request), purpose=purpose))


def _file_page(limit: str | None, order: str | None, after: str | None) -> PageQuery:
    """The files list's paging: limit 1..10000 (default 10000), order, and `after` only."""
    try:
        count = 10_000 if limit is None else int(limit)
    except ValueError:
        count = -1
    if not 1 <= count <= 10_000:
        raise InvalidRequestError(
            f"Invalid 'limit': {limit!r}; it must be an integer from 1 to 10000.", param="limit"
        )
    if order not in (None, "asc", "desc"):
        raise InvalidRequestError(
            f"Invalid 'order': {order!r}; it must be 'asc' or 'desc'.", param="order"
        )
    return PageQuery(limit=count, order="asc" if order == "asc" else "desc", after=after or None)


async def get_file(request: Request) -> Response:
    file_id = request.path_params["file_id"]
    return ok(await engine_of(request).files.get(file_id, project=project_of(request)))


async def delete_file(request: Request) -> Response:
    file_id = request.path_params["file_id"]
    return ok(await engine_of(request).delete_file(file_id, project=project_of(request)))


async def download_file(request: Request) -> Response:
    file_id = request.path_params["file_id"]
    files = engine_of(request).files
    file, chunks = await files.content(file_id, project=project_of(request))
    # Bytes, never a type a browser would render: an uploaded page must not run as this
    # origin's (where the playground keeps its key).
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={
            "content-length": str(file["bytes"]),
            "content-disposition": _attachment(file["filename"]),
            "x-content-type-options": "nosniff",
        },
    )


def _attachment(filename: str) -> str:
    """A Content-Disposition naming the file: ASCII for old clients, UTF-8 for the rest."""
    plain = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"


routes = [
    resource(
        "/files",
        POST=op(create_file, "Upload a file", FILE, form=CreateFileForm),
        GET=op(
            list_files,
            "List files",
            listing(FILE),
            query=(
                ("purpose", {"type": "string"}),
                ("limit", {"type": "integer", "minimum": 1, "maximum": 10_000}),
                "order",
                ("after", {"type": "string"}),
            ),
        ),
    ),
    resource(
        "/files/{file_id}",
        GET=op(get_file, "Retrieve a file", FILE),
        DELETE=op(delete_file, "Delete a file", deleted("file")),
    ),
    resource(
        "/files/{file_id}/content",
        GET=op(download_file, "Download a file's content", {"type": "string"}, raw=True),
    ),
]
