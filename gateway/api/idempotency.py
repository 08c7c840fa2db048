"""`Idempotency-Key` on the POSTs that create: a retry with the same key and the same request
gets the first answer again and creates nothing; the same key with another request is a 400.

A key is claimed in the store when its first request starts (per project) and holds that
request's answer once it ends: the JSON body and status, errors included, or for a streamed
create the run, whose stream is replayed from its event log. An answer the client could fix
by retrying unchanged (a 5xx, a 429, a request cut short) releases the claim instead. Keys are
kept for `TTL_SECONDS` (24 h).

A retry that arrives while the first request is still running waits for its answer, up to
`WAIT_SECONDS`: in this process on the first one's future, and for a claim another process
holds by claiming again, with backoff, until the claim is answered (then it is answered
again), released (then this request goes ahead as the first), or older than `WAIT_SECONDS`
unanswered: its process died, and the claim is taken over. A wait that runs out answers a 400
(`idempotency_key_in_use`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import cast

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.streaming import replay_response, streamed_run
from gateway.errors import GatewayError, InvalidRequestError
from gateway.objects import now
from gateway.periodic import Periodic
from gateway.store import IdempotentRecord, RunStore, StoreTx

log = logging.getLogger("gateway.idempotency")

HEADER = "idempotency-key"
REPLAYED_HEADER = "idempotent-replayed"
TTL_SECONDS = 24 * 3600
MAX_KEY_LENGTH = 255
# How long a retry waits for the first request with its key to end; also how long a claim may
# stay unanswered before it is taken for abandoned (no create takes nearly this long).
WAIT_SECONDS = 60
# Between two looks at a claim another process holds: doubling from the first to the last.
POLL_FIRST_SECONDS = 0.01
POLL_LAST_SECONDS = 0.25
PRUNE_SECONDS = 3600.0

Handler = Callable[[Request], Awaitable[Response]]


class Idempotency:
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

    async def handle(self, request: Request, handler: Handler) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return await handler(request)
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise InvalidRequestError(
                f"The Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} printable characters.",
                param="Idempotency-Key",
                code="invalid_idempotency_key",
            )
        project = cast(str, request.state.project)
        fingerprint = _fingerprint(request, await request.body())
        slot = (project, key)
        while (running := self._running.get(slot)) is not None:
            try:
                async with asyncio.timeout(WAIT_SECONDS):
                    await asyncio.shield(running)
            except TimeoutError:
                raise _in_use() from None
        # Taken before the first await: a duplicate arriving meanwhile waits above.
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running[slot] = done
        try:
            found, stamp = await self._claim(project, key, fingerprint)
            if found is not None:
                return await self._answer_again(request, found, fingerprint)
            return await self._first(request, handler, project, key, fingerprint, stamp)
        finally:
            del self._running[slot]
            done.set_result(None)

    async def _claim(
        self, project: str, key: str, fingerprint: bytes
    ) -> tuple[IdempotentRecord | None, int]:
        """Claim the key: (None, when) once this request holds it, or the record to answer
        again with. A claim another process holds unanswered is waited for (see above)."""
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
                return found, stamp  # still unanswered: idempotency_key_in_use
            await asyncio.sleep(pause)
            pause = min(pause * 2, POLL_LAST_SECONDS)

    async def _first(
        self,
        request: Request,
        handler: Handler,
        project: str,
        key: str,
        fingerprint: bytes,
        stamp: int,
    ) -> Response:
        try:
            response = await handler(request)
        except GatewayError as exc:
            if _final(exc.status_code):
                body = orjson.dumps(exc.body())
                await self._finish(
                    project, key, IdempotentRecord(fingerprint, stamp, exc.status_code, body)
                )
            else:
                await self._release(project, key, stamp)
            raise
        except BaseException:
            await self._release(project, key, stamp)
            raise
        run_ref = streamed_run(request)
        if run_ref is not None:
            thread_id, run_id = run_ref
            record = IdempotentRecord(
                fingerprint, stamp, response.status_code, None, thread_id, run_id
            )
        else:
            record = IdempotentRecord(
                fingerprint, stamp, response.status_code, bytes(response.body)
            )
        if _final(response.status_code):
            await self._finish(project, key, record)
        else:
            await self._release(project, key, stamp)
        return response

    async def _answer_again(
        self, request: Request, found: IdempotentRecord, fingerprint: bytes
    ) -> Response:
        if found.fingerprint != fingerprint:
            raise InvalidRequestError(
                "This Idempotency-Key was already used for a different request (another path or "
                "body). Use a new key for a new request.",
                param="Idempotency-Key",
                code="idempotency_key_reused",
            )
        if found.status is None:
            raise _in_use()
        if found.run_id is not None and found.thread_id is not None:
            response = await replay_response(request, found.thread_id, found.run_id)
        else:
            response = Response(found.body, status_code=found.status, media_type="application/json")
        response.headers[REPLAYED_HEADER] = "true"
        return response

    async def _finish(self, project: str, key: str, record: IdempotentRecord) -> None:
        async def write(tx: StoreTx) -> None:
            await tx.finish_idempotency(project, key, record)

        await self.store.write(write)

    async def _release(self, project: str, key: str, claimed_at: int) -> None:
        async def write(tx: StoreTx) -> None:
            await tx.release_idempotency(project, key, claimed_at)

        try:
            await self.store.write(write)
        except Exception:
            log.exception("could not release an idempotency key")

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


def _fingerprint(request: Request, body: bytes) -> bytes:
    """The request as a retry would repeat it: method, path (with or without /v1) and body."""
    path = request.url.path.removeprefix("/v1")
    return hashlib.sha256(f"{request.method} {path}\n".encode() + body).digest()


def _final(status: int) -> bool:
    """An answer a retry of the same request would get again (not a 5xx, not a 429)."""
    return status < 500 and status != 429


def _in_use() -> InvalidRequestError:
    return InvalidRequestError(
        "A request with this Idempotency-Key is still being processed; retry in a moment.",
        param="Idempotency-Key",
        code="idempotency_key_in_use",
    )
