"""The store contract: wire objects kept by kind, listed with OpenAI's cursor pagination.

Objects are stored whole, as the JSON the API returns, plus the few columns needed to find them
(thread, run, status). Every write is a function run by `write()` inside one transaction: it
commits whole or not at all, and once started it finishes even if the caller is cancelled, so a
cancelled run never leaves a half-written change or a transaction open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, NamedTuple, Protocol, TypeVar

from gateway.errors import ConflictError
from gateway.types import AnyObj, Obj, PageQuery


class Kind(StrEnum):
    ASSISTANT = "assistant"
    THREAD = "thread"
    MESSAGE = "message"
    RUN = "run"
    STEP = "step"
    FILE = "file"
    UPLOAD = "upload"
    UPLOAD_PART = "upload.part"
    VECTOR_STORE = "vector_store"
    # Keyed by "<vector store id>/<file id>": a file may be in several stores.
    VECTOR_STORE_FILE = "vector_store.file"
    FILE_BATCH = "vector_store.files_batch"


class Chunk(NamedTuple):
    """A piece of a stored blob: its place (part, seq) and its bytes."""

    part: int
    seq: int
    data: bytes


class ChunkRow(NamedTuple):
    """A chunk of a file in a vector store."""

    seq: int
    vector_store_id: str
    file_id: str
    position: int
    text: str


class LoggedEvent(NamedTuple):
    """One entry of a run's event log: its sequence number, event name and the frame as sent
    (empty for the marker that ends a stream segment, which is never sent). A named tuple:
    one is made per event, and it is cheaper to make than a frozen dataclass."""

    seq: int
    name: str
    frame: bytes


# The kinds that belong to a project themselves; the others belong to their thread.
OWNED_KINDS: Final = frozenset(
    {Kind.ASSISTANT, Kind.THREAD, Kind.FILE, Kind.UPLOAD, Kind.VECTOR_STORE}
)


@dataclass(frozen=True)
class ApiKey:
    """A stored API key: never its secret, only a SHA-256 of it."""

    id: str
    project: str
    hash: bytes
    created_at: int
    revoked_at: int | None


@dataclass(frozen=True)
class IdempotentRecord:
    """What a request with an Idempotency-Key left: its fingerprint, and once it ended its
    status and JSON body, or for a streamed create the run to replay (`thread_id`, `run_id`)."""

    fingerprint: bytes
    created_at: int
    status: int | None = None
    body: bytes | None = None
    thread_id: str | None = None
    run_id: str | None = None


def active_run_conflict() -> ConflictError:
    """What a store raises when a write would give a thread a second active run (which the
    engine of one process prevents first; across processes only the database can)."""
    return ConflictError(
        "This thread already has an active run; wait for it to end or cancel it.",
        code="thread_has_active_run",
    )


class StoreOpenError(Exception):
    """The database cannot be opened, reached or migrated at start."""


class CursorNotFoundError(LookupError):
    """An `after`/`before` cursor names no object in the listed collection."""

    def __init__(self, param: str, cursor: str) -> None:
        super().__init__(cursor)
        self.param = param
        self.cursor = cursor


class StoreTx(Protocol):
    """Reads and writes inside one write transaction; reads see the transaction's own writes."""

    async def get(self, kind: Kind, object_id: str) -> Obj | None: ...
    async def insert(self, kind: Kind, obj: AnyObj, *, project: str = "") -> None:
        """Add a new object; its id must be new. Assistants and threads are added to `project`
        (which later saves never change)."""
        ...

    async def save(self, kind: Kind, obj: AnyObj) -> None:
        """Insert or overwrite the object with this id (never touches its children)."""
        ...

    async def delete(self, kind: Kind, object_id: str) -> bool: ...
    async def active_run(self, thread_id: str) -> Obj | None: ...

    async def append_events(self, rows: Iterable[tuple[str, LoggedEvent, int]]) -> None:
        """Add (run id, event, created_at) rows to the run event log."""
        ...

    async def secret(self, name: str, make: Callable[[], str]) -> str:
        """The stored secret `name`, made with `make()` and stored the first time."""
        ...

    async def prune_events(self, before: int) -> int:
        """Delete the logged events older than `before` of runs that are over; how many went."""
        ...

    async def add_key(self, key: ApiKey) -> None: ...

    async def put_chunk(self, blob_id: str, part: int, seq: int, data: bytes, at: int) -> None:
        """Store one chunk of the bytes of `blob_id` (a file's, or an upload part's): chunks are
        read back in (part, seq) order. `at` (Unix seconds) dates it for prune_blobs."""
        ...

    async def delete_blob(self, blob_id: str) -> None:
        """Delete every chunk of `blob_id`."""
        ...

    async def move_blob(self, blob_id: str, to: str, part: int) -> None:
        """Make the chunks of `blob_id` part number `part` of blob `to` (an upload's part
        becomes a piece of its file, without copying bytes)."""
        ...

    async def add_chunks(
        self, vector_store_id: str, file_id: str, chunks: Sequence[tuple[str, int, bytes | None]]
    ) -> None:
        """Store a file's chunks in a vector store, in order: (text, tokens, embedding)."""
        ...

    async def delete_chunks(self, vector_store_id: str, file_id: str | None = None) -> None:
        """Delete the chunks of one file of a vector store, or of all its files."""
        ...

    async def claim_ingestion(self, owner: str, now: float, until: float) -> str | None:
        """Claim the oldest vector store file waiting for ingestion that no live process holds
        (none does, or its lease passed) for `owner` until `until`; its key, or None."""
        ...

    async def renew_ingestion(self, key: str, owner: str, until: float) -> bool:
        """Extend `owner`'s claim on an ingestion; False if it no longer holds it."""
        ...

    async def holds_ingestion(self, key: str, owner: str) -> bool:
        """Whether `owner` holds the ingestion of `key` (checked where its end is written)."""
        ...

    async def release_ingestions(self, owner: str) -> int:
        """Let go of every ingestion `owner` holds (a process starting again takes them up)."""
        ...

    async def prune_blobs(self, before: int) -> int:
        """Delete the chunks of blobs that no file holds and that got no chunk since `before`
        (what an upload interrupted by a crash left); how many chunks went."""
        ...

    async def claim_idempotency(
        self,
        project: str,
        key: str,
        fingerprint: bytes,
        at: int,
        *,
        expired_before: int,
        abandoned_before: int,
    ) -> IdempotentRecord | None:
        """Claim `key` for a request starting at `at`; the record already there instead. A
        record made before `expired_before`, or a claim still unanswered that was made before
        `abandoned_before` (its process died), is replaced."""
        ...

    async def finish_idempotency(self, project: str, key: str, record: IdempotentRecord) -> None:
        """Answer the claim made at `record.created_at`; nothing if that claim is no longer
        there (it was taken over as abandoned), so a late first request overwrites nothing."""
        ...

    async def release_idempotency(self, project: str, key: str, claimed_at: int) -> None:
        """Forget the claim made at `claimed_at`, whose request failed in a way a retry may
        fix (nothing if it was taken over meanwhile)."""
        ...

    async def prune_idempotency(self, before: int) -> int: ...

    async def revoke_key(self, key_id: str, at: int) -> bool:
        """Mark the key revoked; False when no unrevoked key has this id."""
        ...

    # Run leases: which process executes or holds an active run, until when.

    async def lease_run(self, run_id: str, owner: str, until: float) -> None:
        """Give the run to `owner` until `until` (Unix seconds): done when a run is made."""
        ...

    async def claim_run(
        self,
        run_id: str,
        owner: str,
        now: float,
        until: float,
        *,
        force: bool = False,
        status: str | None = None,
    ) -> Obj | None:
        """Take the active run (in `status`, if given) for `owner`, if it has no owner, is
        `owner`'s already, its lease has passed, or `force`; the run, or None when it is not
        taken. A stop request stays: the new owner carries it out."""
        ...

    async def renew_leases(self, owner: str, until: float) -> list[tuple[str, str | None]]:
        """Extend every active run `owner` still holds; each one's id and stop request."""
        ...

    async def hold_run(self, run_id: str, owner: str) -> Obj | None:
        """The stored run if `owner` holds its lease, locked until the transaction ends (so no
        claim can come between this and the writes that follow); None if it does not."""
        ...

    async def request_stop(self, run_id: str, reason: str) -> bool:
        """Ask the run's owner to stop it (its next lease renewal sees it); False when the
        run is not active."""
        ...


