"""Where route handlers find the resources the lifespan built (on `app.state`)."""

from __future__ import annotations

from typing import cast

from starlette.requests import Request

from gateway.engine import RunEngine
from gateway.engine.catalog import Catalog
from gateway.engine.completions import Completions
from gateway.metrics import Metrics
from gateway.settings import Settings


def completions_of(request: Request) -> Completions:
    return cast(Completions, request.app.state.completions)


def catalog_of(request: Request) -> Catalog:
    return cast(RunEngine, request.app.state.engine).catalog


def engine_of(request: Request) -> RunEngine:
    return cast(RunEngine, request.app.state.engine)


def settings_of(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def metrics_of(request: Request) -> Metrics:
    return cast(Metrics, request.app.state.metrics)
