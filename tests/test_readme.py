"""The README's examples run as written against a live gateway."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.server import LiveServer

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_sdk_example_runs(server: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    """The SDK example prints what its comments promise."""
    example = python_blocks()[0]
    code = example.replace("http://127.0.0.1:8000/v1", server.base_url)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [
        "get_weather {'city': 'Paris'}",
        "completed",
        'Tool results: get_weather returned {"temp_c": 21}.',
    ]
    assert out[3:] == ["tool_calls completed", "message_creation completed"]


def test_readme_configuration_table_matches_settings() -> None:
    """Every setting appears in the README's configuration table with its variable."""
    from dataclasses import fields

    from gateway.settings import Settings, env_name

    text = README.read_text()
    for f in fields(Settings):
        assert f"`{env_name(f.name)}`" in text, f"{env_name(f.name)} missing from README"


def test_readme_streaming_example_runs(
    server: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The streaming example prints every event name, then the streamed answer."""
    example = python_blocks()[1]
    code = example.replace("http://127.0.0.1:8000/v1", server.base_url)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
    assert out[-2:] == ["thread.run.completed", "You said: Stream this"]
    assert "thread.message.delta" in out
