"""Hourly series of a meter's point, read from the summaries: what the models see on the gateway.

The models work on hours (see :mod:`models.series`): the energy used in each hour, or the mean of a
gauge such as the outdoor temperature. On the gateway those come from the summaries
(:mod:`edge.store.summaries`), whose period divides an hour:

- **counter** (``how="delta"``): the hour's value is the sum of the ``delta`` of its summaries.
  It is known only when its summaries' periods follow one another from the hour's start to its end
  *and* a summary ends where the hour starts: a period with no summary means the gateway or the
  meter was away, and the next summary's delta then carries the consumption of the whole gap, not
  this hour's.
- **gauge** (``how="mean"``): the count-weighted mean of the hour's summaries, known when at least
  one has a synchronised clock.

Every other hour is NaN (missing), which the models' features treat as missing, the same way as a
missing hour of a training series. With ``synced_only`` (the gateway's clock is synchronised now),
periods whose clock was not synchronised are left out: their wall times are not trustworthy. A
gateway whose clock has no synchronisation at all (no network time, no real-time clock) uses every
summary: its hours may be shifted, but it still forecasts and scores.

A dwelling's door sensors are read as counts (``hourly_access_counts``): how many access events of
the given doors and kind (``opened``) have their wall time in each hour, taken from the access
events themselves rather than their count summaries, so that an hour is exactly
``[start, start + 3600)`` whatever the summary period. An hour with none counts 0, not unknown: a
door that did not open is the usual case. ``synced_only`` leaves out events whose wall time was
not trustworthy (taken before the clock synchronised and not corrected since).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from typing import Literal

HOUR_S = 3600


def hourly_values(
    conn: sqlite3.Connection,
    device: str,
    point: str,
    *,
    start: int,
    hours: int,
    how: Literal["delta", "mean"],
    synced_only: bool = True,
) -> list[float]:
    """The ``hours`` hourly values from the hour beginning at ``start`` (epoch s, on the hour).

    Summary periods need not be the configured ones: an hour is covered when its summaries'
    periods follow one another from its start to its end (an imported history may be in hourly
    summaries, the gateway's own in shorter ones).
    """
    if start % HOUR_S:
        raise ValueError("start must be on the hour")
    end = start + hours * HOUR_S
    rows = conn.execute(
        """SELECT period_start, MAX(period_end), SUM(count), SUM(mean * count), SUM(delta),
                  COUNT(delta) = COUNT(*)
           FROM summaries
           WHERE device = ? AND point = ? AND clock_synced >= ?
             AND period_end > ? AND period_start < ?
           GROUP BY period_start
           ORDER BY period_start""",
        (device, point, int(synced_only), start - HOUR_S, end),
    ).fetchall()
    if how == "mean":
        sums = [0.0] * hours
        counts = [0] * hours
        for period_start, _, count, weighted, _, _ in rows:
            index = int((period_start - start) // HOUR_S)
            if 0 <= index < hours and count:
                sums[index] += weighted
                counts[index] += count
        return [s / c if c else math.nan for s, c in zip(sums, counts, strict=True)]
    # counters: walk the periods in order; an hour is known when its first period starts where
    # the one before ended, and its periods follow one another up to its end
    energy = [0.0] * hours
    good = [False] * hours
    complete = [False] * hours
    previous_end = None
    for period_start, period_end, _, _, delta, all_delta in rows:
        contiguous = previous_end == period_start
        previous_end = period_end
        index = int((period_start - start) // HOUR_S)
        if not 0 <= index < hours:
            continue
        hour_start = start + index * HOUR_S
        if period_start == hour_start:
            good[index] = contiguous and bool(all_delta)
            energy[index] = 0.0
        else:
            good[index] = good[index] and contiguous and bool(all_delta)
        if good[index]:
            energy[index] += delta
        if period_end >= hour_start + HOUR_S:
            complete[index] = good[index] and period_end == hour_start + HOUR_S
    return [e if ok else math.nan for e, ok in zip(energy, complete, strict=True)]


def hourly_access_counts(
    conn: sqlite3.Connection,
    devices: Sequence[str],
    event: str,
    *,
    start: int,
    hours: int,
    synced_only: bool = True,
) -> list[int]:
    """How many ``event`` access events of ``devices`` fell in each of the ``hours`` hours from
    ``start`` (epoch s, on the hour)."""
    if start % HOUR_S:
        raise ValueError("start must be on the hour")
    counts = [0] * hours
    if not devices or hours <= 0:
        return counts
    rows = conn.execute(
        """SELECT CAST((wall_time - ?) / ? AS INTEGER) AS hour, COUNT(*)
           FROM access_events
           WHERE wall_time >= ? AND wall_time < ? AND event = ?
             AND device IN (SELECT value FROM json_each(?))
             AND (clock_synced OR wall_time_corrected) >= ?
           GROUP BY hour""",
        (
            start,
            HOUR_S,
            start,
            start + hours * HOUR_S,
            event,
            json.dumps(list(devices)),
            int(synced_only),
        ),
    ).fetchall()
    for index, count in rows:
        counts[index] = count
    return counts
