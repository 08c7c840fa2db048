"""Vector stores through a live gateway and the openai SDK, on each store backend: files added
alone and in batches are ingested in the background (parsed, chunked, indexed), counts and
statuses stay true, search finds and filters, bad input is refused clearly, projects are kept
apart, and an ingestion cut off by a crash is taken up at the next start."""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import docx
import openai
import pytest
from openai.types import VectorStore

from gateway import objects
from gateway.config import GatewayConfig, UpstreamConfig
from gateway.engine.files import Files
from gateway.engine.search import Search
from gateway.engine.vector_stores import VectorStores, file_key
from gateway.knowledge.local_embed import LocalEmbedder
from gateway.store import Kind, RunStore, StoreTx
from tests.fake_upstream import FakeUpstream
from tests.keys import two_projects
from tests.server import LiveServer
from tests.stores import Database, every_backend  # noqa: F401  (runs each test per backend)
from tests.waiting import eventually
from tests.wire import assert_conforms

CATS = b"# Cats\n\nCats sleep for sixteen hours a day and purr when they are content.\n"
ROCKETS = b"Rockets burn kerosene with liquid oxygen to climb into orbit around the Earth.\n"
BREAD = b"Bread rises because yeast ferments sugar into carbon dioxide bubbles.\n"


def _wire(obj: object) -> dict[str, object]:
    dumped: dict[str, object] = obj.model_dump(mode="json", exclude_unset=True)  # type: ignore[attr-defined]
    return dumped


def _settled(client: openai.OpenAI, store_id: str) -> VectorStore:
    found: list[VectorStore] = []

    def done() -> bool:
        found[:] = [client.vector_stores.retrieve(store_id)]
        return found[0].status == "completed"

    eventually(done, timeout=30, what="the vector store's files to be ingested")
    return found[0]


def test_upload_and_poll_then_search(client: openai.OpenAI) -> None:
    """The SDK's upload_and_poll: the file is completed with its bytes counted, the store's
    counts move with it, and search finds the right file first, with its text."""
    store = client.vector_stores.create(name="notes")
    assert_conforms(_wire(store))
    assert store.status == "completed" and store.file_counts.total == 0
    cats = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("cats.md", CATS), poll_interval_ms=50
    )
    assert_conforms(_wire(cats))
    assert cats.status == "completed" and cats.last_error is None
    assert cats.usage_bytes > 0 and cats.chunking_strategy is not None
    client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("rockets.txt", ROCKETS), poll_interval_ms=50
    )
    store = client.vector_stores.retrieve(store.id)
    assert store.file_counts.completed == 2 and store.file_counts.total == 2
    assert store.usage_bytes > 0 and store.status == "completed"

    found = client.vector_stores.search(store.id, query="How long do cats sleep?")
    assert found.data[0].file_id == cats.id and found.data[0].filename == "cats.md"
    assert "sixteen hours" in found.data[0].content[0].text
    assert all(0 <= item.score <= 1 for item in found.data)
    assert _wire(found)["search_query"] == ["How long do cats sleep?"]

    content = client.vector_stores.files.content(file_id=cats.id, vector_store_id=store.id)
    assert "purr" in "".join(part.text or "" for part in content.data)


