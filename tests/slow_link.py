"""A slow network link for tests: a TCP proxy on a loopback port that holds every byte a client
sends for a fixed delay before passing it on, in order. Put in front of Redis, it makes one
gateway's events reach the bus late, which widens a race window from microseconds to a
chosen time, deterministically."""

from __future__ import annotations

import asyncio
import contextlib


class SlowLink:
    """Forwards `127.0.0.1:<port>` to `target`, delaying what clients send by `delay` seconds
    (the answers come back at once)."""

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target = target
        self.delay = delay
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> SlowLink:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
        await self._server.wait_closed()

    def _own(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connected(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        server_r, server_w = await asyncio.open_connection(*self.target)
        self._own(asyncio.create_task(_pipe(client_r, server_w, self.delay)))
        self._own(asyncio.create_task(_pipe(server_r, client_w, 0.0)))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    # Bounded by what one test sends; each chunk keeps its own due time, so order holds.
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=100_000)

    async def forward() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(chunk)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(forward())
    try:
        while chunk := await reader.read(65536):
            await queue.put((loop.time() + delay, chunk))
        await queue.put((loop.time() + delay, b""))
        await sender
    finally:
        sender.cancel()
        writer.close()
