"""A cgroup per code_interpreter session, where this process may make one: it caps the
session's processes (pids.max) and memory (its tmpfs pages included) as a whole.

Resource limits (rlimits) cap each process; only a cgroup caps a session, and only a cgroup
holds a fork bomb when the gateway runs as root (no process limit binds root). Both cgroup
versions are used as the host mounts them: v2 (one hierarchy, /sys/fs/cgroup) or v1 (the
`pids` and `memory` hierarchies). Where none can be made (no permission, no controller), the
rlimits alone apply and the start-up log says so.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
# The folder under each hierarchy that holds the sessions' cgroups.
PARENT = "gateway-sandbox"


@dataclass(frozen=True)
class Cgroup:
    """One session's cgroup: the folders that make it (one per hierarchy)."""

    paths: tuple[Path, ...]

    def procs(self) -> list[str]:
        """The files a process writes its pid to, to join the cgroup."""
        return [str(path / "cgroup.procs") for path in self.paths]

    def empty(self) -> bool:
        """Whether no process is left in the cgroup (they may take a moment to exit)."""
        try:
            return all(not Path(procs).read_text().strip() for procs in self.procs())
        except OSError:
            return True

    def remove(self) -> None:
        """Remove the cgroup (once its processes are gone)."""
        for path in self.paths:
            with contextlib.suppress(OSError):
                path.rmdir()


class Cgroups:
    """Makes the sessions' cgroups under PARENT in each hierarchy it found usable."""

    def __init__(self, parents: dict[str, Path], version: int) -> None:
        self.parents = parents  # controller ("pids", "memory") -> its PARENT folder
        self.version = version

    @classmethod
    def find(cls) -> Cgroups | None:
        """The cgroups this process can make sessions in, or None."""
        try:
            found = cls._v2() if (ROOT / "cgroup.controllers").exists() else cls._v1()
            if found is not None:
                found.sweep()
            return found
        except OSError:
            return None

    @classmethod
    def _v2(cls) -> Cgroups | None:
        available = (ROOT / "cgroup.controllers").read_text().split()
        if "pids" not in available:
            return None
        parent = ROOT / PARENT
        parent.mkdir(exist_ok=True)
        wanted = [c for c in ("pids", "memory") if c in available]
        # The root cgroup may hand controllers down while it holds processes; a child may not.
        (ROOT / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))
        (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))
        return cls(dict.fromkeys(wanted, parent), 2)

    @classmethod
    def _v1(cls) -> Cgroups | None:
        parents: dict[str, Path] = {}
        for controller in ("pids", "memory"):
            hierarchy = ROOT / controller
            if hierarchy.is_dir() and os.access(hierarchy, os.W_OK):
                parent = hierarchy / PARENT
                parent.mkdir(exist_ok=True)
                parents[controller] = parent
        return cls(parents, 1) if "pids" in parents else None

    def sweep(self) -> None:
        """Remove the empty cgroups of sessions gone without theirs (a gateway killed); one a
        live session holds cannot be removed and stays."""
        for folder in dict.fromkeys(self.parents.values()):
            for path in folder.iterdir():
                if path.is_dir():
                    with contextlib.suppress(OSError):
                        path.rmdir()

    def make(self, name: str, *, processes: int, memory_bytes: int) -> Cgroup:
        """A new cgroup for a session, with its limits set."""
        paths: list[Path] = []
        for folder in dict.fromkeys(self.parents.values()):
            path = folder / name
            path.mkdir()
            paths.append(path)
        for controller, folder in self.parents.items():
            path = folder / name
            if controller == "pids":
                (path / "pids.max").write_text(str(processes))
            elif self.version == 2:
                (path / "memory.max").write_text(str(memory_bytes))
                with contextlib.suppress(OSError):
                    (path / "memory.swap.max").write_text("0")
            else:
                (path / "memory.limit_in_bytes").write_text(str(memory_bytes))
        return Cgroup(tuple(paths))

    def describe(self) -> str:
        return f"cgroup v{self.version} ({', '.join(sorted(self.parents))})"
