"""Turn a thread and a run into the chat history a model backend takes, truncated as asked."""

from __future__ import annotations

import json
from collections.abc import Sequence

from gateway import citations
from gateway.citations import Source
from gateway.engine.tools import model_tool_choice, offered
from gateway.models.base import ChatMessage, ModelBackend, ModelRequest, ToolCall
from gateway.types import AnyObj, Obj
from gateway.wire import Run


class PromptTooLongError(Exception):
    """Even truncated, the prompt is over the run's max_prompt_tokens."""


def thread_message(message: AnyObj) -> ChatMessage:
    texts: list[str] = []
    parts: list[Obj] = []
    for part in message["content"]:
        if part["type"] == "text":
            texts.append(part["text"]["value"])
        else:
            parts.append(part)
    if message["role"] == "assistant":
        return ChatMessage(role="assistant", content="\n".join(texts), parts=tuple(parts))
    return ChatMessage(role="user", content="\n".join(texts), parts=tuple(parts))


def tool_round(step: AnyObj, first_source: int = 0) -> list[ChatMessage]:
    """An answered tool_calls step as the assistant's calls followed by one tool message each:
    a function's output, or file_search's results numbered from `first_source` (the results
    of the run's earlier searches come before)."""
    calls = [c for c in step["step_details"]["tool_calls"] if c["type"] in _ANSWERED]
    made: list[ToolCall] = []
    outputs: list[ChatMessage] = []
    number = first_source
    for call in calls:
        if call["type"] == "function":
            function = call["function"]
            made.append(ToolCall(call["id"], function["name"], function["arguments"]))
            output = function["output"] or ""
        elif call["type"] == "code_interpreter":
            details = call["code_interpreter"]
            made.append(
                ToolCall(call["id"], "code_interpreter", json.dumps({"code": details["input"]}))
            )
            output = _interpreter_output(details["outputs"])
        else:
            made.append(ToolCall(call["id"], "file_search", "{}"))
            sources = []
            for result in call["file_search"].get("results") or ():
                text = "".join(part["text"] for part in result.get("content") or ())
                sources.append(
                    Source(number, result["file_id"], result["file_name"], result["score"], text)
                )
                number += 1
            output = citations.render(sources)
        outputs.append(ChatMessage(role="tool", content=output, tool_call_id=call["id"]))
    return [ChatMessage(role="assistant", content="", tool_calls=tuple(made)), *outputs]


# The calls whose answers the model is shown: functions (their outputs), file_search and
# code_interpreter.
_ANSWERED = ("function", "file_search", "code_interpreter")


def _interpreter_output(outputs: Sequence[AnyObj]) -> str:
    """What a code_interpreter call gave, as the model reads it."""
    parts = []
    for output in outputs:
        if output["type"] == "logs":
            parts.append(output["logs"])
        elif output["type"] == "image":
            parts.append(f"[an image was shown to the user: {output['image']['file_id']}]")
    return "\n".join(parts) or "(no output)"


def search_results(step: AnyObj) -> int:
    """How many file_search results the step's calls hold."""
    return sum(
        len(call["file_search"].get("results") or ())
        for call in step["step_details"]["tool_calls"]
        if call["type"] == "file_search"
    )


def build_request(
    run: Run, messages: Sequence[AnyObj], steps: Sequence[AnyObj], backend: ModelBackend
) -> ModelRequest:
    """The model request for the next segment of `run` (raises PromptTooLongError)."""
    system = (
        [ChatMessage(role="system", content=run["instructions"])] if run["instructions"] else []
    )
    history = [thread_message(m) for m in messages]
    rounds: list[ChatMessage] = []
    sources = 0
    for step in steps:
        if step["type"] == "tool_calls" and step["status"] == "completed":
            rounds += tool_round(step, sources)
            sources += search_results(step)
    truncation = run["truncation_strategy"]
    keep = truncation["last_messages"]
    if truncation["type"] == "last_messages" and keep:
        history = history[-keep:]
    limit = run["max_prompt_tokens"]
    if limit is not None:
        # Drop the oldest thread messages (never the newest) until the prompt fits.
        while len(history) > 1 and backend.count_tokens([*system, *history, *rounds]) > limit:
            history.pop(0)
        if backend.count_tokens([*system, *history, *rounds]) > limit:
            raise PromptTooLongError
    tools, hosted = offered(run["tools"])
    return ModelRequest(
        model=run["model"],
        messages=[*system, *history, *rounds],
        tools=tools,
        tool_choice=model_tool_choice(run["tool_choice"], hosted) if tools else "none",
        parallel_tool_calls=run["parallel_tool_calls"],
        response_format=run["response_format"],
        temperature=run["temperature"],
        top_p=run["top_p"],
        max_completion_tokens=run["max_completion_tokens"],
    )
