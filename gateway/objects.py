"""Wire objects as OpenAI shapes them, their status enums, and the run/step transition table.

Everything here is pure: builders return fresh dicts with every field of the official schema
present (null where the schema allows null), and the transition table says which status changes
are legal. The engine and the API both build objects only through this module.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, TypeVar, cast

import orjson

from gateway import ids
from gateway.bodies import AssistantBody, MessageBody, RunSettings, ThreadBody
from gateway.types import Obj
from gateway.wire import (
    Assistant,
    Deleted,
    File,
    Message,
    Page,
    Run,
    Step,
    Thread,
    Upload,
    UploadPart,
    Usage,
)


class RunStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    REQUIRES_ACTION = "requires_action"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    FAILED = "failed"
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    EXPIRED = "expired"


class StepStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    CANCELLED = "cancelled"
    FAILED = "failed"
    COMPLETED = "completed"
    EXPIRED = "expired"


class MessageStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    INCOMPLETE = "incomplete"
    COMPLETED = "completed"


ACTIVE_RUN_STATUSES = frozenset(
    {RunStatus.QUEUED, RunStatus.IN_PROGRESS, RunStatus.REQUIRES_ACTION, RunStatus.CANCELLING}
)
TERMINAL_RUN_STATUSES = frozenset(RunStatus) - ACTIVE_RUN_STATUSES

RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset(
        {RunStatus.IN_PROGRESS, RunStatus.CANCELLING, RunStatus.FAILED, RunStatus.EXPIRED}
    ),
    RunStatus.IN_PROGRESS: frozenset(
        {
            RunStatus.REQUIRES_ACTION,
            RunStatus.COMPLETED,
            RunStatus.INCOMPLETE,
            RunStatus.FAILED,
            RunStatus.CANCELLING,
            RunStatus.EXPIRED,
        }
    ),
    RunStatus.REQUIRES_ACTION: frozenset(
        {RunStatus.QUEUED, RunStatus.CANCELLING, RunStatus.EXPIRED, RunStatus.FAILED}
    ),
    # Cancellation is best effort: a run that was already finishing may still end otherwise.
    RunStatus.CANCELLING: frozenset(
        {
            RunStatus.CANCELLED,
            RunStatus.COMPLETED,
            RunStatus.FAILED,
            RunStatus.INCOMPLETE,
            RunStatus.EXPIRED,
        }
    ),
    **{status: frozenset() for status in TERMINAL_RUN_STATUSES},
}

STEP_TRANSITIONS: dict[StepStatus, frozenset[StepStatus]] = {
    StepStatus.IN_PROGRESS: frozenset(
        {StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.CANCELLED, StepStatus.EXPIRED}
    ),
    **{s: frozenset() for s in StepStatus if s is not StepStatus.IN_PROGRESS},
}


class IllegalTransitionError(RuntimeError):
    """The engine tried a status change the lifecycle forbids: a bug, never a client error."""


def check_run_transition(current: str, new: str) -> None:
    if RunStatus(new) not in RUN_TRANSITIONS[RunStatus(current)]:
        raise IllegalTransitionError(f"run cannot go from {current} to {new}")


def check_step_transition(current: str, new: str) -> None:
    if StepStatus(new) not in STEP_TRANSITIONS[StepStatus(current)]:
        raise IllegalTransitionError(f"run step cannot go from {current} to {new}")


def now() -> int:
    return int(time.time())


def assistant(fields: AssistantBody) -> Assistant:
    return {
        "id": ids.assistant_id(),
        "object": "assistant",
        "created_at": now(),
        "name": fields.get("name"),
        "description": fields.get("description"),
        "model": fields["model"],
        "instructions": fields.get("instructions"),
        "tools": tools(fields.get("tools")),
        "tool_resources": tool_resources(fields.get("tool_resources"), fields.get("tools") or ()),
        "metadata": fields.get("metadata") or {},
        "temperature": _or(fields.get("temperature"), 1.0),
        "top_p": _or(fields.get("top_p"), 1.0),
        "response_format": _or(fields.get("response_format"), "auto"),
    }


def thread(fields: ThreadBody) -> Thread:
    return {
        "id": ids.thread_id(),
        "object": "thread",
        "created_at": now(),
        "tool_resources": tool_resources(fields.get("tool_resources")),
        "metadata": fields.get("metadata") or {},
    }


# The ranker OpenAI names for file_search when none is asked for.
DEFAULT_RANKER = "default_2024_08_21"


def tools(requested: Sequence[Mapping[str, Any]] | None) -> list[Obj]:
    """Declared tools as OpenAI echoes them: file_search with its ranking options filled in
    (ranker and a score_threshold of 0), max_num_results only when given."""
    echoed: list[Obj] = []
    for tool in requested or ():
        if tool["type"] != "file_search":
            echoed.append(dict(tool))
            continue
        given = tool.get("file_search") or {}
        options = given.get("ranking_options") or {}
        search: Obj = {}
        if given.get("max_num_results") is not None:
            search["max_num_results"] = given["max_num_results"]
        search["ranking_options"] = {
            "ranker": options.get("ranker") or DEFAULT_RANKER,
            "score_threshold": float(options.get("score_threshold") or 0.0),
        }
        echoed.append({"type": "file_search", "file_search": search})
    return echoed


def tool_resources(
    requested: Mapping[str, Any] | None, declared: Sequence[Mapping[str, Any]] = ()
) -> Obj:
    """Tool resources as OpenAI echoes them: each resource given, with its empty list where the
    id list was left out, and an empty one for each hosted tool `declared` without one."""
    given = dict(requested or {})
    kinds = {t["type"] for t in declared} | set(given)
    resources: Obj = {}
    if "code_interpreter" in kinds:
        code = given.get("code_interpreter") or {}
        resources["code_interpreter"] = {"file_ids": list(code.get("file_ids") or [])}
    if "file_search" in kinds:
        search = dict(given.get("file_search") or {})
        search["vector_store_ids"] = list(search.get("vector_store_ids") or [])
        resources["file_search"] = search
    return resources


def message_content(content: str | list[dict[str, Any]]) -> list[Obj]:
    """Request content (a string or parts) as stored response parts."""
    if isinstance(content, str):
        return [text_part(content)]
    parts: list[Obj] = []
    for part in content:
        if part["type"] == "text":
            parts.append(text_part(part["text"]))
        else:
            parts.append(dict(part))
    return parts


def text_part(value: str, annotations: Sequence[Obj] = ()) -> Obj:
    return {"type": "text", "text": {"value": value, "annotations": list(annotations)}}


def image_file_part(file_id: str) -> Obj:
    return {"type": "image_file", "image_file": {"file_id": file_id, "detail": "auto"}}


def file_path(file_id: str, text: str, start: int, end: int) -> Obj:
    return {
        "type": "file_path",
        "text": text,
        "file_path": {"file_id": file_id},
        "start_index": start,
        "end_index": end,
    }


def file_citation(file_id: str, text: str, start: int, end: int) -> Obj:
    return {
        "type": "file_citation",
        "text": text,
        "file_citation": {"file_id": file_id},
        "start_index": start,
        "end_index": end,
    }


def search_sources(steps: Sequence[Mapping[str, Any]]) -> list[str]:
    """The files of a run's file_search results, in the order they were numbered."""
    return [
        result["file_id"]
        for step in steps
        if step["type"] == "tool_calls"
        for call in step["step_details"]["tool_calls"]
        if call["type"] == "file_search"
        for result in call["file_search"].get("results") or ()
    ]


