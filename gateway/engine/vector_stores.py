"""Vector stores: collections of a project's files, cut into chunks that file_search searches.

A file added to a store is `in_progress` until ingestion (ingestion.py) has parsed, chunked
and embedded it; it then ends `completed`, `failed` (with a last_error) or `cancelled`. The
store's `file_counts`, `usage_bytes` and `status`, and a batch's `file_counts` and `status`,
change in the same transaction as the file whose status moves, so they are always true. A store
with `expires_after` expires that many days after it was last active (created, changed, or
searched); an expired store keeps its files but is shown `expired`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gateway import objects
from gateway.engine.files import Files
from gateway.engine.pages import page_of
from gateway.engine.search import Search
from gateway.errors import (
    EmbeddingError,
    InvalidRequestError,
    NotFoundError,
    ServiceUnavailableError,
)
from gateway.knowledge.filters import matches
from gateway.knowledge.terms import terms
from gateway.store import Kind, RunStore, StoreTx
from gateway.types import Obj, PageQuery
from gateway.wire import Deleted, Page

# What a file of a store shows of the row the gateway keeps (the rest is the gateway's).
_HIDDEN_FILE_FIELDS = ("file_id", "batch_id")


def no_such_store(vector_store_id: str) -> NotFoundError:
    return NotFoundError(
        f"No vector store found with id '{vector_store_id}'.", param="vector_store_id"
    )


def no_such_store_file(vector_store_id: str, file_id: str) -> NotFoundError:
    return NotFoundError(
        f"No file found with id '{file_id}' in vector store '{vector_store_id}'.",
        param="file_id",
    )


def file_key(vector_store_id: str, file_id: str) -> str:
    return f"{vector_store_id}/{file_id}"


class VectorStores:
    def __init__(
        self,
        store: RunStore,
        files: Files,
        *,
        searcher: Search,
        wake: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.files = files
        self.searcher = searcher
        self.wake = wake  # tells ingestion there is work
        self.clock = clock

    # --- stores -----------------------------------------------------------------------------

    async def create(
        self,
        *,
        project: str,
        name: str | None = None,
        file_ids: Sequence[str] = (),
        chunking_strategy: Mapping[str, Any] | None = None,
        expires_after: Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Obj:
        await self._check_files(file_ids, project, param="file_ids")
        now = int(self.clock())
        vs = objects.vector_store(
            name=name, expires_after=expires_after, metadata=metadata, created=now
        )
        entries = [
            objects.vector_store_file(
                vs["id"], file_id, chunking_strategy=chunking_strategy, attributes=None, created=now
            )
            for file_id in dict.fromkeys(file_ids)
        ]
        _count(vs, None, "in_progress", len(entries))

        async def write(tx: StoreTx) -> None:
            await tx.insert(Kind.VECTOR_STORE, vs, project=project)
            for entry in entries:
                await tx.insert(Kind.VECTOR_STORE_FILE, entry)

        await self.store.write(write)
        if entries:
            self.wake()
        return self.shown(vs)

    async def list(self, query: PageQuery, *, project: str) -> Page:
        page = await page_of(self.store, Kind.VECTOR_STORE, query, project=project)
        page["data"] = [self.shown(vs) for vs in page["data"]]
        return page

    async def get(self, vector_store_id: str, *, project: str) -> Obj:
        return self.shown(await self._stored(vector_store_id, project))

    async def modify(
        self, vector_store_id: str, changes: Mapping[str, Any], *, project: str
    ) -> Obj:
        await self._stored(vector_store_id, project)
        now = int(self.clock())

        async def write(tx: StoreTx) -> Obj:
            vs = await tx.get(Kind.VECTOR_STORE, vector_store_id)
            if vs is None:
                raise no_such_store(vector_store_id)
            if "name" in changes:
                vs["name"] = changes["name"] or ""
            if "metadata" in changes:
                vs["metadata"] = changes["metadata"] or {}
            if "expires_after" in changes:
                vs["expires_after"] = changes["expires_after"]
            _touch(vs, now)
            await tx.save(Kind.VECTOR_STORE, vs)
            return vs

        return self.shown(await self.store.write(write))

    async def delete(self, vector_store_id: str, *, project: str) -> Deleted:
        await self._stored(vector_store_id, project)

        async def write(tx: StoreTx) -> None:
            await tx.delete_chunks(vector_store_id)
            await tx.delete(Kind.VECTOR_STORE, vector_store_id)  # its files and batches go too

        await self.store.write(write)
        return objects.deleted(vector_store_id, "vector_store.deleted")

    async def touch(self, vector_store_id: str) -> None:
        """Mark the store active now (a search or a run used it): its expiry moves on."""
        now = int(self.clock())

        async def write(tx: StoreTx) -> None:
            vs = await tx.get(Kind.VECTOR_STORE, vector_store_id)
            if vs is not None and vs["last_active_at"] < now:
                _touch(vs, now)
                await tx.save(Kind.VECTOR_STORE, vs)

        await self.store.write(write)

    def shown(self, vs: Obj) -> Obj:
        """The store as the API shows it: `expired` once its expiry has passed."""
        if vs["expires_at"] is not None and vs["expires_at"] <= self.clock():
            return {**vs, "status": "expired"}
        return vs

    async def _stored(self, vector_store_id: str, project: str) -> Obj:
        vs = await self.store.get(Kind.VECTOR_STORE, vector_store_id, project=project)
        if vs is None:
            raise no_such_store(vector_store_id)
        return vs

    async def _check_files(self, file_ids: Sequence[str], project: str, *, param: str) -> None:
        for index, file_id in enumerate(file_ids):
            if await self.store.get(Kind.FILE, file_id, project=project) is None:
                # A 400, not a 404: what the path names exists; the body names no file.
                message = f"No such File object: {file_id}"
                raise InvalidRequestError(message, param=f"{param}[{index}]")

    # --- files of a store -------------------------------------------------------------------

    async def add_file(
        self,
        vector_store_id: str,
        file_id: str,
        *,
        project: str,
        chunking_strategy: Mapping[str, Any] | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Obj:
        await self._stored(vector_store_id, project)
        if await self.store.get(Kind.FILE, file_id, project=project) is None:
            raise InvalidRequestError(f"No such File object: {file_id}", param="file_id")
        now = int(self.clock())
        entry = objects.vector_store_file(
            vector_store_id,
            file_id,
            chunking_strategy=chunking_strategy,
            attributes=attributes,
            created=now,
        )

        async def write(tx: StoreTx) -> None:
            vs = await tx.get(Kind.VECTOR_STORE, vector_store_id)
            if vs is None:
                raise no_such_store(vector_store_id)
            if await tx.get(Kind.VECTOR_STORE_FILE, file_key(vector_store_id, file_id)):
                raise InvalidRequestError(
                    f"File {file_id} is already in vector store {vector_store_id}.",
                    param="file_id",
                )
            await tx.insert(Kind.VECTOR_STORE_FILE, entry)
            _count(vs, None, "in_progress")
            _touch(vs, now)
            await tx.save(Kind.VECTOR_STORE, vs)

        await self.store.write(write)
        self.wake()
        return shown_file(entry)

    async def list_files(
        self,
        vector_store_id: str,
        query: PageQuery,
        *,
        project: str,
        status: str | None = None,
        batch_id: str | None = None,
    ) -> Page:
        await self._stored(vector_store_id, project)
        filters = {"vector_store_id": vector_store_id}
        if status:
            filters["status"] = status
        if batch_id:
            filters["batch_id"] = batch_id
        page = await page_of(self.store, Kind.VECTOR_STORE_FILE, query, **filters)
        page["data"] = [shown_file(entry) for entry in page["data"]]
        return page

    async def get_file(self, vector_store_id: str, file_id: str, *, project: str) -> Obj:
        return shown_file(await self._stored_file(vector_store_id, file_id, project))

    async def update_file(
        self,
        vector_store_id: str,
        file_id: str,
        attributes: Mapping[str, Any] | None,
        *,
        project: str,
    ) -> Obj:
        await self._stored_file(vector_store_id, file_id, project)
        key = file_key(vector_store_id, file_id)

        async def write(tx: StoreTx) -> Obj:
            entry = await tx.get(Kind.VECTOR_STORE_FILE, key)
            if entry is None:
                raise no_such_store_file(vector_store_id, file_id)
            entry["attributes"] = dict(attributes) if attributes else {}
            await tx.save(Kind.VECTOR_STORE_FILE, entry)
            return entry

        return shown_file(await self.store.write(write))

    async def delete_file(self, vector_store_id: str, file_id: str, *, project: str) -> Deleted:
        """Take the file out of the store (the file itself stays)."""
        await self._stored_file(vector_store_id, file_id, project)
        now = int(self.clock())

        async def write(tx: StoreTx) -> None:
            await self._remove(tx, vector_store_id, file_id, now)

        await self.store.write(write)
        return objects.deleted(file_id, "vector_store.file.deleted")

    async def _remove(self, tx: StoreTx, vector_store_id: str, file_id: str, now: int) -> None:
        key = file_key(vector_store_id, file_id)
        entry = await tx.get(Kind.VECTOR_STORE_FILE, key)
        vs = await tx.get(Kind.VECTOR_STORE, vector_store_id)
        if entry is None or vs is None:
            raise no_such_store_file(vector_store_id, file_id)
        await tx.delete_chunks(vector_store_id, file_id)
        await tx.delete(Kind.VECTOR_STORE_FILE, key)
        _count(vs, entry["status"], None, usage=-entry["usage_bytes"])
        _touch(vs, now)
        await tx.save(Kind.VECTOR_STORE, vs)
        if entry.get("batch_id"):
            batch = await tx.get(Kind.FILE_BATCH, entry["batch_id"])
            if batch is not None:
                _count(batch, entry["status"], None)
                await tx.save(Kind.FILE_BATCH, batch)

    async def forget_file(self, file_id: str) -> None:
        """A deleted file leaves every store it was in."""
        entries = await self.store.list_all(Kind.VECTOR_STORE_FILE, file_id=file_id)
        now = int(self.clock())
        for entry in entries:

            async def write(tx: StoreTx, vector_store_id: str = entry["vector_store_id"]) -> None:
                await self._remove(tx, vector_store_id, file_id, now)

            with contextlib.suppress(NotFoundError):  # gone meanwhile
                await self.store.write(write)

    async def file_content(self, vector_store_id: str, file_id: str, *, project: str) -> Obj:
        """The file's parsed text, chunk by chunk as it was cut (without the overlaps)."""
        await self._stored_file(vector_store_id, file_id, project)
        texts = await self.store.file_chunk_texts(vector_store_id, file_id)
        return {
            "object": "vector_store.file_content.page",
            "data": [{"type": "text", "text": text} for text in texts],
            "has_more": False,
            "next_page": None,
        }

    async def _stored_file(self, vector_store_id: str, file_id: str, project: str) -> Obj:
        await self._stored(vector_store_id, project)
        entry = await self.store.get(Kind.VECTOR_STORE_FILE, file_key(vector_store_id, file_id))
        if entry is None:
            raise no_such_store_file(vector_store_id, file_id)
        return entry

    # --- batches ----------------------------------------------------------------------------

    async def create_batch(
        self, vector_store_id: str, files: Sequence[Mapping[str, Any]], *, project: str
    ) -> Obj:
        """Add `files` (each a file_id with its own chunking_strategy and attributes) as one
        batch; a file already in the store is refused."""
        await self._stored(vector_store_id, project)
        await self._check_files([f["file_id"] for f in files], project, param="file_ids")
        now = int(self.clock())
        unique = {f["file_id"]: f for f in files}
        batch = objects.file_batch(vector_store_id, created=now, total=len(unique))
        entries = [
            objects.vector_store_file(
                vector_store_id,
                f["file_id"],
                chunking_strategy=f.get("chunking_strategy"),
                attributes=f.get("attributes"),
                created=now,
                batch_id=batch["id"],
            )
            for f in unique.values()
        ]

        async def write(tx: StoreTx) -> None:
            vs = await tx.get(Kind.VECTOR_STORE, vector_store_id)
            if vs is None:
                raise no_such_store(vector_store_id)
            for index, entry in enumerate(entries):
                if await tx.get(Kind.VECTOR_STORE_FILE, file_key(vector_store_id, entry["id"])):
                    raise InvalidRequestError(
                        f"File {entry['id']} is already in vector store {vector_store_id}.",
                        param=f"file_ids[{index}]",
                    )
                await tx.insert(Kind.VECTOR_STORE_FILE, entry)
            await tx.insert(Kind.FILE_BATCH, batch)
            _count(vs, None, "in_progress", len(entries))
            _touch(vs, now)
            await tx.save(Kind.VECTOR_STORE, vs)

        await self.store.write(write)
        self.wake()
        return batch

    async def get_batch(self, vector_store_id: str, batch_id: str, *, project: str) -> Obj:
        await self._stored(vector_store_id, project)
        batch = await self.store.get(Kind.FILE_BATCH, batch_id)
        if batch is None or batch["vector_store_id"] != vector_store_id:
            raise NotFoundError(
                f"No file batch found with id '{batch_id}' in vector store '{vector_store_id}'.",
                param="batch_id",
            )
        return batch

    async def cancel_batch(self, vector_store_id: str, batch_id: str, *, project: str) -> Obj:
        """Cancel the batch's files still waiting or being ingested; the finished ones stay."""
        await self.get_batch(vector_store_id, batch_id, project=project)
        waiting = await self.store.list_all(
            Kind.VECTOR_STORE_FILE, batch_id=batch_id, status="in_progress"
        )

        async def write(tx: StoreTx) -> Obj:
            batch = await tx.get(Kind.FILE_BATCH, batch_id)
            assert batch is not None
            for entry in waiting:
                await self._settle(tx, entry["vector_store_id"], entry["id"], "cancelled")
            batch = await tx.get(Kind.FILE_BATCH, batch_id)
            assert batch is not None
            if batch["status"] == "in_progress" or waiting:
                batch["status"] = "cancelled"
                await tx.save(Kind.FILE_BATCH, batch)
            return batch

        return await self.store.write(write)

    # --- search -----------------------------------------------------------------------------

    async def search(
        self,
        vector_store_id: str,
        queries: Sequence[str],
        *,
        project: str,
        max_results: int = 10,
        threshold: float = 0.0,
        filters: Mapping[str, Any] | None = None,
        rewrite: bool = False,
    ) -> Obj:
        """A page of the store's best chunks for the queries (POST .../search)."""
        vs = self.shown(await self._stored(vector_store_id, project))
        if vs["status"] == "expired":
            raise InvalidRequestError(
                f"Vector store {vector_store_id} has expired.", param="vector_store_id"
            )
        searched = [" ".join(terms(q)) or q for q in queries] if rewrite else list(queries)
        allowed = None
        attributes: dict[str, Obj] = {}
        if filters is not None:
            # Every file's attributes are read to know which files the filter keeps.
            entries = await self.store.list_all(
                Kind.VECTOR_STORE_FILE, vector_store_id=vector_store_id, status="completed"
            )
            attributes = {e["id"]: e["attributes"] or {} for e in entries}
            allowed = {f for f, attrs in attributes.items() if matches(filters, attrs)}
        try:
            hits = await self.searcher.search(
                [vector_store_id],
                searched,
                max_results=max_results,
                threshold=threshold,
                files=allowed,
            )
        except EmbeddingError as exc:
            raise ServiceUnavailableError(f"Search is unavailable: {exc}") from None
        names = await self._filenames({hit.file_id for hit in hits})
        for file_id in {hit.file_id for hit in hits} - set(attributes):
            entry = await self.store.get(Kind.VECTOR_STORE_FILE, file_key(vector_store_id, file_id))
            attributes[file_id] = (entry or {}).get("attributes") or {}
        await self.touch(vector_store_id)
        return {
            "object": "vector_store.search_results.page",
            "search_query": searched,
            "data": [
                {
                    "file_id": hit.file_id,
                    "filename": names.get(hit.file_id, ""),
                    "score": hit.score,
                    "attributes": attributes.get(hit.file_id, {}),
                    "content": [{"type": "text", "text": hit.text}],
                }
                for hit in hits
            ],
            "has_more": False,
            "next_page": None,
        }

    async def _filenames(self, file_ids: set[str]) -> dict[str, str]:
        names: dict[str, str] = {}
        for file_id in file_ids:
            file = await self.store.get(Kind.FILE, file_id)
            if file is not None:
                names[file_id] = file["filename"]
        return names

    # --- what ingestion reports -------------------------------------------------------------

    async def _settle(
        self,
        tx: StoreTx,
        vector_store_id: str,
        file_id: str,
        status: str,
        *,
        usage_bytes: int = 0,
        last_error: Obj | None = None,
    ) -> bool:
        """Move an in_progress file of a store to `status`, with the store's and its batch's
        counts; False when it is no longer in_progress (cancelled, removed)."""
        key = file_key(vector_store_id, file_id)
        entry = await tx.get(Kind.VECTOR_STORE_FILE, key)
        vs = await tx.get(Kind.VECTOR_STORE, vector_store_id)
        if entry is None or vs is None or entry["status"] != "in_progress":
            return False
        entry["status"], entry["usage_bytes"], entry["last_error"] = status, usage_bytes, last_error
        await tx.save(Kind.VECTOR_STORE_FILE, entry)
        _count(vs, "in_progress", status, usage=usage_bytes)
        await tx.save(Kind.VECTOR_STORE, vs)
        if entry.get("batch_id"):
            batch = await tx.get(Kind.FILE_BATCH, entry["batch_id"])
            if batch is not None:
                _count(batch, "in_progress", status)
                await tx.save(Kind.FILE_BATCH, batch)
        return True

    async def settle(
        self,
        vector_store_id: str,
        file_id: str,
        status: str,
        *,
        chunks: Sequence[tuple[str, int, bytes | None]] = (),
        usage_bytes: int = 0,
        last_error: Obj | None = None,
        owner: str | None = None,
    ) -> bool:
        """End a file's ingestion: its chunks (text, tokens, embedding) stored and its status
        set in one transaction, if it is still in_progress (and still `owner`'s)."""

        async def write(tx: StoreTx) -> bool:
            if owner is not None and not await tx.holds_ingestion(
                file_key(vector_store_id, file_id), owner
            ):
                return False
            done = await self._settle(
                tx,
                vector_store_id,
                file_id,
                status,
                usage_bytes=usage_bytes,
                last_error=last_error,
            )
            if done and chunks:
                await tx.add_chunks(vector_store_id, file_id, chunks)
            return done

        return await self.store.write(write)


def shown_file(entry: Obj) -> Obj:
    return {k: v for k, v in entry.items() if k not in _HIDDEN_FILE_FIELDS}


def _touch(vs: Obj, now: int) -> None:
    vs["last_active_at"] = now
    if vs["expires_after"]:
        vs["expires_at"] = now + vs["expires_after"]["days"] * 86400
    else:
        vs["expires_at"] = None


def _count(
    holder: Obj, before: str | None, after: str | None, n: int = 1, *, usage: int = 0
) -> None:
    """Move `n` files of a store or batch from status `before` to `after` (None: not there),
    and keep its status: in_progress while any file is."""
    counts = holder["file_counts"]
    if before is not None:
        counts[before] -= n
    if after is not None:
        counts[after] += n
    counts["total"] = sum(counts[s] for s in objects.FILE_STATUSES)
    if "usage_bytes" in holder:
        holder["usage_bytes"] += usage
    busy = counts["in_progress"] > 0
    if holder["object"] == "vector_store":
        holder["status"] = "in_progress" if busy else "completed"
    elif holder["status"] == "in_progress" and not busy:
        holder["status"] = "completed"
