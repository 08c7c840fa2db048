"""Which backend answers a model name: the first upstream whose patterns match it, else the
default route (the built-in local model unless the configuration names an upstream)."""

from __future__ import annotations

from typing import Any

from gateway.config import GatewayConfig
from gateway.metrics import Metrics
from gateway.models.base import ModelBackend
from gateway.models.embeddings import UpstreamEmbedder
from gateway.models.upstream import OpenAICompatibleBackend, UpstreamPool
from gateway.objects import now

LOCAL_MODEL_ID = "local"


class ModelRouter:
    def __init__(self, config: GatewayConfig, local: ModelBackend, metrics: Metrics) -> None:
        self.config = config
        self.local = local
        self._pool = UpstreamPool(config.upstreams, metrics)
        self._started = now()

    async def open(self) -> None:
        await self._pool.open()

    async def close(self) -> None:
        await self._pool.close()

    def backend_for(self, model: str) -> ModelBackend:
        upstream = self.config.route(model)
        return self.local if upstream is None else self._pool.backends[upstream.name]

    def upstream_embedder(self) -> UpstreamEmbedder | None:
        """The embedder of the upstream the routing file's `embeddings` names, if it does."""
        upstream = self.config.embeddings_upstream()
        if upstream is None or self.config.embedding_model is None:
            return None
        return UpstreamEmbedder(self._pool.backends[upstream.name], self.config.embedding_model)

    def upstream_for(self, model: str) -> OpenAICompatibleBackend | None:
        upstream = self.config.route(model)
        return None if upstream is None else self._pool.backends[upstream.name]

    async def models(self) -> list[dict[str, Any]]:
        """What can be asked for: each upstream's listed models that its patterns route to it,
        its literal (wildcard-free) patterns, and the built-in model."""
        listed: dict[str, dict[str, Any]] = {}
        for upstream in self.config.upstreams:
            listed_by_upstream = await self._pool.backends[upstream.name].list_models()
            names = [*listed_by_upstream, *_literal(upstream.models)]
            for name in names:
                if name not in listed and self.config.route(name) is upstream:
                    listed[name] = _model(name, upstream.name, self._started)
        if self.config.default_route == LOCAL_MODEL_ID:
            listed.setdefault(LOCAL_MODEL_ID, _model(LOCAL_MODEL_ID, "gateway", self._started))
        return list(listed.values())


def _literal(patterns: tuple[str, ...]) -> list[str]:
    return [p for p in patterns if not any(c in p for c in "*?[")]


def _model(name: str, owner: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": owner}
