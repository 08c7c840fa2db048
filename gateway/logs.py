"""Logging: plain text by default, or one JSON object per line (`--log-format json`), each
with the request id, project and run id of the moment it was written.

The context comes from contextvars: `api/request_id.py` (ASGI middleware) sets the request id
(the client's `X-Request-ID` when it sends a sane one, else a new one, echoed back in the
response), `access.admit` the project, and the engine the run id inside a run's task. Log lines
carry no secrets and no message bodies: the access log's `token=` query values (browser stream
tokens) are replaced with `***`.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
from typing import Any

import orjson

from gateway.retrying import quiet_stamina

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
project: contextvars.ContextVar[str | None] = contextvars.ContextVar("project", default=None)
run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)

_TOKEN = re.compile(r"([?&]token=)[^&\s\"]*")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in (("request_id", request_id), ("project", project), ("run_id", run_id)):
            value = var.get()
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class RedactTokens(logging.Filter):
    """Replaces the value of any `token=` query parameter in a record's arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN.sub(r"\1***", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def configure(level: str, fmt: str) -> None:
    """The root handler for the whole process (uvicorn's loggers included)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactTokens())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if level != "trace" else "DEBUG")
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    quiet_stamina()  # the gateway's own retry lines say what failed and why (retrying.py)
