"""Day-ahead electricity demand: features, scoring through onnxruntime, and the evaluation report.

The model forecasts the next 24 hourly values of a building's electricity from the last 168 hours,
the calendar (local hour, weekday, public holidays) and the outdoor temperature where there is one.
One model serves every building: all load features and the target are divided by the building's
own recent level (the mean of the known hours of the 168-hour history), so a building it has never
seen is forecast on the same scale as the ones it was trained on; ``forecast = output * level``.

Features (:data:`FEATURE_NAMES`, one row per forecast hour, 24 rows per call; ``t`` is the forecast
hour, ``origin`` the first of them, ``y`` the history divided by the level):

- calendar of ``t`` in local time: the horizon ``t - origin`` (0-23 h), hour, weekday, public
  holiday, and "off day" (Saturday, Sunday or a public holiday);
- the same hour on each of the 7 previous days, ``y[t - 24 k]`` for ``k = 1..7`` (all inside the
  history whatever the origin hour), with the off-day flag of each of those days;
- the mean of those 7 values, their mean over the days of the same kind (off day or working day)
  as ``t``, and over the days of the other kind;
- the recent state: the last hour, the mean of the last 24 hours and of the last 3 hours, the 5th
  and 95th percentiles of the week (base load and peak), and the known fraction of the history;
- outdoor temperature (degrees C, not normalised): the last hour, the mean of the last 24 hours,
  the mean of the week, and the same hour the day before ``t``. No forecast of the temperature is
  used: the gateway has none.

Missing values: a missing history hour or temperature gives a NaN feature and the model (a
histogram gradient-boosting tree ensemble) sends NaN down the branch it learned in training; the
ONNX conversion keeps that rule (tested with NaN rows). Without a temperature series all
temperature features are NaN. :func:`demand_features` returns ``None`` (no forecast) when fewer
than :data:`MIN_KNOWN_H` of the 168 history hours are known or the level is not positive.

Evaluation protocol (:func:`evaluate`): the same rolling origin as
:func:`models.baselines.day_ahead_forecasts` (each day at 00:00 UTC, the 168 h before it, forecast
the 24 h of the day), per-building CV(RMSE) and NMBE (ASHRAE Guideline 14, ``p = 0``), the median
over buildings, the two naive forecasts beside. Figures of the shipped model are in
:mod:`models.train_demand` and its model card.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from models.baselines import BASELINES, HOURS_PER_DAY, day_ahead_forecasts
from models.calendar import Calendar, LocalTime
from models.metrics import FloatArray, cv_rmse, nmbe
from models.runtime import predict as predict_relative
from models.series import HourlySeries

FEATURE_VERSION = "demand-1"
HISTORY_H = 168
HORIZON_H = HOURS_PER_DAY
DAYS = HISTORY_H // HOURS_PER_DAY
MIN_KNOWN_H = 72  # fewer known hours than 3 days of the week: no forecast
ASHRAE_CV_RMSE = 30.0  # Guideline 14, hourly

_LAGS = tuple(range(1, DAYS + 1))
FEATURE_NAMES: tuple[str, ...] = (
    "horizon_h",
    "hour",
    "weekday",
    "holiday",
    "off_day",
    *(f"same_hour_{k}d_ago" for k in _LAGS),
    *(f"off_day_{k}d_ago" for k in _LAGS),
    "same_hour_mean_7d",
    "same_hour_mean_same_kind",
    "same_hour_mean_other_kind",
    "last_1h",
    "last_3h_mean",
    "last_24h_mean",
    "week_p05",
    "week_p95",
    "known_fraction",
    "temperature_last_1h",
    "temperature_last_24h_mean",
    "temperature_week_mean",
    "temperature_same_hour_1d_ago",
)
N_FEATURES = len(FEATURE_NAMES)

Float32Array = npt.NDArray[np.float32]
ONE_HOUR = np.timedelta64(1, "h")


def _off_day(local: LocalTime) -> npt.NDArray[np.bool_]:
    return (local.weekday >= 5) | local.holiday


def _nanmean(values: FloatArray, axis: int | None = None) -> Any:
    """Mean of the known values; NaN (without a warning) where none is known."""
    known = ~np.isnan(values)
    count = known.sum(axis=axis)
    total = np.where(known, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / np.where(count > 0, count, np.nan)


def feature_rows(
    history: FloatArray,
    temperature: FloatArray | None,
    local: LocalTime,
) -> tuple[Float32Array, float] | None:
    """The rows given the local calendar of the 192 hours from ``origin - 168`` to ``origin + 23``.

    The core of :func:`demand_features`, shared with :func:`training_matrix` (which computes the
    calendar of a whole series once); see the module docstring for the features.
    """
    history = np.asarray(history, dtype=np.float64)
    if history.shape != (HISTORY_H,):
        raise ValueError(f"history has shape {history.shape}, not ({HISTORY_H},)")
    known = ~np.isnan(history)
    n_known = int(known.sum())
    if n_known < MIN_KNOWN_H:
        return None
    level = float(history[known].mean())
    if not (np.isfinite(level) and level > 0):
        return None
    y = history / level

    off = _off_day(local)
    horizon = np.arange(HORIZON_H)
    target = HISTORY_H + horizon  # index of each forecast hour in the 192-hour window
    lag_index = target[:, None] - HOURS_PER_DAY * np.array(_LAGS)[None, :]  # [24, 7], all < 168
    lags = y[lag_index]
    lag_off = off[lag_index]
    same_kind = lag_off == off[target][:, None]
    rows = np.full((HORIZON_H, N_FEATURES), np.nan)
    rows[:, 0] = horizon
    rows[:, 1] = local.hour[target]
    rows[:, 2] = local.weekday[target]
    rows[:, 3] = local.holiday[target]
    rows[:, 4] = off[target]
    col = 5
    rows[:, col : col + DAYS] = lags
    col += DAYS
    rows[:, col : col + DAYS] = lag_off
    col += DAYS
    rows[:, col] = _nanmean(lags, axis=1)
    rows[:, col + 1] = _nanmean(np.where(same_kind, lags, np.nan), axis=1)
    rows[:, col + 2] = _nanmean(np.where(same_kind, np.nan, lags), axis=1)
    col += 3
    rows[:, col] = y[-1]
    rows[:, col + 1] = _nanmean(y[-3:])
    rows[:, col + 2] = _nanmean(y[-HOURS_PER_DAY:])
    p05, p95 = np.percentile(y[known], [5.0, 95.0])
    rows[:, col + 3] = p05
    rows[:, col + 4] = p95
    rows[:, col + 5] = n_known / HISTORY_H
    col += 6
    if temperature is not None:
        temp = np.asarray(temperature, dtype=np.float64)
        if temp.shape != (HISTORY_H,):
            raise ValueError(f"temperature has shape {temp.shape}, not ({HISTORY_H},)")
        rows[:, col] = temp[-1]
        rows[:, col + 1] = _nanmean(temp[-HOURS_PER_DAY:])
        rows[:, col + 2] = _nanmean(temp)
        rows[:, col + 3] = temp[target - HOURS_PER_DAY]
    return rows.astype(np.float32), level


def window_hours(origin: np.datetime64) -> npt.NDArray[np.datetime64]:
    """The 192 UTC hours from ``origin - 168 h`` to ``origin + 23 h``."""
    steps = np.arange(-HISTORY_H, HORIZON_H).astype("timedelta64[h]")
    hours: npt.NDArray[np.datetime64] = np.asarray(origin, dtype="datetime64[h]") + steps
    return hours


def demand_features(
    history: FloatArray,
    temperature: FloatArray | None,
    origin: np.datetime64,
    calendar: Calendar,
) -> tuple[Float32Array, float] | None:
    """The ``[24, F]`` float32 feature rows and the level for a forecast starting at ``origin``.

    ``history``: the 168 hourly values ending just before ``origin`` (NaN where missing);
    ``temperature``: the matching 168 outdoor temperatures (NaN where missing) or ``None``;
    ``origin``: the UTC hour of the first forecast hour. The model's outputs times the level are
    the forecast. ``None`` when fewer than :data:`MIN_KNOWN_H` hours are known or the level is not
    positive.
    """
    return feature_rows(history, temperature, calendar.local(window_hours(origin)))


def forecast(
    session: ort.InferenceSession,
    history: FloatArray,
    temperature: FloatArray | None,
    origin: np.datetime64,
    calendar: Calendar,
) -> FloatArray | None:
    """The 24 hourly values from ``origin`` on, or ``None`` when the history is too incomplete.

    Raises :class:`InvalidOutput` when the model does not return 24 finite values, and
    ``ValueError`` when ``history`` or ``temperature`` is not 168 values long.
    """
    features = demand_features(history, temperature, origin, calendar)
    if features is None:
        return None
    rows, level = features
    return predict_relative(session, rows) * level


def _padded(values: FloatArray) -> FloatArray:
    """``values`` with 168 NaN hours before and 24 after: window ``i`` starts at index ``i``."""
    return np.concatenate((np.full(HISTORY_H, np.nan), values, np.full(HORIZON_H, np.nan)))


def series_rows(
    series: HourlySeries, calendar: Calendar, origins: npt.NDArray[np.int64]
) -> tuple[Float32Array, FloatArray, FloatArray, npt.NDArray[np.int64]]:
    """The feature rows of ``series`` for the origins given as indices into its hours.

    Calls :func:`feature_rows` once per origin with the calendar computed once for the series.
    Returns ``(X, level, target, origin_index)``: one row per forecast hour of every origin that
    has a forecast, the level repeated for the 24 rows, the measured value of the hour (NaN where
    missing or beyond the series), and the origin of each row. Hours before the series are NaN.
    """
    n = len(series.values)
    values = _padded(series.values)
    temps = None if series.temperature is None else _padded(series.temperature)
    if n:
        first = series.timestamps[0] - HISTORY_H * ONE_HOUR
        hours = np.arange(first, first + (n + HISTORY_H + HORIZON_H) * ONE_HOUR, ONE_HOUR)
    else:
        hours = np.array([], dtype="datetime64[h]")
    local = calendar.local(hours)
    xs: list[Float32Array] = []
    levels: list[float] = []
    used: list[int] = []
    for origin in origins.tolist():
        window = slice(origin, origin + HISTORY_H + HORIZON_H)  # origin - 168 .. origin + 23
        result = feature_rows(
            values[origin : origin + HISTORY_H],
            None if temps is None else temps[origin : origin + HISTORY_H],
            LocalTime(local.hour[window], local.weekday[window], local.holiday[window]),
        )
        if result is not None:
            xs.append(result[0])
            levels.append(result[1])
            used.append(origin)
    if not xs:
        empty = np.zeros(0)
        return np.zeros((0, N_FEATURES), np.float32), empty, empty, np.zeros(0, np.int64)
    origin_index = np.repeat(np.array(used, dtype=np.int64), HORIZON_H)
    target_index = origin_index + np.tile(np.arange(HORIZON_H), len(used))
    return (
        np.concatenate(xs),
        np.repeat(np.array(levels), HORIZON_H),
        values[HISTORY_H + target_index],
        origin_index,
    )


def daily_origins(
    series: HourlySeries, start: str | None, end: str | None
) -> npt.NDArray[np.int64]:
    """Indices of the hours at 00:00 UTC with ``start <= day < end`` (whole series by default)."""
    if not len(series.timestamps):
        return np.zeros(0, dtype=np.int64)
    stamps = series.timestamps
    keep = stamps.astype("datetime64[D]") == stamps  # midnight UTC
    if start is not None:
        keep &= stamps >= np.datetime64(start, "h")
    if end is not None:
        keep &= stamps < np.datetime64(end, "h")
    return np.flatnonzero(keep).astype(np.int64)


def training_matrix(
    series: HourlySeries,
    calendar: Calendar,
    start: str | None = None,
    end: str | None = None,
    *,
    stride_h: int = HOURS_PER_DAY,
) -> tuple[Float32Array, FloatArray, FloatArray]:
    """Training rows of one series: ``(X, y, level)`` with ``y = value / level``.

    Origins every ``stride_h`` hours from the first midnight (UTC) on or after ``start`` to
    before ``end``; each gives the rows of the hours ``origin .. origin + 23``. Rows whose target
    is missing, at or after ``end`` or labelled anomalous (``series.labels``) are dropped, so no
    target lies outside ``[start, end)`` (the history of the first origins reaches 168 h before
    ``start``). Built by :func:`feature_rows`, the function :func:`demand_features` calls.
    """
    midnights = daily_origins(series, start, end)
    if not len(midnights):
        empty = np.zeros(0)
        return np.zeros((0, N_FEATURES), np.float32), empty, empty
    stop = len(series.values)  # index of the first hour not used as a target
    if end is not None:
        stop = int(np.sum(series.timestamps < np.datetime64(end, "h")))
    origins = np.arange(int(midnights[0]), stop, stride_h, dtype=np.int64)
    x, level, value, origin_index = series_rows(series, calendar, origins)
    keep = ~np.isnan(value)
    target_index = origin_index + np.tile(np.arange(HORIZON_H), len(value) // HORIZON_H)
    keep &= target_index < stop
    if series.labels is not None and len(value):
        inside = target_index < len(series.labels)
        anomalous = np.zeros(len(value), dtype=bool)
        anomalous[inside] = series.labels[target_index[inside]] == 1
        keep &= ~anomalous
    return x[keep], value[keep] / level[keep], level[keep]


@dataclass(frozen=True, slots=True)
class BuildingScore:
    """One building, one method: CV(RMSE) and NMBE in %, over ``hours`` known pairs."""

    building: str
    method: str
    cv_rmse: float
    nmbe: float
    hours: int


METHODS = ("model", "previous_day", "previous_week")


@dataclass(frozen=True, slots=True)
class DemandReport:
    """Per-building scores of the model and the naive forecasts over ``start <= day < end``."""

    start: str
    end: str
    scores: tuple[BuildingScore, ...]

    @property
    def buildings(self) -> list[str]:
        return list(dict.fromkeys(s.building for s in self.scores))

    def score(self, building: str, method: str) -> BuildingScore:
        for s in self.scores:
            if s.building == building and s.method == method:
                return s
        raise KeyError((building, method))

    def median(self, method: str) -> tuple[float, float]:
        """Median CV(RMSE) and median NMBE over buildings (NaN scores ignored)."""
        mine = [s for s in self.scores if s.method == method]
        cvs = [s.cv_rmse for s in mine if not np.isnan(s.cv_rmse)]
        nmbes = [s.nmbe for s in mine if not np.isnan(s.nmbe)]
        return (
            float(np.median(cvs)) if cvs else float("nan"),
            float(np.median(nmbes)) if nmbes else float("nan"),
        )

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data for a model card: per building, median, ASHRAE counts."""
        per_building = {
            b: {
                m: {
                    "cv_rmse": round(self.score(b, m).cv_rmse, 2),
                    "nmbe": round(self.score(b, m).nmbe, 2),
                    "hours": self.score(b, m).hours,
                }
                for m in METHODS
            }
            for b in self.buildings
        }
        medians = {
            m: {"cv_rmse": round(self.median(m)[0], 2), "nmbe": round(self.median(m)[1], 2)}
            for m in METHODS
        }
        within = {m: list(self.within_ashrae(m)) for m in METHODS}
        return {
            "days": [self.start, self.end],
            "per_building": per_building,
            "median": medians,
            "within_ashrae_30": within,
        }

    def within_ashrae(self, method: str = "model") -> tuple[int, int]:
        """How many buildings have CV(RMSE) <= 30 %, out of those scored."""
        cvs = [s.cv_rmse for s in self.scores if s.method == method and not np.isnan(s.cv_rmse)]
        return sum(cv <= ASHRAE_CV_RMSE for cv in cvs), len(cvs)


