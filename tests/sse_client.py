"""A strict, byte-level SSE reader over http.client, recording when each frame arrived."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.server import LiveServer


@dataclass
class Frame:
    """One SSE block as it arrived: its raw bytes and the monotonic time it was read."""

    raw: bytes
    at: float

    @property
    def lines(self) -> list[str]:
        return self.raw.decode().split("\n")

    @property
    def is_comment(self) -> bool:
        return all(line.startswith(":") for line in self.lines)

    def field(self, name: str) -> str | None:
        prefix = name + ": "
        for line in self.lines:
            if line.startswith(prefix):
                return line.removeprefix(prefix)
        return None

    @property
    def id(self) -> int | None:
        value = self.field("id")
        return None if value is None else int(value)

    @property
    def event(self) -> str:
        value = self.field("event")
        assert value is not None, self.raw
        return value

    @property
    def data(self) -> Any:
        payload = self.field("data")
        assert payload is not None, self.raw
        return payload if payload == "[DONE]" else json.loads(payload)


class Stream:
    def __init__(self, server: LiveServer, path: str, body: dict[str, Any]) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        self.conn.request(
            "POST",
            f"/v1{path}",
            body=json.dumps(body),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        self.response = self.conn.getresponse()
        self._buffer = b""

    def frames(self) -> Iterator[Frame]:
        """Frames until the server closes the stream. Reads with read1 so nothing is held back."""
        while True:
            while b"\n\n" in self._buffer:
                block, self._buffer = self._buffer.split(b"\n\n", 1)
                yield Frame(block, time.monotonic())
            chunk = self.response.read1(65536)
            if not chunk:
                assert self._buffer == b"", f"stream ended inside a frame: {self._buffer!r}"
                return
            self._buffer += chunk

    def close(self) -> None:
        self.conn.close()