def test_batches_attributes_and_filters(client: openai.OpenAI) -> None:
    """A batch of three files with attributes; search filtered by attributes returns only the
    matching files; the batch's counts and its file list agree."""
    ids = [
        client.files.create(file=(name, data), purpose="assistants").id
        for name, data in (("cats.md", CATS), ("rockets.txt", ROCKETS), ("bread.txt", BREAD))
    ]
    store = client.vector_stores.create(name="kb")
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id,
        files=[
            {"file_id": ids[0], "attributes": {"topic": "animals", "year": 2020}},
            {"file_id": ids[1], "attributes": {"topic": "space", "year": 2024}},
            {"file_id": ids[2], "attributes": {"topic": "food", "year": 2022, "baked": True}},
        ],
        poll_interval_ms=50,
    )
    assert_conforms(_wire(batch))
    assert batch.status == "completed" and batch.file_counts.completed == 3
    listed = client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)
    assert sorted(f.id for f in listed.data) == sorted(ids)
    query = "cats rockets bread orbit yeast sleep"

    def found(filters: object) -> list[str]:
        page = client.vector_stores.search(store.id, query=query, filters=filters)  # type: ignore[arg-type]
        return sorted(item.file_id for item in page.data)

    assert found({"type": "eq", "key": "topic", "value": "space"}) == [ids[1]]
    assert found({"type": "gte", "key": "year", "value": 2022}) == sorted(ids[1:])
    assert found({"type": "in", "key": "topic", "value": ["animals", "food"]}) == sorted(
        [ids[0], ids[2]]
    )
    assert found({"type": "eq", "key": "baked", "value": True}) == [ids[2]]
    assert found(
        {
            "type": "or",
            "filters": [
                {"type": "eq", "key": "topic", "value": "animals"},
                {
                    "type": "and",
                    "filters": [
                        {"type": "lt", "key": "year", "value": 2025},
                        {"type": "ne", "key": "topic", "value": "food"},
                    ],
                },
            ],
        }
    ) == sorted(ids[:2])
    one = client.vector_stores.search(store.id, query=query, max_num_results=1)
    assert len(one.data) == 1
    rewritten = client.vector_stores.search(
        store.id, query="What is the bread made of?", rewrite_query=True
    )
    assert _wire(rewritten)["search_query"] == ["what bread made"]
    updated = client.vector_stores.files.update(
        file_id=ids[0], vector_store_id=store.id, attributes={"topic": "pets"}
    )
    assert updated.attributes == {"topic": "pets"}
    assert found({"type": "eq", "key": "topic", "value": "pets"}) == [ids[0]]


def test_files_that_cannot_be_read_fail_with_their_reason(client: openai.OpenAI) -> None:
    """An unsupported type, a corrupt PDF and an empty text file end failed with OpenAI's
    codes; a DOCX is read; the store's counts say so."""
    document = docx.Document()
    document.add_paragraph("The quarterly revenue grew by twelve percent.")
    buffer = io.BytesIO()
    document.save(buffer)
    files = {
        "app.exe": b"MZ\x90\x00binary",
        "broken.pdf": b"%PDF-1.7 this is not a pdf at all",
        "empty.txt": b"   \n",
        "report.docx": buffer.getvalue(),
    }
    ids = {
        name: client.files.create(file=(name, data), purpose="assistants").id
        for name, data in files.items()
    }
    store = client.vector_stores.create(file_ids=list(ids.values()))
    store = _settled(client, store.id)
    assert store.file_counts.failed == 3 and store.file_counts.completed == 1
    errors = {
        f.id: f.last_error.code if f.last_error else None
        for f in client.vector_stores.files.list(store.id)
    }
    assert errors == {
        ids["app.exe"]: "unsupported_file",
        ids["broken.pdf"]: "invalid_file",
        ids["empty.txt"]: "invalid_file",
        ids["report.docx"]: None,
    }
    failed = client.vector_stores.files.list(store.id, filter="failed")
    assert len(failed.data) == 3
    hits = client.vector_stores.search(store.id, query="quarterly revenue")
    assert [h.filename for h in hits.data] == ["report.docx"]


def test_bad_requests_are_refused_clearly(client: openai.OpenAI) -> None:
    file = client.files.create(file=("a.txt", b"alpha"), purpose="assistants")
    with pytest.raises(openai.BadRequestError) as missing:
        client.vector_stores.create(file_ids=[file.id, "file-nope"])
    assert missing.value.param == "file_ids[1]"
    with pytest.raises(openai.BadRequestError) as chunking:
        client.vector_stores.create(
            file_ids=[file.id],
            chunking_strategy={
                "type": "static",
                "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 60},
            },
        )
    assert chunking.value.param == "chunking_strategy.static"
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.create(
            chunking_strategy={
                "type": "static",
                "static": {"max_chunk_size_tokens": 5000, "chunk_overlap_tokens": 0},
            }
        )
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve("vs_nope")
    store = client.vector_stores.create(file_ids=[file.id])
    with pytest.raises(openai.BadRequestError) as twice:
        client.vector_stores.files.create(vector_store_id=store.id, file_id=file.id)
    assert twice.value.param == "file_id"
    with pytest.raises(openai.BadRequestError) as results:
        client.vector_stores.search(store.id, query="x", max_num_results=51)
    assert results.value.param == "max_num_results"
    with pytest.raises(openai.BadRequestError) as status:
        client.vector_stores.files.list(store.id, filter="done")  # type: ignore[arg-type]
    assert status.value.param == "filter"
    assert client.vector_stores.list().data[0].id == store.id


