"""What a code_interpreter session may use: each a setting, each with a safe default."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1 << 20


@dataclass(frozen=True)
class Limits:
    # Wall time of one call; past it the code is interrupted (and the session ended if the
    # interrupt does not stop it within INTERRUPT_GRACE_SECONDS).
    call_seconds: float = 60.0
    # CPU seconds each process of a session may use in all (RLIMIT_CPU); a kernel that spends
    # them is killed and the next call starts a fresh session.
    cpu_seconds: int = 600
    # Address space of each process (RLIMIT_AS).
    memory_bytes: int = 2048 * MIB
    # Processes and threads in a session at once.
    processes: int = 64
    # The largest file the code may write (RLIMIT_FSIZE).
    file_bytes: int = 256 * MIB
    # Room in the session's /mnt/data and /tmp (each a size-limited tmpfs).
    disk_bytes: int = 512 * MIB
    # Text kept from one call's output (stdout, stderr, results, tracebacks); the rest is cut.
    output_bytes: int = 64 * 1024
    # Images kept from one call, and the size of each.
    images: int = 8
    image_bytes: int = 8 * MIB
    # Files taken from /mnt/data after a call (new or changed ones), and the size of each.
    files_out: int = 16
    file_out_bytes: int = 64 * MIB


# How long an interrupted call may take to stop before its session is ended.
INTERRUPT_GRACE_SECONDS = 2.0
