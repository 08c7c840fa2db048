"""Reading a gateway's SSE streams with aiohttp, for tests that drive gateway processes:
every frame as (id, event, data), in order."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Seen:
    """What one client got: frames as (id, event, data)."""

    frames: list[tuple[int | None, str, Any]] = field(default_factory=list)

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
    buffer = b""
    async for chunk in response.content.iter_any():
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            fields = dict(
                line.split(": ", 1) for line in block.decode().splitlines() if ": " in line
            )
            if "event" not in fields:
                continue
            data = fields["data"]
            seen.frames.append(
                (
                    int(fields["id"]) if "id" in fields else None,
                    fields["event"],
                    data if data == "[DONE]" else json.loads(data),
                )
            )
