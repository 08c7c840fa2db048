"""The registry of a process's active runs (gateway/engine/registry.py): capacity limits in the
gateway, per project and per API key; one active run per thread; forgetting ended runs."""

from __future__ import annotations

from typing import cast

import pytest

from gateway import objects
from gateway.engine.eventlog import EventLog
from gateway.engine.registry import Registry
from gateway.errors import ConflictError, RateLimitError, ServiceUnavailableError
from gateway.metrics import Metrics
from gateway.objects import ACTIVE_RUN_STATUSES, TERMINAL_RUN_STATUSES
from gateway.wire import Run

ASSISTANT = objects.assistant({"model": "m"})


class ReleaseLog:
    """Stands in for the EventLog: records the runs released."""

    def __init__(self) -> None:
        self.released: list[str] = []

    def release(self, run_id: str) -> None:
        self.released.append(run_id)


def registry(
    total: int = 10, per_project: int = 10, per_key: int = 10
) -> tuple[Registry, ReleaseLog, Metrics]:
    log, metrics = ReleaseLog(), Metrics()
    made = Registry(
        cast(EventLog, log),
        metrics,
        max_active_runs=total,
        max_active_runs_per_project=per_project,
        max_active_runs_per_key=per_key,
    )
    return made, log, metrics


def a_run(thread_id: str | None = None) -> Run:
    thread = thread_id or objects.thread({})["id"]
    return objects.run(thread_id=thread, assistant=ASSISTANT, fields={}, expiry_seconds=600)


