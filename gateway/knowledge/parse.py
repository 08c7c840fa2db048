"""Document-to-text parsing for vector store ingestion (file_search).

This module owns which files file_search reads and how each becomes plain text. The parser is
chosen by the extension of the user's file name: text files are decoded (UTF-8 with or without a
byte order mark, or UTF-16 with one), HTML is reduced to its visible text, and PDF, DOCX and PPTX
are read with pypdf, python-docx and python-pptx. Blocks (paragraphs, table rows, shapes) are
separated by a newline, pages and slides by a blank line, table cells by a tab.

It also owns refusing what cannot be read, as one of two exceptions that ingestion records as
the file's `last_error`: `UnsupportedFileError` ("unsupported_file") and `InvalidFileError`
("invalid_file"). Input is untrusted: a zip container (DOCX, PPTX) is checked for a zip bomb
before it is opened, text is read no further than the character limit, every format's output is
bounded by it, and whatever else a library raises on a bad file becomes `InvalidFileError`. Only
`MemoryError`, `KeyboardInterrupt` and errors opening `path` itself pass through.

Synchronous and CPU-bound: ingestion calls `parse` in a worker process. pypdf, python-docx,
python-pptx and selectolax are imported here and nowhere else.
"""

from __future__ import annotations

import codecs
import io
import itertools
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO, NamedTuple

import docx
import pptx
import pypdf
from docx.table import Table
from docx.text.paragraph import Paragraph
from pptx.shapes.autoshape import Shape
from pptx.shapes.base import BaseShape
from pptx.shapes.graphfrm import GraphicFrame
from pptx.shapes.group import GroupShape
from pptx.slide import Slide
from selectolax.lexbor import LexborHTMLParser, LexborNode

DEFAULT_MAX_CHARS = 20_000_000

# A DOCX or PPTX is refused before it is opened when its zip directory declares more than this:
# members, bytes unpacked in all, or a member of at least ZIP_RATIO_MIN_BYTES unpacking to more
# than MAX_ZIP_RATIO times its packed size (Office XML packs about 5-20:1, a zip bomb 1000:1).
MAX_ZIP_MEMBERS = 10_000
MAX_ZIP_BYTES = 256 * 1024 * 1024
MAX_ZIP_RATIO = 100
ZIP_RATIO_MIN_BYTES = 1024 * 1024

# An HTML file's markup may be this many times the text limit: the limit is on what is indexed.
HTML_MARKUP_FACTOR = 4

OPENAI_EXTENSIONS: frozenset[str] = frozenset(
    {".c", ".cpp", ".cs", ".css", ".docx", ".go", ".html", ".java", ".js", ".json", ".md"}
    | {".pdf", ".php", ".pptx", ".py", ".rb", ".sh", ".tex", ".ts", ".txt"}
)
"""OpenAI's documented file_search types, less .doc (legacy Word, which no library here reads)."""

EXTRA_EXTENSIONS: frozenset[str] = frozenset(
    {".csv", ".tsv", ".xml", ".yaml", ".yml", ".htm", ".markdown", ".rst", ".log", ".jsonl"}
    | {".tsx", ".jsx", ".rs", ".kt", ".swift", ".sql", ".toml", ".ini"}
)
"""Text types users expect file_search to read that OpenAI's list leaves out."""

SUPPORTED_EXTENSIONS: frozenset[str] = OPENAI_EXTENSIONS | EXTRA_EXTENSIONS
"""Every extension `parse` reads, lower-case with the dot: OPENAI_EXTENSIONS | EXTRA_EXTENSIONS.

All but .html/.htm, .pdf, .docx and .pptx are read as text, as they are: JSON, JSON Lines, CSV,
XML and YAML are not parsed (OpenAI indexes them as text too), so a truncated or hand-edited
file is still searchable rather than refused.
"""


class UnsupportedFileError(Exception):
    """A file of a type file_search does not read (last_error code "unsupported_file")."""


class InvalidFileError(Exception):
    """A file of a supported type that cannot be read (last_error code "invalid_file")."""


