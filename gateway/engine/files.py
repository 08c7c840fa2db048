"""Files: what a project uploaded, its bytes kept in the database in chunks.

A file's bytes are written chunk by chunk, one transaction each, under the file's id; the file
row is added only once every chunk is in, so a file that can be listed is whole. An upload that
fails or is abandoned leaves chunks no file holds, which the pruner deletes once they are an
hour old (a process that crashed cannot clean up after itself). Expired files go the same way.
Reading streams the chunks one at a time: a file is never held whole in memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable

from gateway import ids, objects
from gateway.engine.pages import page_of
from gateway.errors import NotFoundError, PayloadTooLargeError
from gateway.periodic import Periodic
from gateway.store import Kind, RunStore, StoreTx
from gateway.types import PageQuery
from gateway.wire import Deleted, File, Page

log = logging.getLogger("gateway.files")

# The size of the chunks a file's bytes are kept in (and read back in).
CHUNK_BYTES = 1024 * 1024
# Chunks no file holds are pruned once they have had no new chunk for this long.
ABANDONED_SECONDS = 3600


def no_such_file(file_id: str) -> NotFoundError:
    return NotFoundError(f"No such File object: {file_id}", param="id", code="not_found")


class Files:
    def __init__(
        self,
        store: RunStore,
        *,
        max_bytes: int,
        prune_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.clock = clock
        self._pruner = Periodic("files-prune", prune_seconds, self.prune, "file pruning failed")

    def start(self) -> None:
        self._pruner.start()

    async def stop(self) -> None:
        await self._pruner.stop()

    async def create(
        self,
        content: AsyncIterator[bytes],
        *,
        project: str,
        filename: str,
        purpose: str,
        expires_after: int | None = None,
    ) -> File:
        """Store `content` as a new file of `project`; a file over the size limit is refused
        (413) and nothing of it kept."""
        file_id = ids.file_id()
        size = await self.store_blob(
            file_id,
            content,
            limit=self.max_bytes,
            too_large="The file is larger than the {limit} bytes this server accepts for one file.",
            param="file",
        )
        file = objects.file(
            file_id=file_id,
            filename=filename,
            purpose=purpose,
            size=size,
            expires_after=expires_after,
            created=int(self.clock()),
        )

        async def add(tx: StoreTx) -> None:
            await tx.insert(Kind.FILE, file, project=project)

        try:
            await self.store.write(add)
        except BaseException:
            await self.forget(file_id)
            raise
        return file

    async def store_blob(
        self, blob_id: str, content: AsyncIterator[bytes], *, limit: int, too_large: str, param: str
    ) -> int:
        """Write `content` as the chunks of `blob_id` and return its size. Over `limit` bytes it
        is refused (413, `too_large` with the limit in it) and, as on any failure, what was
        written is deleted."""
        size = 0
        try:
            async for seq, chunk in _numbered(_rechunked(content)):
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError(
                        too_large.format(limit=limit), param=param, code="file_too_large"
                    )
                await self._put(blob_id, seq, chunk)
        except BaseException:
            await self.forget(blob_id)
            raise
        return size

    async def _put(self, blob_id: str, seq: int, chunk: bytes) -> None:
        at = int(self.clock())

        async def write(tx: StoreTx) -> None:
            await tx.put_chunk(blob_id, 0, seq, chunk, at)

        await self.store.write(write)

    async def forget(self, blob_id: str) -> None:
        """Delete what was written of a blob that will not be kept (best effort: the pruner
        deletes what this cannot)."""

        async def write(tx: StoreTx) -> None:
            await tx.delete_blob(blob_id)

        try:
            await self.store.write(write)
        except Exception:
            log.warning("could not delete the chunks of an unfinished file %s", blob_id)

    async def get(self, file_id: str, *, project: str) -> File:
        file = await self.store.get(Kind.FILE, file_id, project=project)
        if file is None:
            raise no_such_file(file_id)
        return file  # type: ignore[return-value]  # the stored body of a File

    async def list(self, query: PageQuery, *, project: str, purpose: str | None = None) -> Page:
        filters = {"project": project} | ({"purpose": purpose} if purpose else {})
        return await page_of(self.store, Kind.FILE, query, **filters)

    async def delete(self, file_id: str, *, project: str) -> Deleted:
        await self.get(file_id, project=project)

        async def write(tx: StoreTx) -> bool:
            await tx.delete_blob(file_id)
            return await tx.delete(Kind.FILE, file_id)

        if not await self.store.write(write):
            raise no_such_file(file_id)
        return objects.deleted(file_id, "file")

    async def content(self, file_id: str, *, project: str) -> tuple[File, AsyncIterator[bytes]]:
        """The file and an iterator of its bytes, chunk by chunk."""
        file = await self.get(file_id, project=project)
        return file, self.chunks(file_id)

    async def chunks(self, blob_id: str) -> AsyncIterator[bytes]:
        """The bytes of `blob_id`, chunk by chunk."""
        place = (-1, -1)
        while (chunk := await self.store.next_chunk(blob_id, place)) is not None:
            place = (chunk.part, chunk.seq)
            yield chunk.data

    async def prune(self) -> None:
        """Delete expired files, and the chunks abandoned uploads left."""
        now = int(self.clock())
        expired = await self.store.expired_ids(Kind.FILE, now)
        for file_id in expired:

            async def write(tx: StoreTx, file_id: str = file_id) -> None:
                await tx.delete_blob(file_id)
                await tx.delete(Kind.FILE, file_id)

            await self.store.write(write)

        async def prune_blobs(tx: StoreTx) -> int:
            return await tx.prune_blobs(now - ABANDONED_SECONDS)

        pruned = await self.store.write(prune_blobs)
        if expired or pruned:
            log.info("pruned %d expired files and %d abandoned chunks", len(expired), pruned)


async def _rechunked(pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`pieces` as chunks of CHUNK_BYTES (the last one shorter)."""
    held = bytearray()
    async for piece in pieces:
        held += piece
        while len(held) >= CHUNK_BYTES:
            yield bytes(held[:CHUNK_BYTES])
            del held[:CHUNK_BYTES]
    if held:
        yield bytes(held)


async def _numbered(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    seq = 0
    async for chunk in chunks:
        yield seq, chunk
        seq += 1
