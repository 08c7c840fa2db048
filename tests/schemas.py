"""Validate wire objects against the official OpenAPI schemas in ../shared/spec."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "spec"
    / "openai-assistants-openapi-subset.yaml"
)
_URI = "urn:openai-assistants-spec"


def _nullable(node: Any) -> Any:
    """Rewrite OpenAPI 3.0's `nullable: true` (which the document still mixes in) as JSON Schema."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable(value) for key, value in node.items()}
    if node.pop("nullable", False):
        if isinstance(node.get("type"), str) and "enum" not in node:
            node["type"] = [node["type"], "null"]
        else:
            node = {"anyOf": [node, {"type": "null"}]}
    return node


@cache
def _registry() -> Registry[Any]:
    document = _nullable(yaml.safe_load(SPEC.read_text()))
    return Registry().with_resource(_URI, Resource(contents=document, specification=DRAFT202012))


def schema_errors(component: str, obj: Any) -> list[str]:
    """Every way `obj` breaks components/schemas/<component> (empty when it conforms)."""
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"{_URI}#/components/schemas/{component}"}, registry=_registry()
    )
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)
    ]


def assert_conforms(component: str, obj: Any) -> None:
    errors = schema_errors(component, obj)
    assert not errors, f"{component} breaks the official schema: {errors}"
