"""Alerts in the store: each alert's latest state (``alerts``) and its append-only history
(``alert_history``), written in the caller's transaction with the event's outbox record.

``write(conn, alert)`` stores one change (an ``Alert`` snapshot after one event); ``open_alerts``
reads back every alert not both cleared and resolved, as the book needs it at start;
``history`` the events of one alert, oldest first. ``unacked_times`` and ``save_unacked`` read
and write the escalation timers (``edge.alerts.escalation``): how long each alert has waited for
an acknowledgement, and when that was measured; an alert's first row starts its timer at 0.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edge.alerts import Alert
from edge.clock import Stamp

_COLUMNS = (
    "alert_id, key, rule, device, point, severity, value, condition, human_state, raised_at,"
    " cleared_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, outcome, level,"
    " needs_person, params, raised_params, event, event_n, event_at, via, event_by, note,"
    " audience, command_id, message"
)
_TIMER_COLUMNS = "unacked_s, unacked_wall, unacked_boot, unacked_mono_ns, unacked_synced"
OPEN = "NOT (condition = 'cleared' AND human_state = 'resolved')"
"""SQL: an alert still open (not both cleared and resolved)."""


@dataclass(frozen=True, slots=True)
class UnackedTime:
    """How long an alert had waited for an acknowledgement (``seconds``), measured at ``stamp``."""

    seconds: float
    stamp: Stamp


def write(conn: sqlite3.Connection, alert: Alert, stamp: Stamp | None = None) -> None:
    """The alert's new state and one history row (inside the caller's transaction). The first
    row of an alert also starts its escalation timer: 0 s waited, at ``stamp``."""
    values = (
        alert.alert_id,
        alert.key,
        alert.rule,
        alert.device,
        alert.point,
        alert.severity,
        alert.value,
        alert.condition,
        alert.state,
        alert.raised_at,
        alert.cleared_at,
        alert.acknowledged_at,
        alert.acknowledged_by,
        alert.resolved_at,
        alert.resolved_by,
        alert.outcome,
        alert.level,
        alert.needs_person,
        json.dumps(dict(alert.params), ensure_ascii=False),
        json.dumps(dict(alert.raised_params), ensure_ascii=False),
        alert.event,
        alert.event_n,
        alert.at,
        alert.via,
        alert.by,
        alert.note,
        alert.audience,
        alert.command_id,
        alert.message,
    )
    updated = ", ".join(
        f"{column.strip()} = excluded.{column.strip()}"
        for column in _COLUMNS.split(",")[1:]
        if column.strip() not in ("key", "rule", "device", "point", "raised_at")
    )
    timer = (
        (None,) * 5
        if stamp is None
        else (0.0, stamp.wall_time, stamp.boot_id, stamp.monotonic_ns, stamp.clock_synced)
    )
    conn.execute(
        f"INSERT INTO alerts ({_COLUMNS}, {_TIMER_COLUMNS})"  # noqa: S608 (constants)
        f" VALUES ({', '.join('?' for _ in (*values, *timer))})"
        f" ON CONFLICT (alert_id) DO UPDATE SET {updated}",
        (*values, *timer),
    )
    conn.execute(
        "INSERT OR IGNORE INTO alert_history (event_id, alert_id, event_n, event, at, via, by,"
        " note, outcome, level, audience, command_id, condition, human_state, message)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            alert.event_id,
            alert.alert_id,
            alert.event_n,
            alert.event,
            alert.at,
            alert.via,
            alert.by,
            alert.note,
            alert.outcome,
            alert.level,
            alert.audience,
            alert.command_id,
            alert.condition,
            alert.state,
            alert.message,
        ),
    )


def open_alerts(conn: sqlite3.Connection) -> list[Alert]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM alerts WHERE {OPEN} ORDER BY raised_at"  # noqa: S608
    ).fetchall()
    return [_alert(row) for row in rows]


def closed_since(conn: sqlite3.Connection, since: float, limit: int) -> list[Alert]:
    """The alerts closed (cleared and resolved) at or after ``since``, newest first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM alerts WHERE NOT ({OPEN}) AND resolved_at >= ?"  # noqa: S608
        " ORDER BY resolved_at DESC LIMIT ?",
        (since, limit),
    ).fetchall()
    return [_alert(row) for row in rows]


