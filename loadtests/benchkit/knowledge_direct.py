"""A large vector store written straight into a running gateway's SQLite file, through the
gateway's own store code: what ingesting it through the API would leave, in a fraction of the
time. SQLite's WAL lets this process write while the gateway serves; a write the gateway's lock
holds up past the busy timeout is tried again."""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from gateway import objects
from gateway.errors import StoreUnavailableError
from gateway.store import Kind, RunStore, StoreTx, open_store
from gateway.types import Obj
from gateway.wire import File

T = TypeVar("T")

FILES_PER_WRITE = 10  # one transaction: short, so the gateway's own writes wait little
BUSY_RETRIES = 20


@dataclass(frozen=True)
class Built:
    vector_store_id: str
    chunks: int
    files: int
    seconds: float


async def build_store(
    database: str,
    texts: Sequence[tuple[str, int]],
    *,
    total_chunks: int,
    chunks_per_file: int,
    dimensions: int = 0,
    name: str = "knowledge-100k",
) -> Built:
    """A completed store of `total_chunks` chunks taken from `texts` in turn (from the start
    again when they run out, each copy in files of its own), `chunks_per_file` to a file; each
    chunk with a random unit vector of `dimensions` floats, or none when 0."""
    started = time.perf_counter()
    rng = np.random.default_rng(7)
    store = open_store(database)
    await store.open()
    try:
        now = int(time.time())
        vs = objects.vector_store(name=name, expires_after=None, metadata=None, created=now)
        await _write(store, lambda tx: tx.insert(Kind.VECTOR_STORE, vs, project=""))
        source = itertools.islice(itertools.cycle(texts), total_chunks)
        files = 0
        for group in _batched(_batched(source, chunks_per_file), FILES_PER_WRITE):
            rows = [_file_rows(vs["id"], now, chunks, rng, dimensions) for chunks in group]
            await _write(store, functools.partial(_insert_files, rows=rows))
            files += len(rows)
            for _, entry, _ in rows:
                vs["usage_bytes"] += entry["usage_bytes"]
        vs["file_counts"] = objects.file_counts({"completed": files})
        await _write(store, lambda tx: tx.save(Kind.VECTOR_STORE, vs))
    finally:
        await store.close()
    return Built(vs["id"], total_chunks, files, time.perf_counter() - started)


Rows = tuple[File, Obj, list[tuple[str, int, bytes | None]]]


def _file_rows(
    vector_store_id: str,
    now: int,
    chunks: list[tuple[str, int]],
    rng: np.random.Generator,
    dimensions: int,
) -> Rows:
    """A file, its entry in the store (completed) and its chunks."""
    usage = sum(len(text.encode()) for text, _ in chunks)
    file = objects.file(
        filename="scifact-copy.txt", purpose="assistants", size=usage, expires_after=None
    )
    entry = objects.vector_store_file(
        vector_store_id, file["id"], chunking_strategy=None, attributes=None, created=now
    )
    entry["status"], entry["usage_bytes"] = "completed", usage
    vectors: list[bytes | None] = [None] * len(chunks)
    if dimensions:
        matrix = rng.standard_normal((len(chunks), dimensions)).astype(np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        vectors = [row.tobytes() for row in matrix]
    return file, entry, [(t, n, v) for (t, n), v in zip(chunks, vectors, strict=True)]


async def _insert_files(tx: StoreTx, rows: list[Rows]) -> None:
    for file, entry, chunks in rows:
        await tx.insert(Kind.FILE, file, project="")
        await tx.insert(Kind.VECTOR_STORE_FILE, entry)
        await tx.add_chunks(entry["vector_store_id"], file["id"], chunks)


async def _write(store: RunStore, fn: Callable[[StoreTx], Awaitable[None]]) -> None:
    """`store.write(fn)`, again after a pause while the database is busy."""
    for attempt in range(BUSY_RETRIES):
        try:
            await store.write(fn)
            return
        except StoreUnavailableError:
            if attempt == BUSY_RETRIES - 1:
                raise
            await asyncio.sleep(0.1 * (attempt + 1))


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
