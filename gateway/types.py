"""Pure type aliases shared across the gateway."""

from __future__ import annotations

from typing import Any, TypeAlias

# A wire object (assistant, thread, message, run, step) as the JSON the API returns.
Obj: TypeAlias = dict[str, Any]
