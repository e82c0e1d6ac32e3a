"""The newest reading of every point: table ``point_latest``, one row per device and point, plus
the few readings written since it was last brought up to date.

``flush`` brings every point's row up to its newest reading (by id, the order written); the store
calls it in the transaction of a batch of readings at most every ``FLUSH_S`` seconds, and in
every summarising run. ``readings`` (the latest-readings page) and ``of`` (one point) read the
table and the readings after the newest one it holds, at most about ``FLUSH_S`` seconds of rows:
always the true newest value, without rewriting the table's pages with every batch. Rows are
never pruned or evicted, so a point that reports rarely keeps its last value after retention or
the quota removed the reading itself (both take only summarised readings, which are flushed).
``correct`` follows the wall times corrected once the clock synchronised.

Not to be confused with ``point_last``, the last reading *summarised*: the baseline the next
summary's counter deltas start from.
"""

from __future__ import annotations

import sqlite3
from typing import Any

FLUSH_S = 60.0
"""The longest the store goes, while writing readings, without bringing the table up to date."""

_FLUSH_SQL = """
INSERT INTO point_latest (device, point, reading_id, value, unit, wall_time)
SELECT device, point, MAX(id), value, unit, wall_time FROM readings
WHERE id > ?
GROUP BY device, point
ON CONFLICT (device, point) DO UPDATE SET reading_id = excluded.reading_id,
    value = excluded.value, unit = excluded.unit, wall_time = excluded.wall_time
WHERE excluded.reading_id > point_latest.reading_id
"""
# SQLite takes the bare columns value, unit, wall_time from the row of MAX(id).

_SINCE_SQL = """
SELECT device, point, MAX(id), value, unit, wall_time FROM readings
WHERE id > ?
GROUP BY device, point
"""

_CORRECT_SQL = """
UPDATE point_latest SET wall_time = r.wall_time
FROM readings AS r
WHERE r.id = point_latest.reading_id AND point_latest.reading_id > ?
  AND point_latest.reading_id <= ? AND r.wall_time_corrected = 1
  AND point_latest.wall_time <> r.wall_time
"""


def _flushed_upto(conn: sqlite3.Connection) -> int:
    """The newest reading id the table holds: every reading up to it is accounted for."""
    return int(conn.execute("SELECT COALESCE(MAX(reading_id), 0) FROM point_latest").fetchone()[0])


def flush(conn: sqlite3.Connection) -> None:
    """Bring every point's row up to its newest reading, inside the caller's transaction."""
    conn.execute(_FLUSH_SQL, (_flushed_upto(conn),))


def correct(conn: sqlite3.Connection, *, after_id: int, upto_id: int) -> None:
    """Take over the corrected wall times of readings ``after_id < id <= upto_id``, inside the
    caller's transaction."""
    conn.execute(_CORRECT_SQL, (after_id, upto_id))


def readings(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every point's newest reading, by device and point."""
    newest = {
        (d, p): (v, u, t)
        for d, p, v, u, t in conn.execute(
            "SELECT device, point, value, unit, wall_time FROM point_latest"
        )
    }
    for d, p, _, v, u, t in conn.execute(_SINCE_SQL, (_flushed_upto(conn),)):
        newest[(d, p)] = (v, u, t)
    return [
        {"device": d, "point": p, "value": v, "unit": u, "wall_time": t}
        for (d, p), (v, u, t) in sorted(newest.items())
    ]


def of(conn: sqlite3.Connection, device: str, point: str) -> tuple[float, str, float] | None:
    """One point's newest reading: value, unit, wall time (None: the store never had one)."""
    row = (
        conn.execute(
            "SELECT value, unit, wall_time FROM readings WHERE id > ? AND device = ? AND point = ?"
            " ORDER BY id DESC LIMIT 1",
            (_flushed_upto(conn), device, point),
        ).fetchone()
        or conn.execute(
            "SELECT value, unit, wall_time FROM point_latest WHERE device = ? AND point = ?",
            (device, point),
        ).fetchone()
    )
    return None if row is None else (float(row[0]), str(row[1]), float(row[2]))