def model_forecasts(
    series: HourlySeries, session: ort.InferenceSession, start: str, end: str, calendar: Calendar
) -> tuple[FloatArray, FloatArray]:
    """``(actual, forecast)`` over the hours of ``start <= day < end``, as ``day_ahead_forecasts``.

    Same rows as :func:`forecast` at each midnight, scored in one call per building; the forecast
    is NaN on the days with no forecast.
    """
    first = np.datetime64(start, "D").astype("datetime64[h]")
    n_hours = int((np.datetime64(end, "D").astype("datetime64[h]") - first).astype(np.int64))
    actual = np.full(n_hours, np.nan)
    predicted = np.full(n_hours, np.nan)
    if not len(series.timestamps):
        return actual, predicted
    offset = int((series.timestamps[0] - first).astype(np.int64))  # series hour 0 in the period
    lo, hi = max(0, offset), min(n_hours, offset + len(series.values))
    if lo < hi:
        actual[lo:hi] = series.values[lo - offset : hi - offset]
    x, level, _, origin_index = series_rows(series, calendar, daily_origins(series, start, end))
    if len(x):
        out = predict_relative(session, x) * level
        where = origin_index + np.tile(np.arange(HORIZON_H), len(x) // HORIZON_H) + offset
        inside = (where >= 0) & (where < n_hours)
        predicted[where[inside]] = out[inside]
    return actual, predicted


def evaluate(
    series: Sequence[HourlySeries],
    predictor: ort.InferenceSession,
    start: str,
    end: str,
    calendar: Calendar | Mapping[str, Calendar],
) -> DemandReport:
    """The model and the naive forecasts on each series, days ``start <= D < end`` (module doc).

    ``calendar`` is one calendar for all series, or one per series name.
    """
    scores: list[BuildingScore] = []
    for s in series:
        cal = calendar if isinstance(calendar, Calendar) else calendar[s.name]
        pairs = {"model": model_forecasts(s, predictor, start, end, cal)}
        for method in ("previous_day", "previous_week"):
            pairs[method] = day_ahead_forecasts(s, start, end, BASELINES[method])
        for method in METHODS:
            actual, predicted = pairs[method]
            known = int(np.sum(~(np.isnan(actual) | np.isnan(predicted))))
            scores.append(
                BuildingScore(
                    building=s.name,
                    method=method,
                    cv_rmse=cv_rmse(actual, predicted),
                    nmbe=nmbe(actual, predicted),
                    hours=known,
                )
            )
    return DemandReport(start=start, end=end, scores=tuple(scores))


def format_report(report: DemandReport) -> str:
    """A table: one row per building and a median row, CV(RMSE) and NMBE (%) of each method."""
    head = f"{'building':<24}" + "".join(f"{m + ' CV':>18}{'NMBE':>8}{'hours':>7}" for m in METHODS)
    lines = [
        f"day-ahead demand, days {report.start} to {report.end} (exclusive), 00:00 UTC origins",
        head,
    ]
    for building in report.buildings:
        cells = ""
        for m in METHODS:
            s = report.score(building, m)
            cells += f"{s.cv_rmse:>17.2f}%{s.nmbe:>7.2f}%{s.hours:>7d}"
        lines.append(f"{building:<24}{cells}")
    cells = ""
    for m in METHODS:
        cv, bias = report.median(m)
        cells += f"{cv:>17.2f}%{bias:>7.2f}%{'':>7}"
    lines.append(f"{'median':<24}{cells}")
    for m in METHODS:
        k, n = report.within_ashrae(m)
        lines.append(f"{m}: within ASHRAE 30 %: {k} of {n}")
    return "\n".join(lines)
