"""The routing file (`gateway serve --config gateway.toml`), read into a `GatewayConfig`.

`load_config` reads the TOML file (tomllib), checks every key, resolves each upstream's API key
from the environment, and reports the first problem as a `ConfigError` naming the file and the
line. tomllib gives no positions for values, so the line of a key is found by a small scan of
the text (`_Lines`).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from gateway.config import (
    CODE_INTERPRETER_MODES,
    LOCAL,
    NO_EMBEDDINGS,
    GatewayConfig,
    UpstreamConfig,
)

MAX_RETRIES = 10
TOP_KEYS = ("default_route", "embeddings", "embedding_model", "code_interpreter", "upstream")
UPSTREAM_KEYS = (
    "name",
    "base_url",
    "api_key_env",
    "models",
    "connect_timeout",
    "first_byte_timeout",
    "idle_timeout",
    "max_retries",
)
REQUIRED_KEYS = ("name", "base_url", "models")


class ConfigError(Exception):
    """The config file cannot be used; `str()` is one line, `path:line: problem`."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        problem = " ".join(problem.splitlines())
        super().__init__(path, line, problem)
        self.path = path
        self.line = line
        self.problem = problem

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.problem}"


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read and check the routing file; API keys come from `environ` (default os.environ)."""
    shown = str(path)
    text = _read(shown, Path(path))
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(shown, text, exc) from exc
    checker = _Checker(shown, _Lines(text), os.environ if environ is None else environ)
    return checker.config(document)


def _read(shown: str, path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(shown, None, f"cannot read the file: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problem = f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x})"
        raise ConfigError(shown, line, problem) from exc


_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)$")
_AT_END = " (at end of document)"


def _syntax_error(shown: str, text: str, exc: tomllib.TOMLDecodeError) -> ConfigError:
    message = str(exc)
    if position := _POSITION.search(message):
        return ConfigError(shown, int(position.group(1)), message[: position.start()])
    if message.endswith(_AT_END):
        last_line = text.rstrip().count("\n") + 1
        return ConfigError(shown, last_line, message.removesuffix(_AT_END) + " at end of file")
    return ConfigError(shown, None, message)


class _Checker:
    """Turns the parsed document into a GatewayConfig, or raises at the first problem."""

    def __init__(self, shown: str, lines: _Lines, environ: Mapping[str, str]) -> None:
        self.shown = shown
        self.lines = lines
        self.environ = environ

    def config(self, document: dict[str, Any]) -> GatewayConfig:
        for key in document:
            if key not in TOP_KEYS:
                allowed = ", ".join(TOP_KEYS)
                self.top_error(key, f"unknown top-level key {key!r} (allowed: {allowed})")
        tables = document.get("upstream", [])
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            got = _kind(tables)
            if isinstance(tables, list):
                got += " holding " + _kind(next(t for t in tables if not isinstance(t, dict)))
            self.top_error("upstream", f"'upstream' must be an array of tables, got {got}")
        upstreams: list[UpstreamConfig] = []
        numbers: dict[str, int] = {}
        for index, table in enumerate(tables):
            upstream = self.upstream(index, table)
            first = numbers.setdefault(upstream.name, index + 1)
            if first != index + 1:
                problem = f"name {upstream.name!r} is already used by upstream #{first}"
                self.key_error(index, "name", problem)
            upstreams.append(upstream)
        default_route = document.get("default_route", LOCAL)
        if not isinstance(default_route, str):
            got = _kind(default_route)
            self.top_error("default_route", f"'default_route' must be a string, got {got}")
        names = [u.name for u in upstreams]
        if default_route != LOCAL and default_route not in names:
            choices = ", ".join(repr(name) for name in [LOCAL, *names])
            problem = f"'default_route' is {default_route!r}; it must be one of {choices}"
            self.top_error("default_route", problem)
        embeddings = document.get("embeddings", LOCAL)
        if not isinstance(embeddings, str):
            self.top_error("embeddings", f"'embeddings' must be a string, got {_kind(embeddings)}")
        if embeddings not in (LOCAL, NO_EMBEDDINGS, *names):
            choices = ", ".join(repr(name) for name in [LOCAL, NO_EMBEDDINGS, *names])
            problem = f"'embeddings' is {embeddings!r}; it must be one of {choices}"
            self.top_error("embeddings", problem)
        model = document.get("embedding_model")
        if model is not None and (not isinstance(model, str) or not model):
            self.top_error("embedding_model", "'embedding_model' must be a model name")
        if embeddings not in (LOCAL, NO_EMBEDDINGS) and model is None:
            problem = f"'embeddings' names upstream {embeddings!r}: give its 'embedding_model'"
            self.top_error("embeddings", problem)
        code = document.get("code_interpreter")
        if code is not None and code not in CODE_INTERPRETER_MODES:
            choices = ", ".join(repr(mode) for mode in CODE_INTERPRETER_MODES)
            problem = f"'code_interpreter' is {code!r}; it must be one of {choices}"
            self.top_error("code_interpreter", problem)
        return GatewayConfig(
            upstreams=tuple(upstreams),
            default_route=default_route,
            embeddings=embeddings,
            embedding_model=model,
            code_interpreter=code,
        )

    def upstream(self, index: int, table: dict[str, Any]) -> UpstreamConfig:
        for key in table:
            if key not in UPSTREAM_KEYS:
                allowed = ", ".join(UPSTREAM_KEYS)
                self.key_error(index, key, f"unknown key {key!r} (allowed: {allowed})")
        for key in REQUIRED_KEYS:
            if key not in table:
                self.error(self.lines.upstream(index), index, f"missing required key {key!r}")
        name = self.string(index, table, "name")
        if name == LOCAL:
            problem = f"the name {LOCAL!r} is reserved for the built-in model"
            self.key_error(index, "name", problem)
        api_key_env = self.string(index, table, "api_key_env") if "api_key_env" in table else None
        return UpstreamConfig(
            name=name,
            base_url=self.base_url(index, table),
            models=self.models(index, table),
            api_key_env=api_key_env,
            api_key=None if api_key_env is None else self.api_key(index, api_key_env),
            connect_timeout=self.timeout(index, table, "connect_timeout"),
            first_byte_timeout=self.timeout(index, table, "first_byte_timeout"),
            idle_timeout=self.timeout(index, table, "idle_timeout"),
            max_retries=self.max_retries(index, table),
        )

    def string(self, index: int, table: dict[str, Any], key: str) -> str:
        value = table[key]
        if not isinstance(value, str):
            self.key_error(index, key, f"{key!r} must be a string, got {_kind(value)}")
        if not value:
            self.key_error(index, key, f"{key!r} must not be empty")
        return value

    def base_url(self, index: int, table: dict[str, Any]) -> str:
        url = self.string(index, table, "base_url")
        if problem := _url_problem(url):
            self.key_error(index, "base_url", f"'base_url' {problem}")
        return url.rstrip("/")

    def models(self, index: int, table: dict[str, Any]) -> tuple[str, ...]:
        value = table["models"]
        if not isinstance(value, list):
            got = _kind(value)
            self.key_error(index, "models", f"'models' must be an array of strings, got {got}")
        if not value:
            self.key_error(index, "models", "'models' must list at least one model pattern")
        for number, item in enumerate(value, 1):
            if not isinstance(item, str):
                problem = f"'models' item {number} must be a string, got {_kind(item)}"
                self.key_error(index, "models", problem)
            if not item:
                self.key_error(index, "models", f"'models' item {number} is an empty string")
        return tuple(value)

    def api_key(self, index: int, variable: str) -> str:
        value = self.environ.get(variable)
        if not value:
            state = "not set" if value is None else "empty"
            problem = f"environment variable {variable!r} (from 'api_key_env') is {state}"
            self.key_error(index, "api_key_env", problem)
        return value

    def timeout(self, index: int, table: dict[str, Any], key: str) -> float:
        default: float = getattr(UpstreamConfig, key)
        value = table.get(key, default)
        # bool is an int subclass, but `true` is no number of seconds.
        if isinstance(value, bool) or not isinstance(value, int | float):
            problem = f"{key!r} must be a number of seconds, got {_kind(value)}"
            self.key_error(index, key, problem)
        if not (math.isfinite(value) and value > 0):
            problem = f"{key!r} must be a positive number of seconds, got {value}"
            self.key_error(index, key, problem)
        return float(value)

    def max_retries(self, index: int, table: dict[str, Any]) -> int:
        value = table.get("max_retries", UpstreamConfig.max_retries)
        if isinstance(value, bool) or not isinstance(value, int):
            problem = f"'max_retries' must be an integer, got {_kind(value)}"
            self.key_error(index, "max_retries", problem)
        if not 0 <= value <= MAX_RETRIES:
            problem = f"'max_retries' must be between 0 and {MAX_RETRIES}, got {value}"
            self.key_error(index, "max_retries", problem)
        return value

    def top_error(self, key: str, problem: str) -> NoReturn:
        raise ConfigError(self.shown, self.lines.top.get(key), problem)

    def key_error(self, index: int, key: str, problem: str) -> NoReturn:
        self.error(self.lines.upstream_key(index, key), index, problem)

    def error(self, line: int | None, index: int, problem: str) -> NoReturn:
        raise ConfigError(self.shown, line, f"upstream #{index + 1}: {problem}")


def _url_problem(url: str) -> str | None:
    """Why `url` cannot be an upstream's base URL, or None; never echoes the URL itself."""
    if any(char.isspace() or not char.isprintable() for char in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # parsing the port is what raises on a bad one
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        got = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        return f"must start with http:// or https://, got {got}"
    if not parts.hostname:
        return "must name a host"
    if parts.username is not None or parts.password is not None:
        # A URL is shown in logs and reprs; the key belongs in the api_key_env variable.
        return "must not carry credentials; put the key in the variable named by 'api_key_env'"
    if parts.query or parts.fragment:
        return "must not have a query or fragment"
    return None


_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a float"),
    (str, "a string"),
    (list, "an array"),
    (dict, "a table"),
    (datetime, "a date-time"),
    (date, "a date"),
    (time, "a time"),
)