def active_gauge(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("gateway_active_runs")


def test_register_holds_the_run_and_counts_it() -> None:
    """A registered run is held, found by id and by thread, and counted in the gauge."""
    reg, _, metrics = registry()
    run = a_run()
    handle = reg.register(run, "proj", "key")
    assert reg.get(run["id"]) is handle
    assert reg.held() == {run["id"]}
    assert reg.handles() == [handle]
    assert reg.active_on(run["thread_id"]) is handle
    assert (handle.project, handle.key, handle.run) == ("proj", "key", run)
    assert active_gauge(metrics) == 1.0


def test_gateway_limit_is_overloaded() -> None:
    """At max_active_runs held, a new run is refused with 503 overloaded and Retry-After 1;
    one fewer leaves room."""
    reg, _, _ = registry(total=2)
    reg.register(a_run(), "p1")
    reg.check_capacity("p2")
    reg.register(a_run(), "p2")
    with pytest.raises(ServiceUnavailableError) as caught:
        reg.check_capacity("p3", "k")
    assert (caught.value.code, caught.value.status_code) == ("overloaded", 503)
    assert caught.value.headers == {"Retry-After": "1"}


def test_gateway_limit_is_checked_before_the_project_limit() -> None:
    """When the gateway and the project are both full, the answer is the gateway's 503."""
    reg, _, _ = registry(total=1, per_project=1)
    reg.register(a_run(), "p")
    with pytest.raises(ServiceUnavailableError):
        reg.check_capacity("p")


def test_project_limit_is_too_many_active_runs() -> None:
    """A project at its limit is refused with 429 too_many_active_runs; another project is
    not."""
    reg, _, _ = registry(per_project=2)
    reg.register(a_run(), "p", "k1")
    reg.register(a_run(), "p", "k2")
    with pytest.raises(RateLimitError) as caught:
        reg.check_capacity("p", "k3")
    assert (caught.value.code, caught.value.status_code) == ("too_many_active_runs", 429)
    assert caught.value.retry_after == 1
    reg.check_capacity("other", "k3")


def test_key_limit_is_too_many_active_runs() -> None:
    """An API key at its limit is refused with 429 too_many_active_runs, even in a project with
    room; another key is not."""
    reg, _, _ = registry(per_key=1)
    reg.register(a_run(), "p1", "k")
    with pytest.raises(RateLimitError) as caught:
        reg.check_capacity("p2", "k")
    assert caught.value.code == "too_many_active_runs"
    assert "API key" in caught.value.message
    reg.check_capacity("p2", "other")


def test_runs_without_a_key_count_for_no_key() -> None:
    """Runs registered with no key ("") never count toward a key limit, and a check without a
    key skips the key limit."""
    reg, _, _ = registry(per_key=1)
    reg.register(a_run(), "p")
    reg.register(a_run(), "p")
    reg.check_capacity("p")
    reg.check_capacity("p", "k")


def test_the_open_project_has_its_limit_too() -> None:
    """The project "" (an open server) is limited like any project."""
    reg, _, _ = registry(per_project=1)
    reg.register(a_run())
    with pytest.raises(RateLimitError):
        reg.check_capacity("")


def test_forget_frees_capacity() -> None:
    """Forgetting a run frees its unit in the gateway, its project and its key."""
    reg, _, metrics = registry(total=1, per_project=1, per_key=1)
    handle = reg.register(a_run(), "p", "k")
    reg.forget(handle)
    reg.check_capacity("p", "k")
    assert reg.held() == set()
    assert reg.get(handle.id) is None
    assert active_gauge(metrics) == 0.0


def test_forget_twice_frees_only_once() -> None:
    """Forgetting a run already forgotten changes no count: the project's other runs still
    count."""
    reg, _, metrics = registry(per_project=2, per_key=2)
    first = reg.register(a_run(), "p", "k")
    reg.register(a_run(), "p", "k")
    reg.forget(first)
    reg.forget(first)
    reg.register(a_run(), "p", "k")
    with pytest.raises(RateLimitError):
        reg.check_capacity("p")
    with pytest.raises(RateLimitError):
        reg.check_capacity("other", "k")
    assert active_gauge(metrics) == 2.0


def test_forget_releases_the_log_and_wakes_waiters() -> None:
    """forget() releases the run's events in the log and sets the handle's done event."""
    reg, log, _ = registry()
    handle = reg.register(a_run())
    assert not handle.done.is_set()
    reg.forget(handle)
    assert log.released == [handle.id]
    assert handle.done.is_set()


def test_active_on_finds_the_threads_run_only() -> None:
    """active_on(thread) is the thread's held run, None for another thread and after forget."""
    reg, _, _ = registry()
    handle = reg.register(a_run())
    assert reg.active_on(handle.thread_id) is handle
    assert reg.active_on("thread_other") is None
    reg.forget(handle)
    assert reg.active_on(handle.thread_id) is None


def test_check_no_active_run_is_a_conflict() -> None:
    """A thread with a held run refuses another with ConflictError (400) naming that run;
    other threads, and the thread once its run is forgotten, pass."""
    reg, _, _ = registry()
    handle = reg.register(a_run())
    with pytest.raises(ConflictError) as caught:
        reg.check_no_active_run(handle.thread_id)
    assert caught.value.status_code == 400
    assert handle.id in caught.value.message
    reg.check_no_active_run("thread_other")
    reg.forget(handle)
    reg.check_no_active_run(handle.thread_id)


def test_forgetting_an_older_run_keeps_the_threads_newer_one() -> None:
    """Forgetting a run that is no longer its thread's active run leaves the newer run found
    by thread."""
    reg, _, _ = registry()
    old = reg.register(a_run())
    new = reg.register(a_run(old.thread_id))
    reg.forget(old)
    assert reg.active_on(old.thread_id) is new
    with pytest.raises(ConflictError):
        reg.check_no_active_run(old.thread_id)


@pytest.mark.parametrize("status", sorted(ACTIVE_RUN_STATUSES))
def test_settle_keeps_active_runs(status: str) -> None:
    """settle() keeps a run whose status is active (queued, in_progress, requires_action,
    cancelling)."""
    reg, log, _ = registry()
    handle = reg.register(a_run())
    handle.run["status"] = status
    reg.settle(handle)
    assert reg.get(handle.id) is handle
    assert log.released == []
    assert not handle.done.is_set()


@pytest.mark.parametrize("status", sorted(TERMINAL_RUN_STATUSES))
def test_settle_forgets_ended_runs(status: str) -> None:
    """settle() forgets a run whose status is terminal."""
    reg, log, _ = registry()
    handle = reg.register(a_run())
    handle.run["status"] = status
    reg.settle(handle)
    assert reg.get(handle.id) is None
    assert reg.active_on(handle.thread_id) is None
    assert log.released == [handle.id]
    assert handle.done.is_set()


def test_status_sets_cover_every_run_status() -> None:
    """The active and terminal statuses settle() tells apart are the five terminal and four
    active run statuses."""
    assert {str(s) for s in TERMINAL_RUN_STATUSES} == {
        "completed",
        "failed",
        "cancelled",
        "expired",
        "incomplete",
    }
    assert len(ACTIVE_RUN_STATUSES) == 4
