"""Per-event costs of the gateway's own code, without sockets: microseconds per text delta to
build it, to build and log and publish it (one subscriber, persistence queued), and to decode
and read one upstream chat-completions chunk. One process, uvloop; no server is started.

    .venv/bin/python loadtests/micro_events.py [--events N]

These are floors for the end-to-end cases of bench.py, which add sockets, HTTP and the event
loop's scheduling on top.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import uvloop

from gateway import events
from gateway.bus.memory import MemoryEventBus
from gateway.engine.eventlog import EventLog
from gateway.ids import call_id
from gateway.models.chat import ChunkReader
from gateway.models.sse_decoder import SSEDecoder

CHUNK = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}\n\n'
)
READ = 32  # chunks per network read, as a fast upstream delivers them


class _UnusedStore:
    """The event log's store; the flusher is not started, so nothing is written."""

    async def write(self, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        raise AssertionError("not used")


async def measure(count: int) -> dict[str, float]:
    started = time.perf_counter()
    for _ in range(count):
        events.message_text_delta("msg_abc", 0, "word ", first=False)
    build = time.perf_counter() - started

    bus = MemoryEventBus()
    log = EventLog(_UnusedStore(), bus)  # type: ignore[arg-type]
    async with bus.subscribe("run_1") as subscription:
        started = time.perf_counter()
        for n in range(count):
            await log.publish(
                "run_1", events.message_text_delta("msg_abc", 0, "word ", first=False)
            )
            if n % READ == 0:  # what a subscriber would take, and the flusher would store
                subscription._pending = []
                log._pending = []
        publish = time.perf_counter() - started

    decoder, reader, read = SSEDecoder(), ChunkReader(), CHUNK * READ
    started = time.perf_counter()
    for _ in range(count // READ):
        for message in decoder.feed(read):
            reader.read(orjson.loads(message.data), call_id)
    decode = time.perf_counter() - started
    return {
        "build a text delta": build / count * 1e6,
        "build, log and publish a text delta": publish / count * 1e6,
        "decode and read an upstream chunk": decode / (count // READ * READ) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    for name, micros in uvloop.run(measure(args.events)).items():
        print(f"{micros:6.2f} us  {name}")


if __name__ == "__main__":
    main()
