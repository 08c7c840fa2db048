"""Document-to-text parsing for file_search: each format, encodings, and every refusal."""

from __future__ import annotations

import codecs
import io
import os
import zipfile
from pathlib import Path

import docx
import pptx
import pypdf
import pytest
from pptx.util import Inches

from gateway.knowledge import parse as parse_module
from gateway.knowledge.parse import (
    EXTRA_EXTENSIONS,
    OPENAI_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    InvalidFileError,
    UnsupportedFileError,
    parse,
)


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF: one Helvetica text object per page, a line per line of `pages`."""

    def literal(line: str) -> str:
        return "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"

    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, text in enumerate(pages):
        shown = " T* ".join(f"{literal(line)} Tj" for line in text.splitlines())
        content = f"BT /F1 12 Tf 14 TL 72 720 Td {shown} ET".encode() if text else b""
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            b" /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def encrypted_pdf(user_password: str, owner_password: str | None) -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(make_pdf(["Locked text"]))))
    writer.encrypt(user_password, owner_password, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def write(tmp_path: Path, data: bytes | str) -> Path:
    """The upload's bytes in a temp file named unlike the user's file, as ingestion has it."""
    path = tmp_path / "upload.tmp"
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def refusal(path: Path, filename: str, **kw: int) -> str:
    with pytest.raises(InvalidFileError) as caught:
        parse(path, filename, **kw)
    return str(caught.value)


# The extension list


def test_supported_extensions() -> None:
    """OpenAI's list less .doc, plus the extra text types, lower-case with the dot."""
    assert {".pdf", ".docx", ".pptx", ".html", ".json", ".md", ".txt", ".py"} <= OPENAI_EXTENSIONS
    assert ".doc" not in SUPPORTED_EXTENSIONS
    assert {".csv", ".yaml", ".htm", ".rs"} <= EXTRA_EXTENSIONS
    assert SUPPORTED_EXTENSIONS == OPENAI_EXTENSIONS | EXTRA_EXTENSIONS
    assert len(OPENAI_EXTENSIONS) == 20
    assert all(e.startswith(".") and e == e.lower() for e in SUPPORTED_EXTENSIONS)


@pytest.mark.parametrize(
    ("filename", "named"),
    [
        ("photo.png", "'.png' files"),
        ("old.doc", "'.doc' files"),
        ("Makefile", "files without an extension"),
    ],
)
def test_unknown_extension(tmp_path: Path, filename: str, named: str) -> None:
    """An extension file_search does not read is refused, naming it and the supported ones."""
    with pytest.raises(UnsupportedFileError) as caught:
        parse(write(tmp_path, "some text"), filename)
    message = str(caught.value)
    assert message.startswith(f"{filename}: file_search does not read {named}; it reads .c ")
    assert ".pdf" in message
    assert ".yml" in message


def test_parser_follows_the_users_name(tmp_path: Path) -> None:
    """The user's file name picks the parser, in any case, not the temp file's name."""
    path = tmp_path / "upload.pdf"
    path.write_bytes(b"# Notes\n")
    assert parse(path, "NOTES.MD") == "# Notes"
    assert refusal(path, "notes.pdf").startswith("notes.pdf could not be read as PDF: ")


# Text files


@pytest.mark.parametrize(
    ("filename", "source"),
    [
        ("main.py", 'def f():\n    return "x"  # note\n\n\nprint(f())\n'),
        ("data.json", '{\n  "a": [1, 2],\n  "b": "c"\n}\n'),
        ("broken.json", '{"a": [1, 2\n'),
        ("table.csv", 'name,qty\n"apple, red",3\n'),
        ("README.md", "# Title\n\n- item\n\n```sh\nls -la\n```\n"),
        ("page.tex", "\\section{Intro}\nText.\n"),
        ("config.yml", "a:\n  b: 1\n"),
    ],
)
def test_text_is_kept_as_is(tmp_path: Path, filename: str, source: str) -> None:
    """Code, JSON (valid or not), CSV, Markdown... are indexed as their text, end trimmed."""
    assert parse(write(tmp_path, source), filename) == source.rstrip()


def test_newlines_are_normalised(tmp_path: Path) -> None:
    """CRLF and lone CR become LF; trailing whitespace goes, leading indentation stays."""
    assert parse(write(tmp_path, b"  a\r\nb\rc\n\n  \t\n"), "a.txt") == "  a\nb\nc"


