"""Validating a request body against its model (requests.py), and how a failure reads.

`validate` gives a plain dict of the fields the client set
(`model_dump(exclude_unset=True, by_alias=True)`). `validation_error_param` turns a
`ValidationError` into the message and `param` OpenAI would report, e.g.
`("Missing required parameter: 'tools[0].function.name'.", "tools[0].function.name")`.
`json_schemas` gives the models' JSON Schemas for the published OpenAPI document.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from inspect import isclass
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, Tag, ValidationError
from pydantic.json_schema import models_json_schema
from pydantic_core import ErrorDetails

from gateway.api.requests import TOP_LEVEL
from gateway.errors import InvalidRequestError

M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: dict[str, Any]) -> dict[str, Any]:
    """`data` validated by `model`, as a dict of the fields the client set; a 400 naming the
    first bad field otherwise."""
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        message, param = validation_error_param(exc)
        code = "unknown_parameter" if message.startswith("Unrecognized") else None
        raise InvalidRequestError(message, param=param, code=code) from None
    dumped: dict[str, Any] = parsed.model_dump(exclude_unset=True, by_alias=True)
    return dumped


def json_schemas(
    models: Sequence[type[BaseModel]], ref_template: str
) -> tuple[dict[type[BaseModel], dict[str, Any]], dict[str, Any]]:
    """Each model's reference and the definitions they share, as JSON Schema."""
    refs, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template=ref_template
    )
    return {model: refs[(model, "validation")] for model in models}, definitions


# -- errors -----------------------------------------------------------------------------------

_BODIES: dict[str, type[BaseModel]] = {cls.__name__: cls for cls in TOP_LEVEL}

_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def validation_error_param(exc: ValidationError) -> tuple[str, str | None]:
    """The message and `param` (as OpenAI writes it) of the first error in `exc`."""
    error = exc.errors(include_url=False)[0]
    path = _wire_path(_BODIES.get(exc.title), error["loc"])
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        # The error sits on the object; the client got its discriminator field wrong.
        key = str(error.get("ctx", {}).get("discriminator", "type")).strip("'")
        path = f"{path}.{key}" if path else key
    return _describe(error, path), path or None


def _describe(error: ErrorDetails, path: str) -> str:
    kind, ctx, value = error["type"], error.get("ctx", {}), error["input"]
    where = f"'{path}'" if path else "the request body"
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {path}"
    if kind in ("missing", "union_tag_not_found"):
        return f"Missing required parameter: {where}."
    if kind in _EXPECTED or kind == "wire_type":
        expected = _EXPECTED.get(kind) or error["msg"].removeprefix("Input should be ")
        return f"Invalid type for {where}: expected {expected}, but got {_kind(value)} instead."
    if kind == "literal_error":
        return (
            f"Invalid value for {where}: {_show(value)}. Supported values are: {ctx['expected']}."
        )
    if kind == "union_tag_invalid":
        tag = value.get(path.rpartition(".")[2]) if isinstance(value, dict) else ctx["tag"]
        return (
            f"Invalid value for {where}: {_show(tag)}. "
            f"Supported values are: {ctx['expected_tags']}."
        )
    if kind == "string_too_long":
        return (
            f"Invalid {where}: string too long. Expected a string with maximum length "
            f"{ctx['max_length']}, but got a string with length {len(value)} instead."
        )
    if kind == "too_long":
        return (
            f"Invalid {where}: array too long. Expected an array with maximum length "
            f"{ctx['max_length']}, but got an array with length {ctx['actual_length']} instead."
        )
    if kind == "too_short":
        return (
            f"Invalid {where}: array too short. Expected an array with minimum length "
            f"{ctx['min_length']}, but got an array with length {ctx['actual_length']} instead."
        )
    if kind in ("greater_than_equal", "less_than_equal"):
        number = "integer" if isinstance(value, int) else "number"
        if kind == "greater_than_equal":
            rule = f"below minimum value. Expected a value >= {_show(ctx['ge'])}"
        else:
            rule = f"above maximum value. Expected a value <= {_show(ctx['le'])}"
        return f"Invalid {where}: {number} {rule}, but got {_show(value)} instead."
    if kind == "string_pattern_mismatch":
        return (
            f"Invalid {where}: string does not match pattern. "
            f"Expected a string that matches the pattern '{ctx['pattern']}'."
        )
    if kind == "value_error":
        return f"Invalid {where}: {ctx['error']}" if path else f"Invalid request: {ctx['error']}"
    return f"Invalid {where}: {error['msg']}."


def _kind(value: object) -> str:
    """How OpenAI names the JSON type of a value in its errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _show(value: object) -> str:
    """A value as it appears in a message: strings quoted, integral floats without '.0'."""
    if isinstance(value, str):
        return f"'{value}'" if len(value) <= 64 else f"'{value[:61]}...'"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, default=str)


# -- error locations as wire paths ------------------------------------------------------------
# pydantic puts the tag of a tagged union into an error's location (`tools, 0, function,
# function, name`). Only the model's structure can tell a tag from a field of the same name, so
# the location is walked alongside the types of the body that failed.


def _wire_path(body: type[BaseModel] | None, loc: tuple[int | str, ...]) -> str:
    path = ""
    node: Any = body if body is not None else Any
    for item in loc:
        node, tags = _unwrap(node)
        if tags is not None:
            node = tags.get(str(item), Any)
        elif isinstance(item, int):
            path += f"[{item}]"
            node = _item_type(node)
        else:
            path = f"{path}.{item}" if path else item
            node = _field_type(node, item)
    return path


def _unwrap(node: Any) -> tuple[Any, dict[str, Any] | None]:
    """Strip Annotated and null from `node`; for a union, also map each tag to its member."""
    while True:
        if get_origin(node) is Annotated:
            node = get_args(node)[0]
        elif get_origin(node) in (Union, UnionType):
            members = [m for m in get_args(node) if m is not NoneType]
            if len(members) > 1:
                return node, {tag: m for m in members for tag in _tags(m)}
            node = members[0]
        else:
            return node, None


def _tags(member: Any) -> list[str]:
    """The tags a union member answers to: its `Tag`, or its `type` literal."""
    if get_origin(member) is Annotated:
        explicit = [meta.tag for meta in get_args(member)[1:] if isinstance(meta, Tag)]
        if explicit:
            return explicit
        member = get_args(member)[0]
    if isclass(member) and issubclass(member, BaseModel) and "type" in member.model_fields:
        annotation = member.model_fields["type"].annotation
        if get_origin(annotation) is Literal:
            return [str(arg) for arg in get_args(annotation)]
    return []


def _item_type(node: Any) -> Any:
    args = get_args(node)
    return args[0] if get_origin(node) is list and args else Any


def _field_type(node: Any, name: str) -> Any:
    if isclass(node) and issubclass(node, BaseModel):
        for field_name, field in node.model_fields.items():
            if name in (field_name, field.alias):
                return field.annotation
        return Any
    args = get_args(node)
    return args[1] if get_origin(node) is dict and len(args) == 2 else Any


# -- chat completions (the pass-through) ---------------------------------------------------
