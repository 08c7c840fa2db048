"""The test snippets of ../shared/spec/sdk-notes.md run unchanged against a live gateway."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import need
from tests.server import LiveServer

NOTES = Path(__file__).resolve().parents[2] / "shared" / "spec" / "sdk-notes.md"


def snippet() -> str:
    """The first Python block of the notes' section 10, read at test time (never copied)."""
    need(NOTES.exists(), f"SDK notes not found at {NOTES}")
    section = NOTES.read_text().split("## 10.", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match is not None, "section 10 has no python block"
    return match.group(1)


@pytest.mark.settings(local_model_delay_ms=20)
def test_sdk_notes_snippet_runs_unchanged(server: LiveServer) -> None:
    """Raw streams, the helper round trip, polling, steps, errors and cancel, as the notes wrote
    them, against the built-in model at its default pace."""
    code = snippet()
    assert 'base_url="http://127.0.0.1:8000/v1"' in code
    code = code.replace("http://127.0.0.1:8000/v1", server.base_url)
    namespace: dict[str, object] = {}
    exec(compile(code, str(NOTES), "exec"), namespace)
    assert namespace["final"].status in ("cancelled", "completed")  # type: ignore[attr-defined]
