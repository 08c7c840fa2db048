"""HTTP routes for vector stores: the stores, their files, file batches and search."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.access import project_of
from gateway.api.context import engine_of
from gateway.api.docs import (
    FILE_BATCH,
    SEARCH_PAGE,
    VECTOR_STORE,
    VECTOR_STORE_FILE,
    VECTOR_STORE_FILE_CONTENT,
    deleted,
    listing,
    page,
)
from gateway.api.http import ok, page_query, read_body
from gateway.api.requests import (
    CreateFileBatchRequest,
    CreateVectorStoreFileRequest,
    CreateVectorStoreRequest,
    ModifyVectorStoreRequest,
    SearchVectorStoreRequest,
    UpdateVectorStoreFileRequest,
)
from gateway.api.routing import op, resource
from gateway.errors import InvalidRequestError

_STATUSES = ("in_progress", "completed", "failed", "cancelled")
STATUS_FILTER = ("filter", {"type": "string", "enum": list(_STATUSES)})


def _status_filter(request: Request) -> str | None:
    status = request.query_params.get("filter") or None
    if status is not None and status not in _STATUSES:
        raise InvalidRequestError(
            f"Invalid 'filter': {status!r}; it must be one of {', '.join(_STATUSES)}.",
            param="filter",
        )
    return status


async def create_store(request: Request) -> Response:
    fields = await read_body(request, CreateVectorStoreRequest)
    vector_stores = engine_of(request).vector_stores
    return ok(
        await vector_stores.create(
            project=project_of(request),
            name=fields.get("name"),
            file_ids=fields.get("file_ids") or (),
            chunking_strategy=fields.get("chunking_strategy"),
            expires_after=fields.get("expires_after"),
            metadata=fields.get("metadata"),
        )
    )


async def list_stores(request: Request) -> Response:
    vector_stores = engine_of(request).vector_stores
    return ok(await vector_stores.list(page_query(request), project=project_of(request)))


async def get_store(request: Request) -> Response:
    vector_stores = engine_of(request).vector_stores
    store_id = request.path_params["vector_store_id"]
    return ok(await vector_stores.get(store_id, project=project_of(request)))


async def modify_store(request: Request) -> Response:
    changes = await read_body(request, ModifyVectorStoreRequest)
    vector_stores = engine_of(request).vector_stores
    store_id = request.path_params["vector_store_id"]
    return ok(await vector_stores.modify(store_id, changes, project=project_of(request)))


async def delete_store(request: Request) -> Response:
    vector_stores = engine_of(request).vector_stores
    store_id = request.path_params["vector_store_id"]
    return ok(await vector_stores.delete(store_id, project=project_of(request)))


async def search_store(request: Request) -> Response:
    fields = await read_body(request, SearchVectorStoreRequest)
    query = fields["query"]
    options: dict[str, Any] = fields.get("ranking_options") or {}
    vector_stores = engine_of(request).vector_stores
    return ok(
        await vector_stores.search(
            request.path_params["vector_store_id"],
            [query] if isinstance(query, str) else query,
            project=project_of(request),
            max_results=fields.get("max_num_results") or 10,
            threshold=options.get("score_threshold") or 0.0,
            filters=fields.get("filters"),
            rewrite=bool(fields.get("rewrite_query")),
        )
    )


async def add_file(request: Request) -> Response:
    fields = await read_body(request, CreateVectorStoreFileRequest)
    vector_stores = engine_of(request).vector_stores
    return ok(
        await vector_stores.add_file(
            request.path_params["vector_store_id"],
            fields["file_id"],
            project=project_of(request),
            chunking_strategy=fields.get("chunking_strategy"),
            attributes=fields.get("attributes"),
        )
    )


async def list_files(request: Request) -> Response:
    vector_stores = engine_of(request).vector_stores
    return ok(
        await vector_stores.list_files(
            request.path_params["vector_store_id"],
            page_query(request),
            project=project_of(request),
            status=_status_filter(request),
        )
    )


async def get_file(request: Request) -> Response:
    params = request.path_params
    vector_stores = engine_of(request).vector_stores
    return ok(
        await vector_stores.get_file(
            params["vector_store_id"], params["file_id"], project=project_of(request)
        )
    )


async def update_file(request: Request) -> Response:
    fields = await read_body(request, UpdateVectorStoreFileRequest)
    params = request.path_params
    vector_stores = engine_of(request).vector_stores
    return ok(
        await vector_stores.update_file(
            params["vector_store_id"],
            params["file_id"],
            fields.get("attributes"),
            project=project_of(request),
        )
    )


async def delete_file(request: Request) -> Response:
    params = request.path_params
    vector_stores = engine_of(request).vector_stores
    return ok(
        await vector_stores.delete_file(
            params["vector_store_id"], params["file_id"], project=project_of(request)
        )
    )


async def file_content(request: Request) -> Response:
    params = request.path_params
    vector_stores = engine_of(request).vector_stores
    return ok(
        await vector_stores.file_content(
            params["vector_store_id"], params["file_id"], project=project_of(request)
        )
    )


async def create_batch(request: Request) -> Response:
    fields = await read_body(request, CreateFileBatchRequest)
    shared = {
        "chunking_strategy": fields.get("chunking_strategy"),
        "attributes": fields.get("attributes"),
    }
    files = fields.get("files") or [{"file_id": f, **shared} for f in fields["file_ids"]]
    vector_stores = engine_of(request).vector_stores
    return ok(
        await vector_stores.create_batch(
            request.path_params["vector_store_id"], files, project=project_of(request)
        )
    )


async def get_batch(request: Request) -> Response:
    params = request.path_params
    vector_stores = engine_of(request).vector_stores
    return ok(
        await vector_stores.get_batch(
            params["vector_store_id"], params["batch_id"], project=project_of(request)
        )
    )


async def cancel_batch(request: Request) -> Response:
    params = request.path_params
    vector_stores = engine_of(request).vector_stores
    return ok(
        await vector_stores.cancel_batch(
            params["vector_store_id"], params["batch_id"], project=project_of(request)
        )
    )


async def list_batch_files(request: Request) -> Response:
    params = request.path_params
    vector_stores = engine_of(request).vector_stores
    await vector_stores.get_batch(
        params["vector_store_id"], params["batch_id"], project=project_of(request)
    )
    return ok(
        await vector_stores.list_files(
            params["vector_store_id"],
            page_query(request),
            project=project_of(request),
            status=_status_filter(request),
            batch_id=params["batch_id"],
        )
    )


FILES_QUERY = (*page("file-"), STATUS_FILTER)

routes = [
    resource(
        "/vector_stores",
        creates=True,
        POST=op(create_store, "Create a vector store", VECTOR_STORE, body=CreateVectorStoreRequest),
        GET=op(list_stores, "List vector stores", listing(VECTOR_STORE), query=page("vs_")),
    ),
    resource(
        "/vector_stores/{vector_store_id}",
        GET=op(get_store, "Retrieve a vector store", VECTOR_STORE),
        POST=op(modify_store, "Modify a vector store", VECTOR_STORE, body=ModifyVectorStoreRequest),
        DELETE=op(delete_store, "Delete a vector store", deleted("vector_store.deleted")),
    ),
    resource(
        "/vector_stores/{vector_store_id}/search",
        POST=op(search_store, "Search a vector store", SEARCH_PAGE, body=SearchVectorStoreRequest),
    ),
    resource(
        "/vector_stores/{vector_store_id}/files",
        creates=True,
        POST=op(
            add_file,
            "Add a file to a vector store",
            VECTOR_STORE_FILE,
            body=CreateVectorStoreFileRequest,
        ),
        GET=op(
            list_files,
            "List a vector store's files",
            listing(VECTOR_STORE_FILE),
            query=FILES_QUERY,
        ),
    ),
    resource(
        "/vector_stores/{vector_store_id}/files/{file_id}",
        GET=op(get_file, "Retrieve a vector store file", VECTOR_STORE_FILE),
        POST=op(
            update_file,
            "Update a vector store file's attributes",
            VECTOR_STORE_FILE,
            body=UpdateVectorStoreFileRequest,
        ),
        DELETE=op(
            delete_file, "Remove a file from a vector store", deleted("vector_store.file.deleted")
        ),
    ),
    resource(
        "/vector_stores/{vector_store_id}/files/{file_id}/content",
        GET=op(file_content, "A vector store file's parsed content", VECTOR_STORE_FILE_CONTENT),
    ),
    resource(
        "/vector_stores/{vector_store_id}/file_batches",
        creates=True,
        POST=op(create_batch, "Create a file batch", FILE_BATCH, body=CreateFileBatchRequest),
    ),
    resource(
        "/vector_stores/{vector_store_id}/file_batches/{batch_id}",
        GET=op(get_batch, "Retrieve a file batch", FILE_BATCH),
    ),
    resource(
        "/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel",
        POST=op(cancel_batch, "Cancel a file batch", FILE_BATCH),
    ),
    resource(
        "/vector_stores/{vector_store_id}/file_batches/{batch_id}/files",
        GET=op(
            list_batch_files,
            "List a file batch's files",
            listing(VECTOR_STORE_FILE),
            query=FILES_QUERY,
        ),
    ),
]
