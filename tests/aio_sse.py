"""Reading a gateway's SSE streams with aiohttp, for tests that drive gateway processes:
every event frame as (id, event, data), in order. Frames are parsed by tests/sse_client.py's
parser, the one every reader uses."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp

from tests.sse_client import Triple, is_event, split_frames, triple


@dataclass
class Seen:
    """What one client got: event frames as (id, event, data)."""

    frames: list[Triple] = field(default_factory=list)

    def deltas(self) -> int:
        return sum(1 for _, name, _ in self.frames if name == "thread.message.delta")

    def text(self) -> str:
        return "".join(
            part["text"]["value"]
            for _, name, data in self.frames
            if name == "thread.message.delta"
            for part in data["delta"]["content"]
        )

    def last_id(self) -> int | None:
        ids = [i for i, _, _ in self.frames if i is not None]
        return ids[-1] if ids else None


async def read_frames(response: aiohttp.ClientResponse, seen: Seen) -> None:
    """Add each event of `response` to `seen` as it arrives, until the stream ends (a frame cut
    off by the end, as when the gateway process dies, is dropped)."""
    rest = b""
    async for chunk in response.content.iter_any():
        frames, rest = split_frames(rest + chunk)
        seen.frames.extend(triple(f) for f in frames if is_event(f))