def outcomes(conn: sqlite3.Connection, device: str) -> dict[str, int]:
    """How the alerts of ``device`` still stored were resolved: outcome to count."""
    rows = conn.execute(
        "SELECT COALESCE(outcome, ''), COUNT(*) FROM alerts WHERE device = ? GROUP BY outcome",
        (device,),
    ).fetchall()
    return {str(outcome): int(n) for outcome, n in rows}


def unacked_times(conn: sqlite3.Connection) -> dict[str, UnackedTime]:
    """The escalation timers of the open alerts nobody acknowledged yet, by alert id (none for
    an alert whose timer was never written: one of schema 7)."""
    rows = conn.execute(
        f"SELECT alert_id, {_TIMER_COLUMNS} FROM alerts"  # noqa: S608 (constants)
        f" WHERE {OPEN} AND human_state = 'new' AND unacked_s IS NOT NULL"
    ).fetchall()
    return {
        alert_id: UnackedTime(seconds, Stamp(wall, boot, mono_ns, bool(synced)))
        for alert_id, seconds, wall, boot, mono_ns, synced in rows
    }


def save_unacked(conn: sqlite3.Connection, times: Sequence[tuple[str, UnackedTime]]) -> None:
    """Write escalation timers (inside the caller's transaction); an alert no longer ``new``
    keeps the timer it had."""
    conn.executemany(
        "UPDATE alerts SET unacked_s = ?, unacked_wall = ?, unacked_boot = ?,"
        " unacked_mono_ns = ?, unacked_synced = ? WHERE alert_id = ? AND human_state = 'new'",
        [
            (
                t.seconds,
                t.stamp.wall_time,
                t.stamp.boot_id,
                t.stamp.monotonic_ns,
                t.stamp.clock_synced,
                alert_id,
            )
            for alert_id, t in times
        ],
    )


def history(conn: sqlite3.Connection, alert_id: str) -> list[dict[str, Any]]:
    """The events of one alert, oldest first."""
    cursor = conn.execute(
        "SELECT event_id, event_n, event, at, via, by, note, outcome, level, audience,"
        " command_id, condition, human_state, message FROM alert_history WHERE alert_id = ?"
        " ORDER BY event_n",
        (alert_id,),
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def applied_command(conn: sqlite3.Connection, command_id: str) -> str | None:
    """The event a platform command made, if it was applied already (across restarts)."""
    row = conn.execute(
        "SELECT event_id FROM alert_history WHERE command_id = ? LIMIT 1", (command_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def prune_closed(conn: sqlite3.Connection, *, before: float) -> int:
    """Delete alerts closed (cleared and resolved) before ``before``, with their history; an
    open alert is never pruned."""
    closed = "condition = 'cleared' AND human_state = 'resolved' AND COALESCE(resolved_at, 0) < ?"
    conn.execute(
        f"DELETE FROM alert_history WHERE alert_id IN (SELECT alert_id FROM alerts WHERE {closed})",  # noqa: S608
        (before,),
    )
    return int(conn.execute(f"DELETE FROM alerts WHERE {closed}", (before,)).rowcount)  # noqa: S608


def _alert(row: tuple[Any, ...]) -> Alert:
    (alert_id, key, rule, device, point, severity, value, condition, human_state, raised_at,
     cleared_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, outcome, level,
     needs_person, params, raised_params, event, event_n, event_at, via, event_by, note, audience,
     command_id, _message) = row  # fmt: skip
    return Alert(
        alert_id=alert_id,
        key=key,
        rule=rule,
        device=device,
        point=point,
        severity=severity,
        value=value,
        condition=condition,
        state=human_state,
        raised_at=raised_at,
        cleared_at=cleared_at,
        acknowledged_at=acknowledged_at,
        acknowledged_by=acknowledged_by,
        resolved_at=resolved_at,
        resolved_by=resolved_by,
        outcome=outcome,
        level=level,
        needs_person=bool(needs_person),
        params=json.loads(params),
        raised_params=json.loads(raised_params),
        event=event,
        event_n=event_n,
        at=event_at,
        via=via,
        by=event_by,
        note=note,
        audience=audience,
        command_id=command_id,
    )
