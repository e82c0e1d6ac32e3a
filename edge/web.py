"""The gateway's local web page and API, for the people on site (works with no internet).

- ``GET /``: a page with the active alerts and the latest value of every point (refreshes itself).
- ``GET /api/status``: the gateway's health as JSON (devices, queue, store, MQTT, uplink).
- ``GET /api/alerts``: the open alerts (not both cleared and resolved), as MQTT shows them.
- ``POST /api/alerts/<alert_id>/acknowledge`` and ``.../resolve`` (JSON: ``note``, ``outcome``):
  a person with the responder role acts on an alert (docs/alerts.md); 404 for an alert that is
  not open, 409 for a step its lifecycle refuses, 422 for a bad body.
- ``GET /api/readings/latest``: the newest value of every point.
- ``GET /api/gates``: every gate controller's state and event counters.
- The page and the status also show the models (``analytics`` in the status): the model in use of
  each kind, each building's latest 24-hour forecast with its accuracy over the last week, and the
  state of each scored meter and watched dwelling.
- ``POST /api/gates/<name>/open`` and ``.../close``: command a gate (docs/gate-controller.md),
  for installers only: ``Authorization: Bearer <token>`` of a person (docs/people.md). Refused
  attempts are counted (``local_api.auth_failures`` and ``forbidden`` in the status) and logged
  without the token.
"""

from __future__ import annotations

import html
import logging
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, HTTPException, Path
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from edge.alerts import Action, ActResult, Alert, Outcome
from edge.alerts.payload import alert_payload
from edge.people import PeopleStore, Person, Role
from edge.people.deps import install, require
from edge.status import GatewayStatus
from firmware_bridge.modbus.gate import Command, CommandResult, GateStatus

log = logging.getLogger(__name__)

_STATUS_OF_RESULT = {"confirmed": 200, "refused": 409, "unreachable": 503, "not_confirmed": 504}


class GatewayView(Protocol):
    """What the local web app may see of the running gateway."""

    async def status(self) -> GatewayStatus: ...

    def active_alerts(self) -> list[Alert]: ...

    async def latest_readings(self) -> list[dict[str, Any]]: ...

    def gates(self) -> list[GateStatus]: ...

    async def gate_command(
        self, name: str, command: Command, *, operator: str
    ) -> CommandResult: ...

    def act(
        self,
        alert_id: str,
        action: Action,
        *,
        by: str,
        note: str | None = None,
        outcome: Outcome | None = None,
    ) -> ActResult: ...


class AlertAction(BaseModel):
    """The body of ``POST /api/alerts/{alert_id}/acknowledge`` and ``/resolve``."""

    model_config = ConfigDict(extra="forbid")

    note: Annotated[str, Field(max_length=500, pattern=r"^[^\x00]*$")] | None = None
    outcome: Outcome | None = None
    """Required to resolve: resident_ok, help_given, false_alarm, device_fault or other."""


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, tz=UTC).isoformat()


def create_local_app(gateway: GatewayView, people: PeopleStore) -> FastAPI:
    app = FastAPI(title="nbedge gateway", docs_url="/api/docs", openapi_url="/api/openapi.json")
    access = install(app, people)
    people.people()  # read the people file now, so that a problem with it is logged at start

    @app.get("/api/status")
    async def status() -> dict[str, Any]:
        state = (await gateway.status()).model_dump(mode="json")
        state["local_api"] = access.status()
        return state

    @app.get("/api/gates")
    async def gates() -> list[dict[str, Any]]:
        return [asdict(gate) for gate in gateway.gates()]

    @app.post("/api/gates/{name}/{command}")
    async def command_gate(
        name: str, command: Command, who: Annotated[Person, Depends(require(Role.INSTALLER))]
    ) -> JSONResponse:
        try:
            result = await gateway.gate_command(name, command, operator=who.name)
        except KeyError:
            raise HTTPException(status_code=404, detail=f"no gate called {name!r}") from None
        return JSONResponse(asdict(result), status_code=_STATUS_OF_RESULT[result.result])

    @app.get("/api/alerts")
    async def alerts() -> list[dict[str, Any]]:
        state = (await gateway.status()).model_dump(mode="json")
        return [
            alert_payload(alert, site=state["site"], gateway=state["gateway"])
            for alert in gateway.active_alerts()
        ]

    @app.post(
        "/api/alerts/{alert_id}/{action}",
        responses={
            401: {"description": "No person's bearer token"},
            403: {"description": "A role below responder"},
            404: {"description": "No open alert of that id"},
            409: {"description": "Refused by the alert's lifecycle (the reason is given)"},
            422: {"description": "Not a valid body (a resolve needs an outcome)"},
        },
    )
    async def act_on_alert(
        alert_id: Annotated[str, Path(max_length=200)],
        action: Action,
        body: AlertAction,
        who: Annotated[Person, Depends(require(Role.RESPONDER))],
    ) -> dict[str, Any]:
        """A responder acknowledges an alert ("I have it") or resolves it with an outcome; the
        step lands in the alert's history, on MQTT and at the central API. Acting on an alert
        already in that state changes nothing and is answered as applied."""
        if action == "resolve" and body.outcome is None:
            raise HTTPException(status_code=422, detail="a resolve needs an outcome")
        if gateway_alert(alert_id) is None:
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
        state = (await gateway.status()).model_dump(mode="json")
        after = result.changes[-1] if result.changes else gateway_alert(alert_id)
        return {
            "result": "applied",
            "event_ids": [change.event_id for change in result.changes],
            "alert": None
            if after is None
            else alert_payload(after, site=state["site"], gateway=state["gateway"]),
        }

    def gateway_alert(alert_id: str) -> Alert | None:
        return next((a for a in gateway.active_alerts() if a.alert_id == alert_id), None)

    @app.get("/api/readings/latest")
    async def latest() -> list[dict[str, Any]]:
        return await gateway.latest_readings()

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        state = (await gateway.status()).model_dump(mode="json")
        alerts = gateway.active_alerts()
        readings = await gateway.latest_readings()
        return _render_page(state, alerts, readings, gateway.gates())

    return app


