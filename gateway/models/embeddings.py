"""Embeddings from an OpenAI-compatible upstream (POST /embeddings), as file_search's
embedder: the routing file's `embeddings` names the upstream and `embedding_model` its model."""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence

from gateway.errors import EmbeddingError
from gateway.models.base import ModelBackendError
from gateway.models.upstream import OpenAICompatibleBackend


class UpstreamEmbedder:
    def __init__(self, backend: OpenAICompatibleBackend, model: str) -> None:
        self.backend = backend
        self.model = model
        self.name = f"{backend.config.name}/{model}"

    async def embed(self, texts: Sequence[str], *, query: bool) -> list[bytes]:
        try:
            vectors = await self.backend.embeddings(self.model, texts)
        except ModelBackendError as exc:
            raise EmbeddingError(exc.message) from None
        return [_unit(v) for v in vectors]

    def close(self) -> None:
        """Nothing to let go of: the upstream's session belongs to the router."""


def _unit(vector: Sequence[float]) -> bytes:
    """Unit-length float32 bytes (OpenAI's embeddings are already; others may not be)."""
    norm = math.sqrt(math.fsum(x * x for x in vector)) or 1.0
    return array("f", (x / norm for x in vector)).tobytes()
