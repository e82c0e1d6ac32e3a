"""One point's history for a chart: hourly buckets, the recent readings thinned, the extremes.

``read(conn, device, point, since=..., until=..., counter=...)`` returns a ``History``, the body
of the local API's ``GET /api/meters/{device}/history`` (so a pydantic model). Hours already
summarised come from the summaries (``edge.store.summaries``), the time not yet summarised from
the raw readings after ``meta.summary_last_id``, folded into the same hourly buckets and also
given, thinned, in ``recent``. A counter's buckets carry its consumption (``delta``) as well as
its register's value; a gauge's ``delta`` is None. How the buckets are made, and what a chart
should draw, is in ``docs/architecture.md`` ("A point's history for the console").
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from edge.store.latest import of as latest_reading
from edge.store.outbox import meta

HOUR_S = 3600
MAX_HOURS = 168
"""The longest history the local API serves: 7 days of hourly buckets."""
MAX_RECENT = 120
"""At most this many ``recent`` buckets (one a minute for the last two hours)."""
RECENT_S = 60
"""The width of a ``recent`` bucket, widened by whole minutes to stay within ``max_recent``."""
_LOOKBACK_S = 86_400
"""How far before the window summaries are read to tell whether its first hour follows a gap."""


class Bucket(BaseModel):
    """A span of one point's readings: how many, their mean, extremes and last value, and for a
    counter the consumption in the span. A span with no reading has ``count`` 0 and None
    figures."""

    model_config = ConfigDict(frozen=True)

    start: float
    """Epoch s; an hour boundary for ``History.hours``, a minute boundary for ``recent``."""
    end: float
    """Epoch s, exclusive: ``start`` + 3600 (``recent``: + its width). The newest bucket ends
    after ``History.until``: it is the current hour (or minute) so far."""
    count: int
    mean: float | None
    min: float | None
    max: float | None
    last: float | None
    """The value of the newest reading in the span."""
    delta: float | None
    """Counters only: how much the counter rose in the span (kWh for an energy register), the
    sum of its positive steps (a reset counts 0). None for a gauge, and for an hour that follows
    a gap in the readings: the consumption across a gap cannot be placed in one hour."""


class Latest(BaseModel):
    """The newest reading of the point within the window."""

    model_config = ConfigDict(frozen=True)

    value: float
    at: float
    """Its wall time, epoch s."""


class History(BaseModel):
    """One point of one device over a window of whole hours, for a chart.

    Draw ``hours[*].mean`` (with ``min``/``max`` as a band) for a gauge (volts, amperes, watts),
    ``hours[*].delta`` as bars for a counter (``kind == "counter"``: kWh per hour for an energy
    register, m3 per hour for water). ``recent`` is the newest part of the window, not yet
    summarised, in buckets of a minute or a few: a live tail at a finer grain; its readings are
    also counted in ``hours``.
    """

    model_config = ConfigDict(frozen=True)

    device: str
    point: str
    unit: str
    """The unit of the values and of a counter's ``delta`` (kWh, m3, V, ...)."""
    kind: Literal["counter", "gauge"]
    since: float
    """Epoch s, the window's start: an hour boundary."""
    until: float
    """Epoch s, the window's end (exclusive): when it was read."""
    hours: list[Bucket]
    """One bucket per hour from ``since``, oldest first, hours without readings included
    (``count`` 0): 24 for a 24-hour window. With summary periods longer than an hour
    (``store.summary_interval_s``) a bucket is a whole period."""
    recent: list[Bucket]
    """The readings not yet summarised within the window, oldest first, in buckets of
    ``RECENT_S`` (widened by whole minutes so there are at most ``max_recent``); only buckets
    with readings. Empty when everything in the window is summarised."""
    min: float | None
    """The lowest value in the window (None: no reading in it)."""
    max: float | None
    latest: Latest | None
    """The newest reading within the window (None: none)."""


