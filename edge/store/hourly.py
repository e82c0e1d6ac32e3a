"""Hourly series of a meter's point, read from the summaries: what the models see on the gateway.

The models work on hours (see :mod:`models.series`): the energy used in each hour, or the mean of a
gauge such as the outdoor temperature. On the gateway those come from the summaries
(:mod:`edge.store.summaries`), whose period divides an hour:

- **counter** (``how="delta"``): the hour's value is the sum of the ``delta`` of its summaries.
  It is known only when every summary period of the hour *and* the period just before it have a
  summary with a synchronised clock: a period with no summary means the gateway or the meter was
  away, and the next summary's delta then carries the consumption of the whole gap, not this
  hour's.
- **gauge** (``how="mean"``): the count-weighted mean of the hour's summaries, known when at least
  one has a synchronised clock.

Every other hour is NaN (missing), which the models' features treat as missing, the same way as a
missing hour of a training series. Periods whose clock was not synchronised are left out: their
wall times are not trustworthy.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Literal

HOUR_S = 3600


def hourly_values(
    conn: sqlite3.Connection,
    device: str,
    point: str,
    *,
    start: int,
    hours: int,
    interval_s: int,
    how: Literal["delta", "mean"],
) -> list[float]:
    """The ``hours`` hourly values from the hour beginning at ``start`` (epoch s, on the hour)."""
    if start % HOUR_S or HOUR_S % interval_s:
        raise ValueError("start must be on the hour and the summary interval must divide an hour")
    per_hour = HOUR_S // interval_s
    rows = conn.execute(
        """SELECT CAST(period_start AS INTEGER) AS period,
                  SUM(count), SUM(mean * count), SUM(delta)
           FROM summaries
           WHERE device = ? AND point = ? AND clock_synced = 1
             AND period_start >= ? AND period_start < ?
           GROUP BY period""",
        (device, point, start - interval_s, start + hours * HOUR_S),
    ).fetchall()
    periods = {int(period): (count, weighted, delta) for period, count, weighted, delta in rows}
    out = []
    for hour in range(hours):
        begin = start + hour * HOUR_S
        mine = [periods.get(begin + k * interval_s) for k in range(per_hour)]
        present = [p for p in mine if p is not None]
        if how == "mean":
            count = sum(p[0] for p in present)
            out.append(sum(p[1] for p in present) / count if count else math.nan)
            continue
        before = periods.get(begin - interval_s)
        if len(present) < per_hour or before is None or any(p[2] is None for p in present):
            out.append(math.nan)
        else:
            out.append(float(sum(p[2] for p in present)))
    return out
