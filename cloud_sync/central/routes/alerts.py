"""The platform's view of a site's alerts and its commands on them (platform token).

- ``GET /alerts/current``: each alert's current state and latest events, filtered, by cursor;
- ``GET /open-work``: the unresolved alerts, critical first, then the oldest first, by cursor;
- ``POST /gateways/{gateway_id}/alerts/{alert_id}/acknowledge`` and ``/resolve``: a person's
  action, as a command the gateway pulls (202, ``pending``);
- ``GET /commands``: every command's state, in the order of their last change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import AfterValidator
from sqlalchemy import Engine

from cloud_sync.central import alert_store, commands, db
from cloud_sync.central.deps import After, EngineDep, MetricsDep, NowDep, PageLimit, PlatformAccess
from cloud_sync.central.metrics import CentralMetrics
from cloud_sync.central.schemas import (
    AcknowledgeRequest,
    CommandItem,
    CommandPage,
    CurrentAlert,
    CurrentAlertPage,
    OpenWorkItem,
    OpenWorkPage,
    ResolveRequest,
)
from cloud_sync.schemas import (
    IDENTIFIER_PATTERN,
    AlertCondition,
    HumanState,
    Severity,
    Timestamp,
)

router = APIRouter(
    prefix="/sites/{site_id}",
    tags=["platform"],
    dependencies=[PlatformAccess],
    responses={
        401: {"description": "Missing or wrong platform token"},
        404: {"description": "No such site"},
    },
)

MAX_HISTORY = 100
MAX_OPEN_WORK_CURSOR = 512


def _identifier(name: str) -> Any:  # a FastAPI parameter description
    return Path(min_length=1, max_length=64, pattern=IDENTIFIER_PATTERN, description=name)


SiteId = Annotated[str, _identifier("The site.")]
GatewayId = Annotated[str, _identifier("The gateway that raised the alert.")]
AlertId = Annotated[str, _identifier("The alert (its occurrence id).")]
IdentifierQuery = Annotated[
    str | None, Query(min_length=1, max_length=64, pattern=IDENTIFIER_PATTERN)
]
History = Annotated[
    int,
    Query(ge=0, le=MAX_HISTORY, description="How many of each alert's latest events to include."),
]


def _require_site(engine: Engine, site_id: str) -> None:
    if not db.site_exists(engine, site_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no site {site_id!r}")


@router.get("/alerts/current", summary="Alerts' current states, changed after a cursor")
def current_alerts(
    site_id: SiteId,
    engine: EngineDep,
    human_state: Annotated[list[HumanState] | None, Query(max_length=3)] = None,
    condition: Annotated[list[AlertCondition] | None, Query(max_length=2)] = None,
    severity: Annotated[list[Severity] | None, Query(max_length=3)] = None,
    code: IdentifierQuery = None,
    device: IdentifierQuery = None,
    raised_from: Annotated[Timestamp | None, Query(description="Raised at or after.")] = None,
    raised_before: Annotated[Timestamp | None, Query(description="Raised before.")] = None,
    after: After = 0,
    limit: PageLimit = 100,
    history: History = 20,
) -> CurrentAlertPage:
    """Each alert of the site whose state changed after ``after``, in that order, with its latest
    events. A filter given several times matches any of its values (``human_state=new&
    human_state=acknowledged``); different filters must all match."""
    _require_site(engine, site_id)
    where = alert_store.StateFilter(
        human_states=None if human_state is None else frozenset(human_state),
        conditions=None if condition is None else frozenset(condition),
        severities=None if severity is None else frozenset(severity),
        code=code,
        device=device,
        raised_from=raised_from,
        raised_before=raised_before,
    )
    rows = alert_store.current(engine, site_id, where, after, limit)
    events = alert_store.history(
        engine, [(row["gateway_id"], row["alert_id"]) for row in rows], history
    )
    items = [
        CurrentAlert.from_row(row, events.get((row["gateway_id"], row["alert_id"]), []))
        for row in rows
    ]
    return CurrentAlertPage(items=items, next_cursor=items[-1].seq if items else after)


def _open_work_cursor(value: str | None) -> str | None:
    if value is not None:
        alert_store.OpenWorkKey.decode(value)  # ValueError: 422 naming ``after``
    return value


OpenWorkCursor = Annotated[
    str | None,
    Query(
        max_length=MAX_OPEN_WORK_CURSOR,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The `next_cursor` of the previous page; none for the first.",
    ),
    AfterValidator(_open_work_cursor),
]


@router.get("/open-work", summary="Unresolved alerts, critical first, then the oldest")
def open_work(
    site_id: SiteId,
    engine: EngineDep,
    now: NowDep,
    after: OpenWorkCursor = None,
    limit: PageLimit = 100,
) -> OpenWorkPage:
    """The site's alerts that nobody has resolved yet: critical first, then warning, then info,
    and within each the oldest raised first; each with its age and how long acknowledging took.
    """
    _require_site(engine, site_id)
    key = None if after is None else alert_store.OpenWorkKey.decode(after)
    rows = alert_store.open_work(engine, site_id, key, limit)
    items = [OpenWorkItem.from_row(row, now) for row in rows]
    next_cursor = alert_store.OpenWorkKey.of(rows[-1]).encode() if rows else after
    return OpenWorkPage(items=items, next_cursor=next_cursor)


def _command(
    engine: Engine,
    metrics: CentralMetrics,
    now: datetime,
    where: tuple[str, str, str],
    action: Literal["acknowledge", "resolve"],
    body: AcknowledgeRequest,
    outcome: str | None,
) -> CommandItem:
    site_id, gateway_id, alert_id = where
    _require_site(engine, site_id)
    try:
        row = commands.issue(
            engine,
            site_id=site_id,
            gateway_id=gateway_id,
            alert_id=alert_id,
            action=action,
            by=body.by,
            note=body.note,
            outcome=outcome,
            now=now,
        )
    except commands.UnknownTarget as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    metrics.commands.labels(action, "issued").inc()
    if row["state"] == "applied":
        metrics.commands.labels(action, "applied").inc()
    return CommandItem.from_row(row, row["state"], row["issued_at"] + commands.COMMAND_TTL)


_COMMAND_RESPONSES: dict[int | str, dict[str, str]] = {
    404: {"description": "No such site, gateway of the site, or alert of the gateway"},
    422: {"description": "The body is not valid; nothing issued"},
}


@router.post(
    "/gateways/{gateway_id}/alerts/{alert_id}/acknowledge",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Acknowledge an alert (a command its gateway applies)",
    responses=_COMMAND_RESPONSES,
)
def acknowledge(
    site_id: SiteId,
    gateway_id: GatewayId,
    alert_id: AlertId,
    body: AcknowledgeRequest,
    engine: EngineDep,
    metrics: MetricsDep,
    now: NowDep,
) -> CommandItem:
    """Issue a command: ``by`` has seen the alert and acts on it. The gateway pulls it and
    reports the result; follow it in ``GET /commands`` and the alert's events."""
    where = (site_id, gateway_id, alert_id)
    return _command(engine, metrics, now, where, "acknowledge", body, None)


