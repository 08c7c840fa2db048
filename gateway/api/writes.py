"""Read-modify-write and delete of one stored object, answering 404 when it is gone."""

from __future__ import annotations

from collections.abc import Callable

from gateway.errors import not_found
from gateway.store import Kind, RunStore, StoreTx
from gateway.types import Obj


async def modify(store: RunStore, kind: Kind, object_id: str, apply: Callable[[Obj], None]) -> Obj:
    """Apply `apply` to the stored object inside one transaction and return the saved object."""

    async def write(tx: StoreTx) -> Obj:
        obj = await tx.get(kind, object_id)
        if obj is None:
            raise not_found(_LABELS[kind], object_id)
        apply(obj)
        await tx.save(kind, obj)
        return obj

    return await store.write(write)


async def delete(store: RunStore, kind: Kind, object_id: str) -> None:
    async def write(tx: StoreTx) -> bool:
        return await tx.delete(kind, object_id)

    if not await store.write(write):
        raise not_found(_LABELS[kind], object_id)


_LABELS = {
    Kind.ASSISTANT: "assistant",
    Kind.THREAD: "thread",
    Kind.MESSAGE: "message",
    Kind.RUN: "run",
    Kind.STEP: "run step",
}
