"""Random sequences of create, cancel, submit tool outputs, expiry and restart, driven through the
run engine on a real SQLite file by hypothesis: no illegal transition is ever logged, no run
fails inside the gateway, and once the actions stop every run reaches a terminal status."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway import events, objects
from gateway.bus.memory import MemoryEventBus
from gateway.engine import RunEngine
from gateway.errors import GatewayError
from gateway.models.local import LocalModelBackend
from gateway.objects import RUN_TRANSITIONS, RunStatus
from gateway.store import Kind, StoreTx
from gateway.store.sqlite import SQLiteRunStore
from gateway.types import Obj
from gateway.wire import Assistant
from tests.waiting import eventually_async

TERMINAL = {"completed", "failed", "cancelled", "expired", "incomplete"}
INTERNAL = "The server had an error while processing the run."
WEATHER = {"type": "function", "function": {"name": "get_weather"}}


class RunLife(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.folder = Path(self.loop.run_until_complete(_tempdir()))
        self.runs: list[tuple[str, str]] = []  # (thread id, run id)
        self.engine: RunEngine | None = None
        self.loop.run_until_complete(self._open())
        self.assistant = self.loop.run_until_complete(self._assistant())

    async def _open(self) -> None:
        self.store = SQLiteRunStore(self.folder / "machine.db")
        await self.store.open()
        self.engine = RunEngine(
            self.store,
            MemoryEventBus(),
            lambda model: LocalModelBackend(delay_ms=3),
            expiry_check_seconds=0.02,
            shutdown_grace_seconds=1,
        )
        await self.engine.start()

    async def _close(self) -> None:
        assert self.engine is not None
        await self.engine.stop()
        await self.store.close()

    async def _assistant(self) -> Assistant:
        assistant = objects.assistant({"model": "local", "tools": [WEATHER]})

        async def write(tx: StoreTx) -> None:
            await tx.insert(Kind.ASSISTANT, assistant)

        await self.store.write(write)
        return assistant

    def _do(self, work: Any) -> Any:
        try:
            return self.loop.run_until_complete(work)
        except GatewayError:
            return None  # refused by a rule of the API (a 4xx): allowed, changes nothing

    @rule(weather=st.booleans(), words=st.integers(min_value=1, max_value=40))
    def create(self, weather: bool, words: int) -> None:
        assert self.engine is not None
        text = ("Weather in Paris? " if weather else "") + " ".join(["w"] * words)
        thread = self._do(
            self.engine.catalog.create_thread(
                {"messages": [{"role": "user", "content": text}]}, project=""
            )
        )
        run = self._do(self.engine.create_run(thread["id"], {"assistant_id": self.assistant["id"]}))
        if run is not None:
            self.runs.append((thread["id"], run["id"]))

    @precondition(lambda self: bool(self.runs))
    @rule(pick=st.integers(min_value=0), pause=st.sampled_from([0.0, 0.01, 0.05]))
    def cancel(self, pick: int, pause: float) -> None:
        assert self.engine is not None
        thread_id, run_id = self.runs[pick % len(self.runs)]
        self._do(asyncio.sleep(pause))  # when the cancel lands is what hypothesis varies
        self._do(self.engine.cancel_run(thread_id, run_id))

    @precondition(lambda self: bool(self.runs))
    @rule(pick=st.integers(min_value=0))
    def submit(self, pick: int) -> None:
        assert self.engine is not None
        thread_id, run_id = self.runs[pick % len(self.runs)]
        run = self._do(self.engine.get_run(thread_id, run_id))
        if run is None or run["status"] != "requires_action":
            return
        calls = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        outputs = [{"tool_call_id": call["id"], "output": "sunny"} for call in calls]
        self._do(self.engine.submit_tool_outputs(thread_id, run_id, outputs))

    @precondition(lambda self: bool(self.runs))
    @rule(pick=st.integers(min_value=0))
    def expire(self, pick: int) -> None:
        """Time passes for one run: its deadline is now."""
        assert self.engine is not None
        _, run_id = self.runs[pick % len(self.runs)]
        handle = self.engine.registry.get(run_id)
        if handle is not None and handle.run.get("expires_at") is not None:
            handle.run["expires_at"] = objects.now() - 1
        self._do(asyncio.sleep(0.05))  # time passing is the rule: the expiry check may run

    @rule(pause=st.sampled_from([0.0, 0.02, 0.1]))
    def wait(self, pause: float) -> None:
        self._do(asyncio.sleep(pause))  # time passing is the rule itself

    @rule()
    def restart(self) -> None:
        self.loop.run_until_complete(self._close())
        self.loop.run_until_complete(self._open())

    @invariant()
    def only_legal_transitions(self) -> None:
        for _, run_id in self.runs:
            statuses = self.loop.run_until_complete(
                _logged_statuses(self.store, self.engine, run_id)
            )
            for before, after in itertools.pairwise(statuses):
                if before != after:
                    assert RunStatus(after) in RUN_TRANSITIONS[RunStatus(before)], statuses

    def teardown(self) -> None:
        try:
            assert self.engine is not None
            self.loop.run_until_complete(self._all_terminal(10.0))
        finally:
            self.loop.run_until_complete(self._close())
            self.loop.close()

    async def _all_terminal(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        statuses: dict[str, str] = {}
        for thread_id, run_id in self.runs:
            run = await eventually_async(
                functools.partial(self._ended, thread_id, run_id, statuses),
                timeout=max(0.0, deadline - loop.time()),
                interval=0.02,
                what=lambda: f"every run to end (now {statuses})",
            )
            error = run.get("last_error") or {}
            assert error.get("message") != INTERNAL, run

    async def _ended(self, thread_id: str, run_id: str, statuses: dict[str, str]) -> Obj | None:
        """The run once it is terminal, else None (its status noted in `statuses`)."""
        assert self.engine is not None
        run = await self.engine.get_run(thread_id, run_id)
        statuses[run_id] = run["status"]
        if run["status"] == "requires_action":
            # Waiting for its client, legitimately (expiry would end it in time): the client
            # gives up.
            with contextlib.suppress(GatewayError):
                await self.engine.cancel_run(thread_id, run_id)
        return run if run["status"] in TERMINAL else None


async def _tempdir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="run-life-")


async def _logged_statuses(
    store: SQLiteRunStore, engine: RunEngine | None, run_id: str
) -> list[str]:
    """The run's statuses in the order its log announced them."""
    assert engine is not None
    replay = await engine.log.replay(run_id, None)
    statuses = []
    for entry in replay.events:
        if entry.name in events.RUN_STATUS_EVENTS.values():
            data = orjson.loads(entry.frame.split(b"\ndata: ", 1)[1])
            statuses.append(data["status"])
    return statuses


TestRunLife = RunLife.TestCase
TestRunLife.settings = settings(
    max_examples=12,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