def step_shown(step: Any, *, with_content: bool = False) -> Any:
    """The step as the API shows it: file_search results without their text unless asked
    (`include[]=step_details.tool_calls[*].file_search.results[*].content`)."""
    if with_content or step["type"] != "tool_calls":
        return step
    calls = step["step_details"]["tool_calls"]
    if not any(c["type"] == "file_search" and c["file_search"].get("results") for c in calls):
        return step
    shown_calls = [
        {**c, "file_search": _without_content(c["file_search"])}
        if c["type"] == "file_search"
        else c
        for c in calls
    ]
    return {**step, "step_details": {**step["step_details"], "tool_calls": shown_calls}}


def _without_content(search: Mapping[str, Any]) -> Obj:
    results = [{k: v for k, v in r.items() if k != "content"} for r in search.get("results") or ()]
    return {**search, "results": results}


def user_message(thread_id: str, fields: MessageBody) -> Message:
    """A message created through the API (create message, create thread, additional_messages)."""
    created = now()
    return {
        "id": ids.message_id(),
        "object": "thread.message",
        "created_at": created,
        "thread_id": thread_id,
        "status": MessageStatus.COMPLETED.value,
        "incomplete_details": None,
        "completed_at": created,
        "incomplete_at": None,
        "role": fields["role"],
        "content": message_content(fields["content"]),
        "assistant_id": None,
        "run_id": None,
        "attachments": fields.get("attachments") or [],
        "metadata": fields.get("metadata") or {},
    }


