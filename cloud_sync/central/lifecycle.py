"""An alert's current state, folded from its events; pure, no I/O.

``fold(events)`` gives the state of one alert from the set of its events, whatever order they
arrived in and however often: events are sorted by ``n`` (the gateway's number of the event within
its alert, from ``event_id = <alert_id>.<n>``; ``event_number``) and then by ``seq``. The last
one gives what is "after this event" (condition, human state, level, severity, texts); each
milestone (cleared, acknowledged, resolved) comes from the first event that reached it. Legacy
``alert`` records have no ``n``: raised counts as -2 and cleared as -1, so a clear wins over its
raise in whichever order they came, and any alert event over both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cloud_sync.schemas import INT64_MAX

LEGACY_N: Final = {"raised": -2, "cleared": -1}
"""The order of a legacy record's event among its alert's events."""
CENTRAL_ALERT_PREFIX: Final = "central."
"""Alerts whose id starts so are the central API's own (``gateway_silent``), not a gateway's."""


def event_number(event_id: str, alert_id: str) -> int | None:
    """``n`` of ``event_id = <alert_id>.<n>`` (a decimal within 64 bits), or None if not so."""
    prefix = f"{alert_id}."
    tail = event_id[len(prefix) :]
    if not event_id.startswith(prefix) or not (tail.isascii() and tail.isdigit()):
        return None
    n = int(tail)  # at most 127 digits: the wire caps an event id at 128 characters
    return n if n <= INT64_MAX else None


@dataclass(frozen=True, slots=True)
class Event:
    """One stored event of an alert, as the fold needs it (a row of ``alert_events``)."""

    seq: int
    n: int
    event: str
    event_id: str | None
    code: str
    device: str
    point: str
    severity: str
    condition: str
    human_state: str
    at: datetime
    raised_at: datetime
    by: str | None
    note: str | None
    outcome: str | None
    level: int
    value: float
    params: Mapping[str, Any]
    text_en: str
    text_zh_hans: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Event:
        return cls(
            seq=row["seq"],
            n=row["n"],
            event=row["event"],
            event_id=row["event_id"],
            code=row["rule"],
            device=row["device"],
            point=row["point"],
            severity=row["severity"],
            condition="active" if row["state"] == "raised" else "cleared",
            human_state=row["human_state"],
            at=row["at"],
            raised_at=row["raised_at"],
            by=row["by"],
            note=row["note"],
            outcome=row["outcome"],
            level=row["level"],
            value=row["value"],
            params=row["params"] or {},
            text_en=row["message"],
            text_zh_hans=row["text_zh_hans"],
        )


@dataclass(frozen=True, slots=True)
class AlertState:
    """An alert's current state: the columns of ``alert_states`` but its key and site."""

    seq: int
    code: str
    device: str
    point: str
    severity: str
    condition: str
    human_state: str
    level: int
    value: float
    params: Mapping[str, Any]
    text_en: str
    text_zh_hans: str | None
    raised_at: datetime
    cleared_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    acknowledged_note: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolved_note: str | None
    outcome: str | None
    last_event: str
    last_event_id: str | None
    last_event_at: datetime
    events: int


def fold(events: Iterable[Event]) -> AlertState:
    """The state of one alert after all of ``events`` (at least one)."""
    ordered = sorted(events, key=lambda e: (e.n, e.seq))
    if not ordered:
        raise ValueError("an alert's state needs at least one event")
    last = ordered[-1]
    cleared = next((e for e in ordered if e.event == "cleared"), None)
    acknowledged = next((e for e in ordered if e.event == "acknowledged"), None)
    resolved = next((e for e in ordered if e.human_state == "resolved"), None)
    params = next((e.params for e in reversed(ordered) if e.params), {})
    return AlertState(
        seq=max(e.seq for e in ordered),
        code=last.code,
        device=last.device,
        point=last.point,
        severity=last.severity,
        condition=last.condition,
        human_state=last.human_state,
        level=last.level,
        value=last.value,
        params=dict(params),
        text_en=last.text_en,
        text_zh_hans=last.text_zh_hans,
        raised_at=last.raised_at,
        cleared_at=None if cleared is None else cleared.at,
        acknowledged_at=None if acknowledged is None else acknowledged.at,
        acknowledged_by=None if acknowledged is None else acknowledged.by,
        acknowledged_note=None if acknowledged is None else acknowledged.note,
        resolved_at=None if resolved is None else resolved.at,
        resolved_by=None if resolved is None else resolved.by,
        resolved_note=None if resolved is None else resolved.note,
        outcome=None if resolved is None else resolved.outcome,
        last_event=last.event,
        last_event_id=last.event_id,
        last_event_at=last.at,
        events=len(ordered),
    )
