"""One code_interpreter session: an IPython kernel (ipykernel) in a bwrap sandbox, driven over
the Jupyter kernel protocol by jupyter_client.

The kernel's sockets are Unix sockets in a folder of the session's own (ZeroMQ's ipc transport),
so the kernel needs no network. Files go in and out through the sandbox's own view of its
/mnt/data (/proc/<pid>/root), opened without following links and taken only when they are
regular files, so code in the sandbox cannot point the gateway at a file of the host.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import queue
import re
import secrets
import shutil
import signal
import stat
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.connect import write_connection_file

from gateway.sandbox.bwrap import DATA_DIR, command
from gateway.sandbox.cgroups import Cgroup, Cgroups
from gateway.sandbox.limits import INTERRUPT_GRACE_SECONDS, Limits

log = logging.getLogger("gateway.sandbox")

# How long a new kernel may take to answer.
START_SECONDS = 60.0
# How long an ended session's cgroup may take to empty before it is removed (else the next
# start's sweep removes it).
CGROUP_EMPTY_SECONDS = 2.0
# ANSI colour codes, which IPython puts in tracebacks.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Environment inside the sandbox.
_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "IPYTHONDIR": "/tmp/.ipython",
    "MPLCONFIGDIR": "/tmp/.matplotlib",
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    "PYTHONDONTWRITEBYTECODE": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "LANG": "C.UTF-8",
    # Few malloc arenas: each thread's reserves 64 MB of address space, which the memory
    # limit (of address space) counts.
    "MALLOC_ARENA_MAX": "2",
}


class SandboxError(Exception):
    """The sandbox could not start or stopped answering."""


@dataclass
class Result:
    """What one call gave: its text output (cut at the limit), its images (PNG bytes), whether
    it raised, and what limit stopped it, if one did."""

    logs: str = ""
    images: list[bytes] = field(default_factory=list)
    error: bool = False
    limit: str | None = None  # "time", "memory", "output", "ended"
    truncated: bool = False


@dataclass(frozen=True)
class DataFile:
    name: str
    data: bytes


class Kernel:
    def __init__(self, limits: Limits, cgroups: Cgroups | None = None) -> None:
        self.limits = limits
        self._cgroups = cgroups
        self._cgroup: Cgroup | None = None
        self._dir = ""
        self._process: asyncio.subprocess.Process | None = None
        self._client: AsyncKernelClient | None = None
        self._child_pid = 0
        self._seen: dict[str, tuple[int, int]] = {}  # /mnt/data name -> (size, mtime_ns)
        self.started_at = 0.0
        self.used_at = 0.0

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        """Start the sandboxed kernel and wait until it answers."""
        self._dir = tempfile.mkdtemp(prefix="gateway-kernel-")
        os.chmod(self._dir, 0o700)
        connection = connection_file(self._dir)
        read_info, write_info = os.pipe()
        try:
            sandboxed = command(
                kernel_argv(connection),
                limits=self.limits,
                socket_dir=self._dir,
                info_fd=write_info,
                env=_ENV,
            )
            if self._cgroups is not None:
                self._cgroup = self._cgroups.make(
                    os.path.basename(self._dir),
                    processes=self.limits.processes,
                    memory_bytes=self.limits.memory_bytes + 2 * self.limits.disk_bytes,
                )
                # A shell joins the cgroup, then becomes the sandbox: all it starts is held.
                procs = self._cgroup.procs()
                join = " && ".join(f'echo $$ > "${i + 1}"' for i in range(len(procs)))
                shift = f"shift {len(procs)}"
                script = f'{join} && {shift} && exec "$@"'
                sandboxed = ["/bin/sh", "-c", script, "sh", *procs, *sandboxed]
            self._process = await _spawn(sandboxed, write_info)
        finally:
            os.close(write_info)
        try:
            info = await asyncio.wait_for(asyncio.to_thread(_read_all, read_info), START_SECONDS)
            self._child_pid = int(json.loads(info)["child-pid"])
            await self.attach(connection)
        except BaseException as exc:
            why = await self._stderr()
            await self.close()
            if isinstance(exc, Exception):
                raise SandboxError(f"the sandbox did not start: {why or exc}") from None
            raise
        finally:
            os.close(read_info)
        self.started_at = self.used_at = time.monotonic()

    async def attach(self, connection: str) -> None:
        """Connect to the kernel of `connection` and wait until it answers."""
        client = AsyncKernelClient()
        client.load_connection_file(connection)
        client.start_channels()
        self._client = client
        await asyncio.wait_for(client.wait_for_ready(timeout=START_SECONDS), START_SECONDS)

    async def run(self, code: str) -> Result:
        """Run `code` in the kernel, within the call's time limit."""
        if self._client is None or not self.alive:
            raise SandboxError("the session has ended")
        client = self._client
        result = Result()
        kept = _Text(self.limits.output_bytes)
        msg_id = client.execute(code, store_history=True, allow_stdin=False, stop_on_error=True)
        deadline = time.monotonic() + self.limits.call_seconds
        interrupted_at: float | None = None
        while True:
            now = time.monotonic()
            if interrupted_at is None and now >= deadline:
                result.limit = "time"
                interrupted_at = now
                self.interrupt()
            if interrupted_at is not None and now >= interrupted_at + INTERRUPT_GRACE_SECONDS:
                await self.close()
                result.limit = result.limit or "time"
                break
            until = deadline if interrupted_at is None else interrupted_at + INTERRUPT_GRACE_SECONDS
            wait = until - now
            try:
                msg = await client.get_iopub_msg(timeout=max(0.05, min(wait, 1.0)))
            except queue.Empty:  # nothing yet
                if not self.alive:
                    result.limit = result.limit or "ended"
                    break
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content.get("execution_state") == "idle":
                break
            if kind == "stream":
                kept.add(content.get("text", ""))
            elif kind in ("display_data", "execute_result"):
                self._display(content.get("data", {}), kept, result)
            elif kind == "error":
                result.error = True
                kept.add(_ANSI.sub("", "\n".join(content.get("traceback", []))) + "\n")
        if not self.alive:
            result.limit = result.limit or "ended"
        result.logs, result.truncated = kept.text(), kept.cut
        if result.truncated:
            result.limit = result.limit or "output"
        self.used_at = time.monotonic()
        return result

    def _display(self, data: dict[str, Any], kept: _Text, result: Result) -> None:
        png = data.get("image/png")
        if isinstance(png, str):
            image = base64.b64decode(png)
            if len(result.images) < self.limits.images and len(image) <= self.limits.image_bytes:
                result.images.append(image)
            return
        text = data.get("text/plain")
        if isinstance(text, str):
            kept.add(text + "\n")

    def interrupt(self) -> None:
        """Stop the running code (a KeyboardInterrupt in it), as the kernel protocol asks."""
        if self._client is not None and self.alive:
            message = self._client.session.msg("interrupt_request", {})
            self._client.control_channel.send(message)

    def _data(self) -> Path:
        return Path(f"/proc/{self._child_pid}/root{DATA_DIR}")

    async def put(self, name: str, chunks: AsyncIterator[bytes]) -> None:
        """Write a file into the session's /mnt/data (a name without folders), chunk by chunk;
        OSError when it does not fit."""
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"not a file name: {name!r}")
        path = self._data() / name
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(path, flags, 0o644), "wb") as handle:
            async for chunk in chunks:
                handle.write(chunk)
        info = os.stat(path, follow_symlinks=False)
        self._seen[name] = (info.st_size, info.st_mtime_ns)

    def changed(self) -> list[DataFile]:
        """The regular files of /mnt/data (its top level) that are new or changed since they
        were last seen, at most `files_out` of them and each at most `file_out_bytes`."""
        found: list[DataFile] = []
        try:
            entries = list(os.scandir(self._data()))
        except OSError:
            return found
        for entry in sorted(entries, key=lambda e: e.name):
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode) or info.st_size > self.limits.file_out_bytes:
                continue
            mark = (info.st_size, info.st_mtime_ns)
            if self._seen.get(entry.name) == mark or len(found) >= self.limits.files_out:
                continue
            data = _read_regular(entry.path, self.limits.file_out_bytes)
            if data is not None:
                self._seen[entry.name] = mark
                found.append(DataFile(entry.name, data))
        return found

    async def _stderr(self) -> str:
        if self._process is None or self._process.stderr is None:
            return ""
        with contextlib.suppress(Exception):
            if self._process.returncode is not None:
                data = await asyncio.wait_for(self._process.stderr.read(4096), 1)
                return data.decode(errors="replace").strip()
        return ""

    async def close(self) -> None:
        """End the session: the kernel and everything it started."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.stop_channels()
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(process.wait(), 5)
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = ""
        if self._cgroup is not None:
            # The sandbox's processes are still exiting when bwrap has: wait (a little) for
            # the cgroup to empty, or it cannot be removed.
            for _ in range(int(CGROUP_EMPTY_SECONDS / 0.02)):
                if self._cgroup.empty():
                    break
                await asyncio.sleep(0.02)  # no event tells a v1 cgroup emptied
            self._cgroup.remove()
            self._cgroup = None


async def probe(limits: Limits) -> str | None:
    """None when a sandboxed Python with the kernel and its libraries starts on this machine,
    else why not."""
    socket_dir = tempfile.mkdtemp(prefix="gateway-probe-")
    read_info, write_info = os.pipe()
    check = "import ipykernel, jupyter_client, numpy, pandas, matplotlib"
    try:
        argv = command(
            [sys.executable, "-I", "-c", check],
            limits=limits,
            socket_dir=socket_dir,
            info_fd=write_info,
            env=_ENV,
        )
        process = await _spawn(argv, write_info)
        os.close(write_info)
        write_info = -1
        try:
            _, err = await asyncio.wait_for(process.communicate(), START_SECONDS)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            return "the sandbox did not start in time"
        if process.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            return lines[-1] if lines else f"the sandbox exited with {process.returncode}"
        return None
    except OSError as exc:
        return str(exc)
    finally:
        if write_info >= 0:
            os.close(write_info)
        os.close(read_info)
        shutil.rmtree(socket_dir, ignore_errors=True)


class _Text:
    """Output text kept up to a number of bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0
        self.cut = False

    def add(self, text: str) -> None:
        if self.cut or not text:
            return
        data = text.encode(errors="replace")
        room = self.limit - self.size
        if len(data) > room:
            data = data[:room]
            self.cut = True
        self.parts.append(data.decode(errors="ignore"))
        self.size += len(data)

    def text(self) -> str:
        joined = "".join(self.parts)
        if self.cut:
            joined += f"\n[output cut at {self.limit} bytes]\n"
        return joined