def _render_page(
    state: dict[str, Any],
    alerts: list[Alert],
    readings: list[dict[str, Any]],
    gates: list[GateStatus],
) -> str:
    esc = html.escape
    gate_rows = "".join(
        f"<tr><td>{esc(g.name)}</td><td>{esc(g.state or 'unknown')}</td>"
        f"<td>{esc(g.fault or '')}</td><td>{g.events_read}</td><td>{g.events_lost}</td></tr>"
        for g in gates
    )
    gate_table = (
        "<h2>Gates</h2><table><tr><th>gate</th><th>state</th><th>fault</th>"
        f"<th>events read</th><th>events lost</th></tr>{gate_rows}</table>"
        if gates
        else ""
    )
    models_html = render_models(state.get("analytics"))
    alert_rows = (
        "".join(
            f"<tr><td>{esc(_iso(a.raised_at) or '')}</td><td>{esc(a.severity)}</td>"
            f"<td>{esc(a.device)}</td><td>{esc(a.condition)}, {esc(a.state)}"
            f"{esc(' by ' + a.acknowledged_by) if a.acknowledged_by else ''}</td>"
            f"<td>{esc(a.text('en'))}<br>{esc(a.text('zh-Hans'))}</td></tr>"
            for a in alerts
        )
        or '<tr><td colspan="5">No open alerts.</td></tr>'
    )
    reading_rows = "".join(
        f"<tr><td>{esc(r['device'])}</td><td>{esc(r['point'])}</td>"
        f"<td>{r['value']:.2f} {esc(r['unit'])}</td><td>{esc(_iso(r['wall_time']) or '')}</td></tr>"
        for r in readings
    )
    title = f"nbedge {esc(state['site'])} / {esc(state['gateway'])}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>{title}</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}</style></head>
<body><h1>{title}</h1>
<h2>Open alerts ({len(alerts)})</h2>
<table><tr><th>raised (UTC)</th><th>severity</th><th>device</th><th>state</th><th>what</th></tr>
{alert_rows}</table>
{gate_table}
{models_html}
<h2>Latest readings</h2>
<table><tr><th>device</th><th>point</th><th>value</th><th>at (UTC)</th></tr>{reading_rows}</table>
<p><a href="/api/status">status (JSON)</a></p>
</body></html>"""


def render_models(analytics: dict[str, Any] | None) -> str:
    """Forecasts (the next 24 hours as a row of numbers), and the state of each watched series."""
    if not analytics:
        return ""
    esc = html.escape
    parts = ["<h2>Models</h2><table><tr><th>kind</th><th>model in use</th><th>rollbacks</th></tr>"]
    for kind, slot in analytics["models"].items():
        parts.append(
            f"<tr><td>{esc(kind)}</td><td>{esc(slot['model'] or 'none loaded')}</td>"
            f"<td>{slot['rollbacks']}</td></tr>"
        )
    parts.append("</table>")
    for name, demand in analytics["demand"].items():
        forecast = demand["forecast"]
        accuracy = demand["cv_rmse_7d"]
        hours = demand["hours_compared_7d"]
        quality = (
            f"; last week's forecasts: CV(RMSE) {accuracy:.1f} % over {hours} h"
            if accuracy is not None
            else ""
        )
        parts.append(
            f"<h3>Demand forecast: {esc(name)}</h3><p>{esc(demand['status'])}{quality}</p>"
        )
        if forecast is not None:
            start = datetime.fromtimestamp(forecast["start"], tz=UTC)
            cells = "".join(
                f"<td>{(start.hour + i) % 24:02d}</td>" for i in range(len(forecast["kwh"]))
            )
            values = "".join(f"<td>{v:.1f}</td>" for v in forecast["kwh"])
            parts.append(
                f"<table><tr><th>hour (UTC)</th>{cells}</tr><tr><th>kWh</th>{values}</tr></table>"
            )
    rows = [
        f"<tr><td>{esc(kind)}</td><td>{esc(name)}</td><td>{esc(item['status'])}</td>"
        f"<td>{esc(_respond_text(item)) if kind == 'dwellings' else ''}</td></tr>"
        for kind in ("meters", "dwellings")
        for name, item in analytics.get(kind, {}).items()
    ]
    if rows:
        parts.append(
            "<h3>Watched meters and dwellings</h3><table><tr><th></th><th>name</th>"
            f"<th>state</th><th>alerts</th></tr>{''.join(rows)}</table>"
        )
    return "".join(parts)


def _respond_text(dwelling: dict[str, Any]) -> str:
    """What the dwelling's choice of ``respond`` means for it, and what the other would mean."""
    choices = dwelling.get("choices")
    if not choices:
        return ""

    def said(choice: dict[str, Any]) -> str:
        hours = choice["response_h"]
        alarms = choice["past_alarms_per_month"]
        when = "not alerted within 24 h" if hours is None else f"alerted after about {hours:g} h"
        per_month = "" if alarms is None else f", {alarms:.1f} alarms a month in its last 26 weeks"
        return f"a stop {when}{per_month}"

    chosen = dwelling["respond"]
    (other,) = (c for c in choices if c != chosen)
    return f"{chosen}: {said(choices[chosen])} (if {other}: {said(choices[other])})"
