"""Idempotency keys: one answer per (project, key), kept for `TTL_SECONDS` (24 h).

A key is claimed in the store when its first request starts and holds that request's answer
once it ends: a JSON body and status, or for a streamed create the run whose stream a retry
replays. An answer a retry might change (a 5xx, a 429, a request cut short) releases the claim
instead, so the retry runs anew.

A request whose key is still claimed unanswered waits for the answer, up to `WAIT_SECONDS`: in
this process on the first request's own slot, and for a claim another process holds by
claiming again, with backoff, until it is answered (then it is answered again), released (then
this request goes ahead as the first), or older than `WAIT_SECONDS` unanswered: its process
died, and the claim is taken over. The HTTP side (the header, the fingerprint, the responses)
is `api/idempotency.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from gateway.objects import now
from gateway.periodic import Periodic
from gateway.store import IdempotentRecord, RunStore, StoreTx

log = logging.getLogger("gateway.idempotency")

TTL_SECONDS = 24 * 3600
# How long a retry waits for the first request with its key to end; also how long a claim may
# stay unanswered before it is taken for abandoned (no create takes nearly this long).
WAIT_SECONDS = 60
# Between two looks at a claim another process holds: doubling from the first to the last.
POLL_FIRST_SECONDS = 0.01
POLL_LAST_SECONDS = 0.25
PRUNE_SECONDS = 3600.0


class KeyInUseError(Exception):
    """The key's first request is still running after `WAIT_SECONDS`."""


class Claim:
    """A request's hold on its key: `found` is the answer a request with this key already
    left (or a claim still unanswered, or one with another fingerprint); else this request
    is the first, and ends its claim with `answer` or `release`."""

    def __init__(
        self, keys: IdempotencyKeys, project: str, key: str, found: IdempotentRecord | None, at: int
    ) -> None:
        self._keys = keys
        self.project = project
        self.key = key
        self.found = found
        self.at = at

    async def answer(
        self,
        fingerprint: bytes,
        status: int,
        body: bytes | None = None,
        run: tuple[str, str] | None = None,
    ) -> None:
        """Keep the answer (a JSON `body`, or the streamed `run` as (thread id, run id)); an
        answer a retry might change releases the claim instead."""
        if not final(status):
            return await self.release()
        thread_id, run_id = run if run is not None else (None, None)
        record = IdempotentRecord(fingerprint, self.at, status, body, thread_id, run_id)

        async def write(tx: StoreTx) -> None:
            await tx.finish_idempotency(self.project, self.key, record)

        await self._keys.store.write(write)

    async def release(self) -> None:
        async def write(tx: StoreTx) -> None:
            await tx.release_idempotency(self.project, self.key, self.at)

        try:
            await self._keys.store.write(write)
        except Exception:
            log.exception("could not release an idempotency key")


class IdempotencyKeys:
    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._running: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._pruner = Periodic(
            "idempotency-prune",
            PRUNE_SECONDS,
            lambda: self.prune(now() - TTL_SECONDS),
            "could not prune idempotency keys",
        )

    async def start(self) -> None:
        self._pruner.start()

    async def stop(self) -> None:
        await self._pruner.stop()

    @asynccontextmanager
    async def claim(self, project: str, key: str, fingerprint: bytes) -> AsyncIterator[Claim]:
        """Hold `key` for a request with `fingerprint` while the block runs; a duplicate in
        this process waits until the block ends. Raises KeyInUseError after `WAIT_SECONDS`."""
        slot = (project, key)
        while (running := self._running.get(slot)) is not None:
            try:
                async with asyncio.timeout(WAIT_SECONDS):
                    await asyncio.shield(running)
            except TimeoutError:
                raise KeyInUseError from None
        # Taken before the first await: a duplicate arriving meanwhile waits above.
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running[slot] = done
        try:
            found, at = await self._claim(project, key, fingerprint)
            yield Claim(self, project, key, found, at)
        finally:
            del self._running[slot]
            done.set_result(None)

    async def _claim(
        self, project: str, key: str, fingerprint: bytes
    ) -> tuple[IdempotentRecord | None, int]:
        """(None, when) once this request holds the key, or the record found. A claim another
        process holds unanswered is waited for (see above)."""
        loop = asyncio.get_running_loop()
        # A second more than a claim may stay unanswered: claims are stamped in whole seconds,
        # and a claim this request finds abandoned on its last look is taken over.
        deadline = loop.time() + WAIT_SECONDS + 1
        pause = POLL_FIRST_SECONDS
        while True:
            stamp = now()
            found = await self.store.write(partial(_claim, project, key, fingerprint, stamp))
            if found is None or found.status is not None or found.fingerprint != fingerprint:
                return found, stamp
            if loop.time() >= deadline:
                return found, stamp  # still unanswered: the caller answers "in use"
            await asyncio.sleep(pause)
            pause = min(pause * 2, POLL_LAST_SECONDS)

    async def prune(self, before: int) -> int:
        """Forget the keys claimed before `before`."""

        async def write(tx: StoreTx) -> int:
            return await tx.prune_idempotency(before)

        return await self.store.write(write)


async def _claim(
    project: str, key: str, fingerprint: bytes, stamp: int, tx: StoreTx
) -> IdempotentRecord | None:
    return await tx.claim_idempotency(
        project,
        key,
        fingerprint,
        stamp,
        expired_before=stamp - TTL_SECONDS,
        abandoned_before=stamp - WAIT_SECONDS,
    )


def final(status: int) -> bool:
    """An answer a retry of the same request would get again (not a 5xx, not a 429)."""
    return status < 500 and status != 429
