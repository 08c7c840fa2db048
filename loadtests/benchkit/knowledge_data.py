"""What `loadtests/knowledge.py` measures with: the SciFact test split read from its files,
nDCG@10 and recall@10 as BEIR defines them, and a PDF of text pages written by hand."""

from __future__ import annotations

import csv
import json
import math
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CUTOFF = 10


@dataclass(frozen=True)
class SciFact:
    """The corpus (`_id` -> title + "\\n\\n" + text), the test queries and their judgments."""

    docs: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, set[str]]  # query id -> the ids of its relevant documents

    @classmethod
    def read(cls, folder: Path) -> SciFact:
        docs = {
            str(row["_id"]): f"{row['title']}\n\n{row['text']}"
            for row in _jsonl(folder / "corpus.jsonl")
        }
        queries = {str(row["_id"]): str(row["text"]) for row in _jsonl(folder / "queries.jsonl")}
        qrels: dict[str, set[str]] = {}
        with (folder / "qrels.tsv").open(newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                if int(row["score"]) > 0:
                    qrels.setdefault(row["query-id"], set()).add(row["corpus-id"])
        return cls(docs, {q: queries[q] for q in qrels}, qrels)

    def subset(self, size: int) -> SciFact:
        """`size` documents: every relevant one, then the first others (for --quick)."""
        relevant = set().union(*self.qrels.values())
        others = [d for d in self.docs if d not in relevant]
        kept = [d for d in self.docs if d in relevant] + others[: max(0, size - len(relevant))]
        return SciFact({d: self.docs[d] for d in kept}, self.queries, self.qrels)


def _jsonl(path: Path) -> Iterator[dict[str, object]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


# --- BEIR metrics (binary relevance) --------------------------------------------------------


def ndcg_at(ranked: Sequence[str], relevant: set[str], k: int = CUTOFF) -> float:
    """DCG of the top k over the ideal DCG, gain 1 for a relevant document."""
    dcg = sum(1 / math.log2(i + 2) for i, doc in enumerate(ranked[:k]) if doc in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def recall_at(ranked: Sequence[str], relevant: set[str], k: int = CUTOFF) -> float:
    """Relevant documents in the top k over all relevant documents (not capped at k)."""
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def documents(ranked_files: Sequence[str]) -> list[str]:
    """Chunks' documents, each at the rank of its first (best) chunk."""
    return list(dict.fromkeys(ranked_files))


def self_check() -> None:
    """The metrics against values worked out by hand."""
    assert documents(["a", "x", "a", "b"]) == ["a", "x", "b"]
    assert math.isclose(ndcg_at(["a", "x", "b"], {"a", "b"}), 1.5 / (1 + 1 / math.log2(3)))
    assert ndcg_at(["a", "b"], {"a", "b"}) == 1.0
    assert ndcg_at(["x", "y"], {"a"}) == 0.0
    assert ndcg_at([], {"a"}) == 0.0
    assert recall_at(["a", "x", "b"], {"a", "b", "c"}) == 2 / 3
    assert recall_at([*"xxxxxxxxxx", "a"], {"a"}) == 0.0  # rank 11 is past the cutoff
    assert math.isclose(ndcg_at(["x", "a"], {"a"}), 1 / math.log2(3))


# --- a PDF of text pages -----------------------------------------------------------------------

LINE_CHARS = 90
PAGE_LINES = 50


def pdf_pages(texts: Sequence[str], pages: int) -> list[list[str]]:
    """`pages` pages of PAGE_LINES lines of LINE_CHARS characters, the texts one after another
    (from the start again when they run out)."""

    def lines() -> Iterator[str]:
        while True:
            for text in texts:
                yield from textwrap.wrap(text, LINE_CHARS)
                yield ""

    source = lines()
    return [[next(source) for _ in range(PAGE_LINES)] for _ in range(pages)]


def pdf(pages: Sequence[Sequence[str]]) -> bytes:
    """A valid PDF 1.4 file: one page of Helvetica text lines per item of `pages` (characters
    outside Latin-1 become '?')."""
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    objects: list[bytes] = [b"", b"", font]  # 1 catalog and 2 page tree are filled in below
    kids = []
    for lines in pages:
        body = b"BT /F1 10 Tf 14 TL 50 760 Td " + b" ".join(
            b"(" + _pdf_string(line) + b") Tj T*" for line in lines
        )
        body += b" ET"
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(body), body))
        content = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            b" /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % content
        )
        kids.append(b"%d 0 R" % len(objects))
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, obj)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _pdf_string(line: str) -> bytes:
    raw = line.encode("latin-1", errors="replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