@router.post(
    "/gateways/{gateway_id}/alerts/{alert_id}/resolve",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Resolve an alert (a command its gateway applies)",
    responses=_COMMAND_RESPONSES,
)
def resolve(
    site_id: SiteId,
    gateway_id: GatewayId,
    alert_id: AlertId,
    body: ResolveRequest,
    engine: EngineDep,
    metrics: MetricsDep,
    now: NowDep,
) -> CommandItem:
    """Issue a command: ``by`` resolved the alert with ``outcome``."""
    where = (site_id, gateway_id, alert_id)
    return _command(engine, metrics, now, where, "resolve", body, body.outcome)


@router.get("/commands", summary="Commands, changed after a cursor")
def site_commands(
    site_id: SiteId, engine: EngineDep, now: NowDep, after: After = 0, limit: PageLimit = 100
) -> CommandPage:
    """The site's commands whose state changed after ``after``, in that order: ``pending``,
    ``applied`` (with the event it made), ``refused`` (with the reason) or ``expired`` (not
    applied within a day of issue)."""
    _require_site(engine, site_id)
    rows = commands.changes_after(engine, site_id, after, limit)
    items = [
        CommandItem.from_row(
            row, commands.shown_state(row, now), row["issued_at"] + commands.COMMAND_TTL
        )
        for row in rows
    ]
    return CommandPage(items=items, next_cursor=items[-1].seq if items else after)
