"""The central API's routes, one module per resource, gathered under ``/v1``."""

from __future__ import annotations

from fastapi import APIRouter

from cloud_sync.central.routes import alerts, claim, feeds, gateway_commands, health, ingest, wire

api_router = APIRouter(prefix="/v1")
api_router.include_router(claim.router)
api_router.include_router(ingest.router)
api_router.include_router(wire.router)
api_router.include_router(feeds.router)
api_router.include_router(alerts.router)
api_router.include_router(gateway_commands.router)
api_router.include_router(health.router)

__all__ = ["api_router"]