def _kind(value: object) -> str:
    """A TOML value's type in words, with its article: "an integer"."""
    return next((kind for cls, kind in _KINDS if isinstance(value, cls)), type(value).__name__)


# --- where keys sit in the text ------------------------------------------------------------------
# tomllib reports no positions for values, so problems are placed by finding a key's `key =`
# line in the text: at the top level, or inside the Nth [[upstream]] table.

_HEADER = re.compile(r"\s*(\[\[?)([^\[\]#]*)\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""\s*(?:([A-Za-z0-9_-]+)|"([^"\\]*)"|'([^']*)')\s*[=.]""")


class _Lines:
    """Line numbers of top-level keys, of each [[upstream]] header and of the keys under it."""

    def __init__(self, text: str) -> None:
        self.top: dict[str, int] = {}
        self.headers: list[int] = []
        self.tables: list[dict[str, int]] = []
        current: dict[str, int] | None = self.top
        scan = _Scan()
        # Not splitlines(): it also splits on characters TOML allows inside strings.
        for number, line in enumerate(text.split("\n"), 1):
            if scan.at_statement:
                if header := _HEADER.match(line):
                    current = self._header(number, header)
                elif (key := _KEY.match(line)) and current is not None:
                    current.setdefault(key.group(key.lastindex or 1), number)
            scan.feed(line)

    def _header(self, number: int, header: re.Match[str]) -> dict[str, int] | None:
        """Record a table header; return where the keys under it go (None: nowhere we need)."""
        path = [part.strip().strip("\"'") for part in header.group(2).split(".")]
        if path == ["upstream"] and header.group(1) == "[[":
            self.headers.append(number)
            self.tables.append({})
            return self.tables[-1]
        if path[0] == "upstream" and len(path) > 1 and self.tables:
            # [upstream.x] adds key x to the last upstream.
            self.tables[-1].setdefault(path[1], number)
        else:
            self.top.setdefault(path[0], number)
        return None

    def upstream(self, index: int) -> int | None:
        """The line of the index-th upstream's header (or of `upstream =` for an inline array)."""
        if index < len(self.headers):
            return self.headers[index]
        return self.top.get("upstream")

    def upstream_key(self, index: int, key: str) -> int | None:
        if index < len(self.tables) and key in self.tables[index]:
            return self.tables[index][key]
        return self.upstream(index)


class _Scan:
    """Whether a line starts a statement: not inside a multi-line string or array."""

    def __init__(self) -> None:
        self.string: str | None = None  # the delimiter of an open multi-line string
        self.depth = 0  # open brackets and braces

    @property
    def at_statement(self) -> bool:
        return self.string is None and self.depth == 0

    def feed(self, line: str) -> None:
        i = 0
        while i < len(line):
            if self.string is not None:
                end = _closing(line, i, self.string)
                if end < 0:
                    return
                self.string = None
                i = end
                continue
            char = line[i]
            if char == "#":
                return
            if line.startswith(('"""', "'''"), i):
                self.string = line[i : i + 3]
                i += 3
                continue
            if char in "\"'":
                end = _closing(line, i + 1, char)
                i = len(line) if end < 0 else end
                continue
            if char in "[{":
                self.depth += 1
            elif char in "]}":
                self.depth = max(self.depth - 1, 0)
            i += 1


def _closing(line: str, start: int, quote: str) -> int:
    """The index just past `quote` closing a string from `start` on, or -1 if not on this line."""
    i = start
    while i < len(line):
        if line[i] == "\\" and quote[0] == '"':
            i += 2
            continue
        if line.startswith(quote, i):
            i += len(quote)
            # A multi-line string may end with up to two quotes of its own: """a""""".
            while len(quote) == 3 and i < len(line) and line[i] == quote[0]:
                i += 1
            return i
        i += 1
    return -1
