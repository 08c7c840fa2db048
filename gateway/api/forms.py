"""Reading a multipart/form-data body: one file part and a few small fields.

starlette's parser (python-multipart) spools each file past 1 MB to a temporary file, so a
large upload is never held in memory; the form is closed (its temporary files deleted) when the
request is done with it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from gateway.api.requests import Body
from gateway.api.validation import validate
from gateway.errors import InvalidRequestError, UnsupportedMediaTypeError

# How much of an uploaded file is read at a time on its way to the store.
READ_BYTES = 1024 * 1024
# The longest file name kept.
MAX_FILENAME_CHARS = 1024
# `expires_after[seconds]`: the SDKs send a nested form field in brackets.
_BRACKETED = re.compile(r"^(\w+)\[(\w+)\]$")


@asynccontextmanager
async def multipart(
    request: Request, model: type[Body], *, file_field: str
) -> AsyncIterator[tuple[UploadFile, dict[str, Any]]]:
    """The file part named `file_field` and the other fields validated by `model`."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaTypeError(
            f"Send this body as multipart/form-data, with the file in the field '{file_field}'."
        )
    try:
        form = await request.form(max_files=1, max_fields=16)
    except MultiPartException as exc:
        raise InvalidRequestError(f"The multipart body could not be read: {exc}") from None
    try:
        yield _file_and_fields(form, model, file_field)
    finally:
        await form.close()


def _file_and_fields(
    form: FormData, model: type[Body], file_field: str
) -> tuple[UploadFile, dict[str, Any]]:
    upload: UploadFile | None = None
    data: dict[str, Any] = {}
    for name, value in form.multi_items():
        if name == file_field:
            if not isinstance(value, UploadFile):
                raise InvalidRequestError(
                    f"'{file_field}' must be a file part, with a filename.", param=file_field
                )
            upload = value
            continue
        if isinstance(value, UploadFile):
            raise InvalidRequestError(
                f"Only '{file_field}' may be a file; got '{name}'.", param=name
            )
        nested = _BRACKETED.match(name)
        if nested:
            outer, inner = nested.groups()
            holder = data.setdefault(outer, {})
            if not isinstance(holder, dict):
                raise InvalidRequestError(f"'{outer}' is given twice.", param=outer)
            key, param = inner, f"{outer}.{inner}"
        else:
            holder, key, param = data, name, name
        if key in holder:  # a form has no arrays: the same field twice is a mistake
            raise InvalidRequestError(f"'{name}' is given twice.", param=param)
        holder[key] = _form_value(value)
    fields = validate(model, data)
    if upload is None:
        raise InvalidRequestError(f"Missing required parameter: '{file_field}'.", param=file_field)
    return upload, fields


def _form_value(value: str) -> Any:
    """A form field's text, as a number where it is one (form fields have no types)."""
    return int(value) if value.isdigit() and len(value) < 20 else value


def filename(upload: UploadFile, file_field: str) -> str:
    """The file part's name, as the client gave it."""
    name = (upload.filename or "").strip()
    if not name:
        raise InvalidRequestError("The file part has no filename.", param=file_field)
    if len(name) > MAX_FILENAME_CHARS:
        raise InvalidRequestError(
            f"The file name is longer than {MAX_FILENAME_CHARS} characters.", param=file_field
        )
    return name


async def chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    """The uploaded file's bytes, a piece at a time."""
    while piece := await upload.read(READ_BYTES):
        yield piece