@dataclass(frozen=True, slots=True)
class _Piece:
    """What is known of a span: one summary period (several summaries of it merged), or the
    raw readings of one hour not yet summarised."""

    start: float
    end: float
    count: int
    total: float
    low: float
    high: float
    last: float
    delta: float | None


@dataclass(frozen=True, slots=True)
class _Reading:
    at: float
    value: float
    step: float


def read(
    conn: sqlite3.Connection,
    device: str,
    point: str,
    *,
    since: float,
    until: float,
    counter: bool,
    max_recent: int = MAX_RECENT,
) -> History:
    """The history of ``device``/``point`` from ``since`` (rounded down to the hour) to
    ``until``, at most ``MAX_HOURS`` hours; ``counter`` says whether its buckets carry a
    ``delta``. ``KeyError`` if the store never had a reading of the point
    (``edge.store.latest``)."""
    if not since < until:
        raise ValueError(f"since ({since}) must be before until ({until})")
    if max_recent < 2:
        raise ValueError("max_recent must be at least 2")
    start = since // HOUR_S * HOUR_S
    if math.ceil((until - start) / HOUR_S) > MAX_HOURS:
        raise ValueError(f"a history is at most {MAX_HOURS} hours")
    newest = latest_reading(conn, device, point)
    if newest is None:
        raise KeyError(f"no readings of {device}/{point}")
    tail = _tail(conn, device, point, counter=counter)
    pieces = [
        *_summary_pieces(conn, device, point, start, until, counter),
        *_hours_of(tail, counter=counter),
    ]
    in_window = [r for r in tail if start <= r.at < until]
    hours = _buckets(pieces, start, until)
    seen = [b for b in hours if b.count]
    latest: Latest | None = None
    if in_window:
        latest = Latest(value=in_window[-1].value, at=in_window[-1].at)
    elif start <= newest[2] < until:
        latest = Latest(value=newest[0], at=newest[2])
    return History(
        device=device,
        point=point,
        unit=newest[1],
        kind="counter" if counter else "gauge",
        since=start,
        until=until,
        hours=hours,
        recent=_recent(in_window, max_recent, counter),
        min=min((b.min for b in seen if b.min is not None), default=None),
        max=max((b.max for b in seen if b.max is not None), default=None),
        latest=latest,
    )


def _summary_pieces(
    conn: sqlite3.Connection, device: str, point: str, start: float, until: float, counter: bool
) -> list[_Piece]:
    """The point's summary periods from a day before ``start`` to ``until``, by start; several
    summaries of one period (after a clock jump back) merged, the newest one's ``last`` kept."""
    rows = conn.execute(
        "SELECT period_start, period_end, count, mean, min, max, last, delta FROM summaries"
        " WHERE device = ? AND point = ? AND period_start >= ? AND period_start < ?"
        " ORDER BY period_start, id",
        (device, point, start - _LOOKBACK_S, until),
    ).fetchall()
    pieces: list[_Piece] = []
    for p_start, p_end, count, mean, low, high, last, delta in rows:
        piece = _Piece(
            p_start, p_end, count, mean * count, low, high, last, delta if counter else None
        )
        if pieces and pieces[-1].start == p_start:
            piece = _merge(pieces.pop(), piece)
        pieces.append(piece)
    return pieces


def _tail(conn: sqlite3.Connection, device: str, point: str, *, counter: bool) -> list[_Reading]:
    """The point's readings not summarised yet, in the order written, each with its step from
    the reading before (the first from the last one summarised, ``point_last``; a counter's
    positive steps only, 0 for a gauge)."""
    rows = conn.execute(
        "SELECT wall_time, value FROM readings WHERE id > ? AND device = ? AND point = ?"
        " ORDER BY id",
        (int(meta(conn, "summary_last_id") or 0), device, point),
    ).fetchall()
    before = conn.execute(
        "SELECT value FROM point_last WHERE device = ? AND point = ?", (device, point)
    ).fetchone()
    previous = None if before is None else float(before[0])
    tail = []
    for at, value in rows:
        step = 0.0 if previous is None or not counter else max(value - previous, 0.0)
        tail.append(_Reading(at, value, step))
        previous = value
    return tail


