"""The file_search tool as the gateway runs it: the model's query searched in the vector stores
of the run's thread and assistant, the results set on the tool call (with their text, which
steps show when `include[]` asks) and given back to the model as citable sources."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

from gateway import objects
from gateway.engine.handle import RunHandle
from gateway.engine.search import Search
from gateway.engine.tools import ToolUnavailableError
from gateway.engine.vector_stores import VectorStores
from gateway.errors import EmbeddingError
from gateway.store import Kind, RunStore
from gateway.types import Obj

# OpenAI's default number of results (5 on gpt-3.5 models; 20 on the rest).
DEFAULT_RESULTS = 20
# How long a search waits for its stores' files to be ingested before it searches anyway.
INDEX_WAIT_SECONDS = 120.0


class FileSearchTool:
    def __init__(self, store: RunStore, vector_stores: VectorStores, search: Search) -> None:
        self.store = store
        self.vector_stores = vector_stores
        self.search = search

    async def call(self, handle: RunHandle, arguments: str) -> Obj:
        run = handle.run
        declared = next((t for t in run["tools"] if t["type"] == "file_search"), None)
        (tool,) = objects.tools([declared or {"type": "file_search"}])
        options = tool["file_search"]
        stores = await self.store_ids(handle)
        await self._indexed(stores)
        query = _query(arguments)
        try:
            hits = (
                await self.search.search(
                    stores,
                    [query],
                    max_results=options.get("max_num_results") or DEFAULT_RESULTS,
                    threshold=options["ranking_options"]["score_threshold"],
                )
                if stores and query
                else []
            )
        except EmbeddingError as exc:
            raise ToolUnavailableError(f"file_search could not search: {exc}") from None
        names: dict[str, str] = {}
        for hit in hits:
            if hit.file_id not in names:
                file = await self.store.get(Kind.FILE, hit.file_id)
                names[hit.file_id] = file["filename"] if file else hit.file_id
        for vector_store_id in stores:
            await self.vector_stores.touch(vector_store_id)
        return {
            "ranking_options": options["ranking_options"],
            "results": [
                {
                    "file_id": hit.file_id,
                    "file_name": names[hit.file_id],
                    "score": hit.score,
                    "content": [{"type": "text", "text": hit.text}],
                }
                for hit in hits
            ],
        }

    async def _indexed(self, stores: list[str]) -> None:
        """Wait (at most INDEX_WAIT_SECONDS) for the stores' files still being ingested, such
        as a message's attachments: a search must see them."""
        deadline = time.monotonic() + INDEX_WAIT_SECONDS
        pause = 0.05
        while time.monotonic() < deadline:
            busy = False
            for store_id in stores:
                vs = await self.store.get(Kind.VECTOR_STORE, store_id)
                busy = busy or bool(vs and vs["file_counts"]["in_progress"])
            if not busy:
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    async def store_ids(self, handle: RunHandle) -> list[str]:
        """The thread's vector store, then the assistant's (each at most one)."""
        found: list[str] = []
        for kind, object_id in (
            (Kind.THREAD, handle.thread_id),
            (Kind.ASSISTANT, handle.run["assistant_id"]),
        ):
            obj = await self.store.get(kind, object_id)
            resources: Mapping[str, Any] = (obj or {}).get("tool_resources") or {}
            for store_id in (resources.get("file_search") or {}).get("vector_store_ids") or ():
                if store_id not in found:
                    found.append(store_id)
        return found


def _query(arguments: str) -> str:
    """The query the model asked for: `query` of its JSON arguments (or `queries`, joined),
    else the arguments as they are."""
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return arguments.strip()
    if isinstance(parsed, dict):
        if isinstance(parsed.get("query"), str):
            return str(parsed["query"]).strip()
        queries = parsed.get("queries")
        if isinstance(queries, list):
            return " ".join(str(q) for q in queries).strip()
    return arguments.strip() if not isinstance(parsed, dict) else ""
