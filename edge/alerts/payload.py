"""One JSON shape of an alert, for MQTT's retained messages and the local API.

``alert_payload(alert, site=..., gateway=...)``: the alert's condition, human state and who,
its latest event, its parameters and its texts in every language (``texts``), times in ISO 8601
UTC. The wire's ``AlertEventBody`` carries the same fields to the central API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from edge.alerts.book import Alert
from edge.i18n import LANGUAGES


def iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, tz=UTC).isoformat()


def alert_payload(alert: Alert, *, site: str, gateway: str) -> dict[str, Any]:
    """The alert as JSON-ready data (see the module doc)."""
    return {
        "alert_id": alert.alert_id,
        "site": site,
        "gateway": gateway,
        "rule": alert.rule,
        "device": alert.device,
        "point": alert.point,
        "severity": alert.severity,
        "condition": alert.condition,
        "state": alert.state,
        "level": alert.level,
        "value": alert.value,
        "params": dict(alert.raised_params or alert.params),
        "raised_at": iso(alert.raised_at),
        "cleared_at": iso(alert.cleared_at),
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_at": iso(alert.acknowledged_at),
        "resolved_by": alert.resolved_by,
        "resolved_at": iso(alert.resolved_at),
        "outcome": alert.outcome,
        "needs_person": alert.needs_person,
        "event": {
            "event_id": alert.event_id,
            "event": alert.event,
            "at": iso(alert.at),
            "via": alert.via,
            "by": alert.by,
            "note": alert.note,
            "audience": alert.audience,
        },
        "message": alert.message,
        "texts": {language: alert.text(language) for language in LANGUAGES},
    }
