"""Ingestion: the background work that turns a vector store's new files into chunks.

One task per process, owned by the engine's lifespan, takes the oldest waiting file that no
live process holds (a claim with a lease, as runs have; renewed while it works), writes the
file's bytes to a temporary file, parses and chunks it in a worker process (a pool of one,
killed and replaced when a file takes longer than the time limit: a parser that loops on a
hostile PDF never blocks the event loop or the next file), embeds the chunks, and settles the
file in one transaction with its chunks. A process that starts again first lets go of what it
held, so an ingestion cut off by a crash is taken up again, never left in_progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.pool
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from gateway.engine.files import Files
from gateway.engine.vector_stores import VectorStores
from gateway.errors import EmbeddingError
from gateway.knowledge.embed import Embedder
from gateway.knowledge.prepare import Prepared, prepare
from gateway.store import Kind, RunStore, StoreTx

log = logging.getLogger("gateway.ingestion")

# Chunks embedded in one call.
EMBED_BATCH = 32


class IngestionTimeoutError(Exception):
    pass


class Ingestion:
    def __init__(
        self,
        store: RunStore,
        vector_stores: VectorStores,
        files: Files,
        *,
        owner: str,
        embedder: Embedder | None,
        lease_seconds: float = 30.0,
        timeout_seconds: float = 300.0,
        poll_seconds: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.vector_stores = vector_stores
        self.files = files
        self.owner = owner
        self.embedder = embedder
        self.lease_seconds = lease_seconds
        self.timeout_seconds = timeout_seconds
        self.poll_seconds = poll_seconds  # how often to look for work other processes added
        self.clock = clock
        self._work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pool: multiprocessing.pool.Pool | None = None

    def wake(self) -> None:
        """There is new work (a file was added here)."""
        self._work.set()

    async def start(self) -> None:
        async def release(tx: StoreTx) -> int:
            return await tx.release_ingestions(self.owner)

        released = await self.store.write(release)
        if released:
            log.info("taking up %d ingestions this process left unfinished", released)
        self._task = asyncio.create_task(self._loop(), name="ingestion")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self._kill_pool)

    async def _loop(self) -> None:
        while True:
            try:
                key = await self._claim()
            except Exception:
                log.exception("could not look for files to ingest")
                key = None
            if key is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._work.wait(), self.poll_seconds)
                self._work.clear()
                continue
            try:
                await self._ingest(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ingesting %s failed inside the gateway", key)
                await self._settle_failed(key, "server_error", "The file could not be processed.")

    async def _claim(self) -> str | None:
        now = self.clock()

        async def claim(tx: StoreTx) -> str | None:
            return await tx.claim_ingestion(self.owner, now, now + self.lease_seconds)

        return await self.store.write(claim)

    async def _ingest(self, key: str) -> None:
        vector_store_id, _, file_id = key.partition("/")
        entry = await self.store.get(Kind.VECTOR_STORE_FILE, key)
        file = await self.store.get(Kind.FILE, file_id)
        if entry is None:
            return
        if file is None:
            await self._settle_failed(key, "invalid_file", f"File {file_id} was deleted.")
            return
        static = entry["chunking_strategy"]["static"]
        renewing = asyncio.create_task(self._renew(key), name=f"ingestion-lease {key}")
        try:
            prepared = await self._prepare(
                file_id,
                file["filename"],
                static["max_chunk_size_tokens"],
                static["chunk_overlap_tokens"],
            )
            if prepared.error is not None:
                await self._settle_failed(key, *prepared.error)
                return
            if not prepared.chunks:
                await self._settle_failed(key, "invalid_file", f"{file['filename']} has no text.")
                return
            vectors = await self._embed([text for text, _ in prepared.chunks])
        except IngestionTimeoutError:
            await self._settle_failed(
                key,
                "invalid_file",
                f"{file['filename']} took longer than {self.timeout_seconds:g} s to read.",
            )
            return
        except EmbeddingError as exc:
            await self._settle_failed(key, "server_error", f"The embedder failed: {exc}")
            return
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        chunks = [
            (text, tokens, vectors[i] if vectors else None)
            for i, (text, tokens) in enumerate(prepared.chunks)
        ]
        usage = sum(len(text.encode()) for text, _, _ in chunks)
        settled = await self.vector_stores.settle(
            vector_store_id,
            file_id,
            "completed",
            chunks=chunks,
            usage_bytes=usage,
            owner=self.owner,
        )
        if settled:
            log.info("ingested %s: %d chunks", key, len(chunks))

    async def _prepare(
        self, file_id: str, filename: str, max_tokens: int, overlap: int
    ) -> Prepared:
        """Parse and chunk the file in the worker process, its bytes passed as a temporary
        file (never whole in memory here)."""
        suffix = os.path.splitext(filename)[1][:16]
        with tempfile.NamedTemporaryFile(suffix=suffix) as spool:
            async for piece in self.files.chunks(file_id):
                await asyncio.to_thread(spool.write, piece)
            await asyncio.to_thread(spool.flush)
            return await self._in_worker(prepare, spool.name, filename, max_tokens, overlap)

    async def _in_worker(self, fn: Callable[..., Prepared], *args: Any) -> Prepared:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Prepared] = loop.create_future()

        def finished(result: Prepared) -> None:
            loop.call_soon_threadsafe(_settle_future, done, result, None)

        def failed(error: BaseException) -> None:
            loop.call_soon_threadsafe(_settle_future, done, None, error)

        # Starting (or replacing) the worker blocks for a moment: off the event loop.
        pool = await asyncio.to_thread(self._worker_pool)
        pool.apply_async(fn, args, callback=finished, error_callback=failed)
        try:
            return await asyncio.wait_for(done, self.timeout_seconds)
        except TimeoutError:
            # The worker is stuck on this file: it goes, and a new one serves the next.
            await asyncio.to_thread(self._kill_pool)
            raise IngestionTimeoutError from None
        except asyncio.CancelledError:
            self._kill_pool()
            raise

    def _worker_pool(self) -> multiprocessing.pool.Pool:
        if self._pool is None:
            # forkserver: a worker never inherits this process's threads and connections.
            context = multiprocessing.get_context("forkserver")
            self._pool = context.Pool(1, maxtasksperchild=200)
        return self._pool

    def _kill_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()

    async def _embed(self, texts: list[str]) -> list[bytes] | None:
        if self.embedder is None:
            return None
        vectors: list[bytes] = []
        for start in range(0, len(texts), EMBED_BATCH):
            vectors += await self.embedder.embed(texts[start : start + EMBED_BATCH], query=False)
        return vectors

    async def _renew(self, key: str) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            until = self.clock() + self.lease_seconds

            async def renew(tx: StoreTx, until: float = until) -> bool:
                return await tx.renew_ingestion(key, self.owner, until)

            try:
                if not await self.store.write(renew):
                    return  # taken over or removed: the settle will see it
            except Exception:
                log.warning("could not renew the lease on ingestion %s", key)

    async def _settle_failed(self, key: str, code: str, message: str) -> None:
        vector_store_id, _, file_id = key.partition("/")
        await self.vector_stores.settle(
            vector_store_id,
            file_id,
            "failed",
            last_error={"code": code, "message": message},
            owner=self.owner,
        )
        log.info("ingestion of %s failed: %s: %s", key, code, message)


def _settle_future(
    future: asyncio.Future[Prepared], result: Prepared | None, error: BaseException | None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert result is not None
        future.set_result(result)
