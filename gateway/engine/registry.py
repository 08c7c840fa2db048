"""The active runs of this process: one `RunHandle` each, found by run and by thread, counted
per project and per API key against the limits on active runs.

Every check and change here is synchronous, so an operation that checks and then registers
cannot be interleaved with another: two requests can never both pass the one-active-run-per-
thread check or both take the last unit of capacity.
"""

from __future__ import annotations

from gateway.engine.eventlog import EventLog
from gateway.engine.handle import RunHandle
from gateway.errors import ConflictError, RateLimitError, ServiceUnavailableError
from gateway.metrics import Metrics
from gateway.objects import ACTIVE_RUN_STATUSES
from gateway.wire import Run


class Registry:
    def __init__(
        self,
        log: EventLog,
        metrics: Metrics,
        *,
        max_active_runs: int,
        max_active_runs_per_project: int,
        max_active_runs_per_key: int,
    ) -> None:
        self.log = log
        self.metrics = metrics
        self.max_active_runs = max_active_runs
        self.max_active_runs_per_project = max_active_runs_per_project
        self.max_active_runs_per_key = max_active_runs_per_key
        self._handles: dict[str, RunHandle] = {}
        self._by_thread: dict[str, str] = {}
        self._by_project: dict[str, int] = {}
        self._by_key: dict[str, int] = {}

    def get(self, run_id: str) -> RunHandle | None:
        return self._handles.get(run_id)

    def handles(self) -> list[RunHandle]:
        """Every active run held here, as a list (safe to change the registry while reading)."""
        return list(self._handles.values())

    def held(self) -> set[str]:
        return set(self._handles)

    def active_on(self, thread_id: str) -> RunHandle | None:
        """The thread's active run, if this process holds one."""
        run_id = self._by_thread.get(thread_id)
        return None if run_id is None else self._handles.get(run_id)

    def check_no_active_run(self, thread_id: str) -> None:
        run_id = self._by_thread.get(thread_id)
        if run_id is not None:
            raise ConflictError(f"Thread {thread_id} already has an active run {run_id}.")

    def check_capacity(self, project: str, key: str = "") -> None:
        """Room for one more active run, in the gateway, in `project` and for `key`."""
        if len(self._handles) >= self.max_active_runs:
            raise ServiceUnavailableError(
                f"The gateway is at its limit of {self.max_active_runs} active runs; retry in a "
                "moment.",
                code="overloaded",
                retry_after=1,
            )
        if self._by_project.get(project, 0) >= self.max_active_runs_per_project:
            raise RateLimitError(
                f"This project has {self.max_active_runs_per_project} active runs, its limit; "
                "retry when one has ended.",
                code="too_many_active_runs",
                retry_after=1,
            )
        if key and self._by_key.get(key, 0) >= self.max_active_runs_per_key:
            raise RateLimitError(
                f"This API key has {self.max_active_runs_per_key} active runs, its limit; "
                "retry when one has ended.",
                code="too_many_active_runs",
                retry_after=1,
            )

    def register(self, run: Run, project: str = "", key: str = "") -> RunHandle:
        handle = RunHandle(run=run, project=project, key=key)
        self._handles[run["id"]] = handle
        self.metrics.active_runs.inc()
        self._by_thread[run["thread_id"]] = run["id"]
        _count(self._by_project, project, 1)
        if key:
            _count(self._by_key, key, 1)
        return handle

    def forget(self, handle: RunHandle) -> None:
        """Stop holding the run: its log's memory, its counts; wakes whoever waits for it."""
        self.log.release(handle.id)
        if self._handles.pop(handle.id, None) is not None:
            self.metrics.active_runs.dec()
            _count(self._by_project, handle.project, -1)
            if handle.key:
                _count(self._by_key, handle.key, -1)
        if self._by_thread.get(handle.thread_id) == handle.id:
            del self._by_thread[handle.thread_id]
        handle.done.set()

    def settle(self, handle: RunHandle) -> None:
        """Forget the run if it has ended."""
        if handle.run["status"] not in ACTIVE_RUN_STATUSES:
            self.forget(handle)


def _count(counts: dict[str, int], name: str, change: int) -> None:
    """Add `change` to `counts[name]`, dropping the entry at zero."""
    left = counts.get(name, 0) + change
    if left > 0:
        counts[name] = left
    else:
        counts.pop(name, None)
