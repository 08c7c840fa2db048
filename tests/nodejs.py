"""Node.js for the tests that run the official openai-node SDK: the node binary, with a
folder's packages installed from its committed lock (`npm ci`, only when not installed yet)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import need

INSTALL_TIMEOUT = 180


def node_with_packages(folder: Path) -> str:
    """The node binary, once `folder`'s pinned packages (its openai) are installed; skips (or
    fails under GATEWAY_REQUIRE_SERVICES=1) without node and npm, or when npm ci fails."""
    node, npm = shutil.which("node"), shutil.which("npm")
    need(node is not None and npm is not None, "node and npm not found on PATH")
    assert node is not None and npm is not None
    if not (folder / "node_modules" / "openai").is_dir():
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
        need(installed.returncode == 0, f"npm ci failed in {folder}:\n{installed.stderr}")
    return node
