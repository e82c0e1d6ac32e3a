"""The platform's pull feeds of one site: summaries, alert events, active alerts, evictions,
access events, demand forecasts.

A feed is read with a cursor: ``after`` is the ``next_cursor`` of the previous page (0 at first),
and items come in ``seq`` order, each exactly once. Authenticated with the platform token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from sqlalchemy import Engine

from cloud_sync.central import db
from cloud_sync.central.deps import After, EngineDep, PageLimit, PlatformAccess
from cloud_sync.central.schemas import (
    AccessItem,
    AccessPage,
    ActiveAlerts,
    AlertItem,
    AlertPage,
    EvictionItem,
    EvictionPage,
    ForecastItem,
    ForecastPage,
    SummaryItem,
    SummaryPage,
)
from cloud_sync.schemas import IDENTIFIER_PATTERN

router = APIRouter(
    prefix="/sites/{site_id}",
    tags=["platform"],
    dependencies=[PlatformAccess],
    responses={
        401: {"description": "Missing or wrong platform token"},
        404: {"description": "No such site"},
    },
)

SiteId = Annotated[str, Path(min_length=1, max_length=64, pattern=IDENTIFIER_PATTERN)]


def _require_site(engine: Engine, site_id: str) -> None:
    if not db.site_exists(engine, site_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no site {site_id!r}")


@router.get("/summaries", summary="Summaries after a cursor")
def summaries(
    site_id: SiteId, engine: EngineDep, after: After = 0, limit: PageLimit = 100
) -> SummaryPage:
    """Summaries of the site received after ``after``, oldest first."""
    _require_site(engine, site_id)
    items = [SummaryItem.from_row(row) for row in db.summaries_after(engine, site_id, after, limit)]
    return SummaryPage(items=items, next_cursor=items[-1].seq if items else after)


@router.get("/alerts", summary="Alert events after a cursor")
def alerts(
    site_id: SiteId, engine: EngineDep, after: After = 0, limit: PageLimit = 100
) -> AlertPage:
    """Alert events (raised and cleared) of the site received after ``after``, oldest first."""
    _require_site(engine, site_id)
    rows = db.alert_events_after(engine, site_id, after, limit)
    items = [AlertItem.from_row(row) for row in rows]
    return AlertPage(items=items, next_cursor=items[-1].seq if items else after)


@router.get("/alerts/active", summary="Alerts raised and not cleared")
def active_alerts(site_id: SiteId, engine: EngineDep) -> ActiveAlerts:
    """Every alert of the site that is raised and not yet cleared."""
    _require_site(engine, site_id)
    return ActiveAlerts(
        items=[AlertItem.from_row(row) for row in db.active_alerts(engine, site_id)]
    )


@router.get("/evictions", summary="Eviction reports after a cursor")
def evictions(
    site_id: SiteId, engine: EngineDep, after: After = 0, limit: PageLimit = 100
) -> EvictionPage:
    """Reports of records the site's gateways deleted unsent (disk quota), oldest first."""
    _require_site(engine, site_id)
    rows = db.evictions_after(engine, site_id, after, limit)
    items = [EvictionItem.from_row(row) for row in rows]
    return EvictionPage(items=items, next_cursor=items[-1].seq if items else after)


@router.get("/access-events", summary="Access events after a cursor")
def access_events(
    site_id: SiteId, engine: EngineDep, after: After = 0, limit: PageLimit = 100
) -> AccessPage:
    """Events of the site's doors and gates (granted, denied, forced or held open, opened,
    closed) received after ``after``, oldest first."""
    _require_site(engine, site_id)
    rows = db.access_events_after(engine, site_id, after, limit)
    items = [AccessItem.from_row(row) for row in rows]
    return AccessPage(items=items, next_cursor=items[-1].seq if items else after)


@router.get("/forecasts", summary="Demand forecasts after a cursor")
def forecasts(
    site_id: SiteId, engine: EngineDep, after: After = 0, limit: PageLimit = 100
) -> ForecastPage:
    """Electricity forecasts of the site's buildings (24 hourly values in kWh) received after
    ``after``, oldest first. A forecast replaced by a later one of the same gateway, series and
    start is not in the feed any more; its replacement comes after it: keep the newest per
    ``(gateway_id, series, start)``."""
    _require_site(engine, site_id)
    rows = db.forecasts_after(engine, site_id, after, limit)
    items = [ForecastItem.from_row(row) for row in rows]
    return ForecastPage(items=items, next_cursor=items[-1].seq if items else after)
