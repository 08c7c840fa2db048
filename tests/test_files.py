"""The Files API through a live gateway and the openai SDK, on each store backend: upload,
list, retrieve, download and delete; OpenAI's shapes, limits and errors; projects kept apart."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest
from openai.types import FilePurpose

from gateway.engine.files import CHUNK_BYTES, Files
from gateway.errors import NotFoundError, PayloadTooLargeError
from gateway.settings import Settings
from gateway.store import RunStore, StoreTx
from gateway.types import PageQuery
from tests.http import call
from tests.keys import two_projects
from tests.server import LiveServer
from tests.stores import Database, every_backend  # noqa: F401  (runs each test per backend)
from tests.wire import assert_conforms


def wire(obj: object) -> dict[str, object]:
    dumped: dict[str, object] = obj.model_dump(mode="json", exclude_unset=True)  # type: ignore[attr-defined]
    return dumped


def test_a_file_round_trip_as_the_sdk_makes_it(client: openai.OpenAI) -> None:
    """Upload, retrieve, download (the same bytes), list and delete, each answer in OpenAI's
    shape."""
    body = b"# Notes\n\nThe launch is on the 3rd of March.\n"
    created = client.files.create(file=("notes.md", body), purpose="assistants")
    assert_conforms(wire(created))
    assert created.id.startswith("file-") and created.filename == "notes.md"
    assert created.bytes == len(body) and created.purpose == "assistants"
    assert created.status == "processed" and created.expires_at is None

    assert client.files.retrieve(created.id) == created
    content = client.files.content(created.id)
    assert content.read() == body
    headers = content.response.headers
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-disposition"].startswith('attachment; filename="notes.md"')
    assert [f.id for f in client.files.list().data] == [created.id]

    gone = client.files.delete(created.id)
    assert_conforms(wire(gone), "file.deleted")
    assert gone.deleted and gone.id == created.id
    with pytest.raises(openai.NotFoundError) as caught:
        client.files.retrieve(created.id)
    assert caught.value.message.endswith(f"No such File object: {created.id}")
    with pytest.raises(openai.NotFoundError):
        client.files.content(created.id)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(created.id)
    assert client.files.list().data == []


PURPOSES: list[FilePurpose] = ["assistants", "user_data", "assistants", "batch"]


def test_listing_filters_orders_and_pages(client: openai.OpenAI) -> None:
    """purpose filters; newest first by default; limit and after page (the SDK follows them)."""
    made = [
        client.files.create(file=(f"f{i}.txt", f"file {i}".encode()), purpose=purpose)
        for i, purpose in enumerate(PURPOSES)
    ]
    ids = [f.id for f in made]
    assert [f.id for f in client.files.list().data] == ids[::-1]
    assert [f.id for f in client.files.list(order="asc").data] == ids
    assistants = client.files.list(purpose="assistants")
    assert [f.id for f in assistants.data] == [ids[2], ids[0]]
    first = client.files.list(limit=3)
    assert first.has_more and [f.id for f in first.data] == ids[:0:-1]
    assert [f.id for f in client.files.list(limit=1)] == ids[::-1]  # the SDK pages on
    for limit in (0, 10_001):
        with pytest.raises(openai.BadRequestError) as caught:
            client.files.list(limit=limit)
        assert caught.value.param == "limit"


def test_expires_after_sets_expires_at(client: openai.OpenAI) -> None:
    file = client.files.create(
        file=("tmp.txt", b"soon gone"),
        purpose="user_data",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert file.expires_at == file.created_at + 3600
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(
            file=("tmp.txt", b"x"),
            purpose="user_data",
            expires_after={"anchor": "created_at", "seconds": 60},
        )
    assert caught.value.param == "expires_after.seconds"


def test_bad_uploads_get_clear_errors(client: openai.OpenAI, server: LiveServer) -> None:
    """A wrong purpose, no file, a file without a name, a JSON body, an unknown id: a 4xx in
    OpenAI's envelope naming what is wrong, and nothing stored."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("a.txt", b"x"), purpose="fine-tune-results")  # type: ignore[arg-type]
    assert caught.value.param == "purpose"

    answer = call(server, "POST", "/v1/files", {"purpose": "assistants"})
    assert answer.status == 415 and answer.error()["type"] == "invalid_request_error"
    no_file = _multipart({"purpose": "assistants"}, None)
    answer = call(server, "POST", "/v1/files", raw=no_file[1], headers=no_file[0])
    assert answer.status == 400 and answer.error()["param"] == "file"
    nameless = _multipart({"purpose": "assistants"}, ("", b"data"))
    answer = call(server, "POST", "/v1/files", raw=nameless[1], headers=nameless[0])
    assert answer.status == 400 and answer.error()["param"] == "file"
    # A field given twice (what an array becomes in a form), plain or bracketed.
    for twice, param in (
        ([("purpose", "assistants"), ("purpose", "assistants")], "purpose"),
        (
            [
                ("purpose", "assistants"),
                ("expires_after[anchor]", "created_at"),
                ("expires_after[seconds]", "3600"),
                ("expires_after[seconds]", "7200"),
            ],
            "expires_after.seconds",
        ),
    ):
        form = _multipart(twice, ("a.txt", b"data"))
        answer = call(server, "POST", "/v1/files", raw=form[1], headers=form[0])
        assert answer.status == 400 and answer.error()["param"] == param
    answer = call(
        server,
        "POST",
        "/v1/files",
        raw=b"--x\r\nbroken",
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert answer.status == 400
    assert client.files.list().data == []
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-nope")


@pytest.mark.settings(max_file_bytes=2 * 1024 * 1024)
def test_a_file_over_the_limit_is_refused_and_not_kept(client: openai.OpenAI) -> None:
    """413 whether or not the client declared the length, and no chunk is left behind; a file
    of exactly the limit is taken."""
    limit = 2 * 1024 * 1024
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("big.bin", os.urandom(limit + 1)), purpose="assistants")
    assert caught.value.status_code == 413
    exact = os.urandom(limit)
    file = client.files.create(file=("exact.bin", exact), purpose="assistants")
    assert client.files.content(file.id).read() == exact
    assert [f.id for f in client.files.list().data] == [file.id]


