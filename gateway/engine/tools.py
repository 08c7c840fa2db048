"""The tools the gateway runs itself: file_search and code_interpreter.

A model backend knows only function tools, so each hosted tool a run declares is offered to the
model as a function of the same name; a call of that name is the hosted tool's, runs on the
server, and its result goes back to the model in the same run (no requires_action). A hosted
tool this gateway cannot run (not set up on this machine, or not built yet) is still offered and
accepted everywhere; a run whose model calls it fails with a last_error that says why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.engine.handle import RunHandle
from gateway.types import Obj

# The hosted tool types, in the order their functions are offered to the model.
HOSTED_TYPES = ("file_search", "code_interpreter")

# The functions the model is offered for the hosted tools.
_FUNCTIONS: dict[str, Obj] = {
    "file_search": {
        "name": "file_search",
        "description": (
            "Search the files the user has given you (documents attached to this conversation "
            "or to the assistant) for passages relevant to a query. Use it for any question "
            "those files may answer, and cite what you use."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for, in words."}
            },
            "required": ["query"],
        },
    },
    "code_interpreter": {
        "name": "code_interpreter",
        "description": (
            "Run Python code in a stateful sandbox and get what it prints; files the user gave "
            "are in /mnt/data, and files written there are returned to the user."
        ),
        "parameters": {
            "type": "object",
            "properties": {"code": {"type": "string", "description": "The Python code to run."}},
            "required": ["code"],
        },
    },
}


class ToolUnavailableError(Exception):
    """The model called a hosted tool this gateway cannot run; the run fails with this."""


class HostedTool(Protocol):
    """A tool the gateway runs on the server for the model."""

    async def call(self, handle: RunHandle, arguments: str) -> Obj:
        """Run one call with the model's `arguments` (a JSON text); returns the call's details
        as the step shows them (the object under the call's type). Raises ToolUnavailableError
        when the tool cannot run."""
        ...


@dataclass(frozen=True)
class Unavailable:
    """A hosted tool this gateway does not run: every call is refused with `reason`."""

    type: str
    reason: str

    async def call(self, handle: RunHandle, arguments: str) -> Obj:
        raise ToolUnavailableError(
            f"The model called the {self.type} tool, which this gateway cannot run: {self.reason}"
        )


def unavailable_tools() -> dict[str, HostedTool]:
    """Every hosted tool, none of them runnable (the engine puts in those it runs)."""
    return {
        "file_search": Unavailable("file_search", "file search is not available yet."),
        "code_interpreter": Unavailable(
            "code_interpreter",
            "code execution is turned off on this gateway (its code_interpreter setting is off).",
        ),
    }


def offered(run_tools: Sequence[Mapping[str, Any]]) -> tuple[list[Obj], dict[str, str]]:
    """The function tools a model is offered for a run's tools, and which function names are
    hosted tools (name -> tool type). A function the run declares keeps its name: a hosted tool
    whose name it takes is not offered."""
    functions = [dict(t) for t in run_tools if t["type"] == "function"]
    taken = {t["function"]["name"] for t in functions}
    declared = {t["type"] for t in run_tools}
    hosted: dict[str, str] = {}
    for kind in HOSTED_TYPES:
        function = _FUNCTIONS[kind]
        if kind in declared and function["name"] not in taken:
            functions.append({"type": "function", "function": function})
            hosted[function["name"]] = kind
    return functions, hosted


def model_tool_choice(choice: str | Mapping[str, Any], hosted: Mapping[str, str]) -> Any:
    """The run's tool_choice as the model takes it: a named hosted tool becomes its function."""
    if isinstance(choice, str) or choice.get("type") == "function":
        return choice
    for name, kind in hosted.items():
        if kind == choice.get("type"):
            return {"type": "function", "function": {"name": name}}
    return "auto"  # the named tool is not offered (a function took its name)


def code_input(arguments: str) -> str:
    """The code the model asked to run: `code` of its JSON arguments, else the arguments as
    they are (some models send the code bare)."""
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return arguments
    if isinstance(parsed, dict):
        code = parsed.get("code", parsed.get("input", ""))
        return code if isinstance(code, str) else ""
    return arguments
