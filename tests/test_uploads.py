"""The Uploads API through a live gateway and the openai SDK, on each store backend: a file in
parts, completed in the order named (size and md5 checked), cancelled, refused when wrong; and a
100 MB upload through a gateway process whose memory stays bounded."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from pathlib import Path

import openai
import pytest

from gateway.engine.uploads import PART_MAX_BYTES
from tests import process
from tests.http import call
from tests.server import LiveServer
from tests.stores import every_backend  # noqa: F401  (runs each test per backend)
from tests.wire import assert_conforms, wire_errors


def _wire(obj: object) -> dict[str, object]:
    dumped: dict[str, object] = obj.model_dump(mode="json", exclude_unset=True)  # type: ignore[attr-defined]
    return dumped


def test_the_sdk_uploads_a_file_in_parts(client: openai.OpenAI, tmp_path: Path) -> None:
    """upload_file_chunked: parts of 1 MiB, the md5 checked, one file with the same bytes."""
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    upload = client.uploads.upload_file_chunked(
        file=path,
        mime_type="application/pdf",
        purpose="assistants",
        part_size=1024 * 1024,
        md5=hashlib.md5(data).hexdigest(),
    )
    assert upload.status == "completed" and upload.file is not None
    assert upload.bytes == len(data) and upload.filename == "report.pdf"
    assert not wire_errors(_wire(upload.file), "file")
    assert client.files.retrieve(upload.file.id).bytes == len(data)
    assert client.files.content(upload.file.id).read() == data


def test_parts_are_joined_in_the_order_named(client: openai.OpenAI) -> None:
    created = client.uploads.create(
        bytes=9, filename="abc.txt", mime_type="text/plain", purpose="assistants"
    )
    assert_conforms(_wire(created))
    assert created.status == "pending" and created.file is None
    assert created.expires_at == created.created_at + 3600
    third = client.uploads.parts.create(created.id, data=b"ccc")
    first = client.uploads.parts.create(created.id, data=b"aaa")
    second = client.uploads.parts.create(created.id, data=b"bbb")
    assert_conforms(_wire(first))
    assert first.upload_id == created.id
    done = client.uploads.complete(created.id, part_ids=[first.id, second.id, third.id])
    assert_conforms(_wire(done))
    assert done.status == "completed" and done.file is not None
    assert client.files.content(done.file.id).read() == b"aaabbbccc"
    assert [f.id for f in client.files.list().data] == [done.file.id]


def test_wrong_completions_are_refused_and_change_nothing(client: openai.OpenAI) -> None:
    """A short total, a part of another upload, a part named twice, a wrong md5: 400 naming
    the problem, and the upload is still pending and completes when asked right."""
    upload = client.uploads.create(
        bytes=6, filename="x.txt", mime_type="text/plain", purpose="assistants"
    )
    other = client.uploads.create(
        bytes=3, filename="y.txt", mime_type="text/plain", purpose="assistants"
    )
    a = client.uploads.parts.create(upload.id, data=b"abc")
    b = client.uploads.parts.create(upload.id, data=b"def")
    stranger = client.uploads.parts.create(other.id, data=b"xyz")
    wrong: list[tuple[list[str], str | None, str]] = [
        ([a.id], None, "part_ids"),
        ([a.id, stranger.id], None, "part_ids[1]"),
        ([a.id, a.id], None, "part_ids[1]"),
        ([a.id, b.id], hashlib.md5(b"abcdeX").hexdigest(), "md5"),
        ([], None, "part_ids"),
    ]
    for part_ids, md5, param in wrong:
        with pytest.raises(openai.BadRequestError) as caught:
            if md5 is None:
                client.uploads.complete(upload.id, part_ids=part_ids)
            else:
                client.uploads.complete(upload.id, part_ids=part_ids, md5=md5)
        assert caught.value.param == param, (part_ids, caught.value.message)
    done = client.uploads.complete(
        upload.id, part_ids=[b.id, a.id], md5=hashlib.md5(b"defabc").hexdigest()
    )
    assert done.file is not None
    assert client.files.content(done.file.id).read() == b"defabc"
    # A completed upload takes nothing more.
    with pytest.raises(openai.BadRequestError):
        client.uploads.parts.create(upload.id, data=b"more")
    with pytest.raises(openai.BadRequestError):
        client.uploads.cancel(upload.id)


def test_a_cancelled_upload_takes_no_parts_and_makes_no_file(client: openai.OpenAI) -> None:
    upload = client.uploads.create(
        bytes=4, filename="x.bin", mime_type="application/octet-stream", purpose="assistants"
    )
    part = client.uploads.parts.create(upload.id, data=b"1234")
    cancelled = client.uploads.cancel(upload.id)
    assert cancelled.status == "cancelled" and cancelled.file is None
    with pytest.raises(openai.BadRequestError):
        client.uploads.parts.create(upload.id, data=b"1234")
    with pytest.raises(openai.BadRequestError):
        client.uploads.complete(upload.id, part_ids=[part.id])
    assert client.files.list().data == []


@pytest.mark.settings(max_file_bytes=5 * 1024 * 1024)
def test_bad_uploads_get_clear_errors(client: openai.OpenAI, server: LiveServer) -> None:
    """Too large, a wrong purpose, an unknown upload, a part past the declared size, a part
    that is not a file: each a 4xx in OpenAI's envelope naming the field."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.uploads.create(
            bytes=5 * 1024 * 1024 + 1, filename="x", mime_type="text/plain", purpose="assistants"
        )
    assert caught.value.param == "bytes"
    with pytest.raises(openai.BadRequestError) as caught:
        client.uploads.create(
            bytes=1,
            filename="x",
            mime_type="text/plain",
            purpose="nope",  # type: ignore[arg-type]
        )
    assert caught.value.param == "purpose"
    with pytest.raises(openai.NotFoundError):
        client.uploads.parts.create("upload_nope", data=b"x")
    with pytest.raises(openai.NotFoundError):
        client.uploads.complete("upload_nope", part_ids=["part_x"])

    upload = client.uploads.create(
        bytes=10, filename="x.txt", mime_type="text/plain", purpose="assistants"
    )
    client.uploads.parts.create(upload.id, data=b"123456")
    with pytest.raises(openai.BadRequestError) as too_big:
        client.uploads.parts.create(upload.id, data=b"12345")  # 11 bytes in all
    assert too_big.value.param == "data"
    answer = call(server, "POST", f"/v1/uploads/{upload.id}/parts", {"data": "abc"})
    assert answer.status == 415


