"""What each operation is, for the published OpenAPI document: declared with its route
(`routing.op`), so the document cannot leave an operation out or describe one that is not
served. The schemas of the objects operations answer with are here too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.api.requests import Body

Schema = dict[str, Any]
# A query parameter by its name (its schema in QUERY_SCHEMAS), or a name and a schema of its
# own. A parameter named with a capital letter goes in a header (Last-Event-ID).
Parameter = str | tuple[str, Schema]

EVENTS = "events"  # a text/event-stream of the run's events
CURSOR = "The id of an object of this list; one that names none is a 400."


@dataclass(frozen=True)
class Doc:
    summary: str
    # The answer's schema, or EVENTS for an event stream.
    response: Schema | str
    body: type[Body] | None = None
    query: tuple[Parameter, ...] = ()
    # Whether `"stream": true` turns the answer into an event stream.
    streams: bool = False
    # What a valid request may still be refused for, by the state of what it names (which no
    # schema can say): documented as the operation's 400.
    refused: str | None = None
    # A multipart/form-data body: these fields, and a file part named `file_field`.
    form: type[Body] | None = None
    file_field: str = "file"
    # The answer is the bytes of a file, not JSON.
    raw: bool = False


QUERY_SCHEMAS: dict[str, Schema] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 100},
    "order": {"type": "string", "enum": ["asc", "desc"]},
    "run_id": {"type": "string"},
    "token": {"type": "string"},
}


def page(prefix: str) -> tuple[Parameter, ...]:
    """The list parameters, whose cursors are ids of the listed kind (an id of no object in
    the list is a 400 naming the cursor; empty is no cursor)."""
    cursor: Schema = {
        "type": "string",
        "pattern": f"^({prefix}[A-Za-z0-9]{{24}})?$",
        "description": CURSOR,
    }
    return ("limit", "order", ("after", cursor), ("before", cursor))


def wire_object(kind: str, **properties: Schema) -> Schema:
    """A response object whose `object` field is `kind`."""
    return {
        "type": "object",
        "required": ["object"],
        "properties": {"object": {"const": kind}, **properties},
    }


def listing(item: Schema) -> Schema:
    return wire_object("list", data={"type": "array", "items": item}, has_more={"type": "boolean"})


def deleted(kind: str) -> Schema:
    return wire_object(kind, id={"type": "string"}, deleted={"type": "boolean"})


ASSISTANT = wire_object("assistant", id={"type": "string"})
THREAD = wire_object("thread", id={"type": "string"})
MESSAGE = wire_object("thread.message", id={"type": "string"})
RUN = wire_object("thread.run", id={"type": "string"}, status={"type": "string"})
STEP = wire_object("thread.run.step", id={"type": "string"})
MODEL = wire_object("model", id={"type": "string"})
FILE = wire_object("file", id={"type": "string"}, bytes={"type": "integer"})
UPLOAD = wire_object("upload", id={"type": "string"}, status={"type": "string"})
UPLOAD_PART = wire_object("upload.part", id={"type": "string"})
VECTOR_STORE = wire_object("vector_store", id={"type": "string"}, status={"type": "string"})
VECTOR_STORE_FILE = wire_object(
    "vector_store.file", id={"type": "string"}, status={"type": "string"}
)
VECTOR_STORE_FILE_CONTENT = wire_object("vector_store.file_content.page", data={"type": "array"})
FILE_BATCH = wire_object(
    "vector_store.files_batch", id={"type": "string"}, status={"type": "string"}
)
SEARCH_PAGE = wire_object("vector_store.search_results.page", data={"type": "array"})
TOKEN: Schema = {
    "type": "object",
    "required": ["token"],
    "properties": {"token": {"type": "string"}},
}
ACTIVE_RUN = "The thread has an active run."
