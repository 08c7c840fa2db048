"""Plain types shared across the gateway's layers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

# A wire object (assistant, thread, message, run, step) as the JSON the API returns.
Obj: TypeAlias = dict[str, Any]
# Any wire object to read or write whole: a typed one (wire.py) or plain JSON.
AnyObj: TypeAlias = Mapping[str, Any]


@dataclass(frozen=True)
class PageQuery:
    """One page of a list, as OpenAI's cursor pagination asks for it."""

    limit: int = 20
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None
    before: str | None = None