def parse(path: Path, filename: str, *, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """Return the text of the file at `path`, read as the extension of `filename` says.

    `filename` is the user's name for the file; `path` is where its bytes are. The text keeps
    its paragraph structure, with trailing whitespace trimmed. Raises UnsupportedFileError for an
    extension file_search does not read, and InvalidFileError for a file that cannot be read, holds
    no text, or holds more than `max_chars` characters.
    """
    reader = _reader_for(filename)
    with path.open("rb") as stream:
        if not stream.read(1):
            raise InvalidFileError(f"{filename} has no text: it is empty")
        stream.seek(0)
        try:
            text = reader.read(stream, filename, max_chars)
        except (InvalidFileError, MemoryError):
            raise
        except Exception as exc:
            # A bad file can make a library raise almost anything (KeyError, struct.error,
            # RecursionError...): on an open file, each is the file's fault.
            message = f"{filename} could not be read as {reader.kind}: {_reason(exc)}"
            raise InvalidFileError(message) from exc
    text = text.rstrip()
    if not text:
        raise InvalidFileError(f"{filename} has no text")
    if len(text) > max_chars:
        raise InvalidFileError(_too_long(filename, max_chars))
    return text


class _Reader(NamedTuple):
    kind: str  # what the file was read as, in messages
    read: Callable[[BinaryIO, str, int], str]  # (stream, filename, max_chars) -> text


def _reader_for(filename: str) -> _Reader:
    extension = PurePosixPath(filename).suffix.lower()
    reader = _READERS.get(extension)
    if reader is None:
        what = f"'{extension}' files" if extension else "files without an extension"
        supported = " ".join(sorted(SUPPORTED_EXTENSIONS))
        message = f"{filename}: file_search does not read {what}; it reads {supported}"
        raise UnsupportedFileError(message)
    return reader


def _reason(exc: Exception) -> str:
    detail = str(exc).strip()
    reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return reason if len(reason) <= 200 else reason[:197] + "..."


def _too_long(filename: str, limit: int, what: str = "text") -> str:
    return f"{filename} has more than {limit:,} characters of {what}, the most file_search reads"


class _Budget:
    """The characters a document may still yield; reading stops as soon as it yields more."""

    def __init__(self, filename: str, max_chars: int) -> None:
        self._filename = filename
        self._max_chars = max_chars
        self._left = max_chars

    def take(self, text: str) -> str:
        self._left -= len(text)
        if self._left < 0:
            raise InvalidFileError(_too_long(self._filename, self._max_chars))
        return text


# Text


def _read_text(stream: BinaryIO, filename: str, max_chars: int) -> str:
    return _decode(stream, filename, max_chars, "text")


def _decode(stream: BinaryIO, filename: str, limit: int, what: str) -> str:
    """Decode at most `limit` characters of UTF-8 or BOM-marked UTF-16, newlines made `\\n`."""
    utf16 = stream.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    stream.seek(0)
    # newline=None translates \r\n and \r, even across the reads' chunk boundaries.
    reader = io.TextIOWrapper(stream, "utf-16" if utf16 else "utf-8-sig", "strict", newline=None)
    try:
        text = reader.read(limit + 1)
    except UnicodeDecodeError as exc:
        message = f"{filename} is not text: it must be UTF-8 or UTF-16 with a byte order mark"
        raise InvalidFileError(message) from exc
    finally:
        reader.detach()  # the caller closes the stream
    if "\x00" in text:
        raise InvalidFileError(
            f"{filename} is binary (it holds NUL bytes): it must be UTF-8 or UTF-16 text"
        )
    if len(text) > limit:
        raise InvalidFileError(_too_long(filename, limit, what))
    return text


# HTML
#
# selectolax rather than beautifulsoup4 + lxml: its parser (lexbor) follows the HTML5 parsing
# algorithm as browsers do, where lxml's libxml2 does not, and it is many times faster on large
# pages; it is one typed package with no Python dependencies.

_HIDDEN_TAGS = frozenset({"head", "script", "style", "noscript", "template"})
_BLOCK_TAGS = frozenset(
    {"address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details"}
    | {"dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1"}
    | {"h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "html", "legend", "li", "main"}
    | {"menu", "nav", "ol", "p", "section", "summary", "table", "tbody", "tfoot", "thead", "tr"}
    | {"ul"}
)
_CELL_TAGS = frozenset({"td", "th"})
_HTML_WHITESPACE = re.compile(r"[ \t\n\r\f]+")
_LINE_SPACES = re.compile(r" *(\t) *| {2,}")


def _read_html(stream: BinaryIO, filename: str, max_chars: int) -> str:
    source = _decode(stream, filename, max_chars * HTML_MARKUP_FACTOR, "HTML")
    root = LexborHTMLParser(source).root
    return "" if root is None else _visible_text(root)


def _visible_text(root: LexborNode) -> str:
    """The text a browser shows: one line per block, cells of a row joined by tabs."""
    lines = _Lines()
    stack: list[LexborNode | None] = [root]  # None marks the end of a block
    while stack:  # a loop, not recursion: a page may nest elements thousands deep
        node = stack.pop()
        if node is None:
            lines.end()
            continue
        tag = node.tag
        if tag == "-text":
            lines.add(_HTML_WHITESPACE.sub(" ", node.text_content or ""))
        elif tag is None or tag.startswith("-") or tag in _HIDDEN_TAGS:
            continue  # comments, and what a browser does not show
        elif "hidden" in node.attributes:
            continue
        elif tag == "br":
            lines.end()
        elif tag == "pre":
            lines.end()
            lines.preformatted(node.text())
        else:
            if tag in _CELL_TAGS:
                lines.cell()
            if tag in _BLOCK_TAGS:
                lines.end()
                stack.append(None)
            stack.extend(reversed(list(_children(node))))
    lines.end()
    return "\n".join(lines.done)


def _children(node: LexborNode) -> Iterator[LexborNode]:
    child = node.child
    while child is not None:
        yield child
        child = child.next


class _Lines:
    """Lines of visible text: inline text joins the open line, a block boundary ends it."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self._parts: list[str] = []
        self._has_text = False

    def add(self, text: str) -> None:
        self._parts.append(text)
        self._has_text = self._has_text or not text.isspace()

    def cell(self) -> None:
        if self._has_text:
            self._parts.append("\t")

    def end(self) -> None:
        # Whitespace collapses across inline elements as in a browser ("a <b> b</b>" is "a b").
        line = _LINE_SPACES.sub(lambda m: m[1] or " ", "".join(self._parts)).strip()
        if line:
            self.done.append(line)
        self._parts.clear()
        self._has_text = False

    def preformatted(self, text: str) -> None:
        if text := text.lstrip("\n").rstrip():
            self.done.append(text)


# PDF


def _read_pdf(stream: BinaryIO, filename: str, max_chars: int) -> str:
    reader = pypdf.PdfReader(stream)
    # A PDF locked with only an owner password (its permissions) opens with the empty one.
    if reader.is_encrypted and reader.decrypt("") == pypdf.PasswordType.NOT_DECRYPTED:
        raise InvalidFileError(f"{filename} is an encrypted PDF that needs a password")
    budget = _Budget(filename, max_chars)
    pages = [budget.take(text) for page in reader.pages if (text := page.extract_text().strip())]
    if not pages:
        raise InvalidFileError(
            f"{filename} has no text: its pages hold no extractable text"
            " (a scanned PDF holds only images, and file_search does no OCR)"
        )
    return "\n\n".join(pages)


# DOCX and PPTX (zip containers)


def _check_zip(stream: BinaryIO, filename: str, kind: str) -> None:
    """Refuse a zip bomb from the sizes its directory declares, before any member is inflated.

    zipfile never inflates a member past its declared size (it fails the CRC check there), so
    the declared sizes bound what python-docx and python-pptx will unpack.
    """
    try:
        with zipfile.ZipFile(stream) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise InvalidFileError(f"{filename} is not a {kind} file: {exc}") from exc
    if len(members) > MAX_ZIP_MEMBERS:
        raise InvalidFileError(f"{filename} has more than {MAX_ZIP_MEMBERS:,} zip members")
    total = sum(member.file_size for member in members)
    if total > MAX_ZIP_BYTES:
        raise InvalidFileError(
            f"{filename} unpacks to {total:,} bytes, more than the {MAX_ZIP_BYTES:,}"
            f" allowed for a {kind} file (a zip bomb?)"
        )
    for member in members:
        packed, unpacked = member.compress_size, member.file_size
        if unpacked >= ZIP_RATIO_MIN_BYTES and unpacked > MAX_ZIP_RATIO * packed:
            raise InvalidFileError(
                f"{filename} has a member ({member.filename[:100]}) compressed"
                f" {unpacked // max(packed, 1):,}:1, more than the {MAX_ZIP_RATIO}:1"
                f" allowed for a {kind} file (a zip bomb?)"
            )
    stream.seek(0)


def _read_docx(stream: BinaryIO, filename: str, max_chars: int) -> str:
    """Paragraphs and table rows in document order (headers, footers and notes are not read)."""
    _check_zip(stream, filename, "DOCX")
    document = docx.Document(stream)
    budget = _Budget(filename, max_chars)
    return "\n".join(budget.take(line) for line in _docx_lines(document.iter_inner_content()))


def _docx_lines(content: Iterable[Paragraph | Table]) -> Iterator[str]:
    for block in content:
        if isinstance(block, Paragraph):
            if text := block.text.rstrip():
                yield text
        else:
            yield from _docx_rows(block)


def _docx_rows(table: Table) -> Iterator[str]:
    """A line per row, its cells joined by tabs; a cell merged down repeats in each row."""
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if cell is not previous:  # a cell merged across columns comes once per column
                cells.append("\n".join(_docx_lines(cell.iter_inner_content())))
            previous = cell
        if line := "\t".join(cells).rstrip():
            yield line


def _read_pptx(stream: BinaryIO, filename: str, max_chars: int) -> str:
    _check_zip(stream, filename, "PPTX")
    presentation = pptx.Presentation(stream)
    budget = _Budget(filename, max_chars)
    slides: list[str] = []
    for slide in presentation.slides:
        if lines := [budget.take(line) for line in _slide_lines(slide)]:
            slides.append("\n".join(lines))
    return "\n\n".join(slides)


def _slide_lines(slide: Slide) -> Iterator[str]:
    """The text of every shape on the slide in order, then its speaker notes; no empty lines."""
    lines = _shape_lines(slide.shapes)
    if slide.has_notes_slide and (notes := slide.notes_slide.notes_text_frame) is not None:
        lines = itertools.chain(lines, [_pptx_text(notes.text)])
    return (line for line in lines if line)


def _shape_lines(shapes: Iterable[BaseShape]) -> Iterator[str]:
    for shape in shapes:
        if isinstance(shape, GroupShape):
            yield from _shape_lines(shape.shapes)
        elif isinstance(shape, GraphicFrame) and shape.has_table:
            for row in shape.table.rows:
                cells = [_pptx_text(cell.text) for cell in row.cells if not cell.is_spanned]
                yield "\t".join(cells).rstrip()
        elif isinstance(shape, Shape) and shape.has_text_frame:
            yield _pptx_text(shape.text_frame.text)


def _pptx_text(text: str) -> str:
    return text.replace("\v", "\n").rstrip()  # python-pptx gives a line break as \v


_TEXT = _Reader("text", _read_text)
_DOCUMENTS = {
    ".html": _Reader("HTML", _read_html),
    ".htm": _Reader("HTML", _read_html),
    ".pdf": _Reader("PDF", _read_pdf),
    ".docx": _Reader("DOCX", _read_docx),
    ".pptx": _Reader("PPTX", _read_pptx),
}
_READERS = {extension: _DOCUMENTS.get(extension, _TEXT) for extension in SUPPORTED_EXTENSIONS}
