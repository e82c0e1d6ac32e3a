"""Alert events and each alert's current state in the central database (SQLAlchemy Core).

- ``legacy_row``, ``event_row``: the ``alert_events`` row of an ``alert`` or ``alert_event``
  record; ``central_row``: of an event the central API makes itself (``gateway_silent``).
- ``store_events(conn, ...)``: insert the new rows (a record id or event id held is a duplicate)
  and fold the state of every alert they touch, within the caller's transaction, which holds the
  site's lock (``db.lock_site``): the events and the states commit together.
- Queries: ``events_after`` (the event feed), ``active``, ``current``, ``open_work``,
  ``history``, ``state_of``.

Why states are folded from all of an alert's events, and in which order: ``lifecycle``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    case,
    func,
    literal,
    select,
    tuple_,
)

from cloud_sync.central.lifecycle import LEGACY_N, Event, event_number, fold
from cloud_sync.central.tables import UTCDateTime, alert_events, alert_states
from cloud_sync.central.upsert import insert_or_update, insert_skipping
from cloud_sync.schemas import IDENTIFIER_PATTERN, AlertEventRecord, AlertRecord

__all__ = [
    "CentralEvent",
    "OpenWorkKey",
    "StateFilter",
    "active",
    "central_row",
    "current",
    "event_row",
    "events_after",
    "history",
    "legacy_row",
    "open_work",
    "state_of",
    "store_events",
]

_CHUNK = 500
CENTRAL_BOOT_ID: Final = "central"
"""The ``boot_id`` of events the central API makes: their ``wall_time`` is the API's clock."""
SEVERITY_RANK: Final = {"critical": 0, "warning": 1, "info": 2}
"""Open work comes critical first."""


def legacy_row(record: AlertRecord, origin: Mapping[str, Any]) -> dict[str, Any]:
    """A legacy ``alert`` record: raised is active and new; cleared is cleared and resolved by
    the policy (``auto``), as an older gateway's alert ends when it clears."""
    body = record.body
    raised = body.state == "raised"
    return {
        **origin,
        **body.model_dump(),
        "event_id": None,
        "n": LEGACY_N[body.state],
        "event": body.state,
        "human_state": "new" if raised else "resolved",
        "at": body.raised_at if raised else body.cleared_at or record.time.wall_time,
        "via": "rule",
        "by": None,
        "note": None,
        "outcome": None if raised else "auto",
        "level": 0,
        "audience": None,
        "params": None,
        "text_zh_hans": None,
        "command_id": None,
    }


def event_row(record: AlertEventRecord, origin: Mapping[str, Any]) -> dict[str, Any]:
    """An ``alert_event`` record, with its legacy view (``rule``, ``state``, ``message``,
    ``cleared_at``); its ``event_id`` has been checked at ingest (``event_number``)."""
    body = record.body
    n = event_number(body.event_id, body.alert_id)
    if n is None:
        raise ValueError(f"event id {body.event_id!r} is not <alert_id>.<n>")
    return {
        **origin,
        "alert_id": body.alert_id,
        "rule": body.code,
        "device": body.device,
        "point": body.point,
        "state": "raised" if body.condition == "active" else "cleared",
        "severity": body.severity,
        "message": body.text.en,
        "value": body.value,
        "raised_at": body.raised_at,
        "cleared_at": body.at if body.event == "cleared" else None,
        "event_id": body.event_id,
        "n": n,
        "event": body.event,
        "human_state": body.state,
        "at": body.at,
        "via": body.via,
        "by": body.by,
        "note": body.note,
        "outcome": body.outcome,
        "level": body.level,
        "audience": body.audience,
        "params": dict(body.params),
        "text_zh_hans": body.text.zh_hans,
        "command_id": body.command_id,
    }


@dataclass(frozen=True, slots=True)
class CentralEvent:
    """An event the central API makes itself, for an alert of its own or a command on one."""

    site_id: str
    gateway_id: str
    alert_id: str
    event: str
    code: str
    device: str
    point: str
    severity: str
    condition: str
    human_state: str
    raised_at: datetime
    at: datetime
    value: float
    text_en: str
    text_zh_hans: str
    via: str = "rule"
    by: str | None = None
    note: str | None = None
    outcome: str | None = None
    level: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    command_id: str | None = None


