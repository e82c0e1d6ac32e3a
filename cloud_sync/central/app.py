"""The central API as a FastAPI application: ``create_app(settings)``.

Stateless apart from the database, so it runs as many uvicorn workers or hosts as needed, e.g.
``uvicorn --factory cloud_sync.central.app:app_from_environment --workers 4`` (settings from
``NBEDGE_CENTRAL_*``). Routes are sync functions where they only touch the database (FastAPI runs
them in its thread pool) and async where they read a request body. Metrics are per process
(``metrics``). Each process runs the periodic work of ``watch`` in its lifespan; ``now`` (the
clock of every decision that depends on time) is injectable, for tests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic.json_schema import models_json_schema
from sqlalchemy.exc import DataError, OperationalError
from starlette.concurrency import run_in_threadpool

import nbedge
from cloud_sync.central.db import init_db, make_engine
from cloud_sync.central.metrics import CONTENT_TYPE, CentralMetrics, MetricsMiddleware, RouteLabels
from cloud_sync.central.routes import api_router
from cloud_sync.central.settings import CentralSettings
from cloud_sync.central.silence import Contacts
from cloud_sync.central.tables import record_tables
from cloud_sync.central.watch import Watch
from cloud_sync.schemas import RECORD_KINDS, SCHEMA_VERSIONS, IngestBatch, WireTerms

log = logging.getLogger(__name__)

RETRY_AFTER_DB_BUSY_S = 5
CONTACT_EVERY = timedelta(seconds=30)
"""A gateway's last contact is written at most this often per process (or a quarter of the
silence that raises gateway_silent, if less)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """A database that is locked, gone or restarting is a temporary failure: 503, retry later."""
    log.warning("database unavailable during %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": "the database is unavailable; retry later"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_DB_BUSY_S)},
    )


async def _value_not_storable(request: Request, exc: Exception) -> JSONResponse:
    """A value the database refuses (out of range, not encodable): the client's fault, 422."""
    log.info("refused a value during %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": "a value in the request cannot be stored"},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def _openapi_with_wire_schemas(app: FastAPI) -> dict[str, Any]:
    """OpenAPI, plus the wire schema of the ingest body (which the route reads as raw bytes)."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        _, wire = models_json_schema(
            [(IngestBatch, "validation")], ref_template="#/components/schemas/{model}"
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in wire.get("$defs", {}).items():
            components.setdefault(name, definition)
        app.openapi_schema = schema
    return app.openapi_schema


def current_terms() -> WireTerms:
    """What this release of the central API takes: every wire version, and every record kind
    it has a table for."""
    return WireTerms(
        schema_versions=list(SCHEMA_VERSIONS),
        record_kinds=[kind for kind in RECORD_KINDS if kind in record_tables],
        api_version=nbedge.__version__,
    )


CURRENT_TERMS = current_terms()


def create_app(
    settings: CentralSettings,
    *,
    wire: WireTerms | None = CURRENT_TERMS,
    now: Callable[[], datetime] = _utc_now,
) -> FastAPI:
    """The central API for ``settings``; tables are created at startup if missing.

    ``wire`` is what it takes; fewer kinds or versions make it answer as an earlier release
    would, and ``None`` as releases before wire version 2 (no ``/v1/wire``, version 1 only):
    tests of version skew use them. ``now`` is the clock (aware, UTC) of every decision that
    depends on time: commands' expiry, gateways' silence, the age of open work.
    """
    engine = make_engine(settings.database_url)
    metrics = CentralMetrics()
    silent_after = (
        timedelta(seconds=settings.gateway_silent_after_s)
        if settings.gateway_silent_after_s
        else None
    )
    contacts = Contacts(
        CONTACT_EVERY if silent_after is None else min(CONTACT_EVERY, silent_after / 4)
    )
    watch = Watch(
        engine, metrics, now, interval_s=settings.check_interval_s, silent_after=silent_after
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(init_db, engine)  # migrations; a no-op when up to date
        try:
            async with asyncio.TaskGroup() as tasks:
                watching = tasks.create_task(watch.run(), name="central-watch")
                try:
                    yield
                finally:
                    watching.cancel()
        finally:
            engine.dispose()

    app = FastAPI(
        title="nbedge central API",
        version=nbedge.__version__,
        description="Gateways deliver records; the neighbourhood platform pulls feeds by cursor.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.wire = wire
    app.state.now = now
    app.state.contacts = contacts
    app.state.watch = watch
    app.include_router(api_router)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(DataError, _value_not_storable)

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics of this process",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Text exposition"}},
    )
    def prometheus_metrics() -> Response:
        """Counters and latency histograms of this process only (scrape every worker)."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    app.openapi = lambda: _openapi_with_wire_schemas(app)  # type: ignore[method-assign]
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=RouteLabels.of(app))
    return app


def app_from_environment() -> FastAPI:
    """``create_app`` with settings from ``NBEDGE_CENTRAL_*``: uvicorn's ``--factory`` target."""
    return create_app(CentralSettings())  # type: ignore[call-arg]  # read from the environment
