"""The files of examples/ work as they are: the routing file loads, and the Python and Node
examples stream a run with a tool call through the official SDKs against a live gateway."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config_file import load_config
from tests.nodejs import node_with_packages
from tests.server import LiveServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_example_routing_file_loads() -> None:
    config = load_config(EXAMPLES / "gateway.toml", {"OPENAI_API_KEY": "sk-example"})
    assert [u.name for u in config.upstreams] == ["local-vllm", "openai"]
    assert config.route("llama-3-8b") is config.upstreams[0]
    assert config.route("gpt-4o") is config.upstreams[1]
    assert config.route("mistral") is None  # the built-in model
    assert (config.embeddings, config.code_interpreter) == ("local", "auto")


def _env(server: LiveServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["OPENAI_BASE_URL"] = server.base_url
    return env


def test_the_python_streaming_example_runs(server: LiveServer) -> None:
    env = _env(server)
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "streaming_tool_call.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines() == [
        "[tool calls answered: 1]",
        'Tool results: getCurrentWeather returned {"location": "Miami", "temperature_c": 27, '
        '"sky": "sunny"}.',
    ]


@pytest.mark.timeout(300)
def test_the_node_streaming_example_runs(server: LiveServer) -> None:
    folder = EXAMPLES / "node"
    node = node_with_packages(folder)
    done = subprocess.run(
        [node, "streaming_tool_call.mjs"],
        cwd=folder,
        env=_env(server),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "[tool calls answered: 1]",
        'Tool results: getCurrentWeather returned {"location":"Miami","temperature_c":27,'
        '"sky":"sunny"}.',
    ]
