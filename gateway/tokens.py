"""Short-lived signed tokens that let a browser's EventSource (which cannot send headers) open
the event stream of one run. itsdangerous signs and times them; the key is the gateway's own
secret, kept in the database so tokens outlive a restart."""

from __future__ import annotations

from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer


class InvalidTokenError(Exception):
    """The token is altered, expired, or for another run."""


class StreamTokens:
    def __init__(self, secret: str, *, ttl_seconds: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="run-event-stream")
        self.ttl_seconds = ttl_seconds

    def mint(self, thread_id: str, run_id: str) -> str:
        return self._serializer.dumps({"thread": thread_id, "run": run_id})

    def check(self, token: str, thread_id: str, run_id: str) -> None:
        try:
            scope: Any = self._serializer.loads(token, max_age=self.ttl_seconds)
        except SignatureExpired:
            raise InvalidTokenError("The stream token has expired.") from None
        except BadSignature:
            raise InvalidTokenError("The stream token is not valid.") from None
        if scope != {"thread": thread_id, "run": run_id}:
            raise InvalidTokenError("The stream token is for another run.")
