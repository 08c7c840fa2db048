"""code_interpreter's sandbox: cold start, warm call latency, calls per second, memory per idle
session and a run end to end through the gateway, each against an unsandboxed baseline
measured in the same run.

    .venv/bin/python loadtests/code_interpreter.py [--quick] [--json out.json]

The kernels are the gateway's own `gateway.sandbox.kernel.Kernel`, as the gateway starts them
(`Limits()` defaults; a cgroup per session where `Cgroups.find()` finds a usable hierarchy),
driven in this process. The baselines run the same client code (`Kernel.run`) against:

- unsandboxed: the very kernel command the sandbox runs (`python -I -m ipykernel_launcher`,
  the same flags, environment and ipc sockets), started directly: no prlimit, no bwrap, no
  cgroup. Every ratio is against this one: it is what the sandbox adds.
- jupyter_default (cold start and warm latency only): Jupyter's own way, `AsyncKernelManager`
  with the venv's `python3` kernelspec (TCP on loopback, its default).

It measures, in this order, printing one JSON record per measurement and then a table:

1. cold_start: `start()` then the first `run("print(1)")` result, N times a side (10; 3 with
   --quick), one at a time, the sides in turn, after one unmeasured start per side. With a
   cgroup, also a sandbox without one (`Kernel(limits, None)`), to show what the cgroup costs.
2. warm_latency: `run("x = 1 + 1")` and `run("print(sum(range(1000)))")`, 200 times each (50
   with --quick) on one warm kernel a side, the sides alternated call by call, after 20
   unmeasured calls.
3. throughput: 1 and then 4 warm sessions a side, each calling `run("x = 1 + 1")` in a loop,
   all of a side at once, 10 s a side in 5 rounds (3 s in 3 with --quick), the sides taking
   turns round by round: calls per second, the latency under that load, and the CPU of this
   process (the client), of the kernels' processes and of the whole machine.
4. memory: one session at a time (PSS splits shared pages between the processes that map
   them) started, then after `import numpy, pandas, matplotlib.pyplot`: RSS, PSS and USS
   (private pages) summed over every process of the session (the bwrap process and its
   descendants, found through /proc/*/stat), and, in the sandbox, its cgroup's memory
   (v1: memory.usage_in_bytes and memory.stat; v2: memory.current and memory.stat). 3 rounds
   (1 with --quick), the median kept; and the session's CPU over 1 s idle.
5. gateway: a gateway subprocess (`--code-interpreter bwrap`, the built-in model unpaced, a
   fresh SQLite file, sessions enough for every thread so none is evicted), assistants on
   model `local` with `tools=[{"type": "code_interpreter"}]` and with no tools. Per pair: a
   create-thread-and-run whose message holds a fenced `print(6*7)` (a cold session: the
   sandbox starts for it), then a second run on that thread (warm: a new message first, the
   clock starts at the run's POST); the same two on the no-tools assistant (the baseline).
   Runs are not streamed: polled every 2 ms until they end (every 10 ms would round a
   no-tools run, about 5 ms here, up to 15). 10 pairs (3 with --quick), after
   one unmeasured pair. The gateway's own code_interpreter call times (GET /metrics) show
   how much of a run the sandbox call is.

Bounded: every start, call and request has a time limit. Every kernel is closed and every
folder removed at the end, also on error or Ctrl-C; the gateway is stopped (SIGTERM, then
SIGKILL) and its sandboxes checked gone. Traffic goes to 127.0.0.1 only. A cgroup this run
made that is still there after its kernel closed is counted (a leak to report) and removed
at the end.
The whole run takes about 2 minutes on the 2-core machine; --quick about 50 seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import math
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop
from benchkit import clients, report
from benchkit.knowledge_client import ms_summary
from benchkit.servers import PYTHON, Fleet, Server
from benchkit.stats import Record, quantile
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager

from gateway.sandbox.cgroups import Cgroup, Cgroups
from gateway.sandbox.kernel import (
    _ENV,
    START_SECONDS,
    Kernel,
    Result,
    connection_file,
    kernel_argv,
)
from gateway.sandbox.limits import Limits

SANDBOXED, NO_CGROUP, UNSANDBOXED, JUPYTER = (
    "sandboxed",
    "sandboxed_no_cgroup",
    "unsandboxed",
    "jupyter_default",
)
SIDE_TITLES = {
    SANDBOXED: "sandboxed (bwrap + prlimit + cgroup, as the gateway)",
    NO_CGROUP: "sandboxed without a cgroup",
    UNSANDBOXED: "unsandboxed (same kernel command, ipc)",
    JUPYTER: "jupyter default (AsyncKernelManager, tcp)",
}
FIRST_CODE, FIRST_LOGS = "print(1)", "1\n"
WARM_CODES = {"x = 1 + 1": "", "print(sum(range(1000)))": "499500\n"}
WARM_UP_CALLS = 20
LOOP_CODE = "x = 1 + 1"
THROUGHPUT_SESSIONS = (1, 4)
IMPORTS = "import numpy, pandas, matplotlib.pyplot"
SETTLE_SECONDS = 0.5  # after the imports, before memory is read
CGROUP_GONE_SECONDS = 5.0  # how long a cgroup left by close() may take to empty
E2E_CODE = "```python\nprint(6*7)\n```"
# Polled this often: the 10 ms of benchkit's wait_status would round a no-tools run (about
# 5 ms here) up to 15 ms, hiding what a warm code call adds.
E2E_POLL_SECONDS = 0.002
E2E_RUN_SECONDS = 120.0
IDLE_CPU_SECONDS = 1.0  # an idle session's CPU is read over this long
CALL_SECONDS = 60.0  # no single measured call may take longer
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Plan:
    cold_starts: int
    warm_calls: int
    throughput_seconds: float  # a side, over all rounds
    throughput_rounds: int
    memory_rounds: int
    e2e_pairs: int

    @classmethod
    def full(cls) -> Plan:
        return cls(10, 200, 10.0, 5, 3, 10)

    @classmethod
    def quick(cls) -> Plan:
        return cls(3, 50, 3.0, 3, 1, 3)


def say(message: str) -> None:
    print(f"[code_interpreter] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="code_interpreter.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--json", type=Path, help="write all records to this file")
    parser.add_argument("--quick", action="store_true", help="a smaller run, to try the script")
    parser.add_argument("--skip-gateway", action="store_true", help="no end-to-end measurement")
    return parser.parse_args(argv)


# --- the baselines' kernels -----------------------------------------------------------------


class UnsandboxedKernel(Kernel):
    """The sandbox's kernel command, environment and ipc sockets, started directly: no prlimit,
    no bwrap, no cgroup. HOME and the IPython and matplotlib folders are in its own folder (the
    sandbox's /tmp is private; the host's is not)."""

    async def start(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="ci-bench-kernel-")
        os.chmod(self._dir, 0o700)
        connection = connection_file(self._dir)
        data = os.path.join(self._dir, "data")
        os.mkdir(data)
        env = _ENV | {
            "HOME": self._dir,
            "IPYTHONDIR": os.path.join(self._dir, ".ipython"),
            "MPLCONFIGDIR": os.path.join(self._dir, ".matplotlib"),
        }
        try:
            self._process = await asyncio.create_subprocess_exec(
                *kernel_argv(connection),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                cwd=data,
                env=env,
                start_new_session=True,
            )
            self._child_pid = self._process.pid
            await self.attach(connection)
        except BaseException:
            await self.close()
            raise
        self.started_at = self.used_at = time.monotonic()


class JupyterKernel(Kernel):
    """Jupyter's default: AsyncKernelManager with the `python3` kernelspec (TCP on loopback),
    unsandboxed. Only start, alive and close differ; calls go through `Kernel.run`."""

    def __init__(self, limits: Limits) -> None:
        super().__init__(limits)
        self._manager: AsyncKernelManager | None = None

    @property
    def alive(self) -> bool:
        popen = self._popen()
        return popen is not None and popen.poll() is None

    def _popen(self) -> Any:
        manager = self._manager
        if manager is None or manager.provisioner is None:
            return None
        return getattr(manager.provisioner, "process", None)

    def root_pid(self) -> int:
        popen = self._popen()
        return int(popen.pid) if popen is not None else 0

    async def start(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="ci-bench-jupyter-")
        manager = AsyncKernelManager(
            kernel_name="python3", connection_file=os.path.join(self._dir, "kernel.json")
        )
        self._manager = manager
        try:
            await manager.start_kernel(
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=self._dir
            )
            self._child_pid = self.root_pid()
            client = manager.client()
            assert isinstance(client, AsyncKernelClient)
            client.start_channels()
            self._client = client
            await asyncio.wait_for(client.wait_for_ready(timeout=START_SECONDS), START_SECONDS)
        except BaseException:
            await self.close()
            raise
        self.started_at = self.used_at = time.monotonic()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.stop_channels()
        manager, self._manager = self._manager, None
        if manager is not None and manager.has_kernel:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(manager.shutdown_kernel(now=True), 10)
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = ""


def root_pid(kernel: Kernel) -> int:
    """The first process of a session: bwrap's (the sandbox), the kernel's (unsandboxed)."""
    if isinstance(kernel, JupyterKernel):
        return kernel.root_pid()
    return kernel._process.pid if kernel._process is not None else 0


# --- the kernels of this run, all closed at the end -----------------------------------------


class TrackedCgroups(Cgroups):
    """The gateway's cgroups, keeping each one it makes: the run removes them at the end, even
    that of a start that failed or was cancelled."""

    def __init__(self, found: Cgroups) -> None:
        super().__init__(found.parents, found.version)
        self.made: list[Cgroup] = []

    def make(self, name: str, *, processes: int, memory_bytes: int) -> Cgroup:
        cgroup = super().make(name, processes=processes, memory_bytes=memory_bytes)
        self.made.append(cgroup)
        return cgroup


@dataclass
class Lab:
    """Starts and closes the run's kernels; closes whatever is left at the end (`close_all`),
    or, at interpreter exit, kills what is still running (`emergency`)."""

    limits: Limits
    cgroups: TrackedCgroups | None
    live: list[Kernel] = field(default_factory=list)
    cgroups_left_by_close: int = 0
    cgroups_not_removed: int = 0

    @property
    def made_cgroups(self) -> list[Cgroup]:
        return self.cgroups.made if self.cgroups is not None else []

    def make(self, side: str) -> Kernel:
        if side == SANDBOXED:
            return Kernel(self.limits, self.cgroups)
        if side == NO_CGROUP:
            return Kernel(self.limits, None)
        if side == UNSANDBOXED:
            return UnsandboxedKernel(self.limits)
        if side == JUPYTER:
            return JupyterKernel(self.limits)
        raise ValueError(side)

    async def start(self, side: str) -> Kernel:
        kernel = self.make(side)
        self.live.append(kernel)
        try:
            await asyncio.wait_for(kernel.start(), START_SECONDS + 10)
        except BaseException:
            await self.close(kernel)
            raise
        return kernel

    async def close(self, kernel: Kernel) -> None:
        cgroup = kernel._cgroup
        if kernel in self.live:
            self.live.remove(kernel)
        await kernel.close()
        if cgroup is not None and any(path.exists() for path in cgroup.paths):
            self.cgroups_left_by_close += 1

    async def close_all(self) -> None:
        while self.live:
            await self.close(self.live[-1])
        deadline = time.monotonic() + CGROUP_GONE_SECONDS
        for cgroup in self.made_cgroups:
            while any(path.exists() for path in cgroup.paths) and time.monotonic() < deadline:
                cgroup.remove()
                if any(path.exists() for path in cgroup.paths):
                    await asyncio.sleep(0.05)
        self.cgroups_not_removed = sum(
            any(path.exists() for path in cgroup.paths) for cgroup in self.made_cgroups
        )

    def emergency(self) -> None:
        """At exit, if `close_all` did not run: kill every session's process group, remove
        its folder and cgroup."""
        for kernel in self.live:
            pid = root_pid(kernel)
            if pid:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
            if kernel._dir:
                shutil.rmtree(kernel._dir, ignore_errors=True)
        time.sleep(0.2 if self.live else 0)
        for cgroup in self.made_cgroups:
            cgroup.remove()
        self.live.clear()


async def call(kernel: Kernel, code: str, expected: str | None = None) -> tuple[float, Result]:
    """One timed call, in ms; raises unless it ran cleanly (and printed `expected`, if given)."""
    started = time.perf_counter()
    result = await asyncio.wait_for(kernel.run(code), CALL_SECONDS)
    elapsed = 1000 * (time.perf_counter() - started)
    if result.error or result.limit is not None:
        raise RuntimeError(f"{code!r} failed ({result.limit}): {result.logs[-300:]}")
    if expected is not None and result.logs != expected:
        raise RuntimeError(f"{code!r} printed {result.logs[:200]!r}, not {expected!r}")
    return elapsed, result


def rotated(sides: list[str], turn: int) -> list[str]:
    """The sides in turn, starting from a different one each round."""
    shift = turn % len(sides)
    return sides[shift:] + sides[:shift]


def ratio(b: float, a: float) -> float:
    return round(b / a, 2) if a and not math.isnan(a) and not math.isnan(b) else math.nan


def p50_p99(summary: dict[str, float]) -> str:
    return f"{summary['p50']:,.1f} / {summary['p99']:,.1f} ms"


# --- /proc ----------------------------------------------------------------------------------


def descendants(root: int) -> list[int]:
    """`root` and every process below it, from the parent links of /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        parent = int(text[text.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time of processes (all their threads); gone ones count 0."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def smaps(pid: int) -> dict[str, int]:
    """Rss, Pss and Uss (private clean + dirty) of one process, in KiB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[name] = int(parts[0])
    return {
        "rss": values.get("Rss", 0),
        "pss": values.get("Pss", 0),
        "uss": values.get("Private_Clean", 0) + values.get("Private_Dirty", 0),
    }


def session_memory(kernel: Kernel) -> dict[str, Any]:
    """Memory of every process of a session (KiB) and, in a sandbox, of its cgroup (bytes)."""
    processes: list[dict[str, Any]] = []
    for pid in descendants(root_pid(kernel)):
        try:
            figures = smaps(pid)
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        processes.append({"pid": pid, "name": name} | figures)
    memory: dict[str, Any] = {
        key + "_kib": sum(p[key] for p in processes) for key in ("rss", "pss", "uss")
    }
    memory["processes"] = processes
    if kernel._cgroup is not None:
        memory["cgroup"] = cgroup_memory(kernel._cgroup)
    return memory


def cgroup_memory(cgroup: Cgroup) -> dict[str, int] | None:
    """The cgroup's memory in bytes: all it is charged for, anonymous, file pages, tmpfs."""
    for path in cgroup.paths:
        stat_file = path / "memory.stat"
        if not stat_file.exists():
            continue
        stat = {}
        for line in stat_file.read_text().splitlines():
            name, _, value = line.partition(" ")
            if value.strip().isdigit():
                stat[name] = int(value)
        if (path / "memory.usage_in_bytes").exists():  # v1
            usage = int((path / "memory.usage_in_bytes").read_text())
            return {
                "usage_bytes": usage,
                "anon_bytes": stat.get("rss", 0),
                "file_bytes": stat.get("cache", 0),
                "shmem_bytes": stat.get("shmem", 0),
            }
        usage = int((path / "memory.current").read_text())  # v2
        return {
            "usage_bytes": usage,
            "anon_bytes": stat.get("anon", 0),
            "file_bytes": stat.get("file", 0),
            "shmem_bytes": stat.get("shmem", 0),
        }
    return None


def mib(kib: float) -> str:
    return f"{kib / 1024:,.1f} MiB"


# --- 1. cold start --------------------------------------------------------------------------


async def cold_start(lab: Lab, plan: Plan) -> Record:
    sides = [SANDBOXED, *([NO_CGROUP] if lab.cgroups is not None else []), UNSANDBOXED, JUPYTER]
    first: dict[str, list[float]] = {side: [] for side in sides}
    start: dict[str, list[float]] = {side: [] for side in sides}
    close: dict[str, list[float]] = {side: [] for side in sides}
    for turn in range(plan.cold_starts + 1):  # the first round is a warm-up
        for side in rotated(sides, turn):
            started = time.perf_counter()
            kernel = await lab.start(side)
            try:
                ready = time.perf_counter()
                await call(kernel, FIRST_CODE, FIRST_LOGS)
                done = time.perf_counter()
            finally:
                closing = time.perf_counter()
                await lab.close(kernel)
                closed = time.perf_counter()
            if turn:
                first[side].append(1000 * (done - started))
                start[side].append(1000 * (ready - started))
                close[side].append(1000 * (closed - closing))
    shown = {side: ms_summary(first[side]) for side in sides}
    record = Record(
        "cold_start",
        "Cold start",
        {
            "runs_per_side": plan.cold_starts,
            "code": FIRST_CODE,
            "cgroups": lab.cgroups.describe() if lab.cgroups is not None else "none",
            "order": "sides in turn, rotated each round; one unmeasured round first",
        },
    )
    record.metrics = {
        side: {
            "start_to_first_result_ms": shown[side],
            "start_ms": ms_summary(start[side]),
            "close_ms": ms_summary(close[side]),
        }
        for side in sides
    }
    base, box, jupyter = shown[UNSANDBOXED], shown[SANDBOXED], shown[JUPYTER]
    record.metrics["ratios"] = {
        "sandboxed/unsandboxed": {q: ratio(box[q], base[q]) for q in ("p50", "p99")},
        "sandboxed/jupyter_default": {q: ratio(box[q], jupyter[q]) for q in ("p50", "p99")},
    }
    for side in sides:
        record.reported[f"start to first result p50 / p99: {SIDE_TITLES[side]}"] = p50_p99(
            shown[side]
        )
    record.reported["ratio sandboxed / unsandboxed, p50 (p99)"] = (
        f"{ratio(box['p50'], base['p50']):.2f}x ({ratio(box['p99'], base['p99']):.2f}x)"
    )
    record.reported["ratio sandboxed / jupyter default, p50 (p99)"] = (
        f"{ratio(box['p50'], jupyter['p50']):.2f}x ({ratio(box['p99'], jupyter['p99']):.2f}x)"
    )
    record.reported["close() p50: sandboxed / unsandboxed"] = (
        f"{quantile(close[SANDBOXED], 0.5):.1f} / {quantile(close[UNSANDBOXED], 0.5):.1f} ms"
    )
    if NO_CGROUP in shown:
        record.reported["what the cgroup adds, p50"] = (
            f"{box['p50'] - shown[NO_CGROUP]['p50']:+.1f} ms"
        )
    return record


# --- 2. warm call latency -------------------------------------------------------------------


async def warm_latency(lab: Lab, plan: Plan) -> Record:
    sides = [SANDBOXED, UNSANDBOXED, JUPYTER]
    kernels: dict[str, Kernel] = {}
    try:
        for side in sides:
            kernels[side] = await lab.start(side)
        metrics: dict[str, Any] = {}
        record = Record(
            "warm_latency",
            "Warm call latency",
            {
                "calls_per_side_and_code": plan.warm_calls,
                "warm_up_calls": WARM_UP_CALLS,
                "order": "sides alternated call by call",
            },
        )
        for code, expected in WARM_CODES.items():
            times: dict[str, list[float]] = {side: [] for side in sides}
            for side in sides:
                for _ in range(WARM_UP_CALLS):
                    await call(kernels[side], code, expected)
            for turn in range(plan.warm_calls):
                for side in rotated(sides, turn):
                    elapsed, _ = await call(kernels[side], code, expected)
                    times[side].append(elapsed)
            shown = {side: ms_summary(times[side]) for side in sides}
            box, base, jupyter = shown[SANDBOXED], shown[UNSANDBOXED], shown[JUPYTER]
            metrics[code] = shown | {
                "ratio_p50_sandboxed/unsandboxed": ratio(box["p50"], base["p50"]),
                "ratio_p99_sandboxed/unsandboxed": ratio(box["p99"], base["p99"]),
                "ratio_p50_sandboxed/jupyter_default": ratio(box["p50"], jupyter["p50"]),
            }
            for side in sides:
                record.reported[f"{code}: p50 / p99, {SIDE_TITLES[side]}"] = p50_p99(shown[side])
            record.reported[f"{code}: ratio of p50s sandboxed / unsandboxed (/ jupyter)"] = (
                f"{ratio(box['p50'], base['p50']):.2f}x ({ratio(box['p50'], jupyter['p50']):.2f}x)"
            )
        record.metrics = metrics
        return record
    finally:
        for kernel in kernels.values():
            await lab.close(kernel)


# --- 3. calls per second --------------------------------------------------------------------


@dataclass
class Burst:
    """What the sessions of one side did over the rounds so far."""

    calls_per_session: list[int]
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    kernels_cpu: float = 0.0
    client_cpu: float = 0.0
    busy_ticks: int = 0
    total_ticks: int = 0
    round_rates: list[float] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        calls = sum(self.calls_per_session)
        wall = max(self.wall, 1e-9)
        return {
            "sessions": len(self.calls_per_session),
            "calls": calls,
            "wall_seconds": round(self.wall, 3),
            "calls_per_s": round(calls / wall, 1),
            "calls_per_s_by_round": [round(rate, 1) for rate in self.round_rates],
            "calls_per_session": self.calls_per_session,
            "kernel_cpu_ms_per_call": round(1000 * self.kernels_cpu / max(1, calls), 3),
            "client_cpu_ms_per_call": round(1000 * self.client_cpu / max(1, calls), 3),
            "latency_ms": ms_summary(self.latencies),
            "cpu_share_of_one_core": {
                "client": round(self.client_cpu / wall, 3),
                "kernels": round(self.kernels_cpu / wall, 3),
            },
            "machine_busy": round(self.busy_ticks / max(1, self.total_ticks), 3),
        }


async def throughput(lab: Lab, plan: Plan) -> Record:
    record = Record(
        "throughput",
        "Calls per second",
        {
            "code": LOOP_CODE,
            "seconds_per_side": plan.throughput_seconds,
            "rounds": plan.throughput_rounds,
            "order": "the sides alternated round by round, both sides' sessions warm throughout",
            "sessions": list(THROUGHPUT_SESSIONS),
            "cpus": os.cpu_count(),
            "client": "this process, one event loop",
        },
    )
    sides = [SANDBOXED, UNSANDBOXED]
    rates: dict[tuple[str, int], float] = {}
    for count in THROUGHPUT_SESSIONS:
        kernels: dict[str, list[Kernel]] = {side: [] for side in sides}
        try:
            for side in sides:
                for _ in range(count):
                    kernels[side].append(await lab.start(side))
                for kernel in kernels[side]:
                    for _ in range(WARM_UP_CALLS):
                        await call(kernel, LOOP_CODE)
            bursts = {side: Burst([0] * count) for side in sides}
            seconds = plan.throughput_seconds / plan.throughput_rounds
            for turn in range(plan.throughput_rounds):
                for side in rotated(sides, turn):
                    await _burst(kernels[side], seconds, bursts[side])
        finally:
            for side in sides:
                for kernel in kernels[side]:
                    await lab.close(kernel)
        for side in sides:
            figures = bursts[side].figures()
            rates[side, count] = figures["calls_per_s"]
            record.metrics[f"{side}_{count}"] = figures
            record.cpu[f"{side}_{count}"] = figures["cpu_share_of_one_core"]
            shares = figures["cpu_share_of_one_core"]
            by_round = figures["calls_per_s_by_round"]
            record.reported[f"{count} session(s), {SIDE_TITLES[side]}"] = (
                f"{figures['calls_per_s']:,.0f} calls/s (rounds {min(by_round):,.0f}-"
                f"{max(by_round):,.0f}; p50 / p99 {p50_p99(figures['latency_ms'])}; CPU: client "
                f"{shares['client']:.0%}, kernels {shares['kernels']:.0%} "
                f"({figures['kernel_cpu_ms_per_call']:.1f} ms a call), machine busy "
                f"{figures['machine_busy']:.0%})"
            )
        record.reported[f"{count} session(s): ratio sandboxed / unsandboxed"] = (
            f"{ratio(rates[SANDBOXED, count], rates[UNSANDBOXED, count]):.2f}x"
        )
    record.metrics["ratios_sandboxed/unsandboxed"] = {
        str(count): ratio(rates[SANDBOXED, count], rates[UNSANDBOXED, count])
        for count in THROUGHPUT_SESSIONS
    }
    return record


async def _burst(kernels: list[Kernel], seconds: float, into: Burst) -> None:
    """Every session of `kernels` calling LOOP_CODE in a loop, all at once, for `seconds`."""
    pids = [pid for kernel in kernels for pid in descendants(root_pid(kernel))]
    counts = [0] * len(kernels)

    async def loop(number: int, kernel: Kernel) -> None:
        while time.perf_counter() < deadline:
            into.latencies.append((await call(kernel, LOOP_CODE))[0])
            counts[number] += 1

    kernels_before, client_before = cpu_seconds(pids), own_cpu_seconds()
    busy_before, total_before = machine_ticks()
    started = time.perf_counter()
    deadline = started + seconds
    async with asyncio.TaskGroup() as group:
        for number, kernel in enumerate(kernels):
            group.create_task(loop(number, kernel))
    wall = time.perf_counter() - started
    busy_after, total_after = machine_ticks()
    into.kernels_cpu += cpu_seconds(pids) - kernels_before
    into.client_cpu += own_cpu_seconds() - client_before
    into.busy_ticks += busy_after - busy_before
    into.total_ticks += total_after - total_before
    into.wall += wall
    into.round_rates.append(sum(counts) / wall)
    for number, count in enumerate(counts):
        into.calls_per_session[number] += count


# --- 4. memory per idle session -------------------------------------------------------------


async def memory(lab: Lab, plan: Plan) -> Record:
    sides = [SANDBOXED, UNSANDBOXED]
    samples: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for turn in range(plan.memory_rounds):
        for side in rotated(sides, turn):
            kernel = await lab.start(side)
            try:
                await call(kernel, FIRST_CODE, FIRST_LOGS)
                await asyncio.sleep(SETTLE_SECONDS)
                bare = session_memory(kernel)
                import_ms, _ = await call(kernel, IMPORTS)
                await asyncio.sleep(SETTLE_SECONDS)
                loaded = session_memory(kernel)
                pids = descendants(root_pid(kernel))
                before = cpu_seconds(pids)
                await asyncio.sleep(IDLE_CPU_SECONDS)
                idle_cpu = (cpu_seconds(pids) - before) / IDLE_CPU_SECONDS
            finally:
                await lab.close(kernel)
            samples[side].append(
                {"started": bare, "imported": loaded, "import_ms": import_ms, "idle_cpu": idle_cpu}
            )
    record = Record(
        "memory",
        "Memory per idle session",
        {
            "rounds": plan.memory_rounds,
            "after": [FIRST_CODE, IMPORTS],
            "one_session_alive_at_a_time": True,
            "kept": "median over rounds (the processes of the last round)",
        },
    )
    medians: dict[str, dict[str, float]] = {}
    for side in sides:
        figures: dict[str, float] = {}
        for stage in ("started", "imported"):
            for key in ("rss", "pss", "uss"):
                figures[f"{stage}_{key}_kib"] = quantile(
                    [s[stage][f"{key}_kib"] for s in samples[side]], 0.5
                )
        figures["import_ms"] = round(quantile([s["import_ms"] for s in samples[side]], 0.5), 1)
        figures["idle_cpu_share"] = round(quantile([s["idle_cpu"] for s in samples[side]], 0.5), 4)
        groups = [s["imported"].get("cgroup") for s in samples[side]]
        if all(groups):
            for key in ("usage_bytes", "anon_bytes", "file_bytes", "shmem_bytes"):
                figures[f"cgroup_{key}"] = quantile([g[key] for g in groups if g], 0.5)
        medians[side] = figures
        record.metrics[side] = figures | {
            "processes_last_round": samples[side][-1]["imported"]["processes"]
        }
    box, base = medians[SANDBOXED], medians[UNSANDBOXED]
    record.metrics["ratios_sandboxed/unsandboxed"] = {
        key: ratio(box[f"imported_{key}_kib"], base[f"imported_{key}_kib"])
        for key in ("rss", "pss", "uss")
    }
    for side in sides:
        m = medians[side]
        names = ", ".join(p["name"] for p in samples[side][-1]["imported"]["processes"])
        record.reported[f"after imports, PSS / USS / RSS: {SIDE_TITLES[side]}"] = (
            f"{mib(m['imported_pss_kib'])} / {mib(m['imported_uss_kib'])} / "
            f"{mib(m['imported_rss_kib'])} ({names})"
        )
        record.reported[f"started, PSS / USS: {SIDE_TITLES[side]}"] = (
            f"{mib(m['started_pss_kib'])} / {mib(m['started_uss_kib'])}"
        )
    record.reported["after imports, ratio sandboxed / unsandboxed: PSS (USS)"] = (
        f"{ratio(box['imported_pss_kib'], base['imported_pss_kib']):.2f}x "
        f"({ratio(box['imported_uss_kib'], base['imported_uss_kib']):.2f}x)"
    )
    if "cgroup_usage_bytes" in box:
        record.reported["sandbox cgroup after imports: usage (anon, file pages, tmpfs)"] = (
            f"{mib(box['cgroup_usage_bytes'] / 1024)} ({mib(box['cgroup_anon_bytes'] / 1024)}, "
            f"{mib(box['cgroup_file_bytes'] / 1024)}, {mib(box['cgroup_shmem_bytes'] / 1024)})"
        )
    record.reported["the import call p50: sandboxed / unsandboxed"] = (
        f"{box['import_ms']:,.0f} / {base['import_ms']:,.0f} ms"
    )
    record.reported["CPU while idle (share of one core): sandboxed / unsandboxed"] = (
        f"{box['idle_cpu_share']:.1%} / {base['idle_cpu_share']:.1%}"
    )
    return record


# --- 5. end to end through the gateway ------------------------------------------------------


TERMINAL = frozenset({"completed", "failed", "cancelled", "expired", "incomplete"})
_METRIC = re.compile(
    r'^gateway_code_interpreter_call_seconds_(sum|count)\{session="(cold|warm)"\} (\S+)$', re.M
)


class E2E:
    """The runs of step 5 on one gateway, each timed from its POST to the poll that saw it
    end; every run must complete, with the expected answer."""

    def __init__(self, http: clients.Session, base: str) -> None:
        self.http = http
        self.base = base
        self.gw = clients.Gateway(http, base)

    async def assistant(self, tools: bool) -> str:
        body: dict[str, Any] = {"model": "local", "name": "code-interpreter-bench"}
        if tools:
            body["tools"] = [{"type": "code_interpreter"}]
        return str((await self.gw.post("/assistants", body))["id"])

    async def first(self, assistant: str, tools: bool) -> tuple[float, str]:
        """A create-thread-and-run; its time in ms and the thread."""
        started = time.perf_counter()
        run = await self.gw.create_thread_and_run(assistant, E2E_CODE)
        await self._finish(run, tools)
        return 1000 * (time.perf_counter() - started), str(run["thread_id"])

    async def second(self, assistant: str, thread: str, tools: bool) -> float:
        """A new message, then a run on the thread; ms from the run's POST to its end."""
        await self.gw.post(f"/threads/{thread}/messages", {"role": "user", "content": E2E_CODE})
        started = time.perf_counter()
        run = await self.gw.create_run(thread, assistant)
        await self._finish(run, tools)
        return 1000 * (time.perf_counter() - started)

    async def _finish(self, run: dict[str, Any], tools: bool) -> None:
        thread, run_id = str(run["thread_id"]), str(run["id"])
        path = f"/threads/{thread}/runs/{run_id}"
        async with asyncio.timeout(E2E_RUN_SECONDS):
            # Polling is the point: the run's state is in another process.
            while (status := str((await self.gw.get(path))["status"])) not in TERMINAL:  # noqa: ASYNC110
                await asyncio.sleep(E2E_POLL_SECONDS)
        if status != "completed":
            got = await self.gw.get(path)
            raise RuntimeError(f"run {run_id} ended {status}: {got.get('last_error')}")
        page = await self.gw.get(f"/threads/{thread}/messages?order=desc&limit=1")
        text = page["data"][0]["content"][0]["text"]["value"]
        if tools and "42" not in text:
            raise RuntimeError(f"code_interpreter run answered {text[:200]!r}")

    async def code_calls(self) -> dict[str, tuple[float, int]]:
        """The gateway's code_interpreter call time so far: session -> (seconds, calls)."""
        async with self.http.get(self.base + "/metrics") as response:
            text = await response.text()
        found: dict[str, list[float]] = {"cold": [0.0, 0.0], "warm": [0.0, 0.0]}
        for kind, session, value in _METRIC.findall(text):
            found[session][0 if kind == "sum" else 1] = float(value)
        return {session: (sec, int(n)) for session, (sec, n) in found.items()}


async def gateway(plan: Plan, folder: Path, cgroups: Cgroups | None, problems: list[str]) -> Record:
    database = folder / "gateway.db"
    argv = [PYTHON, "-m", "gateway", "serve", "--host", "127.0.0.1", "--database", str(database)]
    argv += ["--log-level", "warning", "--local-model-delay-ms", "0"]
    argv += ["--code-interpreter", "bwrap"]
    # Sessions enough for every thread: no cold run pays for ending another session.
    env = {"GATEWAY_CODE_INTERPRETER_SESSIONS": str(plan.e2e_pairs + 4)}
    with Fleet(folder) as fleet:
        server = fleet.start("gateway", argv, "/readyz", env)
        try:
            async with clients.session() as http:
                return await _gateway_runs(E2E(http, server.url), plan)
        finally:
            _stop_gateway(fleet, server, cgroups, problems)


async def _gateway_runs(e2e: E2E, plan: Plan) -> Record:
    sides = {"code_interpreter": True, "no_tools": False}
    assistants = {side: await e2e.assistant(tools) for side, tools in sides.items()}
    times: dict[str, list[float]] = {
        f"{side}_{which}": [] for side in sides for which in ("first", "second")
    }
    before: dict[str, tuple[float, int]] = {}
    for turn in range(plan.e2e_pairs + 1):  # the first pair is a warm-up
        if turn == 1:
            before = await e2e.code_calls()
        order = list(sides) if turn % 2 else list(reversed(sides))
        threads: dict[str, str] = {}
        for side in order:
            elapsed, threads[side] = await e2e.first(assistants[side], sides[side])
            if turn:
                times[f"{side}_first"].append(elapsed)
        for side in order:
            elapsed = await e2e.second(assistants[side], threads[side], sides[side])
            if turn:
                times[f"{side}_second"].append(elapsed)
    after = await e2e.code_calls()
    shown = {name: ms_summary(values) for name, values in times.items()}
    record = Record(
        "gateway",
        "Through the gateway",
        {
            "pairs": plan.e2e_pairs,
            "message": E2E_CODE,
            "model": "local (unpaced)",
            "runs": f"not streamed; polled every {1000 * E2E_POLL_SECONDS:g} ms",
            "first": "POST /v1/threads/runs (a new thread: a cold session)",
            "second": "POST /v1/threads/{id}/runs after a new message (the session warm)",
        },
    )
    calls: dict[str, dict[str, float]] = {}
    for session in ("cold", "warm"):
        seconds = after[session][0] - before.get(session, (0.0, 0))[0]
        count = after[session][1] - before.get(session, (0.0, 0))[1]
        calls[session] = {
            "calls": count,
            "mean_ms": round(1000 * seconds / count, 2) if count else 0,
        }
    record.metrics = {name: summary for name, summary in shown.items()}
    ci_first, ci_second = shown["code_interpreter_first"], shown["code_interpreter_second"]
    plain_first, plain_second = shown["no_tools_first"], shown["no_tools_second"]
    record.metrics["ratios"] = {
        "first_code_interpreter/no_tools": {
            q: ratio(ci_first[q], plain_first[q]) for q in ("p50", "p99")
        },
        "second_code_interpreter/no_tools": {
            q: ratio(ci_second[q], plain_second[q]) for q in ("p50", "p99")
        },
    }
    record.metrics["gateway_code_calls"] = calls
    record.reported = {
        "first run of a thread (cold session) p50 / p99": p50_p99(ci_first),
        "second run, same thread (warm session) p50 / p99": p50_p99(ci_second),
        "no tools, first run p50 / p99": p50_p99(plain_first),
        "no tools, second run p50 / p99": p50_p99(plain_second),
        "ratio cold / no tools, p50 (p99)": (
            f"{ratio(ci_first['p50'], plain_first['p50']):.2f}x "
            f"({ratio(ci_first['p99'], plain_first['p99']):.2f}x)"
        ),
        "ratio warm / no tools, p50 (p99)": (
            f"{ratio(ci_second['p50'], plain_second['p50']):.2f}x "
            f"({ratio(ci_second['p99'], plain_second['p99']):.2f}x)"
        ),
        "the gateway's code call, mean: cold / warm (calls)": (
            f"{calls['cold']['mean_ms']:,.1f} / {calls['warm']['mean_ms']:,.1f} ms "
            f"({calls['cold']['calls']:.0f} / {calls['warm']['calls']:.0f})"
        ),
    }
    expected = plan.e2e_pairs
    if calls["cold"]["calls"] != expected or calls["warm"]["calls"] != expected:
        record.notes.append(
            f"expected {expected} cold and {expected} warm code calls; the gateway counted"
            f" {calls['cold']['calls']:.0f} and {calls['warm']['calls']:.0f}"
        )
    return record


def _stop_gateway(
    fleet: Fleet, server: Server, cgroups: Cgroups | None, problems: list[str]
) -> None:
    """Stop the gateway, then check its sandboxes went with it, their cgroups too (removed
    here when the gateway left them)."""
    below = [pid for pid in descendants(server.pid) if pid != server.pid]
    sessions = _kernel_folders(below)
    if server.process.poll() is not None:
        problems.append(f"the gateway exited early, with {server.process.returncode}")
    fleet.stop(server)
    deadline = time.monotonic() + CGROUP_GONE_SECONDS
    left = below
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [pid for pid in left if Path(f"/proc/{pid}").exists()]
    if left:
        problems.append(f"processes of the gateway left after it stopped: {left}; killing them")
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    if cgroups is not None and sessions:
        paths = [parent / name for name in sessions for parent in set(cgroups.parents.values())]
        left_cgroups = {path.name for path in paths if path.exists()}
        while any(path.exists() for path in paths) and time.monotonic() < deadline + 1:
            for path in paths:
                with contextlib.suppress(OSError):
                    path.rmdir()
            time.sleep(0.05)
        if left_cgroups:
            problems.append(
                f"the gateway left the cgroups of {len(left_cgroups)} of its {len(sessions)}"
                " sessions behind after it stopped; removed here"
                + ("" if not any(p.exists() for p in paths) else " (some could not be)")
            )
    try:
        lines = server.log.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    problems += [f"gateway log: {line}" for line in lines if line.strip()][:30]


def _kernel_folders(pids: Iterable[int]) -> set[str]:
    """The session folders (their names are the cgroups' names) of the kernels among `pids`,
    from their `-f <folder>/kernel.json` argument."""
    names: set[str] = set()
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "ipykernel_launcher" in argv and "-f" in argv[:-1]:
            names.add(Path(argv[argv.index("-f") + 1]).parent.name)
    return names


# --- the run --------------------------------------------------------------------------------


Step = Callable[[], Awaitable[Record]]


async def measure(name: str, step: Step, records: list[Record], failures: dict[str, str]) -> None:
    say(f"{name}: starting")
    started = time.perf_counter()
    try:
        record = await step()
    except Exception as error:
        traceback.print_exc(file=sys.stderr)
        failures[name] = f"{type(error).__name__}: {error}"
        say(f"{name}: failed after {time.perf_counter() - started:.0f} s")
        return
    record.seconds = time.perf_counter() - started
    # The machine is shared: a busy one shows in every figure here.
    record.metrics["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    records.append(record)
    report.emit(record)
    say(f"{name}: done in {record.seconds:.0f} s")


async def run(args: argparse.Namespace, lab: Lab) -> tuple[list[Record], dict[str, str], list[str]]:
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    plan = Plan.quick() if args.quick else Plan.full()
    records: list[Record] = []
    failures: dict[str, str] = {}
    problems: list[str] = []
    say(f"cgroups: {lab.cgroups.describe() if lab.cgroups is not None else 'none'}")
    try:
        await measure("cold_start", lambda: cold_start(lab, plan), records, failures)
        await measure("warm_latency", lambda: warm_latency(lab, plan), records, failures)
        await measure("throughput", lambda: throughput(lab, plan), records, failures)
        await measure("memory", lambda: memory(lab, plan), records, failures)
    finally:
        await lab.close_all()
    if lab.cgroups_left_by_close:
        problems.append(
            f"Kernel.close() left {lab.cgroups_left_by_close} of the {len(lab.made_cgroups)}"
            " cgroups it made behind (removed while the sandbox was still exiting); removed"
            " here later"
        )
    if lab.cgroups_not_removed:
        problems.append(f"{lab.cgroups_not_removed} cgroups could not be removed at the end")
    if not args.skip_gateway:
        with tempfile.TemporaryDirectory(prefix="ci-bench-gateway-") as workdir:
            await measure(
                "gateway",
                lambda: gateway(plan, Path(workdir), lab.cgroups, problems),
                records,
                failures,
            )
    return records, failures, problems


def table(records: list[Record], failures: dict[str, str]) -> str:
    rows = [("Measurement", "Figure", "Value")]
    for record in records:
        rows += [(record.title, name, str(shown)) for name, shown in record.reported.items()]
        rows += [(record.title, "note", note[:120]) for note in record.notes]
    rows += [(case, "FAILED TO RUN", problem[:100]) for case, problem in failures.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    found = Cgroups.find()
    lab = Lab(Limits(), TrackedCgroups(found) if found is not None else None)
    atexit.register(lab.emergency)
    started = time.perf_counter()
    try:
        records, failures, problems = uvloop.run(run(args, lab))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("code_interpreter: interrupted; its kernels and gateway are stopped", file=sys.stderr)
        return 130
    seconds = time.perf_counter() - started
    print()
    print(table(records, failures), flush=True)
    for problem in problems:
        print(f"  {problem}")
    print(f"\nwhole run: {seconds:.0f} s; load average now {os.getloadavg()[0]:.2f}")
    if args.json:
        document = {
            "machine": report.machine(),
            "quick": args.quick,
            "seconds": round(seconds, 1),
            "records": [r.as_dict() for r in records],
            "failed": failures,
            "problems": problems,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"records written to {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
