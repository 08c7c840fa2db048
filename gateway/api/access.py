"""Who a request is and what it may reach.

Once any API key exists, every API call needs `Authorization: Bearer <key>`: without one, or
with one that is unknown or revoked, it gets a 401. The key's project is then the request's:
an assistant or thread of the path (and with it the thread's messages, runs and steps) must
belong to it, or the answer is the same 404 as for an id that does not exist. A run's event
stream may instead carry a stream token (`?token=`), which was made for that run by a caller
who could reach it. While no key was ever made the server is open and everything is in the
empty project.
"""

from __future__ import annotations

from typing import cast

from starlette.requests import Request

from gateway import logs
from gateway.api.context import catalog_of
from gateway.api.limits import RateLimiter
from gateway.auth import KeyRing
from gateway.errors import AuthenticationError, not_found

# Path parameters that name an object with a project of its own, and what it is called.
_OWNED_PARAMS = (("assistant_id", "assistant"), ("thread_id", "thread"))


async def admit(request: Request, *, token_allowed: bool = False) -> None:
    """Authenticate the request and check that its path stays inside its project; sets the
    request's project (None when a stream token stands in for the key)."""
    keys = cast(KeyRing, request.app.state.keys)
    request.state.key_id = ""
    if keys.open:
        request.state.project = ""
        return
    header = request.headers.get("authorization")
    if header is None:
        if token_allowed and request.query_params.get("token"):
            request.state.project = None  # the handler checks the token
            return
        raise AuthenticationError(
            "You didn't provide an API key. Send it in the Authorization header: "
            "'Authorization: Bearer YOUR_KEY'.",
            code="missing_api_key",
        )
    scheme, _, key = header.partition(" ")
    stored = keys.key_for(key.strip()) if scheme.lower() == "bearer" else None
    if stored is None:
        raise AuthenticationError(
            "Incorrect API key provided, or the key was revoked.", code="invalid_api_key"
        )
    cast(RateLimiter, request.app.state.rate_limiter).take(stored.id)
    request.state.key_id = stored.id
    project = stored.project
    request.state.project = project
    logs.project.set(project)
    catalog = catalog_of(request)
    for param, label in _OWNED_PARAMS:
        object_id = request.path_params.get(param)
        if object_id is None:
            continue
        if label == "assistant":
            owner = await catalog.project_of_assistant(object_id)
        else:
            owner = await catalog.project_of_thread(object_id)
        if owner != project:
            raise not_found(label, object_id)


def key_of(request: Request) -> str:
    """The id of the request's API key ("" while the server is open)."""
    return cast(str, getattr(request.state, "key_id", ""))


def project_of(request: Request) -> str:
    """The request's project ("" while the server is open)."""
    project = request.state.project
    assert project is not None, "a token-authenticated request has no project"
    return cast(str, project)