def _hours_of(tail: Sequence[_Reading], *, counter: bool) -> list[_Piece]:
    """The raw readings as one piece per hour, each spanning its whole hour."""
    by_hour: dict[float, list[_Reading]] = {}
    for r in tail:
        by_hour.setdefault(r.at // HOUR_S * HOUR_S, []).append(r)
    return [
        _piece_of(hour, hour + HOUR_S, readings, counter=counter)
        for hour, readings in sorted(by_hour.items())
    ]


def _piece_of(start: float, end: float, readings: Sequence[_Reading], *, counter: bool) -> _Piece:
    values = [r.value for r in readings]
    return _Piece(
        start,
        end,
        len(values),
        math.fsum(values),
        min(values),
        max(values),
        values[-1],
        math.fsum(r.step for r in readings) if counter else None,
    )


def _merge(a: _Piece, b: _Piece) -> _Piece:
    """Two pieces as one; ``b`` is the newer (its ``last`` wins)."""
    return _Piece(
        min(a.start, b.start),
        max(a.end, b.end),
        a.count + b.count,
        a.total + b.total,
        min(a.low, b.low),
        max(a.high, b.high),
        b.last,
        None if a.delta is None or b.delta is None else a.delta + b.delta,
    )


def _buckets(pieces: Iterable[_Piece], start: float, until: float) -> list[Bucket]:
    """Hourly buckets from ``start`` to ``until``. A bucket's delta is known when what is known
    of the point before it reaches its start (the previous piece ends at or after it)."""
    by_hour: dict[float, list[_Piece]] = {}
    for piece in pieces:
        by_hour.setdefault(piece.start // HOUR_S * HOUR_S, []).append(piece)
    filled: dict[float, Bucket] = {}
    previous_end: float | None = None
    for hour in sorted(by_hour):
        group = by_hour[hour]  # summaries by start, then the raw readings: newest last
        joined = previous_end is not None and previous_end >= min(p.start for p in group)
        merged = group[0]
        for piece in group[1:]:
            merged = _merge(merged, piece)
        previous_end = merged.end if previous_end is None else max(previous_end, merged.end)
        if start <= hour < until:
            filled[hour] = _bucket(hour, max(hour + HOUR_S, merged.end), merged, delta_known=joined)
    buckets = []
    hour = start
    while hour < until:
        bucket = filled.get(hour) or Bucket(
            start=hour,
            end=hour + HOUR_S,
            count=0,
            mean=None,
            min=None,
            max=None,
            last=None,
            delta=None,
        )
        buckets.append(bucket)
        hour = max(hour + HOUR_S, bucket.end // HOUR_S * HOUR_S)
    return buckets


def _bucket(start: float, end: float, piece: _Piece, *, delta_known: bool) -> Bucket:
    return Bucket(
        start=start,
        end=end,
        count=piece.count,
        mean=piece.total / piece.count,
        min=piece.low,
        max=piece.high,
        last=piece.last,
        delta=piece.delta if delta_known else None,
    )


def _recent(readings: Sequence[_Reading], max_recent: int, counter: bool) -> list[Bucket]:
    """The readings in buckets of a whole number of minutes, at most ``max_recent`` of them;
    a counter's steps counted in the bucket of the reading that shows them."""
    if not readings:
        return []
    first = min(r.at for r in readings)
    last = max(r.at for r in readings)
    # aligned slots over a span s number at most ceil(s / width) + 1
    width = RECENT_S * max(1, math.ceil((last - first) / (RECENT_S * (max_recent - 1))))
    by_slot: dict[float, list[_Reading]] = {}
    for r in readings:
        by_slot.setdefault(r.at // width * width, []).append(r)
    return [
        _bucket(
            slot,
            slot + width,
            _piece_of(slot, slot + width, group, counter=counter),
            delta_known=True,
        )
        for slot, group in sorted(by_slot.items())
    ]