def test_a_large_file_streams_through_in_chunks(client: openai.OpenAI) -> None:
    """20 MB up and down: the same bytes (by hash), read back chunk by chunk."""
    data = os.urandom(20 * 1024 * 1024 + 123)
    file = client.files.create(file=("data.bin", io.BytesIO(data)), purpose="assistants")
    assert file.bytes == len(data)
    with client.with_streaming_response.files.content(file.id) as response:
        digest = hashlib.sha256()
        for piece in response.iter_bytes():
            digest.update(piece)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


def test_projects_do_not_see_each_others_files(tmp_path: Path) -> None:
    with two_projects(tmp_path / "files.db") as (alpha, beta):
        _keep_apart(alpha, beta)


def _keep_apart(alpha: openai.OpenAI, beta: openai.OpenAI) -> None:
    mine = alpha.files.create(file=("secret.txt", b"alpha only"), purpose="assistants")
    for attempt in (
        lambda: beta.files.retrieve(mine.id),
        lambda: beta.files.content(mine.id),
        lambda: beta.files.delete(mine.id),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert beta.files.list().data == []
    assert [f.id for f in alpha.files.list().data] == [mine.id]
    assert alpha.files.content(mine.id).read() == b"alpha only"


def _multipart(
    fields: dict[str, str] | list[tuple[str, str]], file: tuple[str, bytes] | None
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a hand-made multipart form (to send what the SDK never would);
    `fields` as pairs may name a field twice."""
    boundary = "gatewaytestboundary"
    pairs = fields.items() if isinstance(fields, dict) else fields
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in pairs
    ]
    if file is not None:
        name, data = file
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return {"content-type": f"multipart/form-data; boundary={boundary}"}, body


assert Settings().max_file_bytes == 512 * 1024 * 1024  # OpenAI's limit is the default


# -- the engine's Files, on the store itself ---------------------------------------------------


async def _pieces(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def _read(files: Files, file_id: str) -> bytes:
    _, chunks = await files.content(file_id, project="")
    return b"".join([chunk async for chunk in chunks])


async def test_bytes_are_kept_in_chunks_in_order(store: RunStore) -> None:
    """Pieces of any size become 1 MiB chunks read back in order, across the chunk edges."""
    files = Files(store, max_bytes=10 * CHUNK_BYTES)
    pieces = [os.urandom(n) for n in (10, CHUNK_BYTES - 3, 7, 2 * CHUNK_BYTES + 1, 0, 5)]
    file = await files.create(_pieces(*pieces), project="", filename="x.bin", purpose="assistants")
    assert file["bytes"] == sum(map(len, pieces))
    assert await _read(files, file["id"]) == b"".join(pieces)


async def test_a_failed_upload_leaves_nothing(store: RunStore) -> None:
    """An upload over the limit, or whose source fails midway, leaves no file and no chunk."""
    files = Files(store, max_bytes=CHUNK_BYTES + 10)
    with pytest.raises(PayloadTooLargeError):
        await files.create(
            _pieces(os.urandom(CHUNK_BYTES), os.urandom(11)),
            project="",
            filename="big",
            purpose="assistants",
        )

    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(CHUNK_BYTES)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await files.create(broken(), project="", filename="half", purpose="assistants")
    assert (await files.list(PageQuery(), project=""))["data"] == []
    assert await _abandoned(store) == 0


async def _abandoned(store: RunStore) -> int:
    """How many chunks the pruner deletes as abandoned once they are old enough."""

    async def prune(tx: StoreTx) -> int:
        return await tx.prune_blobs(2**40)

    return await store.write(prune)


async def test_prune_deletes_expired_files_and_abandoned_chunks(store: RunStore) -> None:
    """An expired file goes with its bytes; chunks no file holds go once an hour old; a live
    file and a fresh abandoned blob stay."""
    now = [1_000_000.0]
    files = Files(store, max_bytes=10 * CHUNK_BYTES, clock=lambda: now[0])
    kept = await files.create(_pieces(b"kept"), project="", filename="k", purpose="assistants")
    expiring = await files.create(
        _pieces(b"short-lived"), project="", filename="e", purpose="assistants", expires_after=3600
    )

    async def abandon(blob_id: str, at: float) -> None:
        async def write(tx: StoreTx) -> None:
            await tx.put_chunk(blob_id, 0, 0, b"left behind", int(at))

        await store.write(write)

    await abandon("file-abandonedlongago", now[0] - 2 * 3600)
    await abandon("file-abandonedjustnow", now[0])
    now[0] += 3600
    await files.prune()
    listed = [f["id"] for f in (await files.list(PageQuery(), project=""))["data"]]
    assert listed == [kept["id"]]
    assert await _read(files, kept["id"]) == b"kept"
    with pytest.raises(NotFoundError):
        await files.get(expiring["id"], project="")
    assert await store.next_chunk(expiring["id"], (-1, -1)) is None
    assert await store.next_chunk("file-abandonedlongago", (-1, -1)) is None
    assert await store.next_chunk("file-abandonedjustnow", (-1, -1)) is not None
