"""The `filters` of a vector store search, on a file's attributes: comparisons (eq, ne, gt,
gte, lt, lte, in, nin) and their `and` / `or`. A comparison with an attribute the file lacks,
or of values that cannot be ordered (a number with a string), is false."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def matches(condition: Mapping[str, Any], attributes: Mapping[str, Any]) -> bool:
    kind: str = condition["type"]
    if kind == "and":
        return all(matches(c, attributes) for c in condition["filters"])
    if kind == "or":
        return any(matches(c, attributes) for c in condition["filters"])
    key, wanted = condition["key"], condition["value"]
    if key not in attributes:
        return kind == "nin" or kind == "ne"
    have = attributes[key]
    if kind == "eq":
        return _same(have, wanted)
    if kind == "ne":
        return not _same(have, wanted)
    if kind in ("in", "nin"):
        choices = wanted if isinstance(wanted, list) else [wanted]
        found = any(_same(have, choice) for choice in choices)
        return found if kind == "in" else not found
    try:
        if kind == "gt":
            return bool(have > wanted)
        if kind == "gte":
            return bool(have >= wanted)
        if kind == "lt":
            return bool(have < wanted)
        return bool(have <= wanted)
    except TypeError:
        return False


def _same(have: Any, wanted: Any) -> bool:
    # True is not 1 here: a boolean equals only a boolean.
    if isinstance(have, bool) or isinstance(wanted, bool):
        return isinstance(have, bool) and isinstance(wanted, bool) and have == wanted
    return bool(have == wanted)