def central_row(conn: Connection, made: CentralEvent, now: datetime) -> dict[str, Any]:
    """The row of ``made``, numbered after the alert's events held (call with the site locked)."""
    held = conn.execute(
        select(func.max(alert_events.c.n)).where(
            alert_events.c.gateway_id == made.gateway_id,
            alert_events.c.alert_id == made.alert_id,
        )
    ).scalar_one()
    n = max(0, held or 0) + 1
    event_id = f"{made.alert_id}.{n}"
    values = asdict(made)
    for moved in ("text_en", "text_zh_hans", "code", "condition"):
        del values[moved]
    return {
        **values,
        "record_id": f"central:{event_id}",
        "wall_time": now,
        "boot_id": CENTRAL_BOOT_ID,
        "monotonic_ns": 0,
        "clock_synced": True,
        "received_at": now,
        "rule": made.code,
        "state": "raised" if made.condition == "active" else "cleared",
        "message": made.text_en,
        "text_zh_hans": made.text_zh_hans,
        "cleared_at": made.at if made.event == "cleared" else None,
        "event_id": event_id,
        "n": n,
        "params": dict(made.params),
        "audience": None,
    }


def store_events(
    conn: Connection, gateway_id: str, rows: Sequence[Mapping[str, Any]], now: datetime
) -> int:
    """Insert the new event rows of one gateway and fold the alerts they touch; how many were
    new. The caller holds the site's lock."""
    if not rows:
        return 0
    stmt = insert_skipping(conn, alert_events).returning(alert_events.c.alert_id)
    inserted = conn.execute(stmt, list(rows)).scalars().all()
    refold(conn, gateway_id, set(inserted), now)
    return len(inserted)


def refold(conn: Connection, gateway_id: str, alert_ids: Iterable[str], now: datetime) -> None:
    """Fold again the state of each of ``alert_ids`` of a gateway from all its events."""
    wanted = sorted(alert_ids)
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        events: dict[str, list[Event]] = defaultdict(list)
        site_of: dict[str, str] = {}
        for row in conn.execute(
            select(alert_events).where(
                alert_events.c.gateway_id == gateway_id, alert_events.c.alert_id.in_(chunk)
            )
        ).mappings():
            events[row["alert_id"]].append(Event.from_row(dict(row)))
            site_of[row["alert_id"]] = row["site_id"]
        states = [
            {
                "gateway_id": gateway_id,
                "alert_id": alert_id,
                "site_id": site_of[alert_id],
                "updated_at": now,
                **asdict(fold(alert_events_of)),
            }
            for alert_id, alert_events_of in events.items()
        ]
        if states:
            conn.execute(insert_or_update(conn, alert_states, ["gateway_id", "alert_id"]), states)


