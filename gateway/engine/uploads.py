"""Uploads: a large file sent in parts, then completed into one file.

An upload is created with the file's name, purpose and size, and stays open an hour. Each part
(at most 64 MiB) is written as the chunks of its own blob, like a file's bytes. Completing names
the parts in order: they must add up to the declared size (and to the md5, if one is given);
then, in one transaction, each part's chunks become a piece of the new file's blob (no byte is
copied), the file is added and the upload holds it. Cancelling, or an hour passing, drops the
parts.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import cast

from gateway import ids, objects
from gateway.engine.files import Files
from gateway.errors import InvalidRequestError, NotFoundError, PayloadTooLargeError
from gateway.periodic import Periodic
from gateway.store import Kind, RunStore, StoreTx
from gateway.types import Obj
from gateway.wire import Upload, UploadPart

log = logging.getLogger("gateway.files")

# The largest part (OpenAI: 64 MB; the SDK sends parts of 64 MiB).
PART_MAX_BYTES = 64 * 1024 * 1024
# Finished uploads are kept this long after they would have expired, then deleted.
KEEP_SECONDS = 24 * 3600


def no_such_upload(upload_id: str) -> NotFoundError:
    return NotFoundError(f"No such Upload object: {upload_id}", param="upload_id")


class Uploads:
    def __init__(
        self,
        store: RunStore,
        files: Files,
        *,
        prune_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.files = files
        self.clock = clock
        self._pruner = Periodic("uploads-prune", prune_seconds, self.prune, "upload pruning failed")

    def start(self) -> None:
        self._pruner.start()

    async def stop(self) -> None:
        await self._pruner.stop()

    async def create(
        self, *, project: str, filename: str, purpose: str, size: int, expires_after: int | None
    ) -> Upload:
        if size > self.files.max_bytes:
            raise InvalidRequestError(
                f"An upload may hold at most {self.files.max_bytes} bytes here; "
                f"this one asks for {size}.",
                param="bytes",
                code="file_too_large",
            )
        upload = objects.upload(
            filename=filename, purpose=purpose, size=size, created=int(self.clock())
        )
        stored = {**upload, "file_expires_after": expires_after}

        async def write(tx: StoreTx) -> None:
            await tx.insert(Kind.UPLOAD, stored, project=project)

        await self.store.write(write)
        return upload

    async def add_part(
        self, upload_id: str, content: AsyncIterator[bytes], *, project: str
    ) -> UploadPart:
        upload = await self._pending(upload_id, project)
        parts = await self.store.list_all(Kind.UPLOAD_PART, upload_id=upload_id)
        room = upload["bytes"] - sum(p["bytes"] for p in parts)
        part = objects.upload_part(upload_id, created=int(self.clock()))
        limit = min(PART_MAX_BYTES, max(room, 0))
        try:
            size = await self.files.store_blob(
                part["id"],
                content,
                limit=limit,
                too_large=f"A part may hold at most {PART_MAX_BYTES} bytes.",
                param="data",
            )
        except PayloadTooLargeError:
            if limit == PART_MAX_BYTES:
                raise
            # Not the server's limit but the upload's own: a 400, as other states of it are.
            raise InvalidRequestError(
                f"The part is larger than the {limit} bytes upload {upload_id} has room for "
                f"({upload['bytes']} declared in all).",
                param="data",
            ) from None

        async def write(tx: StoreTx) -> None:
            current = await tx.get(Kind.UPLOAD, upload_id)
            _check_pending(upload_id, current, self.clock())
            await tx.insert(Kind.UPLOAD_PART, {**part, "bytes": size})

        try:
            await self.store.write(write)
        except BaseException:
            await self.files.forget(part["id"])
            raise
        return part

    async def complete(
        self, upload_id: str, part_ids: Sequence[str], md5: str | None, *, project: str
    ) -> Upload:
        upload = await self._pending(upload_id, project)
        parts = {
            p["id"]: p for p in await self.store.list_all(Kind.UPLOAD_PART, upload_id=upload_id)
        }
        _check_parts(upload, parts, part_ids)
        if md5 is not None:
            await self._check_md5(part_ids, md5)
        file = objects.file(
            file_id=ids.file_id(),
            filename=upload["filename"],
            purpose=upload["purpose"],
            size=upload["bytes"],
            expires_after=upload.get("file_expires_after"),
            created=int(self.clock()),
        )

        async def write(tx: StoreTx) -> Upload:
            current = await tx.get(Kind.UPLOAD, upload_id)
            _check_pending(upload_id, current, self.clock())
            assert current is not None
            for position, part_id in enumerate(part_ids):
                await tx.move_blob(part_id, file["id"], position)
            for part_id in parts:
                if part_id not in part_ids:
                    await tx.delete_blob(part_id)
                await tx.delete(Kind.UPLOAD_PART, part_id)
            await tx.insert(Kind.FILE, file, project=project)
            current["status"], current["file"] = "completed", file
            await tx.save(Kind.UPLOAD, current)
            return _wire(current)

        return await self.store.write(write)

    async def cancel(self, upload_id: str, *, project: str) -> Upload:
        await self._pending(upload_id, project)
        return await self._end(upload_id, "cancelled")

    async def _end(self, upload_id: str, status: str) -> Upload:
        """Bring a pending upload to `status` and drop its parts."""
        parts = await self.store.list_all(Kind.UPLOAD_PART, upload_id=upload_id)

        async def write(tx: StoreTx) -> Upload:
            current = await tx.get(Kind.UPLOAD, upload_id)
            if status == "cancelled":
                _check_pending(upload_id, current, self.clock())
            assert current is not None
            for part in parts:
                await tx.delete_blob(part["id"])
                await tx.delete(Kind.UPLOAD_PART, part["id"])
            current["status"] = status
            await tx.save(Kind.UPLOAD, current)
            return _wire(current)

        return await self.store.write(write)

    async def _pending(self, upload_id: str, project: str) -> Obj:
        upload = await self.store.get(Kind.UPLOAD, upload_id, project=project)
        if upload is None:
            raise no_such_upload(upload_id)
        _check_pending(upload_id, upload, self.clock())
        return upload

    async def _check_md5(self, part_ids: Sequence[str], md5: str) -> None:
        digest = hashlib.md5(usedforsecurity=False)
        for part_id in part_ids:
            async for chunk in self.files.chunks(part_id):
                digest.update(chunk)
        if digest.hexdigest() != md5.strip().lower():
            raise InvalidRequestError(
                f"The md5 of the parts is {digest.hexdigest()}, not {md5}.", param="md5"
            )

    async def prune(self) -> None:
        """Expire the pending uploads whose hour has passed (their parts go), and delete the
        uploads that ended more than a day ago."""
        now = int(self.clock())
        for upload_id in await self.store.expired_ids(Kind.UPLOAD, now, status="pending"):
            await self._end(upload_id, "expired")
        for upload_id in await self.store.expired_ids(Kind.UPLOAD, now - KEEP_SECONDS):

            async def write(tx: StoreTx, upload_id: str = upload_id) -> None:
                await tx.delete(Kind.UPLOAD, upload_id)  # its parts went when it ended

            await self.store.write(write)


def _check_pending(upload_id: str, upload: Obj | None, now: float) -> None:
    if upload is None:
        raise no_such_upload(upload_id)
    if upload["status"] != "pending":
        raise InvalidRequestError(
            f"Upload {upload_id} is {upload['status']}: it takes no more changes.",
            param="upload_id",
        )
    if upload["expires_at"] <= now:
        raise InvalidRequestError(
            f"Upload {upload_id} has expired (an upload stays open for an hour).",
            param="upload_id",
        )


def _check_parts(upload: Obj, parts: dict[str, Obj], part_ids: Sequence[str]) -> None:
    if not part_ids:
        raise InvalidRequestError("Name the upload's parts in order.", param="part_ids")
    seen: set[str] = set()
    for index, part_id in enumerate(part_ids):
        if part_id not in parts:
            raise InvalidRequestError(
                f"{part_id} is not a part of upload {upload['id']}.", param=f"part_ids[{index}]"
            )
        if part_id in seen:
            raise InvalidRequestError(f"{part_id} is named twice.", param=f"part_ids[{index}]")
        seen.add(part_id)
    total = sum(parts[p]["bytes"] for p in part_ids)
    if total != upload["bytes"]:
        raise InvalidRequestError(
            f"The parts hold {total} bytes; upload {upload['id']} was created for "
            f"{upload['bytes']}.",
            param="part_ids",
        )


def _wire(stored: Obj) -> Upload:
    """The upload as the API shows it (without what the gateway keeps beside it)."""
    shown = {k: v for k, v in stored.items() if k != "file_expires_after"}
    return cast(Upload, shown)
