"""Making API keys for tests, through the real `gateway keys` command."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from gateway.__main__ import main


def make_key(database: Path | str, project: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(["keys", "--database", str(database), "create", "--project", project]) == 0
    key = out.getvalue().strip()
    assert key.startswith("gwk_") and "\n" not in key
    return key
