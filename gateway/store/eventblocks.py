"""How a store keeps the event log: in blocks of frames, one block per run per group commit.

A frame is the event's SSE block as sent: `id: <seq>`, `event: <name>`, one `data:` line of
compact JSON, a blank line. JSON from orjson never holds a raw newline, so a blank line only
ever ends a frame and a block splits back into its frames without any index. The marker that
ends a stream segment (never sent, stored so that replays know where segments end) is kept as
`id:` and `event:` lines alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway import events
from gateway.store.base import LoggedEvent

_MARKER = b"\nevent: " + events.STREAM_END.encode() + b"\n\n"

# One row of a block: run id, first and last sequence number, the frames, created at.
BlockRow = tuple[str, int, int, bytes, int]


def event_blocks(rows: Iterable[tuple[str, LoggedEvent, int]]) -> list[BlockRow]:
    """The logged events of one commit as one block per run, each run's events in order."""
    by_run: dict[str, tuple[list[bytes], int, int, int]] = {}
    for run_id, event, at in rows:
        frame = event.frame or b"id: %d%s" % (event.seq, _MARKER)
        block = by_run.get(run_id)
        if block is None:
            by_run[run_id] = ([frame], event.seq, event.seq, at)
        else:
            frames, first, _, created = block
            frames.append(frame)
            by_run[run_id] = (frames, first, event.seq, created)
    return [
        (run_id, first, last, b"".join(frames), created)
        for run_id, (frames, first, last, created) in by_run.items()
    ]


def split_block(block: bytes) -> list[LoggedEvent]:
    """The logged events of a stored block (the marker gets back its empty frame)."""
    found: list[LoggedEvent] = []
    start, size = 0, len(block)
    while start < size:
        end = block.index(b"\n\n", start) + 2
        head = block.index(b"\n", start)
        seq = int(block[start + 4 : head])
        name_end = block.index(b"\n", head + 1)
        name = block[head + 8 : name_end].decode()
        frame = b"" if name == events.STREAM_END else block[start:end]
        found.append(LoggedEvent(seq, name, frame))
        start = end
    return found