def test_an_upload_part_may_be_64_mib_and_no_more(server: LiveServer) -> None:
    """The declared length of a part's body is checked before any of it is read."""
    headers = {
        "content-type": "multipart/form-data; boundary=b",
        "content-length": str(PART_MAX_BYTES + 1024 * 1024),
    }
    answer = call(server, "POST", "/v1/uploads/upload_x/parts", headers=headers, raw=b"")
    assert answer.status == 413


def _peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    assert found, status
    return int(found.group(1))


def test_a_100_mb_upload_keeps_the_gateways_memory_bounded(tmp_path: Path) -> None:
    """100 MB in parts of 64 MiB through a gateway process: the file comes back whole, and the
    process's peak memory grows by far less than one part (the bytes go through temporary
    files and 1 MiB chunks, never whole into memory)."""
    port = process.free_port()
    gateway = process.start(tmp_path / "big.db", port)
    try:

        async def wait() -> None:
            import aiohttp

            async with aiohttp.ClientSession() as http:
                await process.ready(http, port)

        asyncio.run(wait())
        with openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=120
        ) as client:
            small = client.files.create(file=("warm.txt", b"warm up"), purpose="assistants")
            client.files.content(small.id).read()
            before = _peak_rss_kib(gateway.pid)
            data = os.urandom(100 * 1000 * 1000)
            path = tmp_path / "big.bin"
            path.write_bytes(data)
            upload = client.uploads.upload_file_chunked(
                file=path,
                mime_type="application/octet-stream",
                purpose="assistants",
                md5=hashlib.md5(data).hexdigest(),
            )
            assert upload.file is not None and upload.file.bytes == len(data)
            digest = hashlib.sha256()
            with client.with_streaming_response.files.content(upload.file.id) as response:
                for piece in response.iter_bytes():
                    digest.update(piece)
            assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
            grown_mib = (_peak_rss_kib(gateway.pid) - before) / 1024
        assert grown_mib < 32, f"the gateway's peak memory grew by {grown_mib:.1f} MiB"
    finally:
        gateway.terminate()
        gateway.wait(timeout=10)
