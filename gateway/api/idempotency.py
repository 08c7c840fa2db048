"""`Idempotency-Key` on the POSTs that create: a retry with the same key and the same request
gets the first answer again (marked `idempotent-replayed: true`) and creates nothing; the same
key with another request is a 400. The keys themselves, their claims and waits, are the
engine's (`engine/idempotency.py`); here are the header, the request's fingerprint and the
responses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import cast

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.streaming import replay_response, streamed_run
from gateway.engine.idempotency import Claim, IdempotencyKeys, KeyInUseError
from gateway.errors import GatewayError, InvalidRequestError

HEADER = "idempotency-key"
REPLAYED_HEADER = "idempotent-replayed"
MAX_KEY_LENGTH = 255

Handler = Callable[[Request], Awaitable[Response]]


async def handle(request: Request, handler: Handler) -> Response:
    """Answer `request` through `handler` once per Idempotency-Key, if it has one."""
    key = request.headers.get(HEADER)
    if key is None:
        return await handler(request)
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidRequestError(
            f"The Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} printable characters.",
            param="Idempotency-Key",
            code="invalid_idempotency_key",
        )
    keys = cast(IdempotencyKeys, request.app.state.idempotency)
    project = cast(str, request.state.project)
    fingerprint = _fingerprint(request, await request.body())
    try:
        async with keys.claim(project, key, fingerprint) as claim:
            if claim.found is None:
                return await _first(request, handler, claim, fingerprint)
            return await _answer_again(request, claim, fingerprint)
    except KeyInUseError:
        raise _in_use() from None


async def _first(request: Request, handler: Handler, claim: Claim, fingerprint: bytes) -> Response:
    try:
        response = await handler(request)
    except GatewayError as exc:
        await claim.answer(fingerprint, exc.status_code, orjson.dumps(exc.body()))
        raise
    except BaseException:
        await claim.release()
        raise
    run = streamed_run(request)
    body = None if run is not None else bytes(response.body)
    await claim.answer(fingerprint, response.status_code, body, run)
    return response


async def _answer_again(request: Request, claim: Claim, fingerprint: bytes) -> Response:
    found = claim.found
    assert found is not None
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


def _fingerprint(request: Request, body: bytes) -> bytes:
    """The request as a retry would repeat it: method, path (with or without /v1) and body."""
    path = request.url.path.removeprefix("/v1")
    return hashlib.sha256(f"{request.method} {path}\n".encode() + body).digest()


def _in_use() -> InvalidRequestError:
    return InvalidRequestError(
        "A request with this Idempotency-Key is still being processed; retry in a moment.",
        param="Idempotency-Key",
        code="idempotency_key_in_use",
    )
