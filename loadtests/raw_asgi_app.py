"""The raw baseline: a minimal ASGI app, no framework, served by the gateway's own uvicorn
configuration (uvloop + httptools, one process), writing pre-recorded SSE frames.

It is what the gateway's emit path is measured against: the same bytes on the same server,
with nothing in between.

Routes:
    GET /health   200 `ok`
    any /stream   the recorded frames (from `--frames FILE`, the body of a recorded gateway run
                  stream, split after each blank line), one `http.response.body` send per frame,
                  as fast as the connection takes them
    GET /idle     an SSE response that sends `retry: 1000` and then nothing until the client
                  goes away (the baseline for idle streams)

Usage: python loadtests/raw_asgi_app.py --port PORT [--frames FILE]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import uvicorn

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
RETRY_FRAME = b"retry: 1000\n\n"

Message = dict[str, Any]


class RawApp:
    """The ASGI callable; `frames` are the recorded frames /stream replays."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        await read_body(receive)
        path = scope["path"]
        if path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            for frame in self.frames:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        elif path == "/idle":
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            await send({"type": "http.response.body", "body": RETRY_FRAME, "more_body": True})
            while (await receive())["type"] != "http.disconnect":
                pass
        else:
            status = 200 if path == "/health" else 404
            headers = [(b"content-type", b"text/plain")]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b"ok" if status == 200 else b""})


async def lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Any) -> None:
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return
        more = message.get("more_body", False)


def split_frames(body: bytes) -> list[bytes]:
    """A recorded SSE body as frames, each ending with its blank line."""
    return [part + b"\n\n" for part in body.split(b"\n\n") if part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--frames", type=Path, help="a recorded SSE body to replay on /stream")
    args = parser.parse_args()
    frames = split_frames(args.frames.read_bytes()) if args.frames else [RETRY_FRAME]
    # The configuration of gateway/serving.py: uvloop, httptools, one process, lifespan on.
    uvicorn.run(
        RawApp(frames),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
