"""``GET /v1/wire``: the wire versions and record kinds this central API takes. No
authentication: it says nothing about any site.

A gateway asks before it sends (and again now and then): it sends the newest version both sides
speak, and only the record kinds listed, so that a gateway upgraded before its central API (or
after) never blocks its outbox on what the other side does not know.
"""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, HTTPException, Request, status

from cloud_sync.schemas import WireTerms

router = APIRouter(tags=["gateways"])


@router.get("/wire", responses={404: {"description": "This central API predates version 2"}})
def wire(request: Request) -> WireTerms:
    """The versions of the wire schema and the record kinds this central API takes."""
    terms = cast(WireTerms | None, request.app.state.wire)
    if terms is None:  # a central API that speaks version 1 only, as releases before /v1/wire
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Not Found")
    return terms
