"""Work across processes on one shared store (see leases.py): taking over the runs a process
left (at start, and when their leases lapse), renewing this process's leases and acting on what
the renewal brings (a stop asked elsewhere, a waiting run taken over elsewhere), cancels of runs
another process holds, and taking over a waiting run to continue it here.

It calls down into the registry, the driver and the lifecycle; nothing below calls it back.
With a store one process uses alone (SQLite), only the recovery at start does anything.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

from gateway.engine.catalog import Catalog
from gateway.engine.driver import Driver
from gateway.engine.eventlog import EventLog
from gateway.engine.handle import RunHandle, StopReason
from gateway.engine.leases import Leases
from gateway.engine.lifecycle import Lifecycle
from gateway.engine.registry import Registry
from gateway.errors import ConflictError
from gateway.objects import ACTIVE_RUN_STATUSES, RunStatus
from gateway.periodic import Periodic
from gateway.store import Kind, RunStore, StoreTx
from gateway.types import Obj
from gateway.wire import Run

log = logging.getLogger("gateway.engine")


class Cluster:
    def __init__(
        self,
        store: RunStore,
        catalog: Catalog,
        log: EventLog,
        lc: Lifecycle,
        registry: Registry,
        driver: Driver,
        leases: Leases,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.log = log
        self.lc = lc
        self.registry = registry
        self.driver = driver
        self.leases = leases
        self._renewer = Periodic("run-leases", leases.beat, self._renew, "could not renew leases")
        self._sweeper = Periodic("run-orphans", leases.beat, self._sweep, "could not adopt runs")

    @property
    def shared(self) -> bool:
        return self.store.shared

    async def start(self) -> None:
        await self._recover()
        if self.leases.active:
            self._renewer.start()
            self._sweeper.start()

    async def stop(self) -> None:
        await self._renewer.stop()
        await self._sweeper.stop()

    # --- taking runs over -------------------------------------------------------------------

    async def _recover(self) -> None:
        """Take over the runs a previous process left active, so that none stays active
        forever. With a shared store, only those no live process holds (see leases.py)."""
        force = not self.store.shared  # one process per SQLite file: every active run is ours
        for run in await self.store.orphaned_runs(self.leases.owner, time.time()):
            claimed = await self.leases.claim(run["id"], force=force)
            if claimed is not None:
                await self._adopt(claimed)

    async def _sweep(self) -> None:
        for run in await self.leases.sweep(self.registry.held()):
            await self._adopt(run)

    async def _adopt(self, run: Obj, *, orphan: bool = True) -> None:
        """Hold an active run whose process is gone (`orphan`): an interrupted segment ends
        failed, a cancelling run ends cancelled, a queued run starts, a waiting run waits on.
        Not an orphan: a waiting run taken from a live process, whose log ends its segment
        (even if that end is not stored yet)."""
        await self.log.attach(run["id"])
        project = await self.store.project_of(Kind.THREAD, run["thread_id"])
        handle = self.registry.register(cast(Run, run), project or "")
        await self.lc.restore(handle)
        status = run["status"]
        guard = self.driver.guard
        if status == RunStatus.QUEUED:
            self.driver.spawn(handle)
        elif status == RunStatus.CANCELLING:
            await guard(self.lc.end_cancelled(handle), handle)
            self.registry.settle(handle)
        elif status == RunStatus.IN_PROGRESS:
            await guard(
                self.lc.end_failed(handle, "The run was interrupted by a restart of the gateway."),
                handle,
            )
            self.registry.settle(handle)
        elif orphan and not self.log.at_rest(run["id"]):
            # Waiting in requires_action, but the crash lost the end of its segment: mark
            # it, so that its streams end instead of waiting for events that never come.
            await guard(self.lc.end_segment(handle, (), list), handle)

    async def take_over_waiting(self, run_id: str) -> RunHandle | None:
        """Take a run waiting for tool outputs on another process (nothing runs there; that
        one lets go at its next renewal) to continue it here; its handle, or None."""
        claimed = await self.leases.claim(
            run_id, force=True, status=RunStatus.REQUIRES_ACTION.value
        )
        if claimed is None:
            return None
        await self._adopt(claimed, orphan=False)
        return self.registry.get(run_id)

    # --- renewals ---------------------------------------------------------------------------

    async def _renew(self) -> None:
        """Renew; then carry out stops asked elsewhere, and let go of waiting runs that another
        process has taken over (tool outputs submitted there)."""
        renewed = await self.leases.renew()
        for handle in self.registry.handles():
            if handle.id not in renewed:
                waiting = handle.task is None and handle.run["status"] == RunStatus.REQUIRES_ACTION
                if waiting and handle.stop_reason is None:
                    log.info("run %s was taken over by another process", handle.id)
                    self.registry.forget(handle)
            elif renewed[handle.id] == StopReason.CANCEL.value:
                self.driver.stop_run(handle, StopReason.CANCEL)

    # --- runs held elsewhere ----------------------------------------------------------------

    async def active_elsewhere(self, thread_id: str) -> Obj | None:
        """The thread's active run when another process may hold it (a shared store)."""
        if not self.store.shared:
            return None

        async def active(tx: StoreTx) -> Obj | None:
            return await tx.active_run(thread_id)

        return await self.store.write(active)

    async def cancel_elsewhere(self, thread_id: str, run_id: str) -> Obj:
        """Cancel a run another process holds: ask its owner (it sees the request at its next
        lease renewal) and wait, bounded, until the run is terminal."""

        async def request(tx: StoreTx) -> bool:
            return await tx.request_stop(run_id, StopReason.CANCEL.value)

        if await self.store.write(request):
            deadline = time.monotonic() + self.driver.grace_seconds + self.leases.beat
            while time.monotonic() < deadline:
                run = await self.catalog.get_run(thread_id, run_id)
                if run["status"] not in ACTIVE_RUN_STATUSES:
                    return run
                await asyncio.sleep(0.05)
        run = await self.catalog.get_run(thread_id, run_id)
        if run["status"] not in ACTIVE_RUN_STATUSES and run["status"] != RunStatus.CANCELLED:
            raise ConflictError(f"Cannot cancel run with status '{run['status']}'.")
        return run
