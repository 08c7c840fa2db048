"""The gateway's one exception hierarchy and the OpenAI error envelope it renders to."""

from __future__ import annotations

import math
from typing import Any


class GatewayError(Exception):
    """An error a client sees: HTTP status plus the four fields of OpenAI's error object."""

    status_code = 500
    error_type = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        # Seconds a client should wait before retrying: sent as `Retry-After` (whole seconds).
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str] | None:
        if self.retry_after is None:
            return None
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}

    def body(self) -> dict[str, Any]:
        return envelope(self.message, self.error_type, self.param, self.code)


class InvalidRequestError(GatewayError):
    """The request is malformed or breaks a rule of the API (400)."""

    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationError(InvalidRequestError):
    status_code = 401


class NotFoundError(InvalidRequestError):
    status_code = 404


class MethodNotAllowedError(InvalidRequestError):
    status_code = 405


class UnsupportedMediaTypeError(InvalidRequestError):
    status_code = 415


class ConflictError(InvalidRequestError):
    """A state conflict (an active run, a finished run). 400, never 409: the SDK retries 409."""

    status_code = 400


class PayloadTooLargeError(InvalidRequestError):
    status_code = 413


class RateLimitError(GatewayError):
    """Too many requests, or too many active runs, for one key or project (429)."""

    status_code = 429
    error_type = "rate_limit_error"


class ServiceUnavailableError(GatewayError):
    """The gateway cannot take this request now (it is shutting down); a retry may succeed."""

    status_code = 503
    error_type = "server_error"


class StoreUnavailableError(ServiceUnavailableError):
    """The database refused a write it may take later (locked by another process past the busy
    timeout, disk full); nothing of the write was kept."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            "The database cannot take writes right now (busy, or out of space); nothing was "
            "changed. Retry in a moment.",
            code="store_unavailable",
            retry_after=1,
        )
        self.detail = detail


class UpstreamUnavailableError(GatewayError):
    """A model upstream could not be reached or did not answer in time (502)."""

    status_code = 502
    error_type = "server_error"


class ServerError(GatewayError):
    status_code = 500
    error_type = "server_error"


def envelope(message: str, type_: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def not_found(kind: str, object_id: str) -> NotFoundError:
    return NotFoundError(f"No {kind} found with id '{object_id}'.", code="not_found")


class EmbeddingError(Exception):
    """An embedder could not embed (an upstream refused, a model failed): ingestion fails the
    file with it, and a search answers a 503."""
