"""Plain HTTP requests to a live gateway, each on a fresh connection (http.client), for tests
that need the exact status, headers and body of an answer: the openai SDK hides them, and
raises on every error status."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.server import LiveServer

ENVELOPE_FIELDS = {"message", "type", "param", "code"}


@dataclass(frozen=True)
class Answer:
    """One response: its status, its headers (names lower-cased) and its body as sent."""

    status: int
    headers: dict[str, str]
    raw: bytes

    def json(self) -> Any:
        """The body, parsed as JSON."""
        return json.loads(self.raw)

    def error(self) -> dict[str, Any]:
        """The error of OpenAI's envelope, `{"error": {message, type, param, code}}`, checked
        to be exactly that."""
        body = self.json()
        assert set(body) == {"error"}, body
        error: dict[str, Any] = body["error"]
        assert set(error) == ENVELOPE_FIELDS, error
        return error


def call(
    server: LiveServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    key: str | None = None,
    raw: bytes | None = None,
    timeout: float = 10,
) -> Answer:
    """`method path` (a path from the root: /v1/... for the API) with `body` sent as JSON, or
    `raw` as given; `key` goes as a bearer token. Answers of every status are returned."""
    sent: dict[str, str] = {}
    if body is not None:
        raw = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    sent.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request(method, path, body=raw, headers=sent)
        response = conn.getresponse()
        return Answer(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        conn.close()


def ok(server: LiveServer, method: str, path: str, body: Any = None, **options: Any) -> Any:
    """The JSON body of a request that must answer 200 (see `call` for the options)."""
    answer = call(server, method, path, body, **options)
    assert answer.status == 200, (method, path, answer)
    return answer.json()
