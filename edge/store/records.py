"""Wire records (``cloud_sync.schemas``) built from what the store holds.

Each record is validated against the wire schema once, when it is made, and kept in the outbox as
JSON text; the sync client sends that text as it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

from cloud_sync.schemas import (
    AccessBody,
    AccessRecord,
    AlertEventBody,
    AlertEventRecord,
    AlertTexts,
    CommandResultBody,
    CommandResultRecord,
    EvictionBody,
    EvictionRecord,
    ForecastBody,
    ForecastRecord,
    RecordTime,
    SummaryBody,
    SummaryRecord,
)
from edge.alerts import Alert
from edge.alerts.catalogue import ParamValue
from edge.clock import Stamp
from edge.i18n import LANGUAGES
from edge.store.forecasts import Forecast
from firmware_bridge.events import AccessEvent

PRIORITY = {
    "alert": 0,
    "alert_event": 0,
    "command_result": 0,
    "eviction": 1,
    "access": 2,
    "forecast": 3,
    "summary": 3,
    "bulk": 4,
}
"""Outbox priorities: lower is sent first, and in order of writing within one priority. Schema
migration 2 renumbered stored rows to these. Forecasts share 3 with summaries: no integer lies
between access (2) and summary (3), and giving them a place of their own would renumber the
summaries and bulk rows already stored. They are the same class of record (hourly, derived from
the readings, evicted by the same policy), written at about the same moment each hour, so in
the order of writing they go out beside the summaries of the hour they follow. Eviction picks
outbox rows by kind as well as priority (``eviction``)."""

EvictedKind = Literal["reading", "summary", "alert", "access", "forecast"]
EvictionReason = Literal["quota", "disk_full", "retention"]


def utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def record_time(stamp: Stamp, *, clock_synced: bool | None = None) -> RecordTime:
    return RecordTime(
        wall_time=utc(stamp.wall_time),
        boot_id=stamp.boot_id,
        monotonic_ns=stamp.monotonic_ns,
        clock_synced=stamp.clock_synced if clock_synced is None else clock_synced,
    )


def alert_event_record(record_id: str, stamp: Stamp, alert: Alert) -> str:
    """One event of an alert's history: the alert after it, who, and its texts in every
    language. Parameters that cannot go on the wire as they are (text too long, a number that is
    not finite) are cut or written as text."""
    body = AlertEventBody(
        event_id=alert.event_id,
        alert_id=alert.alert_id,
        event=alert.event,
        code=alert.rule,
        device=alert.device,
        point=alert.point,
        severity=alert.severity,
        condition=alert.condition,
        state=alert.state,
        at=utc(alert.at),
        raised_at=utc(alert.raised_at),
        via=alert.via,
        by=alert.by,
        note=alert.note,
        outcome=alert.outcome,
        level=alert.level,
        audience=alert.audience,
        value=alert.value if math.isfinite(alert.value) else 0.0,
        params=_wire_params(alert.params),
        text=AlertTexts.model_validate(
            {language: alert.text(language)[:500] for language in LANGUAGES}
        ),
        command_id=alert.command_id,
    )
    return AlertEventRecord(
        record_id=record_id, time=record_time(stamp), body=body
    ).model_dump_json()


def command_result_record(
    record_id: str,
    stamp: Stamp,
    *,
    command_id: str,
    result: Literal["applied", "refused"],
    reason: str | None,
    event_id: str | None,
    at: float,
) -> str:
    """The gateway's answer to a platform command (applied, with the event it made if any, or
    refused with the reason)."""
    body = CommandResultBody(
        command_id=command_id,
        result=result,
        reason=None if reason is None else reason[:300],
        event_id=event_id,
        at=utc(at),
    )
    return CommandResultRecord(
        record_id=record_id, time=record_time(stamp), body=body
    ).model_dump_json()


def _wire_params(
    params: Mapping[str, str | int | float | bool],
) -> dict[str, str | int | float | bool]:
    wire: dict[str, ParamValue] = {}
    for name, value in list(params.items())[:32]:
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        if isinstance(value, str):
            value = value.replace("\x00", "")[:200]
        wire[name] = value
    return wire


def access_body(event: AccessEvent) -> AccessBody:
    """The wire body of an access event; raises ``pydantic.ValidationError`` (or ``ValueError``
    for a time out of range) when the event cannot go on the wire."""
    return AccessBody(
        device=event.device,
        event=event.event,
        credential_ref=event.credential_ref,
        occurred_at=utc(event.wall_time),
        detail=event.detail,
    )


def access_record(record_id: str, stamp: Stamp, event: AccessEvent) -> str:
    """An access event. Its time is the event's own (wall and monotonic), in the boot and clock
    state of the write that stored it, like the readings of a batch."""
    time = RecordTime(
        wall_time=utc(event.wall_time),
        boot_id=stamp.boot_id,
        monotonic_ns=event.monotonic_ns,
        clock_synced=stamp.clock_synced,
    )
    body = access_body(event)
    return AccessRecord(record_id=record_id, time=time, body=body).model_dump_json()


def forecast_body(forecast: Forecast) -> ForecastBody:
    """The wire body of a forecast; raises ``pydantic.ValidationError`` (a ``ValueError``)
    when it cannot go on the wire."""
    return ForecastBody(
        series=forecast.series,
        issued_at=utc(forecast.issued_at),
        start=utc(forecast.start),
        hours=list(forecast.values),
        model=forecast.model,
        capacity_kwh=forecast.capacity_kwh,
    )


def forecast_record(record_id: str, stamp: Stamp, forecast: Forecast) -> str:
    """A forecast. Its time is the write's: when the store received it from the demand service,
    moments after ``issued_at``."""
    body = forecast_body(forecast)
    return ForecastRecord(record_id=record_id, time=record_time(stamp), body=body).model_dump_json()


def summary_record(
    record_id: str,
    stamp: Stamp,
    *,
    device: str,
    point: str,
    unit: str,
    period_start: float,
    period_end: float,
    count: int,
    minimum: float,
    maximum: float,
    mean: float,
    last: float,
    delta: float | None = None,
    clock_synced: bool,
) -> str:
    """A summary; ``delta`` is a counter's consumption in it (None for a gauge); ``clock_synced``
    says whether the wall time of every reading in it was trusted (taken synchronised, or
    corrected since: see ``edge.clock``)."""
    body = SummaryBody(
        device=device,
        point=point,
        unit=unit,
        period_start=utc(period_start),
        period_end=utc(period_end),
        count=count,
        min=minimum,
        max=maximum,
        mean=mean,
        last=last,
        delta=delta,
    )
    time = record_time(stamp, clock_synced=stamp.clock_synced and clock_synced)
    return SummaryRecord(record_id=record_id, time=time, body=body).model_dump_json()


def eviction_record(
    record_id: str,
    stamp: Stamp,
    *,
    evicted: EvictedKind,
    count: int,
    oldest: float,
    newest: float,
    reason: EvictionReason,
) -> str:
    body = EvictionBody(
        evicted=evicted, count=count, oldest=utc(oldest), newest=utc(newest), reason=reason
    )
    return EvictionRecord(record_id=record_id, time=record_time(stamp), body=body).model_dump_json()
