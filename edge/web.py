"""The gateway's local web page and API, for the people on site (works with no internet).

- ``GET /``: a page with the active alerts and the latest value of every point (refreshes itself).
- ``GET /api/status``: the gateway's health as JSON (devices, queue, store, MQTT, uplink).
- ``GET /api/alerts``: the active alerts.
- ``GET /api/readings/latest``: the newest value of every point.
"""

from __future__ import annotations

import html
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Protocol

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from edge.alerts import Alert


class GatewayView(Protocol):
    """What the local web app may see of the running gateway."""

    async def status(self) -> dict[str, Any]: ...

    def active_alerts(self) -> list[Alert]: ...

    async def latest_readings(self) -> list[dict[str, Any]]: ...


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, tz=UTC).isoformat()


def _alert_json(alert: Alert) -> dict[str, Any]:
    data = asdict(alert)
    data["raised_at"] = _iso(alert.raised_at)
    data["cleared_at"] = _iso(alert.cleared_at)
    return data


def create_local_app(gateway: GatewayView) -> FastAPI:
    app = FastAPI(title="nbedge gateway", docs_url="/api/docs", openapi_url="/api/openapi.json")

    @app.get("/api/status")
    async def status() -> dict[str, Any]:
        return await gateway.status()

    @app.get("/api/alerts")
    async def alerts() -> list[dict[str, Any]]:
        return [_alert_json(alert) for alert in gateway.active_alerts()]

    @app.get("/api/readings/latest")
    async def latest() -> list[dict[str, Any]]:
        return await gateway.latest_readings()

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        state = await gateway.status()
        alerts = gateway.active_alerts()
        readings = await gateway.latest_readings()
        return _render_page(state, alerts, readings)

    return app


def _render_page(state: dict[str, Any], alerts: list[Alert], readings: list[dict[str, Any]]) -> str:
    esc = html.escape
    alert_rows = (
        "".join(
            f"<tr><td>{esc(_iso(a.raised_at) or '')}</td><td>{esc(a.severity)}</td>"
            f"<td>{esc(a.device)}</td><td>{esc(a.message)}</td></tr>"
            for a in alerts
        )
        or '<tr><td colspan="4">No active alerts.</td></tr>'
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
<h2>Active alerts ({len(alerts)})</h2>
<table><tr><th>raised (UTC)</th><th>severity</th><th>device</th><th>what</th></tr>
{alert_rows}</table>
<h2>Latest readings</h2>
<table><tr><th>device</th><th>point</th><th>value</th><th>at (UTC)</th></tr>{reading_rows}</table>
<p><a href="/api/status">status (JSON)</a></p>
</body></html>"""
