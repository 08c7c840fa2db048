"""Escape tests: code run in a code_interpreter session tries to reach what it must not (the
network, the gateway's files, environment and processes, the system's folders) and to use
more than it may (processes, memory, disk, time, output); each attempt is refused or stopped,
and the session's host (this process) carries on."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import gateway
from gateway.sandbox.bwrap import bwrap_path
from gateway.sandbox.cgroups import Cgroups
from gateway.sandbox.kernel import Kernel
from gateway.sandbox.limits import MIB, Limits
from gateway.sandbox.sessions import Sessions, SessionsBusyError
from tests.conftest import need
from tests.waiting import eventually

LIMITS = Limits(
    call_seconds=3,
    memory_bytes=1536 * MIB,
    processes=32,
    disk_bytes=16 * MIB,
    file_bytes=8 * MIB,
    output_bytes=4096,
)


@pytest.fixture
async def kernel() -> AsyncIterator[Kernel]:
    need(bwrap_path() is not None, "bubblewrap (bwrap) is not installed")
    started = Kernel(LIMITS, Cgroups.find())
    await started.start()
    yield started
    await started.close()


async def run(kernel: Kernel, code: str) -> str:
    result = await kernel.run(textwrap.dedent(code))
    return result.logs


async def test_no_network(kernel: Kernel) -> None:
    logs = await run(
        kernel,
        """
        import socket
        for host in ("127.0.0.1", "10.0.0.1", "1.1.1.1"):
            try:
                socket.create_connection((host, 5432), timeout=1)
                print("connected", host)
            except OSError as exc:
                print("refused", host, exc.errno)
        """,
    )
    assert "connected" not in logs and logs.count("refused") == 3


async def test_no_view_of_the_gateways_files(kernel: Kernel, tmp_path: Path) -> None:
    """The gateway's database, its folder and its source are not there (the folders above
    the Python the sandbox runs exist, holding nothing but it)."""
    database = tmp_path / "gateway.db"
    database.write_bytes(b"SQLite format 3\x00 secret rows")
    source = Path(gateway.__file__).parent
    logs = await run(
        kernel,
        f"""
        import os
        for path in ({str(database)!r}, {str(tmp_path)!r}, {str(source)!r}, "/home"):
            print(path, os.path.exists(path))
        """,
    )
    assert "True" not in logs and logs.count("False") == 4


async def test_no_view_of_the_gateways_environment_or_processes(
    kernel: Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_TEST_SECRET", "s3cret-value")
    logs = await run(
        kernel,
        f"""
        import os
        print("env", "GATEWAY_TEST_SECRET" in os.environ)
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        found = []
        for pid in pids:
            try:
                found.append(open(f"/proc/{{pid}}/cmdline", "rb").read())
            except OSError:
                pass
        print("pytest seen", any(b"pytest" in c for c in found))
        print("gateway pid seen", os.path.exists("/proc/{os.getpid()}/environ") and
              b"s3cret" in open("/proc/{os.getpid()}/environ", "rb").read())
        print("processes", len(pids))
        """,
    )
    assert "env False" in logs
    assert "pytest seen False" in logs
    assert "gateway pid seen False" in logs


async def test_the_system_is_read_only(kernel: Kernel) -> None:
    logs = await run(
        kernel,
        """
        for path in ("/x", "/usr/x", "/etc/x", "/bin/x", "/proc/x"):
            try:
                open(path, "w").write("x")
                print("wrote", path)
            except OSError as exc:
                print("refused", path)
        open("/mnt/data/ok.txt", "w").write("fine")
        print("data ok")
        """,
    )
    assert "wrote" not in logs and logs.count("refused") == 5 and "data ok" in logs


async def test_a_fork_bomb_is_held(kernel: Kernel) -> None:
    logs = await run(
        kernel,
        """
        import os, time
        children = []
        try:
            for _ in range(1000):
                pid = os.fork()
                if pid == 0:
                    time.sleep(2)
                    os._exit(0)
                children.append(pid)
        except OSError as exc:
            print("held after", len(children))
        for pid in children:
            os.waitpid(pid, 0)
        """,
    )
    assert "held after" in logs
    assert int(logs.split("held after")[1].split()[0]) < LIMITS.processes
    # This process still starts processes, and the session still answers.
    spawned = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    assert await spawned.wait() == 0
    assert await run(kernel, "print('alive')") == "alive\n"


async def test_memory_is_bounded(kernel: Kernel) -> None:
    logs = await run(
        kernel,
        """
        try:
            hog = bytearray(4 * 1024 ** 3)
            print("allocated")
        except MemoryError:
            print("refused")
        """,
    )
    assert logs == "refused\n"


async def test_the_disk_is_bounded(kernel: Kernel) -> None:
    logs = await run(
        kernel,
        """
        import errno
        written = 0
        try:
            with open("/mnt/data/fill", "wb") as f:
                while True:
                    f.write(b"x" * 1024 * 1024)
                    f.flush()
                    written += 1
        except OSError as exc:
            print("stopped", errno.errorcode.get(exc.errno), written)
        """,
    )
    assert "stopped ENOSPC" in logs or "stopped EFBIG" in logs
    assert int(logs.split()[-1]) <= LIMITS.disk_bytes // MIB
    assert await run(kernel, "print('alive')") == "alive\n"


async def test_running_forever_is_stopped(kernel: Kernel) -> None:
    started = time.monotonic()
    result = await kernel.run("while True:\n    pass\n")
    assert result.limit == "time" and "KeyboardInterrupt" in result.logs
    assert time.monotonic() - started < LIMITS.call_seconds + 3
    assert await run(kernel, "print('still here')") == "still here\n"


async def test_megabytes_of_output_are_cut(kernel: Kernel) -> None:
    result = await kernel.run("print('x' * 10_000_000)")
    assert result.truncated and result.limit == "output"
    assert len(result.logs.encode()) < LIMITS.output_bytes + 100


async def test_links_and_special_files_are_not_taken_out(kernel: Kernel) -> None:
    await run(
        kernel,
        """
        import os
        os.symlink("/etc/passwd", "/mnt/data/passwd")
        os.symlink("/proc/1/environ", "/mnt/data/environ")
        os.mkfifo("/mnt/data/pipe")
        open("/mnt/data/real.txt", "w").write("data")
        """,
    )
    assert [(f.name, f.data) for f in kernel.changed()] == [("real.txt", b"data")]


def test_the_sandbox_dies_with_its_parent() -> None:
    """A gateway killed with SIGKILL leaves no sandbox process behind."""
    need(bwrap_path() is not None, "bubblewrap (bwrap) is not installed")
    script = textwrap.dedent(
        """
        import asyncio
        from gateway.sandbox.kernel import Kernel
        from gateway.sandbox.limits import Limits

        async def main():
            kernel = Kernel(Limits())
            await kernel.start()
            print(kernel._child_pid, flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
    eventually(lambda: not _alive(child), timeout=10, what="the sandbox to end")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


async def test_cpu_time_is_bounded() -> None:
    """A session whose processes spend their CPU seconds is ended; the next call is refused
    clearly, not hung."""
    need(bwrap_path() is not None, "bubblewrap (bwrap) is not installed")
    kernel = Kernel(Limits(cpu_seconds=3, call_seconds=20), Cgroups.find())
    await kernel.start()
    try:
        started = time.monotonic()
        result = await kernel.run("while True:\n    pass\n")
        assert result.limit == "ended" and not kernel.alive
        assert time.monotonic() - started < 10
    finally:
        await kernel.close()


async def test_an_ended_session_leaves_no_cgroup() -> None:
    need(bwrap_path() is not None, "bubblewrap (bwrap) is not installed")
    cgroups = Cgroups.find()
    if cgroups is None:
        pytest.skip("this process may make no cgroup: sessions are held by rlimits alone")
    kernel = Kernel(LIMITS, cgroups)
    await kernel.start()
    assert kernel._cgroup is not None
    folders = kernel._cgroup.paths
    assert all(folder.is_dir() for folder in folders)
    await kernel.close()
    assert not any(folder.exists() for folder in folders)


async def test_sessions_are_bounded_reaped_and_closed() -> None:
    """A thread's session keeps its state; a new thread takes the least recently used idle
    session's place (that thread starts afresh next time); with every session busy a call
    waits, then is refused; idle sessions are reaped; close ends the rest."""
    need(bwrap_path() is not None, "bubblewrap (bwrap) is not installed")
    sessions = Sessions(
        LIMITS, max_sessions=2, idle_seconds=3600, wait_seconds=1.0, cgroups=Cgroups.find()
    )
    try:
        await sessions.call("t1", "a = 1", [])
        await sessions.call("t2", "b = 2", [])
        kept = await sessions.call("t2", "print(b)", [])
        assert (kept.result.logs, kept.cold) == ("2\n", False)
        await sessions.call("t3", "c = 3", [])  # t1 was the least recently used
        assert len(sessions) == 2
        again = await sessions.call("t1", "print('a' in dir())", [])
        assert (again.result.logs, again.cold) == ("False\n", True)

        busy = [
            asyncio.create_task(sessions.call(key, "import time; time.sleep(2.5)", []))
            for key in ("t1", "t3")
        ]
        await asyncio.sleep(0.3)
        with pytest.raises(SessionsBusyError):
            await sessions.call("t4", "print(4)", [])
        await asyncio.gather(*busy)

        sessions.idle_seconds = 0.2
        await asyncio.sleep(0.3)
        assert await sessions.reap() == 2 and len(sessions) == 0
        await sessions.call("t5", "print(5)", [])
    finally:
        await sessions.close()
    assert len(sessions) == 0
