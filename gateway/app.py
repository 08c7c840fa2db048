"""Composition root: `create_app(settings)` builds the Starlette app; its lifespan opens the store,
the bus, the model backends and the run engine, and closes them in reverse order.

This is the only module that names concrete adapters.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from gateway import api
from gateway.api import health
from gateway.api.edge import RequestEdge
from gateway.api.http import JSONResponse
from gateway.api.limits import FORM_OVERHEAD_BYTES, RateLimiter
from gateway.auth import KeyRing
from gateway.bus import open_bus
from gateway.config import NO_EMBEDDINGS, GatewayConfig
from gateway.config_file import load_config
from gateway.engine import RunEngine
from gateway.engine.completions import Completions
from gateway.engine.idempotency import IdempotencyKeys
from gateway.engine.leases import default_owner
from gateway.engine.uploads import PART_MAX_BYTES
from gateway.errors import GatewayError, envelope
from gateway.knowledge.embed import Embedder
from gateway.metrics import Metrics
from gateway.models.base import ModelBackend
from gateway.models.local import LocalModelBackend
from gateway.models.router import ModelRouter
from gateway.sandbox.cgroups import Cgroups
from gateway.sandbox.limits import MIB, Limits
from gateway.sandbox.sessions import Sessions
from gateway.settings import Settings
from gateway.store import open_store
from gateway.tokens import StreamTokens

log = logging.getLogger("gateway")


def _embedder(config: GatewayConfig, router: ModelRouter, settings: Settings) -> Embedder | None:
    """file_search's embedder, as the routing file says (said in the log)."""
    upstream = router.upstream_embedder()
    if upstream is not None:
        log.info("file_search embeds with upstream %s", upstream.name)
        return upstream
    if config.embeddings == NO_EMBEDDINGS:
        log.info("file_search ranks by keywords only (embeddings = 'none')")
        return None
    # Imported here: onnxruntime costs a moment and memory a gateway without it never pays.
    from gateway.knowledge import local_embed

    if not local_embed.available():
        log.warning("file_search ranks by keywords only: the embedded model is not installed")
        return None
    log.info("file_search embeds with the embedded model %s", local_embed.MODEL_NAME)
    return local_embed.LocalEmbedder(threads=settings.embedding_threads)


def code_mode_of(settings: Settings, config: GatewayConfig) -> str:
    """Where code_interpreter runs: the setting, unless it is "auto" and the routing file
    says otherwise."""
    if settings.code_interpreter != "auto":
        return settings.code_interpreter
    return config.code_interpreter or "auto"


def _sessions(settings: Settings, mode: str) -> Sessions | None:
    """code_interpreter's sandboxed sessions, unless turned off (checked at start)."""
    if mode == "off":
        log.info("code_interpreter is off (its setting is off): runs that call it fail")
        return None
    return Sessions(
        sandbox_limits(settings),
        max_sessions=settings.code_interpreter_sessions,
        idle_seconds=settings.code_interpreter_idle_seconds,
        cgroups=Cgroups.find(),
    )


def sandbox_limits(settings: Settings) -> Limits:
    """A code_interpreter session's limits, from the settings."""
    return Limits(
        call_seconds=settings.code_interpreter_call_seconds,
        cpu_seconds=settings.code_interpreter_cpu_seconds,
        memory_bytes=settings.code_interpreter_memory_mb * MIB,
        processes=settings.code_interpreter_processes,
        disk_bytes=settings.code_interpreter_disk_mb * MIB,
        output_bytes=settings.code_interpreter_output_kb * 1024,
    )


async def _check_sandbox(sessions: Sessions | None, mode: str) -> None:
    """Try the sandbox and say in the log whether code_interpreter runs: in the background,
    or, with `--code-interpreter bwrap`, before serving (a sandbox that does not work then
    stops the start)."""
    if sessions is None:
        return
    check = sessions.check()
    if mode == "bwrap":
        _said(sessions, mode, await check)
    else:
        check.add_done_callback(
            lambda done: None if done.cancelled() else _said(sessions, mode, done.result())
        )


def _said(sessions: Sessions, mode: str, reason: str | None) -> None:
    if reason is None:
        held = sessions.cgroups.describe() if sessions.cgroups else "rlimits only (no cgroup)"
        log.info(
            "code_interpreter runs in a bwrap sandbox: up to %d sessions, %s",
            sessions.max_sessions,
            held,
        )
    elif mode == "bwrap":
        raise RuntimeError(f"--code-interpreter bwrap: the sandbox does not work here: {reason}")
    else:
        log.warning("code_interpreter is off: the sandbox does not work here: %s", reason)