def state_of(conn: Connection, gateway_id: str, alert_id: str) -> dict[str, Any] | None:
    """The current state of one alert, or None if the central API holds no event of it."""
    row = (
        conn.execute(
            select(alert_states).where(
                alert_states.c.gateway_id == gateway_id, alert_states.c.alert_id == alert_id
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def events_after(engine: Engine, site_id: str, after: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` alert events of a site with ``seq > after``, in ``seq`` order."""
    stmt = (
        select(alert_events)
        .where(alert_events.c.site_id == site_id, alert_events.c.seq > after)
        .order_by(alert_events.c.seq)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(stmt).mappings()]


def _latest_first() -> ColumnElement[int]:
    """Each event's place among its alert's events, 1 for the latest."""
    return (
        func.row_number()
        .over(
            partition_by=(alert_events.c.gateway_id, alert_events.c.alert_id),
            order_by=(alert_events.c.n.desc(), alert_events.c.seq.desc()),
        )
        .label("place")
    )


def active(engine: Engine, site_id: str) -> list[dict[str, Any]]:
    """The latest event of each alert of a site whose condition is active, in ``seq`` order."""
    ranked = (
        select(alert_events, _latest_first())
        .join(
            alert_states,
            and_(
                alert_states.c.gateway_id == alert_events.c.gateway_id,
                alert_states.c.alert_id == alert_events.c.alert_id,
            ),
        )
        .where(alert_states.c.site_id == site_id, alert_states.c.condition == "active")
        .subquery()
    )
    stmt = select(ranked).where(ranked.c.place == 1).order_by(ranked.c.seq)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(stmt).mappings()]


def history(
    engine: Engine, gateway_alerts: Sequence[tuple[str, str]], per_alert: int
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The latest ``per_alert`` events of each ``(gateway_id, alert_id)``, oldest first."""
    found: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    if per_alert == 0 or not gateway_alerts:
        return found
    by_gateway: dict[str, list[str]] = defaultdict(list)
    for gateway_id, alert_id in gateway_alerts:
        by_gateway[gateway_id].append(alert_id)
    with engine.connect() as conn:
        for gateway_id, alert_ids in by_gateway.items():
            for start in range(0, len(alert_ids), _CHUNK):
                ranked = (
                    select(alert_events, _latest_first())
                    .where(
                        alert_events.c.gateway_id == gateway_id,
                        alert_events.c.alert_id.in_(alert_ids[start : start + _CHUNK]),
                    )
                    .subquery()
                )
                stmt = (
                    select(ranked)
                    .where(ranked.c.place <= per_alert)
                    .order_by(ranked.c.n, ranked.c.seq)
                )
                for row in conn.execute(stmt).mappings():
                    found[(gateway_id, row["alert_id"])].append(dict(row))
    return found


@dataclass(frozen=True, slots=True)
class StateFilter:
    """Which alerts ``current`` lists: each field None (any) or what the alert must have."""

    human_states: frozenset[str] | None = None
    conditions: frozenset[str] | None = None
    severities: frozenset[str] | None = None
    code: str | None = None
    device: str | None = None
    raised_from: datetime | None = None
    raised_before: datetime | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        c = alert_states.c
        found: list[ColumnElement[bool]] = []
        if self.human_states is not None:
            found.append(c.human_state.in_(sorted(self.human_states)))
        if self.conditions is not None:
            found.append(c.condition.in_(sorted(self.conditions)))
        if self.severities is not None:
            found.append(c.severity.in_(sorted(self.severities)))
        if self.code is not None:
            found.append(c.code == self.code)
        if self.device is not None:
            found.append(c.device == self.device)
        if self.raised_from is not None:
            found.append(c.raised_at >= self.raised_from)
        if self.raised_before is not None:
            found.append(c.raised_at < self.raised_before)
        return found


def current(
    engine: Engine, site_id: str, where: StateFilter, after: int, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` current states of a site's alerts that match ``where``, changed after
    ``after`` (their ``seq``), in ``seq`` order."""
    stmt = (
        select(alert_states)
        .where(alert_states.c.site_id == site_id, alert_states.c.seq > after, *where.clauses())
        .order_by(alert_states.c.seq)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(stmt).mappings()]


@dataclass(frozen=True, slots=True)
class OpenWorkKey:
    """The place of an alert in the open-work list: severity rank, raise time, gateway, alert."""

    rank: int
    raised_at: datetime
    gateway_id: str
    alert_id: str

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> OpenWorkKey:
        return cls(
            SEVERITY_RANK[row["severity"]], row["raised_at"], row["gateway_id"], row["alert_id"]
        )

    def encode(self) -> str:
        """The opaque cursor of this place: URL-safe base64 of JSON."""
        raw = [self.rank, self.raised_at.isoformat(), self.gateway_id, self.alert_id]
        return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> OpenWorkKey:
        """The place a cursor names; ``ValueError`` if it is not one ``encode`` makes."""
        try:
            raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError("not a cursor of this list") from exc
        if not (
            isinstance(raw, list)
            and len(raw) == 4
            and raw[0] in SEVERITY_RANK.values()
            and all(isinstance(part, str) for part in raw[1:])
        ):
            raise ValueError("not a cursor of this list")
        rank, raised_at, gateway_id, alert_id = raw
        when = _aware_utc(raised_at)
        if when is None or not all(_is_identifier(part) for part in (gateway_id, alert_id)):
            raise ValueError("not a cursor of this list")
        return cls(rank, when, gateway_id, alert_id)


def _aware_utc(text: str) -> datetime | None:
    """The instant ``text`` names with its offset, in UTC; None if it names none."""
    try:
        when = datetime.fromisoformat(text)
        return None if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _is_identifier(text: str) -> bool:
    return len(text) <= 64 and re.fullmatch(IDENTIFIER_PATTERN, text) is not None


def _rank() -> ColumnElement[int]:
    return case(
        *((alert_states.c.severity == name, rank) for name, rank in SEVERITY_RANK.items()),
        else_=len(SEVERITY_RANK),
    )


def open_work(
    engine: Engine, site_id: str, after: OpenWorkKey | None, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` unresolved alerts of a site after ``after``: critical first, then the
    oldest raised first (then by gateway and alert id, so that the order is total)."""
    c = alert_states.c
    order = (_rank(), c.raised_at, c.gateway_id, c.alert_id)
    stmt = select(alert_states).where(c.site_id == site_id, c.human_state != "resolved")
    if after is not None:
        stmt = stmt.where(
            tuple_(*order)
            > tuple_(
                literal(after.rank),
                literal(after.raised_at, UTCDateTime()),
                literal(after.gateway_id),
                literal(after.alert_id),
            )
        )
    with engine.connect() as conn:
        rows = conn.execute(stmt.order_by(*order).limit(limit)).mappings()
        return [dict(row) for row in rows]
