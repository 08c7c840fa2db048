"""The wire objects as types: each one's fields as OpenAI's API gives them, every field always
present (null where allowed). Built only by `objects.py`; stored whole by the store (which
reads them back as plain JSON objects, `types.Obj`). Nested parts (tools, content parts, step
details, response formats) stay JSON objects: the request models of api/requests.py already
checked their shapes on the way in."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

Json = dict[str, Any]


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class LastError(TypedDict):
    code: str
    message: str


class Assistant(TypedDict):
    id: str
    object: Literal["assistant"]
    created_at: int
    name: str | None
    description: str | None
    model: str
    instructions: str | None
    tools: list[Json]
    tool_resources: Json
    metadata: dict[str, str]
    temperature: float
    top_p: float
    response_format: str | Json


class Thread(TypedDict):
    id: str
    object: Literal["thread"]
    created_at: int
    tool_resources: Json
    metadata: dict[str, str]


class Message(TypedDict):
    id: str
    object: Literal["thread.message"]
    created_at: int
    thread_id: str
    status: str
    incomplete_details: Json | None
    completed_at: int | None
    incomplete_at: int | None
    role: str
    content: list[Json]
    assistant_id: str | None
    run_id: str | None
    attachments: list[Json]
    metadata: dict[str, str]


class TruncationStrategy(TypedDict):
    type: str
    last_messages: int | None


class Run(TypedDict):
    id: str
    object: Literal["thread.run"]
    created_at: int
    thread_id: str
    assistant_id: str
    status: str
    required_action: Json | None
    last_error: LastError | None
    expires_at: int | None
    started_at: int | None
    cancelled_at: int | None
    failed_at: int | None
    completed_at: int | None
    incomplete_details: Json | None
    model: str
    instructions: str
    tools: list[Json]
    metadata: dict[str, str]
    usage: Usage | None
    temperature: float
    top_p: float
    max_prompt_tokens: int | None
    max_completion_tokens: int | None
    truncation_strategy: TruncationStrategy
    tool_choice: str | Json
    parallel_tool_calls: bool
    response_format: str | Json


class Step(TypedDict):
    id: str
    object: Literal["thread.run.step"]
    created_at: int
    assistant_id: str
    thread_id: str
    run_id: str
    type: str
    status: str
    step_details: Json
    last_error: LastError | None
    expired_at: int | None
    cancelled_at: int | None
    failed_at: int | None
    completed_at: int | None
    metadata: dict[str, str]
    usage: Usage | None


class File(TypedDict):
    id: str
    object: Literal["file"]
    bytes: int
    created_at: int
    expires_at: int | None
    filename: str
    purpose: str
    status: str
    status_details: str | None


class Upload(TypedDict):
    id: str
    object: Literal["upload"]
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    status: str
    file: File | None


class UploadPart(TypedDict):
    id: str
    object: Literal["upload.part"]
    created_at: int
    upload_id: str


class Deleted(TypedDict):
    id: str
    object: str
    deleted: bool


class Page(TypedDict):
    object: Literal["list"]
    data: list[Any]
    first_id: str | None
    last_id: str | None
    has_more: bool