def create_app(
    settings: Settings,
    *,
    config: GatewayConfig | None = None,
    backend_for: Callable[[str], ModelBackend] | None = None,
) -> Starlette:
    """The app for `settings`. Runs are routed by `config` (by default the file named by
    `settings.config`, or none); `backend_for` replaces that routing altogether."""
    if config is None:
        config = load_config(settings.config) if settings.config else GatewayConfig()
    routing = config
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = open_store(
            settings.database,
            busy_ms=settings.database_busy_ms,
            pool_size=settings.database_pool_size,
        )
        await store.open()
        bus = open_bus(settings.bus, subscriber_buffer=settings.subscriber_buffer)
        local = LocalModelBackend(delay_ms=settings.local_model_delay_ms)
        router = ModelRouter(routing, local, metrics)
        await router.open()
        embedder = _embedder(routing, router, settings)
        code_mode = code_mode_of(settings, routing)
        sessions = _sessions(settings, code_mode)
        engine = RunEngine(
            store,
            bus,
            backend_for or router.backend_for,
            run_expiry_seconds=settings.run_expiry_seconds,
            expiry_check_seconds=settings.expiry_check_seconds,
            shutdown_grace_seconds=settings.shutdown_grace_seconds,
            event_retention_seconds=settings.event_retention_seconds,
            event_flush_seconds=settings.event_flush_ms / 1000,
            event_prune_seconds=settings.event_prune_seconds,
            persist_events=settings.persist_events,
            max_active_runs=settings.max_active_runs,
            max_active_runs_per_project=settings.max_active_runs_per_project,
            max_active_runs_per_key=settings.max_active_runs_per_key,
            metrics=metrics,
            owner=settings.worker_id or default_owner(settings.port),
            lease_seconds=settings.lease_seconds,
            owner_cache_size=settings.owner_cache_size,
            stream_retry_ms=settings.stream_retry_ms,
            max_file_bytes=settings.max_file_bytes,
            embedder=embedder,
            sessions=sessions,
            ingestion_timeout_seconds=settings.ingestion_timeout_seconds,
        )
        secret = await store.write(
            lambda tx: tx.secret("stream_tokens", lambda: secrets.token_urlsafe(32))
        )
        app.state.tokens = StreamTokens(secret, ttl_seconds=settings.stream_token_seconds)
        keys = KeyRing(store)
        app.state.keys = keys
        app.state.rate_limiter = RateLimiter(
            settings.rate_limit_per_second, settings.rate_limit_burst
        )
        idempotency = IdempotencyKeys(store)
        app.state.idempotency = idempotency
        app.state.settings = settings
        app.state.store = store
        app.state.bus = bus
        app.state.engine = engine
        app.state.completions = Completions(router)
        try:
            await keys.start()
            await idempotency.start()
            if keys.open:
                log.warning(
                    "no API keys: the API is open to anyone who can reach it; "
                    "make one with `gateway keys create --project NAME`"
                )
            await _check_sandbox(engine.sessions, code_mode)
            await engine.start()
            yield
        finally:
            await keys.stop()
            await idempotency.stop()
            await engine.stop()
            if embedder is not None:
                embedder.close()
            await bus.close()
            await router.close()
            await store.close()

    middleware = [
        Middleware(
            RequestEdge,
            max_bytes=settings.max_body_bytes,
            # A file's body, or an upload part's: the bytes and their form's few fields.
            larger=[
                ("POST", "/files", settings.max_file_bytes + FORM_OVERHEAD_BYTES),
                ("POST", "/uploads/[^/]+/parts", PART_MAX_BYTES + FORM_OVERHEAD_BYTES),
            ],
        ),
    ]
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                allow_headers=["*"],
                expose_headers=["openai-poll-after-ms"],
                max_age=600,
            )
        )
    app = Starlette(
        routes=[*health.routes, Mount("/v1", routes=api.routes), *api.routes],
        middleware=middleware,
        exception_handlers={
            GatewayError: _gateway_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
        lifespan=lifespan,
    )
    app.state.metrics = metrics  # before start-up: the server's connections count into it too
    return app


async def drain(app: Starlette) -> None:
    """Begin shutting down: end the runs in progress, whose streams then get their final events
    and `done`, and close every other stream. The lifespan closes the rest afterwards."""
    engine: RunEngine | None = getattr(app.state, "engine", None)
    if engine is not None:
        await engine.stop()
        await app.state.bus.close()


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    code = {404: "unknown_url", 405: "method_not_allowed"}.get(exc.status_code)
    return JSONResponse(
        envelope(message, "invalid_request_error", None, code),
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        envelope(
            "The server had an error while processing your request.",
            "server_error",
            None,
            "server_error",
        ),
        status_code=500,
        headers={"x-should-retry": "false"},
    )
