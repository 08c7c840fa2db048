"""Where route handlers find the resources the lifespan built (on `app.state`)."""

from __future__ import annotations

from typing import cast

from starlette.requests import Request

from gateway.bus import EventBus
from gateway.engine import RunEngine
from gateway.engine.catalog import Catalog
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.store import RunStore


def store_of(request: Request) -> RunStore:
    return cast(RunStore, request.app.state.store)


def catalog_of(request: Request) -> Catalog:
    return cast(RunEngine, request.app.state.engine).catalog


def engine_of(request: Request) -> RunEngine:
    return cast(RunEngine, request.app.state.engine)


def settings_of(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def bus_of(request: Request) -> EventBus:
    return cast(EventBus, request.app.state.bus)


def metrics_of(request: Request) -> Metrics:
    return cast(Metrics, request.app.state.metrics)
