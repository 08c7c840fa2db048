"""How file_search results are shown to a model, and how its answer cites them.

The results are numbered across a run (a second search continues the numbering) and each is
headed by its marker, `【3†report.pdf】`, the form OpenAI's models write citations in. A marker
in the answer becomes a `file_citation` annotation on that span of the text, naming the file of
result 3. The built-in model reads the same form back to quote the best result.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# A citation: the result's number (or OpenAI's "message:result" pair) and a label.
MARKER = re.compile(r"【(?:\d+:)?(\d+)†([^】\n]{0,200})】")
_HEADER = re.compile(r"^【(\d+)†([^】\n]*)】 \(score [0-9.]+\)$", re.MULTILINE)


@dataclass(frozen=True)
class Source:
    """A file_search result as a model sees it."""

    number: int
    file_id: str
    filename: str
    score: float
    text: str


def marker(number: int, filename: str) -> str:
    return f"【{number}†{filename}】"


def render(sources: Sequence[Source]) -> str:
    """The tool output a model is given for one file_search call."""
    if not sources:
        return "file_search found nothing relevant in the files."
    head = (
        "file_search results, best first. Cite what you use by writing the result's marker "
        f"after it, like {marker(sources[0].number, sources[0].filename)}.\n\n"
    )
    body = "\n\n".join(
        f"{marker(s.number, s.filename)} (score {s.score:.3f})\n{s.text}" for s in sources
    )
    return head + body


def parse(output: str) -> list[tuple[int, str, str]]:
    """(number, filename, text) of each result in a rendered tool output, in order."""
    headers = list(_HEADER.finditer(output))
    results: list[tuple[int, str, str]] = []
    for i, header in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(output)
        results.append((int(header.group(1)), header.group(2), output[header.end() : end].strip()))
    return results


def cited(text: str, start: int = 0) -> list[tuple[int, int, int, str]]:
    """The citations in `text` from `start`: (result number, start, end, marker text)."""
    return [(int(m.group(1)), m.start(), m.end(), m.group(0)) for m in MARKER.finditer(text, start)]