@pytest.mark.parametrize(
    "data",
    [
        "h\u00e9llo \u2603\nworld".encode(),
        codecs.BOM_UTF8 + "h\u00e9llo \u2603\nworld".encode(),
        "h\u00e9llo \u2603\r\nworld".encode("utf-16"),
        codecs.BOM_UTF16_LE + "h\u00e9llo \u2603\nworld".encode("utf-16-le"),
        codecs.BOM_UTF16_BE + "h\u00e9llo \u2603\r\nworld".encode("utf-16-be"),
    ],
    ids=["utf-8", "utf-8-bom", "utf-16", "utf-16-le-bom", "utf-16-be-bom"],
)
def test_encodings(tmp_path: Path, data: bytes) -> None:
    """UTF-8 with or without a BOM and UTF-16 with one decode to the same text, BOM dropped."""
    assert parse(write(tmp_path, data), "a.txt") == "h\u00e9llo \u2603\nworld"


@pytest.mark.parametrize(
    "data",
    [
        "caf\u00e9".encode("latin-1"),
        bytes(range(256)),
        "no BOM".encode("utf-16-le"),
        b"\x00\x01\x02ELF binary",
        codecs.BOM_UTF16_LE + b"\x00\xd8",  # a lone surrogate
    ],
    ids=["latin-1", "all-bytes", "utf-16-without-bom", "nul-bytes", "bad-utf-16"],
)
def test_not_text(tmp_path: Path, data: bytes) -> None:
    """Bytes that are not UTF-8 or BOM-marked UTF-16 text are refused, saying so."""
    message = refusal(write(tmp_path, data), "notes.txt")
    assert message.startswith("notes.txt is ")
    assert "it must be UTF-8 or UTF-16" in message


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n", codecs.BOM_UTF8, codecs.BOM_UTF16_LE])
def test_empty_text(tmp_path: Path, data: bytes) -> None:
    """An empty file, or one of whitespace or a bare BOM, has no text."""
    assert refusal(write(tmp_path, data), "empty.txt").startswith("empty.txt has no text")


@pytest.mark.parametrize("filename", ["empty.pdf", "empty.docx", "empty.pptx", "empty.html"])
def test_empty_document(tmp_path: Path, filename: str) -> None:
    """A 0-byte file of any type has no text (not a parse failure)."""
    assert refusal(write(tmp_path, b""), filename) == f"{filename} has no text: it is empty"


def test_text_limit(tmp_path: Path) -> None:
    """Text of exactly max_chars is read; one character more is refused, naming the limit."""
    path = write(tmp_path, "x" * 1_000 + "\r\n")
    assert parse(path, "a.txt", max_chars=1_001) == "x" * 1_000
    message = refusal(path, "a.txt", max_chars=1_000)
    assert message == "a.txt has more than 1,000 characters of text, the most file_search reads"


# HTML

PAGE = """<!DOCTYPE html>
<html><head><title>Not shown</title><style>p { color: red }</style></head>
<body>
  <script>var hidden = 1;</script>
  <h1>Heading &amp; more</h1>
  <p>First <b>bold</b>
     paragraph.</p>
  <div>Block<br>after a break</div>
  <ul><li>one</li><li>two</li></ul>
  <table>
    <tr><th>Name</th> <th>Qty</th></tr>
    <tr><td>apple</td> <td>3</td></tr>
  </table>
<pre>  indented
    code</pre>
  <p hidden>secret</p><!-- a comment --><noscript>Enable JavaScript</noscript>
  <template><p>later</p></template>
  <span>inline</span> tail
</body></html>
"""


@pytest.mark.parametrize("filename", ["page.html", "PAGE.HTM"])
def test_html_visible_text(tmp_path: Path, filename: str) -> None:
    """Only visible text: a line per block, cells by tabs, <pre> kept, hidden parts dropped."""
    assert parse(write(tmp_path, PAGE), filename) == (
        "Heading & more\n"
        "First bold paragraph.\n"
        "Block\n"
        "after a break\n"
        "one\n"
        "two\n"
        "Name\tQty\n"
        "apple\t3\n"
        "  indented\n"
        "    code\n"
        "inline tail"
    )


def test_html_deeply_nested(tmp_path: Path) -> None:
    """Elements nested far deeper than Python's recursion limit are still read."""
    page = "<div>" * 5_000 + "deep" + "</div>" * 5_000
    assert parse(write(tmp_path, page), "a.html") == "deep"


def test_html_without_visible_text(tmp_path: Path) -> None:
    """A page with only a head and scripts has no text."""
    page = "<html><head><title>T</title></head><body><script>x()</script></body></html>"
    assert refusal(write(tmp_path, page), "a.html") == "a.html has no text"


def test_html_markup_limit(tmp_path: Path) -> None:
    """Markup may be several times max_chars, but not more; the limit counts visible text."""
    page = "<p>" + "<b></b>" * 100 + "hi</p>"
    assert parse(write(tmp_path, page), "a.html", max_chars=200) == "hi"
    message = refusal(write(tmp_path, page), "a.html", max_chars=100)
    assert message == "a.html has more than 400 characters of HTML, the most file_search reads"


