"""The lease sweep against a real PostgreSQL store: it adopts runs whose process is gone, and
never a run of its own process (held, or being made: a run is held before its row commits)."""

from __future__ import annotations

import pytest

from gateway import objects
from gateway.engine.leases import Leases
from gateway.store import Kind, RunStore, StoreTx
from gateway.wire import Run
from tests.stores import Database


async def _run_leased_to(store: RunStore, owner: str, until: float) -> Run:
    assistant = objects.assistant({"model": "local"})
    thread = objects.thread({})
    run = objects.run(thread_id=thread["id"], assistant=assistant, fields={}, expiry_seconds=600)

    async def write(tx: StoreTx) -> None:
        await tx.insert(Kind.ASSISTANT, assistant)
        await tx.insert(Kind.THREAD, thread)
        await tx.insert(Kind.RUN, run)
        await tx.lease_run(run["id"], owner, until)

    await store.write(write)
    return run


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_the_sweep_adopts_lapsed_runs_and_never_its_own(db: Database) -> None:
    store = db.store()
    await store.open()
    leases = Leases(store, owner="me", seconds=30)
    try:
        mine = await _run_leased_to(store, "me", until=leases.until())
        lapsed = await _run_leased_to(store, "gone", until=1.0)
        alive = await _run_leased_to(store, "other", until=leases.until())
        adopted = [run["id"] for run in await leases.sweep(held=set())]
        assert adopted == [lapsed["id"]]
        assert mine["id"] not in adopted and alive["id"] not in adopted
        assert await leases.sweep(held=set()) == []  # now this process's own, held or not
    finally:
        await store.close()
