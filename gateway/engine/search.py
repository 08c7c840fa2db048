"""Hybrid search over vector stores: keyword ranking fused with vector similarity.

Keyword: the store's full-text index (SQLite FTS5's BM25, PostgreSQL's ts_rank_cd) over the
query's words without stop words. Vectors: the query embedded and scored exactly against every
chunk of the stores (knowledge/vectors.py), each store's matrix kept in memory and brought up
to date from the database before each search (one row, the store's chunk version, says
whether it must be). Fusion: each list's top CANDIDATES scores are
scaled to 0..1 (min-max) and summed with weights, VECTOR_WEIGHT for the vectors and the rest
for the keywords; a chunk missing from a list gets 0 from it. That fused score is the result's
`score`, which `score_threshold` cuts. With no embedder the keyword score alone is used.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.knowledge.embed import Embedder
from gateway.knowledge.terms import terms
from gateway.knowledge.vectors import VectorIndex, normalised
from gateway.store import RunStore

# Chunks taken from each list before fusion.
CANDIDATES = 100
# The share of the fused score that vector similarity gives: 0.45, the best of 0, 0.05 ... 1 on
# SciFact's train split with the embedded model (loadtests/knowledge.py measures the test split).
VECTOR_WEIGHT = 0.45
# Stores whose vectors are kept in memory at once (the least recently searched leave first).
CACHED_STORES = 32


@dataclass(frozen=True)
class Hit:
    seq: int
    vector_store_id: str
    file_id: str
    position: int
    text: str
    score: float


class Search:
    def __init__(
        self,
        store: RunStore,
        embedder: Embedder | None,
        *,
        dimensions: int = 0,
        vector_weight: float = VECTOR_WEIGHT,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.dimensions = dimensions
        self.vector_weight = vector_weight if embedder is not None else 0.0
        # Each store's vectors, with the version of its chunks they hold.
        self._indexes: OrderedDict[str, tuple[VectorIndex, int]] = OrderedDict()
        # One refresh of a store's vectors at a time (searches of other stores do not wait).
        self._refreshing: dict[str, asyncio.Lock] = {}

    async def search(
        self,
        vector_store_ids: Sequence[str],
        queries: Sequence[str],
        *,
        max_results: int,
        threshold: float = 0.0,
        files: set[str] | None = None,
    ) -> list[Hit]:
        """The best chunks for any of `queries`, best first, at most `max_results`, scoring at
        least `threshold`; only chunks of `files` when given."""
        fused: dict[int, float] = {}
        for query in queries:
            for seq, score in (await self._one(vector_store_ids, query, files)).items():
                fused[seq] = max(score, fused.get(seq, 0.0))
        best = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
        best = [(seq, score) for seq, score in best if score >= threshold][:max_results]
        rows = {row.seq: row for row in await self.store.chunk_rows([seq for seq, _ in best])}
        return [
            Hit(seq, r.vector_store_id, r.file_id, r.position, r.text, round(score, 6))
            for seq, score in best
            if (r := rows.get(seq)) is not None
        ]

    async def _one(
        self, vector_store_ids: Sequence[str], query: str, files: set[str] | None
    ) -> dict[int, float]:
        file_list = None if files is None else sorted(files)
        # The keyword search (the database's thread) and the query's embedding (the embedder's)
        # run at once.
        keyword, vector = await asyncio.gather(
            self.store.keyword_search(vector_store_ids, terms(query), CANDIDATES, file_list),
            self._vector(vector_store_ids, query, files),
        )
        fused: dict[int, float] = {}
        for weight, hits in ((1 - self.vector_weight, keyword), (self.vector_weight, vector)):
            if weight <= 0 or not hits:
                continue
            for (seq, _), scaled in zip(hits, normalised([s for _, s in hits]), strict=True):
                fused[seq] = fused.get(seq, 0.0) + weight * scaled
        return fused

    async def _vector(
        self, vector_store_ids: Sequence[str], query: str, files: set[str] | None
    ) -> list[tuple[int, float]]:
        if self.embedder is None or self.vector_weight <= 0:
            return []
        (embedded,) = await self.embedder.embed([query], query=True)
        vector: list[tuple[int, float]] = []
        for vector_store_id in vector_store_ids:
            index = await self._index(vector_store_id)
            vector += index.top(embedded, CANDIDATES, files)
        return sorted(vector, key=lambda item: -item[1])[:CANDIDATES]

    async def _index(self, vector_store_id: str) -> VectorIndex:
        """The store's vectors, brought up to date when its chunks changed: chunks added since
        are read, and a store that lost chunks (or gained them out of order) is read again."""
        lock = self._refreshing.setdefault(vector_store_id, asyncio.Lock())
        async with lock:
            index, seen = self._indexes.pop(vector_store_id, (None, -1))
            count, version = await self.store.chunk_stamp(vector_store_id)
            if index is None or version != seen:
                if index is None or count < index.count:
                    index = VectorIndex(self.dimensions)
                index.add(await self.store.embeddings_after(vector_store_id, index.last_seq))
                if index.count != count:  # removed, or added out of seq order, or meanwhile
                    index = VectorIndex(self.dimensions)
                    index.add(await self.store.embeddings_after(vector_store_id, 0))
            self._indexes[vector_store_id] = (index, version)
            while len(self._indexes) > CACHED_STORES:
                gone, _ = self._indexes.popitem(last=False)
                held = self._refreshing.get(gone)
                if held is not None and not held.locked():
                    del self._refreshing[gone]
            return index