def assistant_message(run: Run) -> Message:
    """The in-progress message a run writes its answer into."""
    return {
        "id": ids.message_id(),
        "object": "thread.message",
        "created_at": now(),
        "thread_id": run["thread_id"],
        "status": MessageStatus.IN_PROGRESS.value,
        "incomplete_details": None,
        "completed_at": None,
        "incomplete_at": None,
        "role": "assistant",
        "content": [],
        "assistant_id": run["assistant_id"],
        "run_id": run["id"],
        "attachments": [],
        "metadata": {},
    }


def run(
    *,
    thread_id: str,
    assistant: Mapping[str, Any],
    fields: RunSettings,
    expiry_seconds: int,
    run_id: str | None = None,
) -> Run:
    """A queued run that snapshots its effective configuration from the assistant and overrides."""
    created = now()
    instructions = fields.get("instructions")
    if instructions is None:
        instructions = assistant.get("instructions") or ""
    extra = fields.get("additional_instructions")
    if extra:
        instructions = f"{instructions}\n\n{extra}" if instructions else extra
    run_tools = fields.get("tools")
    truncation = fields.get("truncation_strategy") or {"type": "auto", "last_messages": None}
    return {
        "id": run_id or ids.run_id(),
        "object": "thread.run",
        "created_at": created,
        "thread_id": thread_id,
        "assistant_id": assistant["id"],
        "status": RunStatus.QUEUED.value,
        "required_action": None,
        "last_error": None,
        "expires_at": created + expiry_seconds,
        "started_at": None,
        "cancelled_at": None,
        "failed_at": None,
        "completed_at": None,
        "incomplete_details": None,
        "model": fields.get("model") or assistant["model"],
        "instructions": instructions,
        "tools": assistant["tools"] if run_tools is None else tools(run_tools),
        "metadata": fields.get("metadata") or {},
        "usage": None,
        "temperature": _or(fields.get("temperature"), _or(assistant.get("temperature"), 1.0)),
        "top_p": _or(fields.get("top_p"), _or(assistant.get("top_p"), 1.0)),
        "max_prompt_tokens": fields.get("max_prompt_tokens"),
        "max_completion_tokens": fields.get("max_completion_tokens"),
        "truncation_strategy": {
            "type": truncation["type"],
            "last_messages": truncation.get("last_messages"),
        },
        "tool_choice": _or(fields.get("tool_choice"), "auto"),
        "parallel_tool_calls": _or(fields.get("parallel_tool_calls"), True),
        "response_format": _or(
            fields.get("response_format"), _or(assistant.get("response_format"), "auto")
        ),
    }


def step(run: Run, step_details: Obj) -> Step:
    return {
        "id": ids.step_id(),
        "object": "thread.run.step",
        "created_at": now(),
        "assistant_id": run["assistant_id"],
        "thread_id": run["thread_id"],
        "run_id": run["id"],
        "type": step_details["type"],
        "status": StepStatus.IN_PROGRESS.value,
        "step_details": step_details,
        "last_error": None,
        "expired_at": None,
        "cancelled_at": None,
        "failed_at": None,
        "completed_at": None,
        "metadata": {},
        "usage": None,
    }


def hosted_call_details(run: Run, kind: str) -> Obj:
    """What a hosted tool call shows while it runs: file_search the run's ranking options and
    no results yet; code_interpreter no input and no outputs yet."""
    if kind == "file_search":
        declared = [t for t in run["tools"] if t["type"] == "file_search"][:1]
        (search,) = tools(declared or [{"type": "file_search"}])
        return {"ranking_options": search["file_search"]["ranking_options"], "results": []}
    return {"input": "", "outputs": []}


def usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def file(
    *,
    filename: str,
    purpose: str,
    size: int,
    expires_after: int | None,
    file_id: str | None = None,
    created: int | None = None,
) -> File:
    """A stored file; `expires_after` seconds from its creation, if given."""
    created = now() if created is None else created
    return {
        "id": file_id or ids.file_id(),
        "object": "file",
        "bytes": size,
        "created_at": created,
        "expires_at": None if expires_after is None else created + expires_after,
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "status_details": None,
    }


# How long an upload stays open for parts (OpenAI: an hour).
UPLOAD_SECONDS = 3600


def upload(*, filename: str, purpose: str, size: int, created: int) -> Upload:
    return {
        "id": ids.upload_id(),
        "object": "upload",
        "bytes": size,
        "created_at": created,
        "expires_at": created + UPLOAD_SECONDS,
        "filename": filename,
        "purpose": purpose,
        "status": "pending",
        "file": None,
    }


def upload_part(upload_id: str, *, created: int) -> UploadPart:
    return {
        "id": ids.part_id(),
        "object": "upload.part",
        "created_at": created,
        "upload_id": upload_id,
    }


# OpenAI's `auto` chunking: 800-token chunks overlapping by 400.
AUTO_CHUNKING: Obj = {
    "type": "static",
    "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
}
FILE_STATUSES = ("in_progress", "completed", "failed", "cancelled")


def chunking(requested: Mapping[str, Any] | None) -> Obj:
    """A chunking strategy as a vector store file shows it: `auto` is its static sizes."""
    if not requested or requested["type"] == "auto":
        return {"type": "static", "static": dict(AUTO_CHUNKING["static"])}
    return {"type": "static", "static": dict(requested["static"])}


def file_counts(counts: Mapping[str, int] | None = None) -> Obj:
    counts = counts or {}
    shown: Obj = {status: counts.get(status, 0) for status in FILE_STATUSES}
    shown["total"] = sum(shown.values())
    return shown


def vector_store(
    *, name: str | None, expires_after: Mapping[str, Any] | None, metadata: Any, created: int
) -> Obj:
    return {
        "id": ids.vector_store_id(),
        "object": "vector_store",
        "created_at": created,
        "name": name or "",
        "usage_bytes": 0,
        "file_counts": file_counts(),
        "status": "completed",
        "expires_after": dict(expires_after) if expires_after else None,
        "expires_at": created + expires_after["days"] * 86400 if expires_after else None,
        "last_active_at": created,
        "metadata": metadata or {},
    }


def vector_store_file(
    vector_store_id: str,
    file_id: str,
    *,
    chunking_strategy: Mapping[str, Any] | None,
    attributes: Mapping[str, Any] | None,
    created: int,
    batch_id: str | None = None,
) -> Obj:
    """A file being added to a vector store (`file_id` and `batch_id` are the gateway's
    lookup columns, not shown)."""
    return {
        "id": file_id,
        "object": "vector_store.file",
        "usage_bytes": 0,
        "created_at": created,
        "vector_store_id": vector_store_id,
        "status": "in_progress",
        "last_error": None,
        "chunking_strategy": chunking(chunking_strategy),
        "attributes": dict(attributes) if attributes else {},
        "file_id": file_id,
        "batch_id": batch_id,
    }


def file_batch(vector_store_id: str, *, created: int, total: int) -> Obj:
    return {
        "id": ids.file_batch_id(),
        "object": "vector_store.files_batch",
        "created_at": created,
        "vector_store_id": vector_store_id,
        "status": "in_progress",
        "file_counts": file_counts({"in_progress": total}),
    }


def deleted(object_id: str, kind: str) -> Deleted:
    return {"id": object_id, "object": kind, "deleted": True}


def page(data: list[Obj], has_more: bool) -> Page:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


_Wire = TypeVar("_Wire", bound=Mapping[str, Any])


def copied(obj: _Wire) -> _Wire:
    """A deep copy of a wire object (JSON values only) that the caller may change freely: an
    orjson round trip, about a sixth of what copy.deepcopy costs for a run."""
    return cast(_Wire, orjson.loads(orjson.dumps(obj)))