def test_deleting_a_file_takes_it_out_of_its_stores(client: openai.OpenAI) -> None:
    cats = client.files.create(file=("cats.md", CATS), purpose="assistants")
    rockets = client.files.create(file=("rockets.txt", ROCKETS), purpose="assistants")
    store = _settled(client, client.vector_stores.create(file_ids=[cats.id, rockets.id]).id)
    assert store.file_counts.completed == 2
    client.files.delete(cats.id)
    store = client.vector_stores.retrieve(store.id)
    assert store.file_counts.completed == 1 and store.file_counts.total == 1
    hits = client.vector_stores.search(store.id, query="cats sleep rockets orbit")
    assert [h.file_id for h in hits.data] == [rockets.id]
    removed = client.vector_stores.files.delete(file_id=rockets.id, vector_store_id=store.id)
    assert removed.deleted
    assert client.vector_stores.retrieve(store.id).file_counts.total == 0
    assert client.files.retrieve(rockets.id).id == rockets.id  # the file itself stays
    assert_conforms(_wire(removed), "vector_store.file.deleted")
    gone = client.vector_stores.delete(store.id)
    assert_conforms(_wire(gone), "vector_store.deleted")
    assert gone.deleted and gone.object == "vector_store.deleted"


def test_expiry_is_shown_and_moves_with_activity(client: openai.OpenAI) -> None:
    store = client.vector_stores.create(expires_after={"anchor": "last_active_at", "days": 2})
    assert store.last_active_at is not None
    assert store.expires_at == store.last_active_at + 2 * 86400
    assert store.expires_after is not None and store.expires_after.days == 2
    cleared = client.vector_stores.update(store.id, name="renamed", metadata={"k": "v"})
    assert cleared.name == "renamed" and cleared.metadata == {"k": "v"}


def test_projects_do_not_reach_each_others_stores(tmp_path: Path) -> None:
    with two_projects(tmp_path / "vs.db") as (alpha, beta):
        file = alpha.files.create(file=("cats.md", CATS), purpose="assistants")
        store = alpha.vector_stores.create(file_ids=[file.id])
        for attempt in (
            lambda: beta.vector_stores.retrieve(store.id),
            lambda: beta.vector_stores.search(store.id, query="cats"),
            lambda: beta.vector_stores.files.list(store.id),
            lambda: beta.vector_stores.delete(store.id),
        ):
            with pytest.raises(openai.NotFoundError):
                attempt()
        with pytest.raises(openai.BadRequestError) as foreign:
            beta.vector_stores.create(file_ids=[file.id])
        assert foreign.value.param == "file_ids[0]"
        assert beta.vector_stores.list().data == []
        assert alpha.vector_stores.retrieve(store.id).id == store.id


async def _waiting_file(db: Database, owner: str, lease_until: float) -> tuple[str, str]:
    """A vector store with one file whose ingestion `owner` claimed until `lease_until`, as a
    process that died midway leaves it."""
    store = db.store()
    await store.open()
    try:
        files = Files(store, max_bytes=1 << 20)

        async def content() -> AsyncIterator[bytes]:
            yield CATS

        file = await files.create(content(), project="", filename="cats.md", purpose="assistants")
        stores = VectorStores(store, files, searcher=Search(store, None))
        vs = await stores.create(project="", file_ids=[file["id"]])

        async def claim(tx: StoreTx) -> str | None:
            return await tx.claim_ingestion(owner, 0, lease_until)

        assert await store.write(claim) == file_key(vs["id"], file["id"])
        return vs["id"], file["id"]
    finally:
        await store.close()


