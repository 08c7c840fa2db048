"""`--profile`: py-spy samples a gateway during extra, unmeasured rounds of a case, and writes
into the output folder a flame graph of its busy threads (`<case>.svg`) and a summary of where
they spend their time (`<case>-top.txt`: the functions with the most samples on top of the
stack, and the gateway functions with the most samples anywhere on it).

`Runner.run (asyncio/runners.py)` on top of the stack is uvloop's own C code (sockets, timers,
callbacks); `_connection_worker_thread (aiosqlite/core.py)` is the database thread, running
SQLite (line `result = function()`) or waking for its next job.

py-spy needs ptrace (root, or `kernel.yama.ptrace_scope` 0). It is optional: without it the
round runs unprofiled and a note says so.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from benchkit.plan import Context
from benchkit.servers import ROOT, Server

SAMPLES_PER_SECOND = 250
# A profiled round repeats its workload for at least this long.
MIN_SECONDS = 4.0
STOP_SECONDS = 30.0
TOP = 20
# What a frame's path starts with that says nothing: site-packages, the stdlib, the checkout.
_PREFIX = re.compile(rf"^.*?site-packages/|^.*?/lib/python3\.\d+/|^{re.escape(str(ROOT))}/")
_FRAME = re.compile(r"(?P<function>.*) \((?P<file>[^():]+)(?P<line>:\d+)?\)$")


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


async def profile(
    ctx: Context,
    server: Server,
    name: str,
    workload: Callable[[], Awaitable[object]],
    per: str | None = None,
) -> None:
    """Run `workload` twice under py-spy: once for the flame graph, once for the raw stacks
    that the summary is made of. (py-spy samples in its default, blocking mode, which tells
    idle threads apart reliably; two samplers cannot attach at once in that mode.)

    With `per` (say "run"), each call of `workload` returns how many of those it made, and the
    summary gives the server's CPU time per one of them, and each line's share of it in
    microseconds (the line's share of the samples times the CPU time per run: py-spy samples
    the threads holding the GIL, so time SQLite spends in C on its own thread is counted in
    the total only)."""
    binary = py_spy()
    if binary is None:
        ctx.say(f"{name}: py-spy not found (pip install py-spy); not profiled")
        return
    ctx.out.mkdir(parents=True, exist_ok=True)
    svg, raw = ctx.out / f"{name}.svg", ctx.workdir / f"{name}.raw"
    for kind, path in (("flamegraph", svg), ("raw", raw)):
        ctx.say(f"{name}: profiling a round ({kind})")
        with _recording(binary, server, kind, path) as problems:
            # What the round made and the CPU it took: after the loop, the raw round's, which
            # the summary's shares are of.
            units, started, cpu_before = 0, time.monotonic(), server.cpu_seconds()
            while time.monotonic() - started < MIN_SECONDS:  # enough samples to read
                made = await workload()
                units += made if isinstance(made, int) else 0
            cpu = server.cpu_seconds() - cpu_before
        if problems:
            ctx.say(f"{name}: py-spy failed: {problems[0]}")
            return
    per_unit_us = 1e6 * cpu / units if per is not None and units else None
    summary = summarize(raw.read_text(), per_unit_us, per or "")
    (ctx.out / f"{name}-top.txt").write_text(summary)
    ctx.samples.setdefault("profiles", {})[name] = {"svg": str(svg), "summary": summary}
    ctx.say(f"{name}: flame graph in {svg}")


@contextmanager
def _recording(binary: str, server: Server, kind: str, path: Path) -> Iterator[list[str]]:
    """py-spy records while the block runs; the list holds what went wrong, if anything."""
    argv = [binary, "record", "--pid", str(server.pid), "--rate", str(SAMPLES_PER_SECOND), "--gil"]
    recorder = subprocess.Popen(
        [*argv, "--format", kind, "--output", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    problems: list[str] = []
    try:
        yield problems
    finally:
        problem = _stop(recorder)
        if problem or not path.exists():
            problems.append(problem or "no output")


def _stop(recorder: subprocess.Popen[bytes]) -> str:
    """SIGINT makes py-spy write its output; '' when it did, else what went wrong."""
    if recorder.poll() is None:
        recorder.send_signal(signal.SIGINT)
    try:
        _, err = recorder.communicate(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        recorder.kill()
        recorder.communicate(timeout=STOP_SECONDS)
        return "py-spy did not stop"
    text = err.decode(errors="replace")
    return "" if recorder.returncode in (0, -signal.SIGINT) else text.strip()[-500:]


def summarize(raw: str, per_unit_us: float | None = None, unit: str = "") -> str:
    """Self and inclusive sample shares from py-spy's raw (collapsed) stacks; with
    `per_unit_us` (the server's CPU time per `unit`), each share in microseconds too."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [_name(frame) for frame in stack.split(";")]
        own[_name(stack.split(";")[-1], line=True)] += samples
        for frame in set(frames):
            if "gateway/" in frame:
                anywhere[frame] += samples
    if not total:
        return "no samples\n"
    lines = [f"{total} samples of busy threads ({SAMPLES_PER_SECOND}/s per thread; idle left out)"]
    if per_unit_us is not None:
        lines.append(f"server CPU per {unit}: {per_unit_us:,.0f} us (all threads)")

    def share(n: int) -> str:
        shown = f"  {100 * n / total:5.1f}%"
        return shown if per_unit_us is None else f"{shown} {per_unit_us * n / total:6.0f} us"

    lines += ["", "on top of the stack:"]
    lines += [f"{share(n)}  {frame}" for frame, n in own.most_common(TOP)]
    lines += ["", "gateway functions, anywhere on the stack:"]
    lines += [f"{share(n)}  {frame}" for frame, n in anywhere.most_common(TOP)]
    return "\n".join(lines) + "\n"


def _name(frame: str, line: bool = False) -> str:
    """`function (path/to/site-packages/pkg/mod.py:12)` -> `function (pkg/mod.py)`, or with
    `line`, `function (pkg/mod.py:12)`."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match.group("file")
    if line:
        path += match.group("line") or ""
    path = _PREFIX.sub("", path)
    return f"{match.group('function')} ({path})"