def connection_file(folder: str) -> str:
    """A new kernel connection file in `folder`: Unix sockets beside it, a new key."""
    connection = os.path.join(folder, "kernel.json")
    write_connection_file(
        fname=connection,
        transport="ipc",
        ip=os.path.join(folder, "k"),
        key=secrets.token_hex(32).encode(),
    )
    return connection


def kernel_argv(connection: str) -> list[str]:
    """The command of an IPython kernel that serves `connection`."""
    return [
        sys.executable,
        "-I",  # isolated: no user site, no PYTHON* variables, no script folder on the path
        "-m",
        "ipykernel_launcher",
        "-f",
        connection,
        "--HistoryManager.enabled=False",
        "--IPKernelApp.parent_handle=0",
    ]


async def _spawn(argv: list[str], info_fd: int) -> asyncio.subprocess.Process:
    """Start a sandbox command in a session of its own, handing it bwrap's info fd."""
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        pass_fds=(info_fd,),
        start_new_session=True,
    )


def _read_all(fd: int) -> bytes:
    """bwrap's info (one JSON object); bwrap keeps the fd open, so read up to its end."""
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
        if b"}" in chunk:
            break
    return b"".join(chunks)


def _read_regular(path: str, limit: int) -> bytes | None:
    """A regular file's bytes (not a link, not a device), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        data = handle.read(limit + 1)
    return data if len(data) <= limit else None