@pytest.mark.parametrize("case", ["own-restart", "other-lapsed"])
async def test_an_interrupted_ingestion_is_taken_up(db: Database, case: str) -> None:
    """A file left in_progress by a process that died is ingested by the next: at once when
    the same process starts again, or by another once the lease has passed."""
    owner = "host-a:8000"
    lease = time.time() + 3600 if case == "own-restart" else time.time() - 1
    vs_id, file_id = await _waiting_file(db, owner, lease)
    worker = owner if case == "own-restart" else "host-b:8000"
    live = LiveServer(db.url, worker_id=worker).start()
    try:
        with openai.OpenAI(base_url=live.base_url, api_key="x", max_retries=0) as client:
            store = _settled(client, vs_id)
            assert store.file_counts.completed == 1
            entry = client.vector_stores.files.retrieve(file_id=file_id, vector_store_id=vs_id)
            assert entry.status == "completed"
    finally:
        live.stop()


assert objects.AUTO_CHUNKING["static"]["max_chunk_size_tokens"] == 800


def test_an_upstream_embeds_chunks_and_queries(tmp_path: Path) -> None:
    """With `embeddings` naming an upstream, every chunk and every query is embedded there
    (its model named), search fuses the vectors with keywords, and an upstream that refuses
    fails the file with server_error and a search with 503, nothing half-stored."""
    with FakeUpstream() as upstream:
        config = GatewayConfig(
            upstreams=(
                UpstreamConfig(name="fake", base_url=upstream.base_url, models=("fake-*",)),
            ),
            embeddings="fake",
            embedding_model="embed-small",
        )
        live = LiveServer(tmp_path / "emb.db", config=config).start()
        try:
            with openai.OpenAI(base_url=live.base_url, api_key="x", max_retries=0) as client:
                ids = [
                    client.files.create(file=(n, d), purpose="assistants").id
                    for n, d in (("cats.md", CATS), ("rockets.txt", ROCKETS))
                ]
                store = _settled(client, client.vector_stores.create(file_ids=ids).id)
                assert store.file_counts.completed == 2
                embedded = [r.body for r in upstream.requests if r.path.endswith("/embeddings")]
                assert {b["model"] for b in embedded} == {"embed-small"}
                assert any("sixteen hours" in text for b in embedded for text in b["input"])
                hits = client.vector_stores.search(store.id, query="kerosene oxygen orbit")
                assert hits.data[0].file_id == ids[1]
                assert len(upstream.requests) > len(embedded)  # the query was embedded too

                upstream.embedding_failures = [400]
                bread = client.files.create(file=("bread.txt", BREAD), purpose="assistants")
                entry = client.vector_stores.files.create_and_poll(
                    vector_store_id=store.id, file_id=bread.id, poll_interval_ms=50
                )
                assert entry.status == "failed" and entry.last_error is not None
                assert entry.last_error.code == "server_error"
                upstream.embedding_failures = [400]
                with pytest.raises(openai.InternalServerError) as unavailable:
                    client.vector_stores.search(store.id, query="cats")
                assert unavailable.value.status_code == 503
        finally:
            live.stop()


@pytest.mark.settings(ingestion_timeout_seconds=1.5)
def test_a_file_that_takes_too_long_fails_and_the_next_is_read(client: openai.OpenAI) -> None:
    """A file whose reading outlasts the time limit fails (its worker is killed and a new one
    started); the file after it is ingested as usual."""
    # About 9.5 million tokens of random hex: several seconds of tokenizing.
    noise = os.urandom(8 * 1024 * 1024).hex().encode()
    big = client.files.create(file=("big.txt", noise), purpose="assistants")
    small = client.files.create(file=("cats.md", CATS), purpose="assistants")
    store = _settled(client, client.vector_stores.create(file_ids=[big.id, small.id]).id)
    entries = {f.id: f for f in client.vector_stores.files.list(store.id)}
    slow = entries[big.id]
    assert slow.status == "failed" and slow.last_error is not None
    assert slow.last_error.code == "invalid_file" and "longer than" in slow.last_error.message
    assert entries[small.id].status == "completed"


