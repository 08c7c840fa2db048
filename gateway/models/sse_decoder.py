"""Incremental decoding of a server-sent event stream read from an upstream.

Written here rather than taken from a library: the maintained SSE clients are built for httpx,
not aiohttp, and the format is small. It follows the HTML standard's rules: lines end in CRLF,
LF or CR (a CRLF may be split across two reads), `:` lines are comments, several `data:` lines
join with a newline, one leading space after the colon is dropped, a blank line dispatches.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)  # not frozen: made once per upstream chunk, and frozen inits cost 3x
class SSEMessage:
    event: str
    data: str


class SSEDecoder:
    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""
        # The last read ended in CR: an LF opening the next read is the second half of a CRLF.
        self._after_cr = False

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        """The messages completed by `chunk` (any split of the stream is fine).

        The complete lines of a read are split at once (bytes.splitlines knows exactly CRLF, LF
        and CR); only the unfinished last line waits in the buffer for the next read."""
        if self._after_cr and chunk:
            self._after_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buffer = self._buffer + chunk if self._buffer else chunk
        last = max(buffer.rfind(b"\n"), buffer.rfind(b"\r"))
        if last < 0:
            self._buffer = buffer
            return []
        self._buffer = buffer[last + 1 :]
        if buffer[last] == 13:  # CR
            self._after_cr = True
        messages: list[SSEMessage] = []
        data = self._data
        for line in buffer[: last + 1].splitlines():
            if line.startswith(b"data:"):
                value = line[6:] if line[5:6] == b" " else line[5:]
                data.append(value.decode("utf-8", errors="replace"))
            elif not line:
                if data:
                    messages.append(SSEMessage(self._event or "message", "\n".join(data)))
                    data.clear()
                self._event = ""
            else:
                self._field(line)
        return messages

    def finish(self) -> list[SSEMessage]:
        """At the end of the stream. A message not closed by a blank line is dropped, as the
        standard says, and so is an unfinished last line."""
        return []

    def _field(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace")
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":  # `data` with no colon at all: an empty data line
            self._data.append(value)
        elif name == "event":
            self._event = value
        # id and retry mean nothing for a chat-completions stream
