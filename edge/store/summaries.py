"""Summaries by row-id ranges, and the correction of wall times once the clock synchronised.

Why id ranges: a wall clock that jumps back would put new readings into periods that were already
summarised, and with a wall-time watermark (schema 1's ``summary_until``) they were never
summarised. Here ``meta.summary_last_id`` is the last reading id summarised. A run takes the
readings with ``last < id <= upto``, buckets them by the wall time they carry and writes one summary
per (device, point, period, well-timed or not) with its outbox row, then sets ``summary_last_id =
upto``, all in one transaction. Every reading is in exactly one summary, whatever the clock did.

``upto`` stops just before the first reading (in id order) whose period is still open: its wall
time is at or after the last closed period boundary (``now - grace`` rounded down) but less than one
period ahead of ``now``. Readings stamped further ahead than that (the clock was ahead and was set
back) are summarised at once, since their period would not close for a long time. So in steady
operation each period gets one summary. After a jump back, readings of a period already summarised
get a second summary for that period carrying only the new readings: the central side adds them
up (counts and sums add; ``min``/``max`` combine; ``last`` is the one with the later record).

A jump forward creates no empty periods: summaries exist only for buckets that hold readings.

Counters (energy registers, ``kind = "counter"`` in the device profile) also get ``delta``, the
consumption within the summary: the sum of the positive steps between consecutive readings of the
device and point in id order. A run's first reading of a point is compared with the last one
summarised before (``point_last``, updated in the same transaction), so the deltas of consecutive
summaries add up to the counter's whole increase. A step down (the meter was reset or replaced)
counts 0, never a negative consumption. Gauges get ``delta = NULL``.

Access events of doors and gates are counted in the same pass and the same transaction, the same
way: ``meta.access_summary_last_id`` is the last access event counted, a run takes the events
after it up to just before the first one whose period is still open, buckets them by wall time
and writes one summary per (device, event, period, well-timed or not) with ``point =
"events.<event>"`` (e.g. ``events.granted``), ``unit = "events"``, ``count`` the number of events
and ``min = max = mean = last = 1`` (each event counts as a reading of 1), ``delta = NULL``. Every
access event is in exactly one count summary, whatever the clock did; a jump back gives a period
a second count summary, which adds up like any other. Their wall times are corrected after the
first synchronisation like readings'. (The events themselves go to the central API one record
each, at write time: ``edge.store.records.access_record``.)
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Literal

from edge.clock import Stamp
from edge.store import latest, records
from edge.store.outbox import meta, set_meta
from edge.store.schema import transaction

Enqueue = Callable[[str, Sequence[Callable[[str], str]]], None]

_SUMMARY_SQL = """
WITH bucketed AS (
    SELECT r.id, r.device, r.point, r.unit, r.value,
           CAST(r.wall_time / :interval AS INTEGER) AS bucket,
           (r.clock_synced OR r.wall_time_corrected) AS timed,
           r.value - LAG(r.value, 1, p.value) OVER (
               PARTITION BY r.device, r.point ORDER BY r.id
           ) AS step
    FROM readings AS r
    LEFT JOIN point_last AS p ON p.device = r.device AND p.point = r.point
    WHERE r.id > :after AND r.id <= :upto
), ranked AS (
    SELECT *, ROW_NUMBER() OVER (
        PARTITION BY device, point, bucket, timed ORDER BY id DESC
    ) AS newest
    FROM bucketed
)
SELECT device, point, MAX(unit) AS unit, bucket, timed, COUNT(*) AS count, MIN(value) AS min,
       MAX(value) AS max, AVG(value) AS mean, MAX(CASE WHEN newest = 1 THEN value END) AS last,
       TOTAL(MAX(COALESCE(step, 0.0), 0.0)) AS delta
FROM ranked
GROUP BY device, point, bucket, timed
ORDER BY bucket, device, point, timed
"""

_ACCESS_COUNT_SQL = """
SELECT device, event, CAST(wall_time / :interval AS INTEGER) AS bucket,
       (clock_synced OR wall_time_corrected) AS timed, COUNT(*) AS count
