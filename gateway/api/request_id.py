"""The request id of every HTTP request: the client's `X-Request-ID` when it sends a sane one,
else a new one; set for the logs (`logs.request_id`) and echoed in the response's header by
the request edge (`api/edge.py`)."""

from __future__ import annotations

import re

from starlette.types import Scope

from gateway.ids import new_id

HEADER = b"x-request-id"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_of(scope: Scope) -> str:
    """The client's sane `X-Request-ID`, else a new id."""
    given = ""
    for name, value in scope["headers"]:
        if name == HEADER:
            given = value.decode("latin-1")
    return given if _SANE_ID.fullmatch(given) else new_id("req_")
