"""The benchmark's HTTP clients (aiohttp): SSE streams read as raw bytes and timed, and the few
gateway calls that set a case up.

Reading is kept cheap so that the client is rarely what limits a measurement: a stream is never
parsed into events; its frames are counted with C-level byte searches (blank lines), and the
first token is found by a byte marker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

# Where a stream's first token is: a gateway text delta, an upstream content chunk.
GATEWAY_TOKEN = b"event: thread.message.delta"
UPSTREAM_TOKEN = b'"content":"'
DONE_FRAMES = (b"event: done\ndata: [DONE]\n\n", b"data: [DONE]\n\n")
RETRY_PREFIX = b"retry:"
TERMINAL = frozenset({"completed", "failed", "cancelled", "expired", "incomplete"})
LOCAL_MODEL = "gpt-4o"  # a name no routing file of the benchmark claims: the built-in model
# No single request of a case may take longer than this.
REQUEST_SECONDS = 120.0
# Pooled connections idle longer than this are not reused: uvicorn closes them after 5 s
# (timeout_keep_alive), and reusing one just as it closes fails the request.
KEEPALIVE_SECONDS = 3.0


Session = aiohttp.ClientSession
Response = aiohttp.ClientResponse


class BenchClientError(RuntimeError):
    """A request answered something a case cannot use."""


def session(limit: int = 0) -> aiohttp.ClientSession:
    """One pooled session; `limit` 0 means as many connections as there are requests."""
    connector = aiohttp.TCPConnector(
        limit=limit, limit_per_host=0, keepalive_timeout=KEEPALIVE_SECONDS
    )
    timeout = aiohttp.ClientTimeout(total=REQUEST_SECONDS)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


@dataclass
class Stream:
    """One SSE response as the client saw it; times are `time.perf_counter()` seconds."""

    started: float
    headers_at: float
    first_token_at: float | None
    ended: float
    frames: int  # event frames: not counting `retry:` or the final done frame
    first_read_frames: int  # frames in the first read of the body (a replay arrives whole)
    done: bool
    size: int

    @property
    def duration(self) -> float:
        return self.ended - self.started

    @property
    def ttft(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started


def words(count: int) -> str:
    """A message the local model repeats as `count` + 2 text deltas ("You said: ...")."""
    return " ".join(f"w{i}" for i in range(count))


def check_streams(streams: list[Stream], side: str, minimum_frames: int) -> None:
    """Raise unless every stream ended with `done`, a first token and enough frames."""
    bad = [
        s for s in streams if not s.done or s.frames < minimum_frames or s.first_token_at is None
    ]
    if bad:
        raise BenchClientError(
            f"{side}: {len(bad)} of {len(streams)} streams ended early "
            f"(frames {bad[0].frames}, done {bad[0].done})"
        )


async def read_stream(
    response: aiohttp.ClientResponse, started: float, token: bytes = GATEWAY_TOKEN
) -> Stream:
    """Read an SSE body to its end, counting frames and timing the first `token` marker."""
    if response.status != 200:
        text = (await response.read())[:300].decode(errors="replace")
        raise BenchClientError(f"{response.method} {response.url.path}: {response.status} {text}")
    headers_at = time.perf_counter()
    blank_lines = 0
    first_read = -1
    first_token_at: float | None = None
    carry = b""  # the end of the previous read, for markers and blank lines split across reads
    head = b""
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        blank_lines += chunk.count(b"\n\n")
        if carry.endswith(b"\n") and chunk.startswith(b"\n"):
            blank_lines += 1
        if first_read < 0:
            first_read = blank_lines
            head = chunk[: len(RETRY_PREFIX)]
        if first_token_at is None and (token in chunk or token in carry + chunk[: len(token)]):
            first_token_at = time.perf_counter()
        carry = (carry + chunk)[-64:]
    ended = time.perf_counter()
    done = carry.endswith(DONE_FRAMES)
    frames = blank_lines - done - head.startswith(RETRY_PREFIX)
    return Stream(
        started=started,
        headers_at=headers_at,
        first_token_at=first_token_at,
        ended=ended,
        frames=frames,
        first_read_frames=max(first_read, 0),
        done=done,
        size=size,
    )


async def post_stream(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], token: bytes = GATEWAY_TOKEN
) -> Stream:
    started = time.perf_counter()
    async with http.post(url, json=body) as response:
        return await read_stream(response, started, token)


async def get_stream(http: aiohttp.ClientSession, url: str, token: bytes = GATEWAY_TOKEN) -> Stream:
    started = time.perf_counter()
    async with http.get(url) as response:
        return await read_stream(response, started, token)


async def direct_chat_stream(http: aiohttp.ClientSession, upstream: str, model: str) -> Stream:
    """The A side of the upstream cases: the stream taken straight from the upstream."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Stream please"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    return await post_stream(http, f"{upstream}/v1/chat/completions", body, UPSTREAM_TOKEN)


