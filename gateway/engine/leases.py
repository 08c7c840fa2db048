"""Run leases, for several processes on one shared store (PostgreSQL).

Every active run has an owner: the process that executes it or holds it waiting. The owner
renews its runs' leases every `beat` seconds; a run whose lease has passed belongs to nobody,
and any process adopts it (its sweeper looks every `beat` seconds) the way a restarted process
adopts what it left: an interrupted segment ends `failed`, a queued run starts, a run waiting
for tool outputs waits on. So a run of a process that died is terminal, or waiting again, on
another process within about `seconds` plus `beat`.

The renewal also carries requests from other processes: a stop asked for a run (a cancel made
elsewhere), and the loss of a run another process took over (tool outputs submitted there).
A store that one process uses alone (SQLite) needs none of this: the timers do not run.
"""

from __future__ import annotations

import logging
import os
import socket
import time

from gateway.errors import ConflictError
from gateway.store import RunStore, StoreTx
from gateway.types import Obj

log = logging.getLogger("gateway.leases")


class LeaseLostError(ConflictError):
    """Another process holds this run now (it took it over): this one must not write it."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"Run {run_id} is now handled by another gateway process; retry the request.",
            code="run_moved",
        )
        self.run_id = run_id


def default_owner(port: int) -> str:
    """A process's name in the store: host and port stay the same when it restarts, so that it
    takes its own runs back at once instead of waiting out their leases."""
    return f"{socket.gethostname()}:{port or os.getpid()}"


class Leases:
    """This process's leases in the store: made, renewed, claimed. It calls nothing back: the
    cluster (cluster.py) runs the timers and acts on what renewals and sweeps return."""

    def __init__(self, store: RunStore, *, owner: str, seconds: float) -> None:
        self.store = store
        self.owner = owner
        self.seconds = seconds
        self.beat = min(1.0, seconds / 3)

    @property
    def active(self) -> bool:
        return self.store.shared

    def until(self) -> float:
        return time.time() + self.seconds

    async def renew(self) -> dict[str, str | None]:
        """Extend every active run this process holds; each one's id and stop request."""
        until = self.until()

        async def write(tx: StoreTx) -> list[tuple[str, str | None]]:
            return await tx.renew_leases(self.owner, until)

        return dict(await self.store.write(write))

    async def claim(
        self, run_id: str, *, force: bool = False, status: str | None = None
    ) -> Obj | None:
        now, until = time.time(), self.until()

        async def write(tx: StoreTx) -> Obj | None:
            return await tx.claim_run(run_id, self.owner, now, until, force=force, status=status)

        return await self.store.write(write)

    async def sweep(self, held: set[str]) -> list[Obj]:
        """Claim the active runs nobody holds (their process died, or none was ever set); the
        runs claimed. This process's own are never taken here: it holds them (`held`), or they
        are being made (a run is held before its row commits, and its lease is set with it)."""
        claimed: list[Obj] = []
        for run in await self.store.orphaned_runs(self.owner, time.time(), own=False):
            if run["id"] in held:
                continue
            taken = await self.claim(run["id"])
            if taken is not None:
                log.warning("took over run %s, whose process stopped renewing it", run["id"])
                claimed.append(taken)
        return claimed
