"""The routing configuration: which upstream serves which model, and with what timeouts.

The file it is read from, and how that file is checked, is `config_file.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

LOCAL = "local"
# Where code_interpreter may run: a bubblewrap sandbox when one works, always, or never.
CODE_INTERPRETER_MODES = ("auto", "bwrap", "off")
# `embeddings` naming no embedder: file_search ranks by keywords alone.
NO_EMBEDDINGS = "none"


@dataclass(frozen=True)
class UpstreamConfig:
    name: str
    base_url: str
    # Glob patterns with fnmatch.fnmatchcase semantics.
    models: tuple[str, ...]
    api_key_env: str | None = None
    # Resolved from `api_key_env` at load time; kept out of repr so logs never show it.
    api_key: str | None = field(default=None, repr=False)
    connect_timeout: float = 10.0
    first_byte_timeout: float = 60.0
    # The longest gap allowed between two streamed chunks.
    idle_timeout: float = 60.0
    # Retries before the first token arrives; after it, a retry would repeat text.
    max_retries: int = 2

    def matches(self, model: str) -> bool:
        """Whether any of this upstream's patterns matches `model` (case-sensitive)."""
        return any(fnmatchcase(model, pattern) for pattern in self.models)


@dataclass(frozen=True)
class GatewayConfig:
    upstreams: tuple[UpstreamConfig, ...] = ()
    # "local" (the built-in model) or the name of an upstream: where unmatched models go.
    default_route: str = LOCAL
    # What embeds file_search's chunks and queries: "local" (the embedded model), "none"
    # (keywords only), or the name of an upstream, whose `embedding_model` is used.
    embeddings: str = LOCAL
    embedding_model: str | None = None
    # Where code_interpreter runs: "auto", "bwrap" or "off" (see Settings.code_interpreter);
    # None leaves it to the setting. A setting other than "auto" wins over the file.
    code_interpreter: str | None = None

    def __post_init__(self) -> None:
        if self.default_route != LOCAL and self._named(self.default_route) is None:
            raise ValueError(f"default_route {self.default_route!r} names no upstream")
        if self.embeddings not in (LOCAL, NO_EMBEDDINGS):
            if self._named(self.embeddings) is None:
                raise ValueError(f"embeddings {self.embeddings!r} names no upstream")
            if not self.embedding_model:
                raise ValueError("embeddings from an upstream need an embedding_model")
        if self.code_interpreter not in (None, *CODE_INTERPRETER_MODES):
            raise ValueError(f"code_interpreter {self.code_interpreter!r}: auto, bwrap or off")

    def embeddings_upstream(self) -> UpstreamConfig | None:
        """The upstream that embeds, if one does."""
        return self._named(self.embeddings)

    def route(self, model: str) -> UpstreamConfig | None:
        """The first upstream matching `model`, else the default route's; None means local."""
        for upstream in self.upstreams:
            if upstream.matches(model):
                return upstream
        if self.default_route == LOCAL:
            return None
        return self._named(self.default_route)

    def _named(self, name: str) -> UpstreamConfig | None:
        return next((u for u in self.upstreams if u.name == name), None)
