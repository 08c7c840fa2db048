"""Incremental decoding of a server-sent event stream read from an upstream.

Written here rather than taken from a library: the maintained SSE clients are built for httpx,
not aiohttp, and the format is small. It follows the HTML standard's rules: lines end in CRLF,
LF or CR (a CRLF may be split across two reads), `:` lines are comments, several `data:` lines
join with a newline, one leading space after the colon is dropped, a blank line dispatches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SSEMessage:
    event: str
    data: str


class SSEDecoder:
    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        """The messages completed by `chunk` (any split of the stream is fine)."""
        self._buffer += chunk
        messages: list[SSEMessage] = []
        position = 0
        while True:
            match = _LINE_END.search(self._buffer, position)
            if match is None:
                break
            if match.group() == b"\r" and match.end() == len(self._buffer):
                break  # maybe the first half of a CRLF: wait for the next read
            message = self._line(self._buffer[position : match.start()])
            if message is not None:
                messages.append(message)
            position = match.end()
        self._buffer = self._buffer[position:]
        return messages

    def finish(self) -> list[SSEMessage]:
        """At the end of the stream: a held-back final CR ends its line. A message not closed by
        a blank line is dropped, as the standard says."""
        if self._buffer.endswith(b"\r"):
            return self.feed(b"\n")
        return []

    def _line(self, raw: bytes) -> SSEMessage | None:
        if not raw:
            if not self._data:
                self._event = ""
                return None
            message = SSEMessage(self._event or "message", "\n".join(self._data))
            self._data, self._event = [], ""
            return message
        line = raw.decode("utf-8", errors="replace")
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None  # id and retry mean nothing for a chat-completions stream
