"""``GET /v1/health``: is the API up and does its database answer. No authentication."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from sqlalchemy.exc import SQLAlchemyError

from cloud_sync.central import db
from cloud_sync.central.deps import EngineDep
from cloud_sync.central.schemas import Health

router = APIRouter(tags=["operations"])


@router.get("/health", responses={503: {"description": "The database does not answer"}})
def health(engine: EngineDep) -> Health:
    """200 when the database answers a query, 503 otherwise."""
    try:
        db.ping(engine)
    except SQLAlchemyError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="the database does not answer"
        ) from exc
    return Health()
