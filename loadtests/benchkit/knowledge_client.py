"""The HTTP side of `loadtests/knowledge.py`: the gateway calls it makes (files, vector stores,
search, streamed runs), each timed where it is measured, and the liveness probe that shows the
gateway's event loop stalls from outside."""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

from benchkit.clients import BenchClientError, Gateway
from benchkit.stats import quantile

T = TypeVar("T")
R = TypeVar("R")

PROBE_PERIOD = 0.02  # seconds between the starts of two probes
PROBE_TIMEOUT = 30.0
SETTLE_POLL = 0.1  # how often a store's file counts are read while waiting
PROGRESS_SECONDS = 10.0
UPLOAD_ATTEMPTS = 3
TOKEN_MARK = b"event: thread.message.delta"


def say(message: str) -> None:
    print(f"[knowledge] {message}", file=sys.stderr, flush=True)


def ms_summary(values: Sequence[float]) -> dict[str, float]:
    """n, p50, p99 and max of samples in ms, rounded to 0.01 ms."""
    if not values:
        return {"n": 0, "p50": math.nan, "p99": math.nan, "max": math.nan}
    return {
        "n": len(values),
        "p50": round(quantile(values, 0.5), 2),
        "p99": round(quantile(values, 0.99), 2),
        "max": round(max(values), 2),
    }


async def bounded(items: Iterable[T], concurrency: int, fn: Callable[[T], Awaitable[R]]) -> list[R]:
    """`fn` over `items`, at most `concurrency` at a time; the results in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(item: T) -> R:
        async with gate:
            return await fn(item)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(item)) for item in items]
    return [task.result() for task in tasks]


class Probe:
    """`GET /healthz` every PROBE_PERIOD on a connection of its own while the context is open;
    each answer's latency in ms. A probe due while one is in flight waits for it, so a stall
    of the gateway's event loop shows as one slow probe. `late_ms` is how late this process
    woke up to send each probe: large values mean the client, not the gateway, stalled."""

    def __init__(self, base: str) -> None:
        self.url = base + "/healthz"
        self.latencies_ms: list[float] = []
        self.late_ms: list[float] = []
        self.errors = 0
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Probe:
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1),
            timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT),
        )
        self._task = asyncio.create_task(self._loop(self._http), name="healthz-probe")
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    async def _loop(self, http: aiohttp.ClientSession) -> None:
        due = time.perf_counter()
        while True:
            started = time.perf_counter()
            self.late_ms.append(1000 * (started - due))
            try:
                async with http.get(self.url) as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            self.latencies_ms.append(1000 * (time.perf_counter() - started))
            self.errors += not ok
            due = max(due + PROBE_PERIOD, time.perf_counter())
            await asyncio.sleep(due - time.perf_counter())

    def summary(self) -> dict[str, float]:
        return ms_summary(self.latencies_ms) | {
            "errors": self.errors,
            "client_late_max": round(max(self.late_ms, default=0.0), 2),
        }


class Lab:
    """The calls the measurements make on one gateway; every answer other than 200 is kept in
    `problems` (and raised)."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.gw = Gateway(http, base)
        self.api = base + "/v1"
        self.problems: list[str] = []

    async def _checked(self, what: str, call: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        try:
            return await call
        except BenchClientError as exc:
            self.problems.append(f"{what}: {exc}")
            raise

    async def upload(self, filename: str, data: bytes) -> str:
        """POST /v1/files (purpose assistants); tried again on an error answer."""
        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            form = aiohttp.FormData()
            form.add_field("purpose", "assistants")
            form.add_field("file", data, filename=filename)
            async with self.http.post(self.api + "/files", data=form) as response:
                if response.status == 200:
                    return str((await response.json())["id"])
                text = (await response.read())[:200].decode(errors="replace")
            self.problems.append(
                f"POST /v1/files {filename} (try {attempt}): {response.status} {text}"
            )
            await asyncio.sleep(0.5 * attempt)
        raise BenchClientError(f"could not upload {filename}")

    async def new_store(self, name: str) -> str:
        made = await self._checked("create store", self.gw.post("/vector_stores", {"name": name}))
        return str(made["id"])

    async def add_batch(self, store: str, file_ids: Sequence[str]) -> None:
        path = f"/vector_stores/{store}/file_batches"
        await self._checked(path, self.gw.post(path, {"file_ids": list(file_ids)}))

    async def settle(self, store: str, total: int, label: str, seconds: float) -> dict[str, Any]:
        """The store once none of its `total` files is in progress; progress to stderr."""
        started = time.perf_counter()
        said = started
        while True:
            vs = await self._checked("get store", self.gw.get(f"/vector_stores/{store}"))
            counts = vs["file_counts"]
            settled = counts["completed"] + counts["failed"] + counts["cancelled"]
            if settled >= total and counts["in_progress"] == 0:
                return vs
            now = time.perf_counter()
            if now - started > seconds:
                raise TimeoutError(
                    f"{label}: {settled} of {total} files settled in {seconds:.0f} s"
                )
            if now - said >= PROGRESS_SECONDS:
                said = now
                say(
                    f"{label}: {settled}/{total} files settled, {counts['failed']} failed,"
                    f" {now - started:.0f} s"
                )
            await asyncio.sleep(SETTLE_POLL)

    async def failed_files(self, store: str, limit: int = 20) -> list[dict[str, Any]]:
        path = f"/vector_stores/{store}/files?filter=failed&limit={limit}"
        page = await self._checked("list failed files", self.gw.get(path))
        return [{"file_id": f["id"], "last_error": f["last_error"]} for f in page["data"]]

    async def search(self, store: str, query: str, results: int) -> tuple[float, list[Any]]:
        """One search: its round trip in ms and its hits."""
        started = time.perf_counter()
        body = {"query": query, "max_num_results": results}
        found = await self._checked("search", self.gw.post(f"/vector_stores/{store}/search", body))
        return 1000 * (time.perf_counter() - started), list(found["data"])

    async def assistant(self, store: str | None) -> str:
        """An assistant on the built-in model; with file_search over `store` if given."""
        body: dict[str, Any] = {"model": "local", "name": "knowledge-bench"}
        if store is not None:
            body["tools"] = [{"type": "file_search"}]
            body["tool_resources"] = {"file_search": {"vector_store_ids": [store]}}
        return str(
            (await self._checked("create assistant", self.gw.post("/assistants", body)))["id"]
        )

    async def streamed_run(self, assistant: str, content: str) -> tuple[float | None, bytes]:
        """A streamed create-thread-and-run: ms to the first text delta, and the whole body."""
        body = {
            "assistant_id": assistant,
            "stream": True,
            "thread": {"messages": [{"role": "user", "content": content}]},
        }
        started = time.perf_counter()
        first: float | None = None
        received = bytearray()
        async with self.http.post(self.api + "/threads/runs", json=body) as response:
            if response.status != 200:
                text = (await response.read())[:200].decode(errors="replace")
                self.problems.append(f"POST /v1/threads/runs: {response.status} {text}")
                raise BenchClientError(f"streamed run: {response.status} {text}")
            async for piece in response.content.iter_any():
                received += piece
                window = received[-(len(piece) + len(TOKEN_MARK)) :]
                if first is None and TOKEN_MARK in window:
                    first = 1000 * (time.perf_counter() - started)
        return first, bytes(received)
