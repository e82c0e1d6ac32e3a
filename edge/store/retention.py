"""How long the store keeps what it no longer needs for syncing.

Retention only deletes local copies whose content is safe elsewhere: raw readings already
summarised, local copies of summaries (the outbox holds the records until the central API has
them), cleared alerts (likewise), access events already counted in a summary (likewise) and
demand forecasts, with the summaries' retention after their last hour (likewise).
Nothing retention deletes is reported as an eviction; what the quota forces out is
(``edge.store.quota``). Ages are by wall time, so records stamped in the future by a clock that
was ahead stay until then, or until the quota needs their space.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from edge.store import alerts as store_alerts
from edge.store import forecasts
from edge.store.outbox import meta
from edge.store.schema import transaction


@dataclass(frozen=True, slots=True)
class Retention:
    reading_s: float = 7 * 86_400.0
    """Raw readings older than this are deleted once summarised."""
    summary_s: float = 90 * 86_400.0
    """The local copy of a summary is deleted this long after its period ended; so is a demand
    forecast after its last hour."""
    cleared_alert_s: float = 90 * 86_400.0
    """An alert closed (cleared and resolved) is deleted from the local history, with its
    events, this long after it was resolved; an open alert never is."""
    access_s: float = 90 * 86_400.0
    """An access event is deleted from the local history this long after it happened (once
    counted in a summary)."""


@dataclass(frozen=True, slots=True)
class Pruned:
    readings: int
    summaries: int
    cleared_alerts: int
    access_events: int
    forecasts: int = 0


def prune_readings(conn: sqlite3.Connection, *, now: float, retention_s: float) -> int:
    with transaction(conn):
        last = int(meta(conn, "summary_last_id") or 0)
        return conn.execute(
            "DELETE FROM readings WHERE wall_time < ? AND id <= ?", (now - retention_s, last)
        ).rowcount


def apply(conn: sqlite3.Connection, retention: Retention, *, now: float) -> Pruned:
    readings = prune_readings(conn, now=now, retention_s=retention.reading_s)
    with transaction(conn):
        summaries = conn.execute(
            "DELETE FROM summaries WHERE period_end < ?", (now - retention.summary_s,)
        ).rowcount
        alerts = store_alerts.prune_closed(conn, before=now - retention.cleared_alert_s)
        access = conn.execute(
            "DELETE FROM access_events WHERE wall_time < ? AND id <= ?",
            (now - retention.access_s, int(meta(conn, "access_summary_last_id") or 0)),
        ).rowcount
        forecast_copies = forecasts.prune(conn, ended_before=now - retention.summary_s)
    return Pruned(readings, summaries, alerts, access, forecast_copies)
