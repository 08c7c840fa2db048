"""Client connections that stop talking: uvicorn's HTTP protocol with two bounds it lacks.

- A request must arrive in full (headers and body) within `request_timeout` of the
  connection's opening or of its first byte, plus, for a body of declared length, that length
  at a minimum upload rate (a large file is not cut off; a trickle still is). uvicorn has no
  such deadline (its keep-alive timer only runs between requests and is reset by every
  byte), so a client that sends half a request and falls silent, or trickles it byte by
  byte, would hold a connection forever.
  Before the headers are complete the client gets a 408 envelope; after, the connection is
  closed and the handler sees the client gone.
- A peer that vanished without closing (a half-open connection: its host lost power or its
  network) is found by the kernel: TCP_USER_TIMEOUT closes a connection whose sent data stays
  unacknowledged for `peer_timeout`, and keep-alive probes cover one that sends nothing. An
  event stream always has something to send (events or its pings), so such a stream ends
  within about the ping interval plus `peer_timeout`.

It also frames a response of unknown length (an event stream) for an HTTP/1.0 client as RFC
9112 has it: uvicorn would send it chunked, which HTTP/1.0 does not know; it goes out as it
is, and closing the connection ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

log = logging.getLogger("gateway.connections")

_TIMEOUT_BODY = orjson.dumps(
    {
        "error": {
            "message": "The request did not arrive in full in time; the connection is closed.",
            "type": "invalid_request_error",
            "param": None,
            "code": "request_timeout",
        }
    }
)
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: application/json\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _TIMEOUT_BODY
)


def set_peer_timeout(sock: Any, seconds: float) -> None:
    """Ask the kernel to close the connection once its peer has acknowledged nothing for
    `seconds`, and to probe it when idle. Linux only; elsewhere (or on a non-TCP socket)
    the options are skipped."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6) or seconds <= 0:
        return
    probe = max(1, int(seconds / 3))
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (
        ("TCP_USER_TIMEOUT", int(seconds * 1000)),
        ("TCP_KEEPIDLE", probe),
        ("TCP_KEEPINTVL", probe),
        ("TCP_KEEPCNT", 3),
    ):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    with contextlib.suppress(OSError):
        for level, option, value in options:
            sock.setsockopt(level, option, value)


def close_delimited(cycle: RequestResponseCycle, send: Any) -> Any:
    """`send` for an HTTP/1.0 request (whose connection uvicorn closes after the response): a
    response without a Content-Length goes out as it is, without Transfer-Encoding (RFC 9112,
    6.1: never to an HTTP/1.0 client), and the close ends it (6.3). uvicorn chunks such a
    response unless its framing is decided; here it is, as a sequence of exact lengths."""
    unsized = False

    async def sending(message: Any) -> None:
        nonlocal unsized
        if message["type"] == "http.response.start":
            headers = message.get("headers", ())
            unsized = not any(name.lower() == b"content-length" for name, _ in headers)
            if unsized:
                cycle.chunked_encoding = False
        elif unsized and message["type"] == "http.response.body":
            cycle.expected_content_length = len(message.get("body", b""))
        await send(message)

    return sending


def protocol_class(
    *,
    request_timeout: float,
    peer_timeout: float,
    dropped: Callable[[str], None],
    upload_rate: float = 0,
) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the two bounds above; `dropped(reason)` counts a
    connection closed by the request deadline. A body of a declared length gets that length at
    `upload_rate` bytes a second beyond the deadline (a large file uploads at a fair pace)."""

    class GatewayHttpProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _headers_done = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            set_peer_timeout(transport.get_extra_info("socket"), peer_timeout)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._headers_done = False
            self._arm()

        def on_headers_complete(self) -> None:
            self._headers_done = True
            super().on_headers_complete()
            length = next((v for n, v in self.headers if n == b"content-length"), b"")
            if upload_rate > 0 and length.isdigit() and self._deadline is not None:
                self._disarm()
                seconds = request_timeout + int(length) / upload_rate
                self._deadline = self.loop.call_later(seconds, self._expired)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._disarm()

        def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
            if cycle.scope.get("http_version") == "1.0":
                inner = app

                async def app(scope: Any, receive: Any, send: Any) -> None:
                    await inner(scope, receive, close_delimited(cycle, send))

            super()._start_asgi_task(cycle, app)

        def _arm(self) -> None:
            if self._deadline is None and request_timeout > 0:
                self._deadline = self.loop.call_later(request_timeout, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            dropped("request_timeout")
            log.info("closed a connection whose request did not arrive within %ss", request_timeout)
            if not self._headers_done:
                self.transport.write(_TIMEOUT_RESPONSE)
            self.transport.close()

    return GatewayHttpProtocol
