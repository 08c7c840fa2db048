"""The sandbox a code_interpreter kernel runs in: bubblewrap (Debian's `bwrap`), as the operating
system gives it, with resource limits set before it starts.

Inside: every namespace of its own (no network but its own loopback, its own processes, no
view of the host's), the system and Python read-only, a size-limited tmpfs at /mnt/data (the
working folder) and at /tmp, an empty environment but for a few variables, no capabilities,
and the sandbox ends with the process that started it. The only path shared with the host is
the session's socket folder, where the kernel's sockets are (the kernel protocol over Unix
sockets, which cross network namespaces).

Resource limits are rlimits set by `prlimit` on the sandbox's first process and inherited by
everything in it: CPU seconds, address space, file size, open files, and processes (counted
per user; where the gateway runs as root, which no process limit binds, a pids cgroup holds
the session when one can be made).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.sandbox.limits import Limits

# The host folders a Python needs, bound read-only at the same paths.
_SYSTEM = ("/usr", "/etc/ld.so.cache", "/etc/fonts", "/etc/localtime", "/etc/ssl")
# Open files a sandboxed process may hold.
_OPEN_FILES = 256
# Where a kernel's files are: its working folder, the only one it keeps files in.
DATA_DIR = "/mnt/data"
# The user the code runs as, inside its user namespace (the host's user outside).
SANDBOX_UID = 1000


def bwrap_path() -> str | None:
    """The bwrap executable, or None where it is not installed."""
    return shutil.which("bwrap")


def python_roots() -> list[str]:
    """The folders the sandbox's Python runs from (this interpreter's installation and, when
    it runs in a virtual environment, that environment), without duplicates."""
    roots: list[str] = []
    for prefix in (sys.base_prefix, sys.prefix):
        path = str(Path(prefix).resolve())
        if not any(path == r or path.startswith(r + "/") for r in roots):
            roots.append(path)
    return roots


def command(
    argv: Sequence[str],
    *,
    limits: Limits,
    socket_dir: str,
    info_fd: int,
    env: dict[str, str],
) -> list[str]:
    """The command that runs `argv` in a sandbox: prlimit, then bwrap."""
    bwrap = bwrap_path()
    if bwrap is None:
        raise FileNotFoundError("bwrap is not installed (Debian: apt install bubblewrap)")
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise FileNotFoundError("prlimit is not installed (Debian: util-linux)")
    rlimits = [
        prlimit,
        f"--cpu={limits.cpu_seconds}",
        f"--as={limits.memory_bytes}",
        f"--fsize={limits.file_bytes}",
        f"--nofile={_OPEN_FILES}",
        f"--nproc={limits.processes}",
        "--core=0",
        "--",
    ]
    box = [
        bwrap,
        "--unshare-all",  # ipc, pid, net, uts, cgroup namespaces of its own
        "--unshare-user",  # and a user namespace, where the code runs as an unprivileged user
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--hostname",
        "sandbox",
        "--info-fd",
        str(info_fd),
    ]
    # /tmp first: the Python or the session's sockets may live under the host's /tmp, bound
    # over it below.
    box += ["--size", str(limits.disk_bytes), "--tmpfs", "/tmp"]
    for path in _SYSTEM:
        if os.path.exists(path):
            box += ["--ro-bind", path, path]
    for name in ("bin", "lib", "lib64", "sbin"):
        host = f"/{name}"
        if os.path.islink(host):
            box += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            box += ["--ro-bind", host, host]
    for root in python_roots():
        if not root.startswith("/usr/"):
            box += ["--ro-bind", root, root]
    box += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(limits.disk_bytes),
        "--tmpfs",
        DATA_DIR,
        "--bind",
        socket_dir,
        socket_dir,
        "--remount-ro",
        "/",
        "--chdir",
        DATA_DIR,
        "--clearenv",
    ]
    for key, value in env.items():
        box += ["--setenv", key, value]
    return [*rlimits, *box, "--", *argv]
