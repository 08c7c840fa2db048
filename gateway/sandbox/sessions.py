"""The code_interpreter sessions of one gateway process: one sandboxed kernel per thread, kept
warm between calls, bounded in number, ended when idle, all ended at shutdown.

A thread's calls run one at a time in its session (its state carries over); a session that
ended (a limit, a crash, this process restarted) is started afresh at the next call, with the
thread's files put back in /mnt/data. When every session is busy, a call waits for one to
become free, at most `wait_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from gateway.sandbox.cgroups import Cgroups
from gateway.sandbox.kernel import DataFile, Kernel, Result, SandboxError, probe
from gateway.sandbox.limits import Limits

log = logging.getLogger("gateway.sandbox")

# A file to put in /mnt/data: (file id, name, its bytes chunk by chunk), read when a session
# starts or the file is new to it.
FileSource = tuple[str, str, Callable[[], AsyncIterator[bytes]]]


class SessionsBusyError(Exception):
    """Every session is running code and none became free in time."""


@dataclass
class _Session:
    kernel: Kernel
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    files: set[str] = field(default_factory=set)  # ids of the files put in /mnt/data


@dataclass
class CallOutcome:
    result: Result
    files: list[DataFile]  # files the call wrote or changed in /mnt/data
    cold: bool  # the session was started for this call


class Sessions:
    def __init__(
        self,
        limits: Limits,
        *,
        max_sessions: int = 8,
        idle_seconds: float = 3600.0,
        wait_seconds: float = 30.0,
        cgroups: Cgroups | None = None,
    ) -> None:
        self.limits = limits
        self.max_sessions = max_sessions
        self.idle_seconds = idle_seconds
        self.wait_seconds = wait_seconds
        self.cgroups = cgroups
        self._sessions: OrderedDict[str, _Session] = OrderedDict()  # least recently used first
        self._freed = asyncio.Condition()
        self._closed = False
        # Why sessions cannot run here (set by check()), or None.
        self.unavailable: str | None = None
        self._check: asyncio.Task[str | None] | None = None

    def check(self) -> asyncio.Task[str | None]:
        """Try the sandbox once, in the background: the task's result is None when it works,
        else why not (kept in `unavailable`). Calls wait for it."""
        if self._check is None:
            self._check = asyncio.create_task(self._probe(), name="code-interpreter-check")
        return self._check

    async def _probe(self) -> str | None:
        self.unavailable = await probe(self.limits)
        return self.unavailable

    def __len__(self) -> int:
        return len(self._sessions)

    async def call(self, key: str, code: str, files: Sequence[FileSource]) -> CallOutcome:
        """Run `code` in the session of `key` (a thread), with `files` in its /mnt/data."""
        await self.check()
        if self.unavailable is not None:
            raise SandboxError(self.unavailable)
        session, cold = await self._session(key)
        async with session.lock:
            try:
                if not session.kernel.alive:
                    await session.kernel.close()
                    session.kernel = Kernel(self.limits, self.cgroups)
                    session.files.clear()
                    cold = True
                if cold:
                    await session.kernel.start()
                refused = []
                for file_id, name, chunks in files:
                    if file_id not in session.files:
                        try:
                            await session.kernel.put(name, chunks())
                        except OSError as exc:  # no room left in /mnt/data
                            refused.append(f"[{name} could not be put in /mnt/data: {exc}]\n")
                            continue
                        session.files.add(file_id)
                session.kernel.changed()  # what is there now is not the call's output
                result = await session.kernel.run(code)
                result.logs = "".join(refused) + result.logs
                out = session.kernel.changed() if session.kernel.alive else []
            except asyncio.CancelledError:
                # A cancelled run stops its code at once: the session ends with it.
                await self._end(key, session)
                raise
            except SandboxError:
                await self._end(key, session)
                raise
            if not session.kernel.alive:
                await self._end(key, session)
            return CallOutcome(result, out, cold)

    async def _session(self, key: str) -> tuple[_Session, bool]:
        """The session of `key`, made (not yet started) when it has none; waits for room."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            if self._closed:
                raise SandboxError("the gateway is shutting down")
            session = self._sessions.get(key)
            if session is not None:
                self._sessions.move_to_end(key)
                return session, False
            if len(self._sessions) < self.max_sessions or await self._evict_idle():
                session = _Session(Kernel(self.limits, self.cgroups))
                self._sessions[key] = session
                return session, True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SessionsBusyError(
                    f"all {self.max_sessions} code_interpreter sessions are busy"
                )
            async with self._freed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._freed.wait(), min(remaining, 1.0))

    async def _evict_idle(self) -> bool:
        """End the least recently used session that is not running code; True if one ended."""
        for key, session in list(self._sessions.items()):
            if not session.lock.locked():
                await self._end(key, session)
                return True
        return False

    async def _end(self, key: str, session: _Session) -> None:
        if self._sessions.get(key) is session:
            del self._sessions[key]
        await session.kernel.close()
        async with self._freed:
            self._freed.notify_all()

    async def end(self, key: str) -> None:
        """End the session of `key` (a deleted thread's), if there is one."""
        session = self._sessions.get(key)
        if session is not None:
            await self._end(key, session)

    async def reap(self) -> int:
        """End the sessions idle longer than idle_seconds; how many ended."""
        now = time.monotonic()
        idle = [
            (key, s)
            for key, s in self._sessions.items()
            if not s.lock.locked() and now - s.kernel.used_at > self.idle_seconds
        ]
        for key, session in idle:
            await self._end(key, session)
        return len(idle)

    async def close(self) -> None:
        """End every session (at shutdown)."""
        self._closed = True
        if self._check is not None and not self._check.done():
            self._check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._check
        for key, session in list(self._sessions.items()):
            await self._end(key, session)
