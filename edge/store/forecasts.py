"""Demand forecasts in the store: one per series and start hour, the newest issued wins.

The demand service forecasts a building's electricity for the next 24 hours every hour and hands
each forecast to ``Store.write_forecast``, which stores it here and queues its wire record
(``records.forecast_record``) in one transaction. A forecast for a ``(series, start)`` already
held replaces it only if it was issued later (a restart within the hour forecasts the same hour
again): the replacement is stored and sent again, and the central API keeps, per gateway, series
and start, the one with the newest ``issued_at``, so both ends agree whatever order the records
arrive in. A forecast issued no later than the one held (written twice, or after the clock went
back) changes nothing and sends nothing.

The local copies are for the gateway's own use (its page, comparing forecasts with what was
measured); they are pruned with the summaries' retention (``retention``) and evicted under the
quota with the local copies of summaries (``eviction``). Hours are kept as JSON text, which
round-trips every float exactly.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass

HOURS = 24
"""Hours in a forecast (``cloud_sync.schemas.FORECAST_HOURS``)."""
HOUR_S = 3600


@dataclass(frozen=True, slots=True)
class Forecast:
    """One forecast; raises ``ValueError`` unless it has 24 finite values >= 0 and starts on a
    UTC hour boundary. ``values`` may be given as any sequence of numbers (a numpy array too):
    they are kept as a tuple of floats."""

    series: str
    """Name of the forecast series (a ``[[models.demand]]`` entry), an identifier."""
    issued_at: float
    """Wall time (epoch s) the forecast was made."""
    start: float
    """Epoch s of the first forecast hour (a UTC hour boundary)."""
    values: tuple[float, ...]
    """Hourly energy in kWh, 24 of them, finite, >= 0."""
    model: str
    """The model that made it: ``"<name> <version> <sha256 first 12>"``."""
    capacity_kwh: float | None = None
    """The building capacity configured, if any."""

    def __post_init__(self) -> None:
        values = tuple(float(v) for v in self.values)
        object.__setattr__(self, "values", values)
        problems: list[str] = []
        if len(values) != HOURS:
            problems.append(f"{len(values)} values, not {HOURS}")
        if not all(math.isfinite(v) and v >= 0 for v in values):
            problems.append("values must be finite and >= 0")
        if not math.isfinite(self.start) or self.start % HOUR_S:
            problems.append(f"start {self.start} is not on a UTC hour boundary")
        if not math.isfinite(self.issued_at):
            problems.append("issued_at is not finite")
        if self.capacity_kwh is not None and not (
            math.isfinite(self.capacity_kwh) and self.capacity_kwh > 0
        ):
            problems.append("capacity_kwh must be finite and > 0")
        if problems:
            raise ValueError(f"forecast {self.series!r}: {'; '.join(problems)}")

    @property
    def end(self) -> float:
        """Epoch s of the end of the last forecast hour."""
        return self.start + HOURS * HOUR_S


def write(conn: sqlite3.Connection, forecast: Forecast) -> bool:
    """Store ``forecast`` (inside the caller's transaction) unless a forecast of its series and
    start issued no later is held; True when it was stored (its record must then be queued)."""
    row = conn.execute(
        "INSERT INTO forecasts (series, issued_at, start, hours, model, capacity_kwh)"
        " VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (series, start) DO UPDATE SET issued_at = excluded.issued_at,"
        " hours = excluded.hours, model = excluded.model, capacity_kwh = excluded.capacity_kwh"
        " WHERE excluded.issued_at > forecasts.issued_at"
        " RETURNING id",
        (
            forecast.series,
            forecast.issued_at,
            forecast.start,
            json.dumps(forecast.values),
            forecast.model,
            forecast.capacity_kwh,
        ),
    ).fetchone()
    return row is not None


def since(conn: sqlite3.Connection, series: str, start: float) -> list[Forecast]:
    """The forecasts of ``series`` whose first hour is at or after ``start``, by start."""
    rows = conn.execute(
        "SELECT series, issued_at, start, hours, model, capacity_kwh FROM forecasts"
        " WHERE series = ? AND start >= ? ORDER BY start",
        (series, start),
    ).fetchall()
    return [
        Forecast(name, issued_at, first, tuple(json.loads(hours)), model, capacity)
        for name, issued_at, first, hours, model, capacity in rows
    ]


def prune(conn: sqlite3.Connection, *, ended_before: float) -> int:
    """Delete the local copies of forecasts whose last hour ended before ``ended_before``
    (inside the caller's transaction); returns how many."""
    return conn.execute(
        "DELETE FROM forecasts WHERE start < ?", (ended_before - HOURS * HOUR_S,)
    ).rowcount
