"""HTTP routes for files: upload (multipart), list, retrieve, delete, download."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.api.access import project_of
from gateway.api.context import engine_of
from gateway.api.docs import FILE, deleted, listing
from gateway.api.http import ok
from gateway.api.requests import CreateFileForm
from gateway.api.routing import op, resource
from gateway.api.validation import validate
from gateway.errors import InvalidRequestError, UnsupportedMediaTypeError
from gateway.types import PageQuery

# How much of an uploaded file is read at a time on its way to the store.
READ_BYTES = 1024 * 1024
# The longest file name kept.
MAX_FILENAME_CHARS = 1024
# `expires_after[seconds]`: the SDKs send a nested form field in brackets.
_BRACKETED = re.compile(r"^(\w+)\[(\w+)\]$")


async def create_file(request: Request) -> Response:
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaTypeError(
            "Upload a file as multipart/form-data, with the fields 'file' and 'purpose'."
        )
    try:
        form = await request.form(max_files=1, max_fields=16)
    except MultiPartException as exc:
        raise InvalidRequestError(f"The multipart body could not be read: {exc}") from None
    try:
        upload, fields = _file_and_fields(form)
        engine = engine_of(request)
        file = await engine.files.create(
            _read(upload),
            project=project_of(request),
            filename=_filename(upload),
            purpose=fields["purpose"],
            expires_after=(fields.get("expires_after") or {}).get("seconds"),
        )
    finally:
        await form.close()
    return ok(file)


def _file_and_fields(form: FormData) -> tuple[UploadFile, dict[str, Any]]:
    """The uploaded file and the other fields, validated; nested fields come as `a[b]`."""
    upload: UploadFile | None = None
    data: dict[str, Any] = {}
    for name, value in form.multi_items():
        if name == "file":
            if not isinstance(value, UploadFile):
                raise InvalidRequestError(
                    "'file' must be a file part, with a filename.", param="file"
                )
            upload = value
            continue
        if isinstance(value, UploadFile):
            raise InvalidRequestError(f"Only 'file' may be a file; got '{name}'.", param=name)
        nested = _BRACKETED.match(name)
        if nested:
            outer, inner = nested.groups()
            holder = data.setdefault(outer, {})
            if not isinstance(holder, dict):
                raise InvalidRequestError(f"'{outer}' is given twice.", param=outer)
            holder[inner] = _form_value(value)
        else:
            data[name] = _form_value(value)
    fields = validate(CreateFileForm, data)
    if upload is None:
        raise InvalidRequestError("Missing required parameter: 'file'.", param="file")
    return upload, fields


def _form_value(value: str) -> Any:
    """A form field's text, as a number where it is one (form fields have no types)."""
    return int(value) if value.isdigit() and len(value) < 20 else value


def _filename(upload: UploadFile) -> str:
    name = (upload.filename or "").strip()
    if not name:
        raise InvalidRequestError("The file part has no filename.", param="file")
    if len(name) > MAX_FILENAME_CHARS:
        raise InvalidRequestError(
            f"The file name is longer than {MAX_FILENAME_CHARS} characters.", param="file"
        )
    return name


async def _read(upload: UploadFile) -> AsyncIterator[bytes]:
    while piece := await upload.read(READ_BYTES):
        yield piece


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
    return ok(await engine_of(request).files.delete(file_id, project=project_of(request)))


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
