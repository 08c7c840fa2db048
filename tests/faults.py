"""Network faults on loopback for tests: make one TCP connection's peer vanish, as if its host
lost power, by dropping every packet of that connection in nftables (needs root and `nft`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator


def can_drop_packets() -> str | None:
    """None when packets can be dropped here, else why not."""
    if shutil.which("nft") is None:
        return "nftables (`nft`) is not installed"
    if os.geteuid() != 0:
        return "dropping packets with nftables needs root"
    return None


@contextlib.contextmanager
def vanished(port: int) -> Iterator[None]:
    """While inside, every loopback packet to or from local TCP port `port` is dropped: the
    connection on that port is half-open, neither side hears from the other."""
    table = f"gwtest_{uuid.uuid4().hex[:8]}"

    def nft(*args: str) -> None:
        subprocess.run(["nft", *args], check=True, capture_output=True, timeout=10)

    nft("add", "table", "inet", table)
    try:
        nft("add", "chain", "inet", table, "out", "{ type filter hook output priority 0; }")
        nft("add", "rule", "inet", table, "out", "tcp", "dport", str(port), "drop")
        nft("add", "rule", "inet", table, "out", "tcp", "sport", str(port), "drop")
        yield
    finally:
        nft("delete", "table", "inet", table)