T = TypeVar("T")


class RunStore(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...

    async def write(self, fn: Callable[[StoreTx], Awaitable[T]]) -> T:
        """Run `fn` in one write transaction, committed if it returns, rolled back if it raises."""
        ...

    async def get(self, kind: Kind, object_id: str, *, project: str | None = None) -> Obj | None:
        """The object, or None; with a `project` (assistants and threads), only if it belongs
        to that project."""
        ...

    async def project_of(self, kind: Kind, object_id: str) -> str | None:
        """The project an assistant or thread belongs to; None when there is no such object."""
        ...

    async def api_keys(self) -> list[ApiKey]:
        """Every stored key, revoked ones included, oldest first."""
        ...

    async def list_page(
        self, kind: Kind, query: PageQuery, **filters: str
    ) -> tuple[list[Obj], bool]:
        """One page of `kind` matching `filters` (column=value) and whether more follow."""
        ...

    async def list_all(self, kind: Kind, **filters: str) -> list[Obj]:
        """Every object of `kind` matching `filters`, oldest first."""
        ...

    async def events_after(self, run_id: str, after: int) -> list[LoggedEvent]:
        """The run's logged events with seq > `after`, in order."""
        ...

    async def expired_ids(
        self, kind: Kind, now: int, *, limit: int = 1000, **filters: str
    ) -> list[str]:
        """Ids of objects of `kind` (one with an expires_at column) matching `filters` whose
        expires_at has come, at most `limit` of them."""
        ...

    async def file_chunk_texts(self, vector_store_id: str, file_id: str) -> list[str]:
        """The texts of a file's chunks in a vector store, in order."""
        ...

    async def keyword_search(
        self,
        vector_store_ids: Sequence[str],
        terms: Sequence[str],
        limit: int,
        file_ids: Sequence[str] | None = None,
    ) -> list[tuple[int, float]]:
        """The chunks of these stores (and files) that hold any of `terms`, best first, as
        (chunk seq, score); higher scores are better, on the backend's own scale."""
        ...

    async def chunk_rows(self, seqs: Sequence[int]) -> list[ChunkRow]:
        """The chunks with these seqs (any order)."""
        ...

    async def chunk_stamp(self, vector_store_id: str) -> tuple[int, int]:
        """(how many chunks, version) of a store, (0, 0) before its first: the version moves with
        every chunk added or removed, so a cache of the chunks that saw it is up to date."""
        ...

    async def embeddings_after(
        self, vector_store_id: str, after: int
    ) -> list[tuple[int, str, bytes | None]]:
        """(seq, file_id, embedding) of the store's chunks with seq > `after`, by seq."""
        ...

    async def next_chunk(self, blob_id: str, after: tuple[int, int]) -> Chunk | None:
        """The chunk of `blob_id` that follows position `after` (part, seq), or None at the
        end; (-1, -1) for the first. One chunk at a time: a blob is never read whole."""
        ...

    async def runs_with_status(self, statuses: Iterable[str]) -> list[Obj]: ...

    # Whether several processes may share this store (and so run leases matter).
    shared: bool
    # The database, for log lines: its file, or its URL without a password.
    where: str

    async def orphaned_runs(self, owner: str, now: float, *, own: bool = True) -> list[Obj]:
        """Active runs no live process holds: with no owner, whose lease has passed, or (with
        `own`, when a process starts again) owned by `owner`. A store that only one process
        can use returns every active run."""
        ...
