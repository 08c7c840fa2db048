"""A search query as the words a keyword index looks for."""

from __future__ import annotations

import re

# Lucene's English stop words: words in nearly every text, which a keyword search only slows.
STOP_WORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    }
)
_WORD = re.compile(r"\w+")
# At most this many words of a query are looked for.
MAX_TERMS = 64


def terms(query: str) -> list[str]:
    """The query's distinct words, lower-cased, without stop words, in order."""
    words = dict.fromkeys(w for w in _WORD.findall(query.lower()) if w not in STOP_WORDS)
    return list(words)[:MAX_TERMS]
