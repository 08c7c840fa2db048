"""What the engine takes from a request, as types: each body as the API's validation leaves it
(api/requests.py: only the fields the client set, every one already checked). Nested parts the
engine passes through whole (tools, content parts, response formats) stay JSON objects."""

from __future__ import annotations

from typing import Any, Required, TypedDict

Json = dict[str, Any]


class MessageBody(TypedDict, total=False):
    role: Required[str]
    content: Required[str | list[Json]]
    attachments: list[Json] | None
    metadata: dict[str, str] | None


class ThreadBody(TypedDict, total=False):
    messages: list[MessageBody] | None
    metadata: dict[str, str] | None
    tool_resources: Json | None


class _AssistantFields(TypedDict, total=False):
    name: str | None
    description: str | None
    instructions: str | None
    tools: list[Json] | None
    tool_resources: Json | None
    metadata: dict[str, str] | None
    temperature: float | None
    top_p: float | None
    response_format: str | Json | None
    reasoning_effort: str | None


class AssistantBody(_AssistantFields, total=False):
    model: Required[str]


class AssistantChanges(_AssistantFields, total=False):
    model: str


class RunSettings(TypedDict, total=False):
    """What a run may set over its assistant's settings."""

    model: str | None
    instructions: str | None
    additional_instructions: str | None
    additional_messages: list[MessageBody] | None
    tools: list[Json] | None
    truncation_strategy: Json | None
    metadata: dict[str, str] | None
    temperature: float | None
    top_p: float | None
    max_prompt_tokens: int | None
    max_completion_tokens: int | None
    tool_choice: str | Json | None
    parallel_tool_calls: bool | None
    response_format: str | Json | None
    reasoning_effort: str | None
    stream: bool | None


class RunBody(RunSettings, total=False):
    assistant_id: Required[str]


class ThreadAndRunBody(RunBody, total=False):
    thread: ThreadBody | None
    tool_resources: Json | None


class ChatBody(TypedDict, total=False):
    model: Required[str]
    messages: Required[list[Json]]
    tools: list[Json] | None
    tool_choice: str | Json | None
    parallel_tool_calls: bool | None
    response_format: str | Json | None
    temperature: float | None
    top_p: float | None
    max_completion_tokens: int | None
    max_tokens: int | None
    stream: bool | None