class Gateway:
    """The gateway calls a case makes, over one session."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.api = base + "/v1"

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(self.api + path, json=body) as response:
            return await _json(response)

    async def get(self, path: str) -> dict[str, Any]:
        async with self.http.get(self.api + path) as response:
            return await _json(response)

    async def assistant(self, model: str) -> str:
        return str((await self.post("/assistants", {"model": model, "name": "bench"}))["id"])

    async def thread(self, content: str) -> str:
        body = {"messages": [{"role": "user", "content": content}]}
        return str((await self.post("/threads", body))["id"])

    async def threads(self, count: int, content: str) -> list[str]:
        return list(await asyncio.gather(*(self.thread(content) for _ in range(count))))

    async def run_stream(self, thread_id: str, assistant_id: str, model: str | None) -> Stream:
        """runs.create(stream=true) on an existing thread."""
        body: dict[str, Any] = {"assistant_id": assistant_id, "stream": True}
        if model is not None:
            body["model"] = model
        return await post_stream(self.http, f"{self.api}/threads/{thread_id}/runs", body)

    async def thread_and_run_stream(
        self, assistant_id: str, content: str, model: str | None = None
    ) -> Stream:
        """threads.create_and_run(stream=true): a new thread with one message, streamed."""
        body: dict[str, Any] = {
            "assistant_id": assistant_id,
            "stream": True,
            "thread": _thread(content),
        }
        if model is not None:
            body["model"] = model
        return await post_stream(self.http, f"{self.api}/threads/runs", body)

    async def create_run(self, thread_id: str, assistant_id: str) -> dict[str, Any]:
        return await self.post(f"/threads/{thread_id}/runs", {"assistant_id": assistant_id})

    async def create_thread_and_run(
        self, assistant_id: str, content: str, model: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"assistant_id": assistant_id, "thread": _thread(content)}
        if model is not None:
            body["model"] = model
        return await self.post("/threads/runs", body)

    def events_url(self, thread_id: str, run_id: str) -> str:
        return f"{self.api}/threads/{thread_id}/runs/{run_id}/events"

    async def run_status(self, thread_id: str, run_id: str) -> str:
        return str((await self.get(f"/threads/{thread_id}/runs/{run_id}"))["status"])

    async def wait_status(
        self, thread_id: str, run_id: str, wanted: Callable[[str], bool], seconds: float
    ) -> str:
        """Poll the run every 10 ms until `wanted(status)`; raise after `seconds`."""
        async with asyncio.timeout(seconds):
            # Polling is the point: the run's state is in another process.
            while not wanted(status := await self.run_status(thread_id, run_id)):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        return status


def _thread(content: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}]}


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    if response.status != 200:
        text = (await response.read())[:300].decode(errors="replace")
        raise BenchClientError(f"{response.method} {response.url.path}: {response.status} {text}")
    payload = await response.json()
    if not isinstance(payload, dict):
        raise BenchClientError(f"{response.url.path}: expected a JSON object")
    return payload


async def hold_idle(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    """Open an SSE stream and read its first bytes; the caller keeps it open, then closes it."""
    response = await http.get(url)
    if response.status != 200:
        response.close()
        raise BenchClientError(f"GET {url}: {response.status}")
    await response.content.readany()
    return response


async def run_pool(
    total: int, concurrency: int, one: Callable[[], Awaitable[Stream]]
) -> tuple[list[Stream], float]:
    """`total` calls of `one`, at most `concurrency` at a time; the results and the wall time."""
    results: list[Stream] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            results.append(await one())

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, total)):
            group.create_task(worker())
    return results, time.perf_counter() - started
