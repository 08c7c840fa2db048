"""HTTP routes, one module per resource; validation here, rules in the engine."""

from __future__ import annotations

from starlette.routing import BaseRoute

from gateway.api import (
    assistants,
    chat,
    files,
    models,
    openapi,
    playground,
    runs,
    threads,
    uploads,
    vector_stores,
)

# /threads/runs must come before /threads/{thread_id}.
routes: list[BaseRoute] = [
    *runs.routes,
    *assistants.routes,
    *threads.routes,
    *models.routes,
    *files.routes,
    *uploads.routes,
    *vector_stores.routes,
    *chat.routes,
    *openapi.routes,
    *playground.routes,  # matches at the root only, never under /v1
]
