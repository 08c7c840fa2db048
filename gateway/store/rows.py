"""How objects become rows, for both SQL stores: the table of each kind, the columns copied out
of an object so rows can be found without decoding bodies, and the insert and upsert statements,
written with the placeholders of the store's driver."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

import orjson

from gateway.store.base import OWNED_KINDS, Kind
from gateway.types import AnyObj, Obj

TABLES: Final = {
    Kind.ASSISTANT: "assistants",
    Kind.THREAD: "threads",
    Kind.MESSAGE: "messages",
    Kind.RUN: "runs",
    Kind.STEP: "run_steps",
    Kind.FILE: "files",
    Kind.UPLOAD: "uploads",
    Kind.UPLOAD_PART: "upload_parts",
    Kind.VECTOR_STORE: "vector_stores",
    Kind.VECTOR_STORE_FILE: "vector_store_files",
    Kind.FILE_BATCH: "file_batches",
}
COLUMNS: Final[dict[Kind, tuple[str, ...]]] = {
    Kind.ASSISTANT: (),
    Kind.THREAD: (),
    Kind.MESSAGE: ("thread_id", "run_id"),
    Kind.RUN: ("thread_id", "assistant_id", "status", "expires_at"),
    Kind.STEP: ("thread_id", "run_id"),
    Kind.FILE: ("purpose", "expires_at"),
    Kind.UPLOAD: ("status", "expires_at"),
    Kind.UPLOAD_PART: ("upload_id", "bytes"),
    Kind.VECTOR_STORE: ("expires_at",),
    Kind.VECTOR_STORE_FILE: ("vector_store_id", "file_id", "batch_id", "status"),
    Kind.FILE_BATCH: ("vector_store_id", "status"),
}
# The kinds whose row key is not the object's id, and how it is made.
KEYS: Final[dict[Kind, Callable[[AnyObj], str]]] = {
    Kind.VECTOR_STORE_FILE: lambda obj: f"{obj['vector_store_id']}/{obj['id']}",
}
# The column a list's `after`/`before` cursor names (the object's id as the API shows it).
CURSOR_COLUMNS: Final[dict[Kind, str]] = {Kind.VECTOR_STORE_FILE: "file_id"}


def row_key(kind: Kind, obj: AnyObj) -> str:
    """The row's key: the object's id, or what KEYS makes of it."""
    make = KEYS.get(kind)
    key: str = make(obj) if make else obj["id"]
    return key


# A placeholder for the n-th parameter (from 1): "?" for sqlite3, "$n" for asyncpg.
Mark = Callable[[int], str]


def row_values(kind: Kind, obj: AnyObj) -> tuple[Any, ...]:
    """The object's lookup columns and its body, in the order of COLUMNS then `body`."""
    return (*(obj.get(c) for c in COLUMNS[kind]), orjson.dumps(obj))


def insert_sql(kind: Kind, mark: Mark) -> str:
    """Add a new object: id, lookup columns, body, and the project of an owned kind."""
    columns = ("id", *COLUMNS[kind], "body", *(("project",) if kind in OWNED_KINDS else ()))
    marks = ",".join(mark(i) for i in range(1, len(columns) + 1))
    return f"INSERT INTO {TABLES[kind]} ({','.join(columns)}) VALUES ({marks})"


def upsert_sql(kind: Kind, mark: Mark) -> str:
    """Insert or overwrite by id. An upsert, not a delete and insert (which would cascade to the
    object's children); it never sets `project`: an object stays in the project it was added to."""
    columns = ("id", *COLUMNS[kind], "body")
    marks = ",".join(mark(i) for i in range(1, len(columns) + 1))
    sets = ",".join(f"{c}=excluded.{c}" for c in columns[1:])
    return (
        f"INSERT INTO {TABLES[kind]} ({','.join(columns)}) VALUES ({marks})"
        f" ON CONFLICT (id) DO UPDATE SET {sets}"
    )


def decode_first(rows: Iterable[Any]) -> Obj | None:
    """The object whose body is the first column of the first row, or None for no row."""
    for row in rows:
        decoded: Obj = orjson.loads(row[0])
        return decoded
    return None
