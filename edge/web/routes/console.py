"""The grid workers' console: alerts, residents, meters and devices, for a phone.

Pages are answered whole, or only their ``<main>`` when the page's script asks (``X-Fragment``)
after the live stream says an alert changed. Every form works without the script too: it posts,
and the browser is sent back to the page (303). Each form carries the session's CSRF token.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from edge.alerts import Action, Alert, Outcome
from edge.doctor.results import Level, worst
from edge.i18n import N_
from edge.people import Person, Role
from edge.web.auth import Access, page_person
from edge.web.pages import Console, language_of
from edge.web.routes.api import visible
from edge.web.sessions import Session
from edge.web.view import GatewayView

log = logging.getLogger(__name__)
Viewer = Annotated[tuple[Session, Person], Depends(page_person(Role.VIEWER))]
Responder = Annotated[tuple[Session, Person], Depends(page_person(Role.RESPONDER))]

HISTORY_DAYS = 7
"""The alerts page shows the alerts closed in the last week."""
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def ordered(alerts: list[Alert]) -> list[Alert]:
    """Open alerts as a grid worker takes them: by severity, then the oldest first."""
    return sorted(alerts, key=lambda a: (_SEVERITY_ORDER.get(a.severity, 3), a.raised_at))


def router(gateway: GatewayView, console: Console, access: Access) -> APIRouter:
    pages = APIRouter()
    site = console.site

    @pages.get("/")
    async def home() -> Response:
        return RedirectResponse("/alerts", status_code=303)

    @pages.get("/alerts", response_class=HTMLResponse)
    async def alerts(request: Request, who: Viewer) -> HTMLResponse:
        person = who[1]
        open_alerts = ordered(visible(gateway.active_alerts(), site, person))
        closed = visible(
            await gateway.closed_alerts(console.now() - HISTORY_DAYS * 86_400), site, person
        )
        return console.page(
            request,
            "alerts.html",
            who,
            alerts=open_alerts,
            closed=closed,
            history_days=HISTORY_DAYS,
            message=request.query_params.get("done"),
            refused=None,
        )

    @pages.post("/alerts/{alert_id}/{action}", response_class=HTMLResponse)
    async def act(
        request: Request,
        alert_id: Annotated[str, Path(max_length=200)],
        action: Action,
        who: Responder,
        csrf: Annotated[str, Form(max_length=200)],
        note: Annotated[str, Form(max_length=500)] = "",
        outcome: Annotated[str, Form(max_length=40)] = "",
    ) -> Response:
        session, person = who
        access.check_csrf(request, session, csrf)
        if not any(a.alert_id == alert_id for a in gateway.active_alerts()):
            raise HTTPException(status_code=404, detail=f"no open alert {alert_id!r}")
        chosen: Outcome | None = None
        if action == "resolve":
            if outcome not in ("resident_ok", "help_given", "false_alarm", "device_fault", "other"):
                return await refused(request, who, N_("Choose what happened before resolving."))
            chosen = outcome  # type: ignore[assignment]
        text = note.replace("\x00", "").strip() or None
        result = gateway.act(
            alert_id, action, by=person.display or person.name, note=text, outcome=chosen
        )
        if result.refused is not None:
            log.info(
                "console: alert action refused",
                extra={"alert_id": alert_id, "by": person.name, "reason": result.refused},
            )
            return await refused(request, who, N_("The gateway refused this step."))
        done = "acknowledged" if action == "acknowledge" else "resolved"
        return RedirectResponse(f"/alerts?done={done}", status_code=303)

    async def refused(request: Request, who: tuple[Session, Person], reason: str) -> HTMLResponse:
        person = who[1]
        return console.page(
            request,
            "alerts.html",
            who,
            status=409,
            alerts=ordered(visible(gateway.active_alerts(), site, person)),
            closed=[],
            history_days=HISTORY_DAYS,
            message=None,
            refused=reason,
        )

    @pages.get("/residents", response_class=HTMLResponse)
    async def residents(request: Request, who: Responder) -> HTMLResponse:
        state = await gateway.status()
        watched = {} if state.analytics is None else state.analytics.dwellings
        open_alerts = gateway.active_alerts()
        homes = []
        for name in site.dwellings:
            outcomes = await gateway.alert_outcomes(name)
            homes.append(
                resident(name, _get(watched, name)) | {
                    "alert": _gravest([a for a in open_alerts if a.device == name]),
                    "last_opened": await gateway.last_door_opening(name),
                    "has_doors": bool(site.doors.get(name)),
                    "false_alarms": outcomes.get("false_alarm", 0),
                    "alerts": sum(outcomes.values()),
                }
            )  # fmt: skip
        return console.page(request, "residents.html", who, homes=homes)

    @pages.get("/meters", response_class=HTMLResponse)
    async def meters(request: Request, who: Viewer) -> HTMLResponse:
        shown = [
            m
            for m in site.meters
            if who[1].role >= Role.RESPONDER or m not in site.resident_devices
        ]
        readings = [r for r in await gateway.latest_readings() if r["device"] in shown]
        by_meter: dict[str, list[dict[str, Any]]] = {name: [] for name in shown}
        for reading in readings:
            by_meter[reading["device"]].append(reading)
        return console.page(request, "meters.html", who, meters=by_meter)

    @pages.get("/meters/{device}", response_class=HTMLResponse)
    async def meter(
        request: Request, device: Annotated[str, Path(max_length=64)], who: Viewer
    ) -> HTMLResponse:
        if device not in site.meters or (
            who[1].role < Role.RESPONDER and device in site.resident_devices
        ):
            raise HTTPException(status_code=404, detail=f"no meter {device!r}")
        points = [r for r in await gateway.latest_readings() if r["device"] == device]
        chosen = request.query_params.get("point") or _main_point(points)
        days = 7 if request.query_params.get("days") == "7" else 1
        return console.page(
            request,
            "meter.html",
            who,
            device=device,
            points=points,
            point=chosen,
            days=days,
            forecast=site.forecasts.get(device),
        )

    @pages.get("/devices", response_class=HTMLResponse)
    async def devices(request: Request, who: Viewer) -> HTMLResponse:
        state = await gateway.status()
        return console.page(
            request,
            "devices.html",
            who,
            buses=state.modbus,
            ble=state.ble,
            gates=gateway.gates(),
        )

    @pages.get("/health", response_class=HTMLResponse)
    async def health(request: Request, who: Viewer) -> HTMLResponse:
        """``nbedge doctor``'s checks as the running gateway sees them, in the reader's words."""
        language = language_of(request)
        checks = await gateway.health()
        levels = [c.level for c in checks]
        return console.page(
            request,
            "health.html",
            who,
            checks=[c.shown(language) for c in checks],
            worst=worst(checks).value,
            failures=levels.count(Level.FAIL),
            warnings=levels.count(Level.WARN),
        )

    return pages


def resident(name: str, status: Any) -> dict[str, Any]:
    """A watched home's state as the residents page says it: a code (``in_use``, ``quiet``,
    ``night``, ``out``, ``alert``, ``learning``, ``unknown``), its quiet hours, and what each
    choice of response costs it."""
    state = "unknown" if status is None else str(_get(status, "state") or "unknown")
    choices = _get(status, "choices") if status is not None else None
    return {
        "name": name,
        "state": state,
        "quiet_h": _get(status, "quiet_h") if status is not None else None,
        "respond": _get(status, "respond") if status is not None else None,
        "choices": [
            {
                "name": choice,
                "response_h": _get(cost, "response_h"),
                "alarms": _get(cost, "past_alarms_per_month"),
            }
            for choice, cost in (choices or {}).items()
        ],
    }


def _get(container: Any, key: str) -> Any:
    return container.get(key) if isinstance(container, dict) else getattr(container, key, None)


MAIN_POINTS = ("import_energy", "total_energy", "volume", "total_power", "power", "voltage_l1")


def _main_point(points: list[dict[str, Any]]) -> str | None:
    """The point a meter's chart opens on: its energy or water counter if it has one."""
    names = [str(p["point"]) for p in points]
    for name in MAIN_POINTS:
        if name in names:
            return name
    return names[0] if names else None


def _gravest(alerts: list[Alert]) -> Alert | None:
    """The open alert a home's card shows: the most severe (a visit before a check-in)."""
    rank = {"critical": 0, "warning": 1, "info": 2}
    return min(alerts, key=lambda a: rank.get(a.severity, 3), default=None)