# PDF


def test_pdf_pages(tmp_path: Path) -> None:
    """The text of each page, pages separated by a blank line."""
    path = write(tmp_path, make_pdf(["Hello page one\nSecond line (x)", "Page two"]))
    assert parse(path, "report.pdf") == "Hello page one\nSecond line (x)\n\nPage two"


def test_pdf_without_text(tmp_path: Path) -> None:
    """A PDF whose pages hold no text (as a scanned one) is refused as having none."""
    message = refusal(write(tmp_path, make_pdf(["", ""])), "scan.pdf")
    assert message.startswith("scan.pdf has no text: its pages hold no extractable text")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"%PDF-1.4\ngarbage", "PdfStreamError: Stream has ended unexpectedly"),
        (make_pdf(["Hello"])[:150], "PdfStreamError: Stream has ended unexpectedly"),
        (b"not a pdf at all", "PdfStreamError: Stream has ended unexpectedly"),
    ],
    ids=["garbage", "truncated", "not-a-pdf"],
)
def test_corrupt_pdf(tmp_path: Path, data: bytes, reason: str) -> None:
    """A PDF pypdf cannot read is refused with pypdf's short reason."""
    assert refusal(write(tmp_path, data), "bad.pdf") == (
        f"bad.pdf could not be read as PDF: {reason}"
    )


def test_encrypted_pdf(tmp_path: Path) -> None:
    """A PDF that needs a password is refused as such."""
    path = write(tmp_path, encrypted_pdf("secret", None))
    assert refusal(path, "locked.pdf") == "locked.pdf is an encrypted PDF that needs a password"


def test_pdf_locked_by_owner_only(tmp_path: Path) -> None:
    """A PDF with only an owner password (permissions) opens with the empty one and is read."""
    assert parse(write(tmp_path, encrypted_pdf("", "owner")), "a.pdf") == "Locked text"


def test_pdf_limit(tmp_path: Path) -> None:
    """Reading stops at the page that passes max_chars."""
    path = write(tmp_path, make_pdf(["a" * 60, "b" * 60]))
    assert parse(path, "a.pdf", max_chars=122) == "a" * 60 + "\n\n" + "b" * 60
    message = refusal(path, "a.pdf", max_chars=100)
    assert message == "a.pdf has more than 100 characters of text, the most file_search reads"


# DOCX


def docx_file(tmp_path: Path) -> Path:
    document = docx.Document()
    document.add_heading("Quarterly report", level=1)
    document.add_paragraph("First paragraph, ").add_run("with a bold run.").bold = True
    document.add_paragraph("")
    table = document.add_table(rows=3, cols=3)
    for row, values in zip(table.rows, [["Item", "Qty", "Note"], ["apple", "3", ""]], strict=False):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    merged = table.cell(2, 0).merge(table.cell(2, 1))
    merged.text = "spans two"
    table.cell(2, 2).text = "first line"
    table.cell(2, 2).add_paragraph("second line")
    document.add_paragraph("After the table.")
    path = tmp_path / "upload.tmp"
    document.save(str(path))
    return path


def test_docx(tmp_path: Path) -> None:
    """Paragraphs and table rows in document order; a merged cell once; empty ones skipped."""
    assert parse(docx_file(tmp_path), "report.docx") == (
        "Quarterly report\n"
        "First paragraph, with a bold run.\n"
        "Item\tQty\tNote\n"
        "apple\t3\n"
        "spans two\tfirst line\nsecond line\n"
        "After the table."
    )


def test_docx_limit(tmp_path: Path) -> None:
    """A DOCX with more text than max_chars is refused, naming the limit."""
    message = refusal(docx_file(tmp_path), "report.docx", max_chars=20)
    assert message == "report.docx has more than 20 characters of text, the most file_search reads"


def test_docx_without_text(tmp_path: Path) -> None:
    """A DOCX of empty paragraphs has no text."""
    document = docx.Document()
    document.add_paragraph("   ")
    document.save(str(tmp_path / "e.docx"))
    assert refusal(tmp_path / "e.docx", "e.docx") == "e.docx has no text"


def test_docx_not_a_zip(tmp_path: Path) -> None:
    """A DOCX that is not a zip is refused before python-docx sees it."""
    message = refusal(write(tmp_path, "plain text"), "a.docx")
    assert message == "a.docx is not a DOCX file: File is not a zip file"


def test_docx_that_is_a_presentation(tmp_path: Path) -> None:
    """A PPTX renamed .docx is refused with python-docx's reason."""
    path = tmp_path / "deck.pptx"
    pptx.Presentation().save(str(path))
    message = refusal(path, "a.docx")
    assert message.startswith("a.docx could not be read as DOCX: ValueError: file ")
    assert "is not a Word file" in message