def test_the_sdks_batch_upload_and_poll(client: openai.OpenAI, tmp_path: Path) -> None:
    """file_batches.upload_and_poll: the SDK uploads the files, makes one batch of them and
    polls it until it is done."""
    paths = []
    for name, data in (("cats.md", CATS), ("rockets.txt", ROCKETS), ("bread.txt", BREAD)):
        path = tmp_path / name
        path.write_bytes(data)
        paths.append(path)
    store = client.vector_stores.create(name="batch")
    with contextlib.ExitStack() as opened:
        files = [opened.enter_context(p.open("rb")) for p in paths]
        batch = client.vector_stores.file_batches.upload_and_poll(
            vector_store_id=store.id, files=files, poll_interval_ms=50
        )
    assert batch.status == "completed" and batch.file_counts.completed == 3
    hits = client.vector_stores.search(store.id, query="yeast ferments sugar")
    assert hits.data[0].filename == "bread.txt"


def test_a_search_sees_only_its_own_store(client: openai.OpenAI) -> None:
    """The same words in two stores: each store's search finds its own file only."""
    first = client.files.create(file=("a.md", CATS), purpose="assistants")
    second = client.files.create(file=("b.md", CATS), purpose="assistants")
    one = _settled(client, client.vector_stores.create(file_ids=[first.id]).id)
    two = _settled(client, client.vector_stores.create(file_ids=[second.id]).id)
    assert [h.file_id for h in client.vector_stores.search(one.id, query="cats sleep").data] == [
        first.id
    ]
    assert [h.file_id for h in client.vector_stores.search(two.id, query="cats sleep").data] == [
        second.id
    ]


async def test_cached_vectors_follow_every_change_of_a_store(store: RunStore) -> None:
    """A search's in-memory vectors follow the store's chunk version: chunks added are read,
    and a file's chunks removed while another's came (the count unchanged) are gone too; a
    deleted store's version goes with it."""
    embedder = LocalEmbedder()
    try:
        # Vectors alone decide, and every chunk of so small a store is among the results.
        search = Search(store, embedder, vector_weight=1.0)
        vs = objects.vector_store(name="v", expires_after=None, metadata=None, created=1)
        await store.write(lambda tx: tx.insert(Kind.VECTOR_STORE, vs, project=""))

        async def add(file_id: str, text: bytes) -> None:
            (vector,) = await embedder.embed([text.decode()], query=False)
            chunks = [(text.decode(), 20, vector)]
            await store.write(lambda tx: tx.add_chunks(vs["id"], file_id, chunks))

        async def indexed() -> set[str]:
            hits = await search.search([vs["id"]], ["cats"], max_results=10)
            return {hit.file_id for hit in hits}

        assert await store.chunk_stamp(vs["id"]) == (0, 0)
        assert await indexed() == set()
        await add("file-cats", CATS)
        assert await indexed() == {"file-cats"}
        await add("file-rockets", ROCKETS)
        assert await indexed() == {"file-cats", "file-rockets"}
        count, version = await store.chunk_stamp(vs["id"])
        assert count == 2
        await store.write(lambda tx: tx.delete_chunks(vs["id"], "file-cats"))
        await add("file-bread", BREAD)
        assert (await store.chunk_stamp(vs["id"]))[0] == 2
        assert (await store.chunk_stamp(vs["id"]))[1] > version
        assert await indexed() == {"file-rockets", "file-bread"}
        await store.write(lambda tx: tx.delete_chunks(vs["id"]))
        assert await indexed() == set()

        async def drop(tx: StoreTx) -> None:
            await tx.delete(Kind.VECTOR_STORE, vs["id"])

        await store.write(drop)
        assert await store.chunk_stamp(vs["id"]) == (0, 0)
    finally:
        embedder.close()
