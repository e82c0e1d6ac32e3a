"""Naive day-ahead demand forecasts, the yardstick every demand model is reported beside.

Protocol (rolling origin, day ahead): for each day ``D`` of the evaluation period, at midnight UTC
(the origin) the forecaster sees only the hours before ``D`` (the last 168 h are enough) and
forecasts the 24 hours of ``D``. The two naive forecasts are

- ``previous_day``:  ``ŷ(D, h) = y(D - 1 day, h)``  (same hour the previous day),
- ``previous_week``: ``ŷ(D, h) = y(D - 7 days, h)`` (same hour the previous week).

A forecast hour is NaN when its source hour is missing or before the series starts; hours where the
measured or forecast value is NaN are skipped by the metrics. CV(RMSE) and NMBE (ASHRAE Guideline
14, ``p = 0``, see :mod:`models.metrics`) are computed per building over all hours of the period;
the summary over buildings is the median.

Measured on the 20 Cambridge estates buildings, days of 2019, zeros read as missing (the default of
:func:`models.series.load_cambridge_estates`): median CV(RMSE) 28.98 % for ``previous_day`` and
25.48 % for ``previous_week`` (median NMBE 0.01 % and -0.03 %). The shared data README states 29.0 %
and 23.0 %: the first agrees, the second does not, and no variant tried reproduced it (keeping the
zeros: 29.59 % / 25.48 %; per-day CV(RMSE) averaged: 23.97 % / 18.14 %). With 20 buildings the
median is the mean of the 10th and 11th, which for ``previous_week`` are 22.70 % and 28.27 %, so
the figure is sensitive to which buildings and which median are used; 23.0 % is close to the lower
middle value. Until the origin of 23.0 % is known, quote the figures above with this protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from models.metrics import FloatArray, cv_rmse, nmbe
from models.series import HourlySeries

HOURS_PER_DAY = 24
HISTORY_H = 168


def previous_day(history: FloatArray) -> FloatArray:
    """The next 24 hours forecast as the last 24 hours of ``history`` (at least 168 h long)."""
    return history[-HOURS_PER_DAY:].copy()


def previous_week(history: FloatArray) -> FloatArray:
    """The next 24 hours forecast as the same hours one week before (``history[-168:-144]``)."""
    return history[-HISTORY_H : -HISTORY_H + HOURS_PER_DAY].copy()


Forecaster = Callable[[FloatArray], FloatArray]

BASELINES: dict[str, Forecaster] = {
    "previous_day": previous_day,
    "previous_week": previous_week,
}


@dataclass(frozen=True, slots=True)
class DemandScore:
    """One building's score over the evaluation period; ``hours`` = pairs where both are known."""

    building: str
    method: str
    cv_rmse: float
    nmbe: float
    hours: int


def day_ahead_forecasts(
    series: HourlySeries, start: str, end: str, forecaster: Forecaster
) -> tuple[FloatArray, FloatArray]:
    """Rolling-origin day-ahead forecasts for the days ``start <= D < end`` (ISO dates, UTC).

    Returns ``(actual, forecast)`` over those hours. The forecaster is given the 168 hours before
    each origin (NaN-padded if the series starts later) and must return 24 values.
    """
    first = np.datetime64(start, "D").astype("datetime64[h]")
    last = np.datetime64(end, "D").astype("datetime64[h]")
    origin0 = int((first - series.timestamps[0]).astype(np.int64)) if len(series.timestamps) else 0
    n_days = int((last - first).astype(np.int64)) // HOURS_PER_DAY
    padded = np.concatenate((np.full(HISTORY_H, np.nan), series.values))
    actual = np.full(n_days * HOURS_PER_DAY, np.nan)
    forecast = np.full(n_days * HOURS_PER_DAY, np.nan)
    for day in range(n_days):
        origin = origin0 + day * HOURS_PER_DAY  # index into series.values
        if origin < 0 or origin >= len(series.values):
            continue
        history = padded[origin : origin + HISTORY_H]  # the 168 h before the origin
        predicted = np.asarray(forecaster(history), dtype=np.float64)
        if predicted.shape != (HOURS_PER_DAY,):
            raise ValueError(f"forecaster returned shape {predicted.shape}, not (24,)")
        truth = series.values[origin : origin + HOURS_PER_DAY]
        out = slice(day * HOURS_PER_DAY, day * HOURS_PER_DAY + len(truth))
        actual[out] = truth
        forecast[out] = predicted[: len(truth)]
    return actual, forecast


def evaluate_baselines(
    buildings: Sequence[HourlySeries],
    start: str,
    end: str,
    methods: Sequence[str] = ("previous_day", "previous_week"),
) -> list[DemandScore]:
    """Per-building CV(RMSE) and NMBE of each naive method over the days ``start <= D < end``."""
    scores = []
    for series in buildings:
        for method in methods:
            actual, forecast = day_ahead_forecasts(series, start, end, BASELINES[method])
            known = int(np.sum(~(np.isnan(actual) | np.isnan(forecast))))
            scores.append(
                DemandScore(
                    building=series.name,
                    method=method,
                    cv_rmse=cv_rmse(actual, forecast),
                    nmbe=nmbe(actual, forecast),
                    hours=known,
                )
            )
    return scores


def median_by_method(scores: Sequence[DemandScore]) -> dict[str, tuple[float, float]]:
    """``{method: (median CV(RMSE), median NMBE)}`` over buildings, ignoring NaN scores."""
    out = {}
    for method in dict.fromkeys(score.method for score in scores):
        mine = [s for s in scores if s.method == method]
        out[method] = (
            float(np.nanmedian([s.cv_rmse for s in mine])),
            float(np.nanmedian([s.nmbe for s in mine])),
        )
    return out
