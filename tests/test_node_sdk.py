"""End to end through a real uvicorn, driven by the official Node `openai` SDK's stream helpers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.nodejs import INSTALL_TIMEOUT, node_with_packages
from tests.server import LiveServer

NODE_DIR = Path(__file__).parent / "node"
SCRIPT = NODE_DIR / "roundtrip.mjs"
RUN_TIMEOUT = 60

# The first test may wait for `npm ci` before its own node run; the global 60 s would cut it.
pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + RUN_TIMEOUT + 30)


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with the pinned `openai` package installed from the committed lock."""
    return node_with_packages(NODE_DIR)


@pytest.fixture
def roundtrip(node: str, server: LiveServer) -> dict[str, Any]:
    """What the Node SDK collected from a tool-call run, its continuation and a text run."""
    done = subprocess.run(
        [node, str(SCRIPT), server.base_url],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    result: dict[str, Any] = json.loads(line)
    return result


def test_tool_run_stream_opens_with_run_lifecycle_and_pauses_for_action(
    roundtrip: dict[str, Any],
) -> None:
    """The first stream starts created, queued, in_progress and ends with requires_action."""
    tool_run = roundtrip["toolRun"]
    events = tool_run["events"]
    assert events[:3] == ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
    assert events[-1] == "thread.run.requires_action"
    assert tool_run["status"] == "requires_action"
    assert tool_run["text"] == ""


def test_tool_call_reaches_the_sdk_helpers_with_exact_arguments(
    roundtrip: dict[str, Any],
) -> None:
    """toolCallCreated and toolCallDelta rebuild get_weather with exactly {"city":"Paris"}."""
    tool_run = roundtrip["toolRun"]
    [call] = tool_run["toolCalls"]
    assert (call["type"], call["name"]) == ("function", "get_weather")
    assert call["arguments"] == '{"city":"Paris"}'
    [required] = tool_run["requiredToolCalls"]
    assert required == {"id": call["id"], "name": "get_weather", "arguments": '{"city":"Paris"}'}


def test_submit_tool_outputs_stream_completes_with_the_tool_result(
    roundtrip: dict[str, Any],
) -> None:
    """submitToolOutputsStream yields the tool-result text and the same run, completed."""
    continuation = roundtrip["continuation"]
    assert continuation["text"] == 'Tool results: get_weather returned {"temp_c": 21}.'
    assert continuation["status"] == "completed"
    assert continuation["sameRun"] is True
    assert continuation["events"][-1] == "thread.run.completed"


def test_text_run_stream_delivers_the_reply_text(roundtrip: dict[str, Any]) -> None:
    """A plain run's textDelta values join to the local model's echo reply."""
    text_run = roundtrip["textRun"]
    assert text_run["text"] == "You said: hello from node"
    assert text_run["status"] == "completed"
    assert text_run["events"][:3] == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
    ]
    assert text_run["events"][-1] == "thread.run.completed"