FROM access_events
WHERE id > :after AND id <= :upto
GROUP BY device, event, bucket, timed
ORDER BY bucket, device, event, timed
"""

_POINT_LAST_SQL = """
INSERT INTO point_last (device, point, reading_id, value)
SELECT device, point, MAX(id), value FROM readings
WHERE id > :after AND id <= :upto
GROUP BY device, point
ON CONFLICT (device, point) DO UPDATE SET reading_id = excluded.reading_id, value = excluded.value
"""


def summarise(
    conn: sqlite3.Connection,
    enqueue: Enqueue,
    *,
    now: float,
    interval_s: int,
    grace_s: float,
    stamp: Stamp,
    counters: frozenset[tuple[str, str]] = frozenset(),
) -> int:
    """Summarise the readings and count the access events not yet summarised whose periods are
    closed; returns how many summaries were written. ``counters`` are the (device, point) pairs
    that get a ``delta``."""
    closed_end = (now - grace_s) // interval_s * interval_s
    with transaction(conn):
        written = _summarise_readings(
            conn,
            enqueue,
            closed_end,
            now=now,
            interval_s=interval_s,
            stamp=stamp,
            counters=counters,
        )
        written += _count_access_events(
            conn, enqueue, closed_end, now=now, interval_s=interval_s, stamp=stamp
        )
    return written


def _upto(
    conn: sqlite3.Connection,
    table: Literal["readings", "access_events"],
    last: int,
    closed_end: float,
    now: float,
    interval_s: int,
) -> int:
    """The last id of ``table`` to summarise now: just before the first one (after ``last``)
    whose period is still open, or the last one."""
    blocker = conn.execute(
        f"SELECT MIN(id) FROM {table} WHERE id > ? AND wall_time >= ? AND wall_time < ?",  # noqa: S608
        (last, closed_end, now + interval_s),
    ).fetchone()[0]
    if blocker is not None:
        return int(blocker) - 1
    return int(conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()[0])  # noqa: S608


def _summarise_readings(
    conn: sqlite3.Connection,
    enqueue: Enqueue,
    closed_end: float,
    *,
    now: float,
    interval_s: int,
    stamp: Stamp,
    counters: frozenset[tuple[str, str]],
) -> int:
    last = int(meta(conn, "summary_last_id") or 0)
    upto = _upto(conn, "readings", last, closed_end, now, interval_s)
    if upto <= last:
        return 0
    rows = conn.execute(
        _SUMMARY_SQL, {"interval": interval_s, "after": last, "upto": upto}
    ).fetchall()
    builders = []
    for device, point, unit, bucket, timed, count, lo, hi, mean, last_value, steps in rows:
        period_start = float(bucket * interval_s)
        period_end = period_start + interval_s
        delta = float(steps) if (device, point) in counters else None
        conn.execute(
            "INSERT INTO summaries (device, point, unit, period_start, period_end, count,"
            " min, max, mean, last, delta, clock_synced, readings_after, readings_upto)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *(
                    device,
                    point,
                    unit,
                    period_start,
                    period_end,
                    count,
                    lo,
                    hi,
                    mean,
                    last_value,
                    delta,
                ),
                *(bool(timed), last, upto),
            ),
        )
        fields: dict[str, Any] = {
            "device": device,
            "point": point,
            "unit": unit,
            "period_start": period_start,
            "period_end": period_end,
            "count": count,
            "minimum": lo,
            "maximum": hi,
            "mean": mean,
            "last": last_value,
            "delta": delta,
            "clock_synced": bool(timed),
        }
        builders.append(functools.partial(records.summary_record, stamp=stamp, **fields))
    enqueue("summary", builders)
    conn.execute(_POINT_LAST_SQL, {"after": last, "upto": upto})
    latest.flush(conn)  # so retention and the quota never take a point's newest reading
    set_meta(conn, "summary_last_id", str(upto))
    return len(rows)


def _count_access_events(
    conn: sqlite3.Connection,
    enqueue: Enqueue,
    closed_end: float,
    *,
    now: float,
    interval_s: int,
    stamp: Stamp,
) -> int:
    """One count summary per (device, event, period, well-timed or not) of the access events
    after ``access_summary_last_id``: point ``events.<event>``, unit ``events``, each event a
    reading of 1."""
    last = int(meta(conn, "access_summary_last_id") or 0)
    upto = _upto(conn, "access_events", last, closed_end, now, interval_s)
    if upto <= last:
        return 0
    rows = conn.execute(
        _ACCESS_COUNT_SQL, {"interval": interval_s, "after": last, "upto": upto}
    ).fetchall()
    builders = []
    for device, event, bucket, timed, count in rows:
        period_start = float(bucket * interval_s)
        period_end = period_start + interval_s
        point = f"events.{event}"
        conn.execute(
            "INSERT INTO summaries (device, point, unit, period_start, period_end, count,"
            " min, max, mean, last, delta, clock_synced, access_after, access_upto)"
            " VALUES (?, ?, 'events', ?, ?, ?, 1.0, 1.0, 1.0, 1.0, NULL, ?, ?, ?)",
            (device, point, period_start, period_end, count, bool(timed), last, upto),
        )
        builders.append(
            functools.partial(
                records.summary_record,
                stamp=stamp,
                device=device,
                point=point,
                unit="events",
                period_start=period_start,
                period_end=period_end,
                count=count,
                minimum=1.0,
                maximum=1.0,
                mean=1.0,
                last=1.0,
                delta=None,
                clock_synced=bool(timed),
            )
        )
    enqueue("summary", builders)
    set_meta(conn, "access_summary_last_id", str(upto))
    return len(rows)


def correct_wall_times(
    conn: sqlite3.Connection, *, boot_id: str, offset: float, after_id: int
) -> tuple[int, int]:
    """Rewrite the wall time of this boot's unsynchronised readings and access events that are
    not summarised yet (``wall = monotonic + offset``), and of the points' newest readings
    among them (``latest``); returns (how many readings, the highest
    reading id looked at)."""
    with transaction(conn):
        start = max(after_id, int(meta(conn, "summary_last_id") or 0))
        upto = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM readings").fetchone()[0])
        cursor = conn.execute(
            "UPDATE readings SET wall_time = monotonic_ns / 1e9 + ?, wall_time_corrected = 1"
            " WHERE id > ? AND id <= ? AND boot_id = ? AND clock_synced = 0"
            " AND wall_time_corrected = 0",
            (offset, start, upto, boot_id),
        )
        if cursor.rowcount:
            latest.correct(conn, after_id=start, upto_id=upto)
        # Access events are rare: no cursor of their own, only those not counted yet.
        conn.execute(
            "UPDATE access_events SET wall_time = monotonic_ns / 1e9 + ?, wall_time_corrected = 1"
            " WHERE id > ? AND boot_id = ? AND clock_synced = 0 AND wall_time_corrected = 0",
            (offset, int(meta(conn, "access_summary_last_id") or 0), boot_id),
        )
    return cursor.rowcount, max(upto, after_id)
