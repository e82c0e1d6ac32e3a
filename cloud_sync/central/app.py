"""The central API as a FastAPI application: ``create_app(settings)``.

Stateless apart from the database, so it runs as many uvicorn workers or hosts as needed. Routes
are sync functions where they only touch the database (FastAPI runs them in its thread pool) and
async where they read a request body.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic.json_schema import models_json_schema
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

import nbedge
from cloud_sync.central.db import init_db, make_engine
from cloud_sync.central.routes import api_router
from cloud_sync.central.settings import CentralSettings
from cloud_sync.schemas import IngestBatch

log = logging.getLogger(__name__)

RETRY_AFTER_DB_BUSY_S = 5


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """A database that is locked, gone or restarting is a temporary failure: 503, retry later."""
    log.warning("database unavailable during %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": "the database is unavailable; retry later"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_DB_BUSY_S)},
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


def create_app(settings: CentralSettings) -> FastAPI:
    """The central API for ``settings``; tables are created at startup if missing."""
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # create_all until migrations (Alembic) arrive with PostgreSQL.
        await run_in_threadpool(init_db, engine)
        try:
            yield
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
    app.include_router(api_router)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.openapi = lambda: _openapi_with_wire_schemas(app)  # type: ignore[method-assign]
    return app
