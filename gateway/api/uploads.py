"""HTTP routes for uploads: create, add a part (multipart), complete, cancel."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.access import project_of
from gateway.api.context import engine_of
from gateway.api.docs import UPLOAD, UPLOAD_PART
from gateway.api.forms import chunks, multipart
from gateway.api.http import ok, read_body
from gateway.api.requests import AddUploadPartForm, CompleteUploadRequest, CreateUploadRequest
from gateway.api.routing import op, resource


async def create_upload(request: Request) -> Response:
    fields = await read_body(request, CreateUploadRequest)
    upload = await engine_of(request).uploads.create(
        project=project_of(request),
        filename=fields["filename"],
        purpose=fields["purpose"],
        size=fields["bytes"],
        expires_after=(fields.get("expires_after") or {}).get("seconds"),
    )
    return ok(upload)


async def add_part(request: Request) -> Response:
    upload_id = request.path_params["upload_id"]
    async with multipart(request, AddUploadPartForm, file_field="data") as (upload, _):
        part = await engine_of(request).uploads.add_part(
            upload_id, chunks(upload), project=project_of(request)
        )
    return ok(part)


async def complete_upload(request: Request) -> Response:
    fields = await read_body(request, CompleteUploadRequest)
    upload = await engine_of(request).uploads.complete(
        request.path_params["upload_id"],
        fields["part_ids"],
        fields.get("md5"),
        project=project_of(request),
    )
    return ok(upload)


async def cancel_upload(request: Request) -> Response:
    upload_id = request.path_params["upload_id"]
    return ok(await engine_of(request).uploads.cancel(upload_id, project=project_of(request)))


routes = [
    resource(
        "/uploads",
        creates=True,
        POST=op(create_upload, "Create an upload", UPLOAD, body=CreateUploadRequest),
    ),
    resource(
        "/uploads/{upload_id}/parts",
        POST=op(
            add_part,
            "Add a part to an upload",
            UPLOAD_PART,
            form=AddUploadPartForm,
            file_field="data",
            refused="The upload is not pending (completed, cancelled or expired), or the part "
            "is larger than the room its declared size leaves.",
        ),
    ),
    resource(
        "/uploads/{upload_id}/complete",
        POST=op(
            complete_upload,
            "Complete an upload",
            UPLOAD,
            body=CompleteUploadRequest,
            refused="The upload is not pending, or the parts named are not its parts, or they "
            "do not add up to its size or md5.",
        ),
    ),
    resource(
        "/uploads/{upload_id}/cancel",
        POST=op(cancel_upload, "Cancel an upload", UPLOAD, refused="The upload is not pending."),
    ),
]
