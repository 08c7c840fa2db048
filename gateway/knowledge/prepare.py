"""What ingestion runs away from the event loop, in a worker process: a file's bytes to its
text (parse.py) to its chunks (chunk.py). A bad file becomes an outcome with the last_error
code OpenAI uses, never an exception out of the worker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.knowledge.chunk import chunk
from gateway.knowledge.parse import InvalidFileError, UnsupportedFileError, parse


@dataclass(frozen=True)
class Prepared:
    """The chunks of a file (text, tokens), or why it has none: (code, message)."""

    chunks: list[tuple[str, int]]
    text_bytes: int = 0
    error: tuple[str, str] | None = None


def prepare(path: str, filename: str, max_tokens: int, overlap: int) -> Prepared:
    try:
        text = parse(Path(path), filename)
    except UnsupportedFileError as exc:
        return Prepared([], error=("unsupported_file", str(exc)))
    except InvalidFileError as exc:
        return Prepared([], error=("invalid_file", str(exc)))
    return Prepared(chunk(text, max_tokens, overlap), text_bytes=len(text.encode()))
