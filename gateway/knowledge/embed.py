"""Embedders: text to vectors for file_search's vector half.

An embedder returns each text's vector as float32 bytes, L2-normalised, so a dot product is
the cosine similarity. Which one a gateway uses is a setting: the embedded model, an
OpenAI-compatible upstream (models/embeddings.py), or none (keyword search only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Embedder(Protocol):
    # What made the vectors: a store's vectors are searched only by the embedder that made
    # them (another model's vectors mean nothing to this one).
    name: str

    async def embed(self, texts: Sequence[str], *, query: bool) -> list[bytes]:
        """Each text's vector (float32, unit length); `query` for a search's words rather
        than a document's passage (some models embed the two differently). Raises
        gateway.errors.EmbeddingError when it cannot."""
        ...

    def close(self) -> None:
        """Let go of what it holds (its thread, its model)."""
        ...
