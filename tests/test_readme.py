"""The README's examples run as written against a live gateway."""

from __future__ import annotations

import re
import sys
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


def test_readme_curl_block_runs_as_pasted(server: LiveServer) -> None:
    """The curl block, pasted into bash with the server's address, gets the reply."""
    import shutil
    import subprocess

    bash, curl = shutil.which("bash"), shutil.which("curl")
    if bash is None or curl is None:
        pytest.skip("bash or curl is not installed")
    (block,) = re.findall(r"### curl\n.*?```bash\n(.*?)```", README.read_text(), flags=re.S)
    script = block.replace("http://127.0.0.1:8000/v1", server.base_url)
    done = subprocess.run(
        [bash, "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    import json

    messages = json.loads(done.stdout)["data"]
    texts = [m["content"][0]["text"]["value"] for m in messages]
    assert texts == ["Hello", "You said: Hello"]


def test_readme_links_lead_to_files() -> None:
    """Every relative link and picture in the README names a file or folder of the repository."""
    text = README.read_text()
    targets = re.findall(r"\]\(([^)#\s]+)[^)]*\)", text) + re.findall(r'src="([^"]+)"', text)
    local = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert local, "no relative links found: the pattern is wrong"
    missing = [t for t in local if not (README.parent / t).exists()]
    assert missing == []


def test_every_readme_block_is_run_by_the_walkthrough_or_says_why_not() -> None:
    """.ci/readme_walkthrough.py (CI runs it) reads every fenced block: shell and Python blocks
    run, the rest carry a marker (a routing file to start a server with, or a reason to skip)."""
    import importlib.util

    path = README.parent / ".ci" / "readme_walkthrough.py"
    spec = importlib.util.spec_from_file_location("readme_walkthrough", path)
    assert spec is not None and spec.loader is not None
    walkthrough = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = walkthrough  # its dataclasses look their module up there
    spec.loader.exec_module(walkthrough)
    found = walkthrough.blocks(README.read_text())
    assert len(found) == README.read_text().count("\n```") // 2
    modes = [(block.language, block.mode) for block in found]
    assert modes[0] == ("bash", "server")
    assert ("toml", "config") in modes
    assert all(block.argument for block in found if block.mode == "skip"), "a skip says why"
    ran = [block for block in found if block.mode == "run"]
    assert any("pytest" in block.code for block in ran)
    assert any("locust" in block.code for block in ran)
    assert any("keys create" in block.code for block in ran)
    with pytest.raises(walkthrough.WalkthroughError, match="unknown walkthrough mode"):
        walkthrough.blocks("<!-- walkthrough: maybe -->\n```bash\ntrue\n```\n")
    with pytest.raises(walkthrough.WalkthroughError, match="needs a walkthrough marker"):
        walkthrough.blocks("```js\nalert(1)\n```\n")
