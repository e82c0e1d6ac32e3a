"""The local JSON API: status, alerts and acting on them, readings, gates, the live stream.

Without a login, the machine's health only: ``/api/status`` (without the watched homes), the
gates' state and the alerts that tell nothing of residents. Readings, history and the live
stream need a viewer. Whatever tells of a home's residents (its alerts, its meters' readings,
the watched dwellings' state) needs a responder, as does acting on alerts; commanding a gate an
installer. A person authenticates with a bearer token (docs/people.md) or a console session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from edge.alerts import Action, Alert, Outcome
from edge.alerts.payload import alert_payload
from edge.doctor.results import worst
from edge.people import Person, Role
from edge.web.auth import Access, api_person, optional_person
from edge.web.view import ConsoleSite, GatewayView, MeterHistory
from firmware_bridge.modbus.gate import Command

log = logging.getLogger(__name__)
Viewer = Annotated[Person, Depends(api_person(Role.VIEWER))]
Responder = Annotated[Person, Depends(api_person(Role.RESPONDER))]
Installer = Annotated[Person, Depends(api_person(Role.INSTALLER))]

_STATUS_OF_RESULT = {"confirmed": 200, "refused": 409, "unreachable": 503, "not_confirmed": 504}
LIVE_PING_S = 15.0
"""The live stream sends a comment this often, so a proxy or a phone keeps the connection."""
LIVE_CHECK_S = 5.0
LIVE_MAX_S = 600.0
"""A live stream ends after this long and the browser opens a new one: no connection is held
for ever, and a session that ended is noticed."""


class AlertAction(BaseModel):
    """The body of ``POST /api/alerts/{alert_id}/acknowledge`` and ``/resolve``."""

    model_config = ConfigDict(extra="forbid")

    note: Annotated[str, Field(max_length=500, pattern=r"^[^\x00]*$")] | None = None
    outcome: Outcome | None = None
    """Required to resolve: resident_ok, help_given, false_alarm, device_fault or other."""


def visible(alerts: list[Alert], site: ConsoleSite, person: Person | None) -> list[Alert]:
    """The alerts ``person`` may read: those about residents for responders and above."""
    if person is not None and person.role >= Role.RESPONDER:
        return alerts
    return [alert for alert in alerts if not site.about_resident(alert)]


def router(gateway: GatewayView, site: ConsoleSite, access: Access) -> APIRouter:
    api = APIRouter(prefix="/api")

    def payload(alert: Alert) -> dict[str, Any]:
        return alert_payload(alert, site=site.site, gateway=site.gateway)

    @api.get("/status")
    async def status(who: Annotated[Person | None, Depends(optional_person)]) -> dict[str, Any]:
        """The gateway's health. Without a responder's login, the watched dwellings are left
        out (``analytics.dwellings`` gives only how many there are)."""
        state = (await gateway.status()).model_dump(mode="json")
        state["local_api"] = access.status().model_dump(mode="json")
        analytics = state.get("analytics")
        if isinstance(analytics, dict) and (who is None or who.role < Role.RESPONDER):
            dwellings = analytics.get("dwellings") or {}
            analytics["dwellings"] = {}
            analytics["dwellings_hidden"] = len(dwellings)
        return state

    @api.get("/health")
    async def health() -> dict[str, Any]:
        """``nbedge doctor``'s checks as the running gateway sees them (docs/doctor.md). No
        login: like the status, it tells of the machine, nothing of residents."""
        checks = await gateway.health()
        return {"worst": worst(checks).value, "checks": [c.model_dump(mode="json") for c in checks]}

    @api.get("/gates")
    async def gates() -> list[dict[str, Any]]:
        return [asdict(gate) for gate in gateway.gates()]

    @api.post("/gates/{name}/{command}")
    async def command_gate(name: str, command: Command, who: Installer) -> JSONResponse:
        try:
            result = await gateway.gate_command(name, command, operator=who.name)
        except KeyError:
            raise HTTPException(status_code=404, detail=f"no gate called {name!r}") from None
        return JSONResponse(asdict(result), status_code=_STATUS_OF_RESULT[result.result])

    @api.get("/alerts")
    async def alerts(
        who: Annotated[Person | None, Depends(optional_person)],
    ) -> list[dict[str, Any]]:
        """The open alerts, as MQTT shows them; those about residents for responders only."""
        return [payload(alert) for alert in visible(gateway.active_alerts(), site, who)]

    @api.post(
        "/alerts/{alert_id}/{action}",
        responses={
            401: {"description": "No person's bearer token or session"},
            403: {"description": "A role below responder, or a session without its CSRF token"},
            404: {"description": "No open alert of that id"},
            409: {"description": "Refused by the alert's lifecycle (the reason is given)"},
            422: {"description": "Not a valid body (a resolve needs an outcome)"},
        },
    )
    async def act_on_alert(
        alert_id: Annotated[str, Path(max_length=200)],
        action: Action,
        body: AlertAction,
        who: Responder,
    ) -> dict[str, Any]:
        """A responder acknowledges an alert ("I have it") or resolves it with an outcome; the
        step lands in the alert's history, on MQTT and at the central API. Acting on an alert
        already in that state changes nothing and is answered as applied."""
        if action == "resolve" and body.outcome is None:
            raise HTTPException(status_code=422, detail="a resolve needs an outcome")
        if open_alert(alert_id) is None:
            raise HTTPException(status_code=404, detail=f"no open alert {alert_id!r}")
        result = gateway.act(
            alert_id, action, by=who.display or who.name, note=body.note, outcome=body.outcome
        )
        if result.refused is not None:
            log.info(
                "local API: alert action refused",
                extra={"alert_id": alert_id, "by": who.name, "reason": result.refused},
            )
            raise HTTPException(status_code=409, detail=result.refused)
        after = result.changes[-1] if result.changes else open_alert(alert_id)
        return {
            "result": "applied",
            "event_ids": [change.event_id for change in result.changes],
            "alert": None if after is None else payload(after),
        }

    def open_alert(alert_id: str) -> Alert | None:
        return next((a for a in gateway.active_alerts() if a.alert_id == alert_id), None)

    @api.get("/readings/latest")
    async def latest(who: Viewer) -> list[dict[str, Any]]:
        """The newest value of every point of every device, however rarely it reports."""
        readings = await gateway.latest_readings()
        if who.role >= Role.RESPONDER:
            return readings
        return [r for r in readings if r["device"] not in site.resident_devices]

    @api.get("/meters/{device}/history")
    async def history(
        device: Annotated[str, Path(max_length=64)],
        who: Viewer,
        point: Annotated[str, Query(min_length=1, max_length=64)],
        hours: Annotated[int, Query(ge=1, le=168)] = 24,
    ) -> MeterHistory:
        """One point's last ``hours`` (1 to 168) hour by hour, its newest readings as a finer
        tail, with the building's forecast when the meter feeds one; a home's meters for
        responders only."""
        if who.role < Role.RESPONDER and device in site.resident_devices:
            raise HTTPException(status_code=404, detail=f"no meter {device!r}")
        try:
            return await gateway.meter_history(device, point, hours)
        except KeyError:
            raise HTTPException(
                status_code=404, detail=f"no readings of {device}:{point}"
            ) from None
        except RuntimeError as exc:  # the store is not open (starting or stopping)
            raise HTTPException(status_code=503, detail=str(exc)) from None

    @api.get("/events")
    async def events(request: Request, who: Viewer) -> EventSourceResponse:
        """Server-sent events: ``alerts`` (its data the change count) at once and whenever an
        alert changes; it ends after ``LIVE_MAX_S``. Browsers reconnect by themselves
        (``retry``: 3 s)."""
        ends = time.monotonic() + LIVE_MAX_S

        async def stream() -> AsyncIterator[ServerSentEvent]:
            seen = gateway.changes.version
            yield ServerSentEvent(data=str(seen), event="alerts", retry=3000)
            while time.monotonic() < ends and not await request.is_disconnected():
                version = await gateway.changes.wait(seen, LIVE_CHECK_S)
                if version != seen:
                    seen = version
                    yield ServerSentEvent(data=str(seen), event="alerts")

        return EventSourceResponse(stream(), ping=int(LIVE_PING_S))

    return api