def zip_with(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_zip_bomb_ratio(tmp_path: Path) -> None:
    """A document part inflating about 1000:1 is refused before the document is opened."""
    path = zip_with(
        tmp_path / "bomb.docx",
        {"[Content_Types].xml": b"<Types/>", "word/document.xml": bytes(32 * 1024 * 1024)},
    )
    message = refusal(path, "bomb.docx")
    assert message.startswith("bomb.docx has a member (word/document.xml) compressed ")
    assert message.endswith(":1, more than the 100:1 allowed for a DOCX file (a zip bomb?)")


def test_zip_bomb_total(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A document unpacking to more than MAX_ZIP_BYTES in all is refused before it is opened."""
    monkeypatch.setattr(parse_module, "MAX_ZIP_BYTES", 1_000_000)
    path = zip_with(
        tmp_path / "big.pptx",
        {f"ppt/media/image{i}.png": os.urandom(300_000) for i in range(4)},
    )
    assert refusal(path, "big.pptx") == (
        "big.pptx unpacks to 1,200,000 bytes, more than the 1,000,000 allowed for a PPTX file"
        " (a zip bomb?)"
    )


def test_zip_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A zip with more members than MAX_ZIP_MEMBERS is refused."""
    monkeypatch.setattr(parse_module, "MAX_ZIP_MEMBERS", 3)
    path = zip_with(tmp_path / "many.docx", {f"word/p{i}.xml": b"<p/>" for i in range(4)})
    assert refusal(path, "many.docx") == "many.docx has more than 3 zip members"


# PPTX


def pptx_file(tmp_path: Path) -> Path:
    presentation = pptx.Presentation()
    blank = presentation.slide_layouts[6]
    first = presentation.slides.add_slide(blank)
    box = Inches(1)
    first.shapes.add_textbox(box, box, box, box).text_frame.text = "Slide one title\nsecond\vline"
    table = first.shapes.add_table(2, 2, box, box, box, box).table
    table.cell(0, 0).text, table.cell(0, 1).text = "A", "B"
    table.cell(1, 0).merge(table.cell(1, 1))
    table.cell(1, 0).text = "merged"
    group = first.shapes.add_group_shape()
    group.shapes.add_textbox(box, box, box, box).text_frame.text = "In a group"
    assert first.notes_slide.notes_text_frame is not None
    first.notes_slide.notes_text_frame.text = "Speaker notes"
    presentation.slides.add_slide(blank)  # an empty slide leaves no gap
    third = presentation.slides.add_slide(presentation.slide_layouts[1])
    assert third.shapes.title is not None
    third.shapes.title.text = "Slide three"
    path = tmp_path / "upload.tmp"
    presentation.save(str(path))
    return path


def test_pptx(tmp_path: Path) -> None:
    """Every shape's text per slide (tables, groups, notes), slides split by a blank line."""
    assert parse(pptx_file(tmp_path), "deck.pptx") == (
        "Slide one title\nsecond\nline\nA\tB\nmerged\nIn a group\nSpeaker notes\n\nSlide three"
    )


def test_pptx_limit(tmp_path: Path) -> None:
    """A PPTX with more text than max_chars is refused, naming the limit."""
    message = refusal(pptx_file(tmp_path), "deck.pptx", max_chars=30)
    assert message == "deck.pptx has more than 30 characters of text, the most file_search reads"


def test_pptx_corrupt(tmp_path: Path) -> None:
    """A zip that is no presentation is refused with python-pptx's reason."""
    path = zip_with(tmp_path / "x.zip", {"hello.txt": b"hi"})
    message = refusal(path, "deck.pptx")
    assert message.startswith("deck.pptx could not be read as PPTX: ")


# What escapes and what does not


def test_library_errors_become_invalid_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any exception a library raises on a bad file becomes InvalidFileError with its reason."""

    def broken(*args: object) -> None:
        raise KeyError("/Root")

    monkeypatch.setattr(pypdf, "PdfReader", broken)
    assert refusal(write(tmp_path, b"%PDF"), "a.pdf") == (
        "a.pdf could not be read as PDF: KeyError: '/Root'"
    )


def test_memory_error_is_not_swallowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Running out of memory is the worker's problem, not the file's: it is not InvalidFileError."""

    def exhausted(*args: object) -> None:
        raise MemoryError

    monkeypatch.setattr(pypdf, "PdfReader", exhausted)
    with pytest.raises(MemoryError):
        parse(write(tmp_path, b"%PDF"), "a.pdf")


def test_missing_path_is_not_the_files_fault(tmp_path: Path) -> None:
    """A temp file that cannot be opened raises OSError, not InvalidFileError."""
    with pytest.raises(FileNotFoundError):
        parse(tmp_path / "gone", "a.txt")
