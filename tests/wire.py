"""Check wire objects against the official `openai` package's own types.

The package's models are generated from OpenAI's API definition and ship with the SDK the tests
already drive, so the check needs nothing outside the repository. Three rules, each stricter
than the SDK's own parsing:

- the object validates in pydantic's strict mode (no "123" for an int, no unknown enum value);
- it has no field, at any depth, that the type does not declare;
- it has every field its type declares (nullable ones as null), as OpenAI's objects do.
"""

from __future__ import annotations

from typing import Any

import orjson
import pydantic
from openai.types import FileDeleted, FileObject, Upload, VectorStore, VectorStoreDeleted
from openai.types.beta import Assistant, AssistantDeleted, Thread, ThreadDeleted
from openai.types.beta.threads import Message, MessageDeleted, MessageDeltaEvent, Run
from openai.types.beta.threads.runs import RunStep, RunStepDeltaEvent
from openai.types.uploads import UploadPart
from openai.types.vector_stores import VectorStoreFile, VectorStoreFileBatch, VectorStoreFileDeleted

TYPES: dict[str, type[pydantic.BaseModel]] = {
    "assistant": Assistant,
    "assistant.deleted": AssistantDeleted,
    "thread": Thread,
    "thread.deleted": ThreadDeleted,
    "thread.message": Message,
    "thread.message.deleted": MessageDeleted,
    "thread.message.delta": MessageDeltaEvent,
    "thread.run": Run,
    "thread.run.step": RunStep,
    "thread.run.step.delta": RunStepDeltaEvent,
    "file": FileObject,
    "file.deleted": FileDeleted,  # its `object` is "file" too: ask for it by this name
    "upload": Upload,
    "upload.part": UploadPart,
    "vector_store": VectorStore,
    "vector_store.deleted": VectorStoreDeleted,
    "vector_store.file": VectorStoreFile,
    "vector_store.file.deleted": VectorStoreFileDeleted,
    "vector_store.files_batch": VectorStoreFileBatch,
}


def wire_errors(obj: Any, kind: str | None = None) -> list[str]:
    """Every way `obj` breaks its type (picked by its `object` field unless `kind` is given);
    a list envelope checks each of its items. Empty when it conforms."""
    if not isinstance(obj, dict):
        return [f"expected an object, got {type(obj).__name__}"]
    kind = kind or obj.get("object")
    if kind == "list":
        return _list_errors(obj)
    model = TYPES.get(str(kind))
    if model is None:
        return [f"no type known for object {kind!r}"]
    try:
        parsed = model.model_validate_json(orjson.dumps(obj), strict=True)
    except pydantic.ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    errors = [f"{name}: missing" for name in model.model_fields if name not in obj]
    errors += _extra_fields(parsed, model.__name__)
    return errors


def _list_errors(page: dict[str, Any]) -> list[str]:
    errors = [
        f"{name}: missing"
        for name in ("data", "first_id", "last_id", "has_more")
        if name not in page
    ]
    extra = set(page) - {"object", "data", "first_id", "last_id", "has_more"}
    errors += [f"{name}: not a field of a list" for name in sorted(extra)]
    items = page.get("data")
    if not isinstance(items, list):
        return [*errors, "data: not a list"]
    if not isinstance(page.get("has_more"), bool):
        errors.append("has_more: not a boolean")
    ends = (items[0].get("id"), items[-1].get("id")) if items else (None, None)
    if (page.get("first_id"), page.get("last_id")) != ends:
        errors.append("first_id/last_id: do not name the first and last items")
    for i, item in enumerate(items):
        errors += [f"data[{i}].{e}" for e in wire_errors(item)]
    return errors


def _extra_fields(value: Any, path: str) -> list[str]:
    """Fields kept by the SDK's `extra="allow"` models: the ones no type declares."""
    if isinstance(value, pydantic.BaseModel):
        found = [f"{path}.{name}: not a field of the type" for name in value.model_extra or {}]
        for name in type(value).model_fields:
            found += _extra_fields(getattr(value, name), f"{path}.{name}")
        return found
    if isinstance(value, list):
        return [e for i, item in enumerate(value) for e in _extra_fields(item, f"{path}[{i}]")]
    return []


def assert_conforms(obj: Any, kind: str | None = None) -> None:
    errors = wire_errors(obj, kind)
    assert not errors, f"{kind or obj.get('object')} breaks the openai package's type: {errors}"
