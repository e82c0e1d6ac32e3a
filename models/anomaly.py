"""Anomalous hours of an electricity or water meter: features, scoring, calibration, evaluation.

Each hour is compared with what is expected for that meter at that hour. One model serves every
meter: an "expected value" regressor (a histogram gradient-boosting tree ensemble, shipped as ONNX)
sees the hour's calendar and the meter's own history divided by its recent level ``L`` (the median
of the 168 hours before the hour; the mean when the median is 0), and predicts ``value / L``. So
``expected = output * L``, and a meter it has never seen is judged on the same scale as the ones it
was trained on.

Features (:data:`FEATURE_NAMES`, one row per hour ``t``; lags are divided by ``L``): local hour,
weekday and public holiday of ``t``; the same hour 1, 2, 7 and 14 days before; the median of the
same hour over the 7 previous days; the median of the same hour of the week over the 4 previous
weeks. No hour after ``t - 24`` enters a feature: an anomaly that lasts a day does not become its
own "expected" value. A missing history hour gives a NaN feature (the trees send NaN down the
branch learned in training). An hour with fewer than :data:`MIN_LEVEL_H` known hours in its
168-hour level window is not scored. :data:`CONTEXT_H` hours of history are enough: row ``t`` uses
``values[t - CONTEXT_H : t + 1]`` only.

Score of an hour: the normalised residual ``r = value / L - output``, centred and divided by the
meter's own robust spread (median and 1.4826 x MAD of ``r`` over its history), in absolute value:
``score = |r - centre| / scale``. The hour is flagged when ``score > threshold``, with the threshold
calibrated from the meter's own history (:func:`calibrate`): the :data:`QUANTILE` quantile of its
own scores, at least :data:`FLOOR`. Two explicit detectors (numpy, no model) flag a run of zero
readings and a run of identical readings ("stuck meter") longer than the meter usually shows
(:class:`Calibration` keeps the limits). Every flagged hour carries a short human reason
(:func:`reason`).

``QUANTILE`` and ``FLOOR`` are the only constants chosen with labels (LEAD, a small grid, see
:mod:`models.train_anomaly`); the regressor is trained without labels on other buildings
(Cambridge estates), so a LEAD building is never seen in training.

Evaluation protocol (:func:`evaluate`): for each labelled building, calibrate on its own series
(the whole period, labels unused), score every hour, flag, and compare flags with labels:
point F1 (no tolerance), the event F1 with tolerance of the LEAD benchmark's code
(:func:`models.metrics.lead_f1`, printed ``event_*``; this is the one comparable with Prabhu et al.
2024 Table 4, whose figures are means over buildings) and the stricter run F1
(:func:`models.metrics.event_f1`, printed ``run_*``), both at 12 h and 24 h. Beside the model,
two naive baselines through the same residual, calibration and threshold code:
``rolling_median`` (expected = ``L``, a rolling robust z-score of the raw values) and
``same_hour_7d`` (expected = the median of the same hour over the 7 previous days).

Measured (6 LEAD buildings, ``QUANTILE``/``FLOOR`` chosen leave-one-building-out): median over
buildings of the event F1 (LEAD) at 12 / 24 h 0.805 / 0.844 (mean 0.706 / 0.755), run F1
0.448 / 0.510, point F1 0.542; the rolling-median baseline 0.715 / 0.720 (LEAD) and 0.397 / 0.397
(runs). Per
building in :mod:`models.train_anomaly`. Scoring the gateway's last ``CONTEXT_H + 1`` hours takes
about 15 ms here (one thread), a whole year 0.2 s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from numpy.lib.stride_tricks import sliding_window_view

from models.calendar import Calendar
from models.metrics import Detection, FloatArray, event_f1, lead_f1, point_f1
from models.runtime import predict as predict_relative
from models.series import HourlySeries
from nbedge.errors import InvalidOutput as InvalidOutput  # raised here; re-exported
from nbedge.errors import NbedgeError

FEATURE_VERSION = "anomaly-1"
LEVEL_H = 168  # the recent level L: median of the 168 hours before the hour
MIN_LEVEL_H = 24  # fewer known hours in the level window: the hour is not scored
DAY_LAGS = (1, 2, 7, 14)  # same hour this many days before
WEEK_LAGS = (1, 2, 3, 4)  # same hour of the week this many weeks before (median)
CONTEXT_H = 24 * 7 * max(WEEK_LAGS)  # 672: history hours row t needs, besides hour t itself

FEATURE_NAMES: tuple[str, ...] = (
    "hour",
    "weekday",
    "holiday",
    *(f"same_hour_{k}d_ago" for k in DAY_LAGS),
    "same_hour_median_7d",
    "same_hour_of_week_median_4w",
)
N_FEATURES = len(FEATURE_NAMES)

# Threshold calibration: chosen on LEAD labels, leave-one-building-out (models.train_anomaly).
QUANTILE = 0.985
FLOOR = 6.0
# Run detectors: a run longer than twice the meter's usual weekly longest run, and at least:
FLAT_MIN_H = 6
ZERO_MIN_H = 3
MIN_CALIBRATION_H = 24 * 7 * 2  # scored hours a calibration needs (two weeks)

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

Float32Array = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]


class CalibrationError(NbedgeError, ValueError):
    """The history given to :func:`calibrate` is too short or has no spread to calibrate from."""


def _lagged(values: FloatArray, lag: int) -> FloatArray:
    out = np.full(len(values), np.nan)
    if lag < len(values):
        out[lag:] = values[: len(values) - lag]
    return out


def _nanmedian_rows(stack: FloatArray) -> FloatArray:
    """Median over axis 0 ignoring NaN, NaN (and no warning) where a column is all NaN."""
    known = ~np.isnan(stack)
    filled = np.where(known, stack, np.inf)
    ordered = np.sort(filled, axis=0)
    count = known.sum(axis=0)
    out = np.full(stack.shape[1], np.nan)
    cols = np.flatnonzero(count > 0)
    lo = (count[cols] - 1) // 2
    hi = count[cols] // 2
    out[cols] = 0.5 * (ordered[lo, cols] + ordered[hi, cols])
    return out


def recent_level(values: FloatArray, last: int | None = None) -> FloatArray:
    """``L`` per hour: the median of the known values among the 168 hours before it (the mean
    when that median is 0); NaN when fewer than :data:`MIN_LEVEL_H` are known or ``L <= 0``.
    With ``last``, only the last ``last`` hours' (the same values, less work)."""
    n = len(values)
    padded = np.concatenate((np.full(LEVEL_H, np.nan), values))
    window = sliding_window_view(padded[: n + LEVEL_H - 1], LEVEL_H)[:n]  # row t: t-168 .. t-1
    if last is not None:
        window = window[max(0, n - last) :]
    level = _nanmedian_rows(window.T.copy())
    known = (~np.isnan(window)).sum(axis=1)
    zero = level == 0
    if zero.any():
        sums = np.nansum(window[zero], axis=1)
        level[zero] = sums / np.maximum(known[zero], 1)
    level[(known < MIN_LEVEL_H) | ~(level > 0)] = np.nan
    return level


def anomaly_features(
    values: FloatArray,
    timestamps: npt.NDArray[np.datetime64],
    calendar: Calendar,
    *,
    last: int | None = None,
) -> Float32Array:
    """Feature rows (float32, ``[len(values), N_FEATURES]``), one per hour of ``values``.

    ``values`` are consecutive hours ending with the hour(s) to score; row ``t`` depends on
    ``values[max(0, t - CONTEXT_H) : t + 1]`` and the calendar of ``timestamps[t]`` only, so the
    last row computed from the last ``CONTEXT_H + 1`` hours equals the row computed from a whole
    series (tested). Lags are divided by ``L`` (:func:`recent_level`); where ``L`` is NaN the
    lag features are NaN and the hour is not scored. With ``last``, only the rows of the last
    ``last`` hours are returned (the same rows, a fraction of the work: the gateway's call).
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) != len(timestamps):
        raise ValueError(f"{len(values)} values for {len(timestamps)} timestamps")
    tail = slice(max(0, len(values) - last), None) if last is not None else slice(None)
    level = recent_level(values, last)
    local = calendar.local(np.asarray(timestamps)[tail])
    day = {k: _lagged(values, 24 * k)[tail] for k in range(1, 8)}
    columns: list[FloatArray] = [
        local.hour.astype(np.float64),
        local.weekday.astype(np.float64),
        local.holiday.astype(np.float64),
    ]
    for k in DAY_LAGS:
        lag = day[k] if k in day else _lagged(values, 24 * k)[tail]
        columns.append(lag / level)
    columns.append(_nanmedian_rows(np.stack([day[k] for k in range(1, 8)])) / level)
    weeks = np.stack([_lagged(values, 168 * k)[tail] for k in WEEK_LAGS])
    columns.append(_nanmedian_rows(weeks) / level)
    rows: Float32Array = np.stack(columns, axis=1).astype(np.float32)
    return rows


@dataclass(frozen=True, slots=True)
class Residuals:
    """Per hour: ``L``, the expected value, and the normalised residual ``value / L - expected / L``
    (NaN where the hour is not scored or the value is missing)."""

    level: FloatArray
    expected: FloatArray
    residual: FloatArray


def model_residuals(
    session: ort.InferenceSession,
    values: FloatArray,
    timestamps: npt.NDArray[np.datetime64],
    calendar: Calendar,
) -> Residuals:
    """Features, model output and residuals of every hour of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    rows = anomaly_features(values, timestamps, calendar)
    level = recent_level(values)
    relative = np.full(len(values), np.nan)
    scored = ~np.isnan(level)
    relative[scored] = predict_relative(session, rows[scored])
    return Residuals(level=level, expected=relative * level, residual=values / level - relative)


BASELINE_COLUMNS = {"rolling_median": None, "same_hour_7d": "same_hour_median_7d"}


def baseline_residuals(
    method: str, values: FloatArray, timestamps: npt.NDArray[np.datetime64], calendar: Calendar
) -> Residuals:
    """Residuals of a naive expected value: ``rolling_median`` (``L`` itself) or ``same_hour_7d``
    (the median of the same hour over the 7 previous days, a feature column)."""
    values = np.asarray(values, dtype=np.float64)
    rows = anomaly_features(values, timestamps, calendar)
    level = recent_level(values)
    column = BASELINE_COLUMNS[method]
    relative = (
        np.ones(len(values))
        if column is None
        else rows[:, FEATURE_NAMES.index(column)].astype(np.float64)
    )
    relative[np.isnan(level)] = np.nan
    return Residuals(level=level, expected=relative * level, residual=values / level - relative)


def run_lengths(mask: BoolArray) -> npt.NDArray[np.int64]:
    """For each hour, how many consecutive hours up to and including it have ``mask`` true."""
    out = np.zeros(len(mask), dtype=np.int64)
    count = 0
    for i, flag in enumerate(mask.tolist()):
        count = count + 1 if flag else 0
        out[i] = count
    return out


def identical_run_lengths(values: FloatArray) -> npt.NDArray[np.int64]:
    """For each hour, the number of consecutive hours up to it with exactly the same reading
    (1 for a reading that differs from the hour before; 0 for a missing reading)."""
    same = np.zeros(len(values), dtype=bool)
    if len(values) > 1:
        same[1:] = values[1:] == values[:-1]
    known = ~np.isnan(values)
    return np.where(known, run_lengths(same) + 1, 0)


def _usual_weekly_longest(lengths: npt.NDArray[np.int64]) -> float:
    """The median over whole weeks of each week's longest run (0 with less than a week)."""
    weeks = len(lengths) // 168
    if weeks == 0:
        return float(lengths.max(initial=0))
    return float(np.median(lengths[-weeks * 168 :].reshape(weeks, 168).max(axis=1)))


@dataclass(frozen=True, slots=True)
class Calibration:
    """The constants the gateway keeps per meter (JSON-able through :meth:`to_dict`).

    ``centre`` and ``scale``: median and 1.4826 x MAD of the meter's normalised residuals;
    ``threshold``: flag an hour whose score exceeds it; ``flat_limit_h`` / ``zero_limit_h``: flag a
    run of identical / zero readings at least this long; ``hours``: scored hours calibrated on.
    """

    centre: float
    scale: float
    threshold: float
    flat_limit_h: int
    zero_limit_h: int
    hours: int
    feature_version: str = FEATURE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        if data.get("feature_version") != FEATURE_VERSION:
            raise CalibrationError(
                f"calibration is for {data.get('feature_version')!r}, not {FEATURE_VERSION!r}"
            )
        return cls(
            centre=float(data["centre"]),
            scale=float(data["scale"]),
            threshold=float(data["threshold"]),
            flat_limit_h=int(data["flat_limit_h"]),
            zero_limit_h=int(data["zero_limit_h"]),
            hours=int(data["hours"]),
        )


def calibrate_residuals(
    values: FloatArray,
    residual: FloatArray,
    *,
    quantile: float = QUANTILE,
    floor: float = FLOOR,
) -> Calibration:
    """:class:`Calibration` from a meter's own history of readings and residuals (no labels)."""
    known = residual[np.isfinite(residual)]
    if known.size < MIN_CALIBRATION_H:
        raise CalibrationError(
            f"{known.size} scored hours; calibration needs at least {MIN_CALIBRATION_H}"
        )
    centre = float(np.median(known))
    scale = 1.4826 * float(np.median(np.abs(known - centre)))
    if not scale > 0:
        raise CalibrationError("the residuals have no spread (constant readings?)")
    scores = np.abs(known - centre) / scale
    threshold = max(floor, float(np.quantile(scores, quantile)))
    values = np.asarray(values, dtype=np.float64)
    flat = identical_run_lengths(np.where(values == 0, np.nan, values))
    zero = run_lengths(values == 0)
    return Calibration(
        centre=centre,
        scale=scale,
        threshold=threshold,
        flat_limit_h=max(FLAT_MIN_H, math.ceil(2 * _usual_weekly_longest(flat))),
        zero_limit_h=max(ZERO_MIN_H, math.ceil(2 * _usual_weekly_longest(zero))),
        hours=int(known.size),
    )


def calibrate(
    values: FloatArray,
    timestamps: npt.NDArray[np.datetime64],
    calendar: Calendar,
    session: ort.InferenceSession,
    *,
    quantile: float = QUANTILE,
    floor: float = FLOOR,
) -> Calibration:
    """Calibrate a meter from its own history (e.g. its last 8 weeks or more; at least
    :data:`CONTEXT_H` + 2 weeks of hours so that two weeks are scored with full context)."""
    res = model_residuals(session, values, timestamps, calendar)
    return calibrate_residuals(values, res.residual, quantile=quantile, floor=floor)


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def reason_params(
    kind: str,
    *,
    measured: float,
    expected: float = math.nan,
    hour: int = 0,
    weekday: int = 0,
    run_h: int = 0,
) -> dict[str, str | int | float]:
    """The parameters of a flagged hour's reason, as the gateway's ``unusual_use`` alert carries
    them: its ``variant`` (``high``, ``low``, ``above``, ``below``, ``flat``, ``zero``) and the
    figures that variant shows (see :func:`reason` for the sentences)."""
    if kind == "zero":
        return {"variant": "zero", "run_h": run_h}
    if kind == "flat":
        return {"variant": "flat", "measured": measured, "run_h": run_h}
    when: dict[str, str | int | float] = {
        "weekday": weekday,
        "hour": hour,
        "expected": expected,
        "measured": measured,
    }
    if expected > 0 and measured >= 0:
        ratio = measured / expected
        if kind == "high" or ratio >= 1:
            return {"variant": "high", "ratio": ratio, **when}
        return {"variant": "low", "percent": 100 * (1 - ratio), **when}
    return {"variant": "above" if kind == "high" else "below", **when}


def reason(
    kind: str,
    *,
    measured: float,
    expected: float = math.nan,
    hour: int = 0,
    weekday: int = 0,
    run_h: int = 0,
) -> str:
    """A short human reason for a flagged hour, in English (the evaluation report and the
    gateway's status; its alert texts come from the catalogue, in every language).

    ``kind`` is ``"high"`` / ``"low"`` (residual), ``"flat"`` or ``"zero"`` (runs), e.g.
    "use 3.4x the usual for Tuesday 14:00 (expected 12.1, measured 41.0)",
    "reading unchanged at 5.2 for 9 h", "no consumption for 5 h".
    """
    p = reason_params(
        kind, measured=measured, expected=expected, hour=hour, weekday=weekday, run_h=run_h
    )
    variant = p["variant"]
    if variant == "zero":
        return f"no consumption for {run_h} h"
    if variant == "flat":
        return f"reading unchanged at {_fmt(measured)} for {run_h} h"
    when = f"{WEEKDAYS[weekday]} {hour:02d}:00"
    numbers = f"(expected {_fmt(expected)}, measured {_fmt(measured)})"
    if variant == "high":
        return f"use {float(p['ratio']):.1f}x the usual for {when} {numbers}"
    if variant == "low":
        return f"use {float(p['percent']):.0f} % below the usual for {when} {numbers}"
    word = "above" if variant == "above" else "below"
    return f"use {word} the usual for {when} {numbers}"


@dataclass(frozen=True, slots=True)
class ScoredHours:
    """Per hour: score (NaN if not scored), expected value, flag, kind and reason.

    ``kind`` is ``""`` for an unflagged hour, else ``"zero"``, ``"flat"``, ``"high"`` or
    ``"low"``; ``reason`` is the human sentence for flagged hours, ``""`` otherwise.
    """

    timestamps: npt.NDArray[np.datetime64]
    score: FloatArray
    expected: FloatArray
    flag: BoolArray
    kind: tuple[str, ...]
    reason: tuple[str, ...]
    threshold: float
    details: tuple[dict[str, str | int | float] | None, ...] = ()
    """Per hour, the parameters of a flagged hour's reason (:func:`reason_params`), else None."""


def flags_from(
    values: FloatArray, residual: FloatArray, calibration: Calibration
) -> tuple[FloatArray, BoolArray, list[str], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Scores, flags and kinds from residuals and a calibration (zero runs, then flat runs, then
    the residual score); also the zero and identical run lengths of each hour."""
    score = np.abs(residual - calibration.centre) / calibration.scale
    zero_run = run_lengths(values == 0)
    flat_run = identical_run_lengths(np.where(values == 0, np.nan, values))
    is_zero = zero_run >= calibration.zero_limit_h
    is_flat = flat_run >= calibration.flat_limit_h
    is_resid = np.nan_to_num(score, nan=0.0) > calibration.threshold
    kinds = []
    for i in range(len(values)):
        if is_zero[i]:
            kinds.append("zero")
        elif is_flat[i]:
            kinds.append("flat")
        elif is_resid[i]:
            kinds.append("high" if residual[i] > calibration.centre else "low")
        else:
            kinds.append("")
    return score, is_zero | is_flat | is_resid, kinds, zero_run, flat_run


def score(
    session: ort.InferenceSession,
    values: FloatArray,
    timestamps: npt.NDArray[np.datetime64],
    calendar: Calendar,
    calibration: Calibration,
) -> ScoredHours:
    """Score every hour of ``values`` (the gateway passes the last ``CONTEXT_H + n`` hours and
    reads the last ``n``); flagged hours get a reason."""
    values = np.asarray(values, dtype=np.float64)
    res = model_residuals(session, values, timestamps, calendar)
    return _scored(values, timestamps, calendar, res, calibration)


def _scored(
    values: FloatArray,
    timestamps: npt.NDArray[np.datetime64],
    calendar: Calendar,
    res: Residuals,
    calibration: Calibration,
) -> ScoredHours:
    scores, flag, kinds, zero_run, flat_run = flags_from(values, res.residual, calibration)
    reasons = [""] * len(values)
    details: list[dict[str, str | int | float] | None] = [None] * len(values)
    flagged = np.flatnonzero(flag)
    if flagged.size:
        local = calendar.local(timestamps[flagged])
        for j, i in enumerate(flagged.tolist()):
            what = {
                "measured": float(values[i]),
                "expected": float(res.expected[i]),
                "hour": int(local.hour[j]),
                "weekday": int(local.weekday[j]),
                "run_h": int(zero_run[i] if kinds[i] == "zero" else flat_run[i]),
            }
            reasons[i] = reason(kinds[i], **what)  # type: ignore[arg-type]
            details[i] = reason_params(kinds[i], **what)  # type: ignore[arg-type]
    return ScoredHours(
        timestamps=timestamps,
        score=scores,
        expected=res.expected,
        flag=flag,
        kind=tuple(kinds),
        reason=tuple(reasons),
        threshold=calibration.threshold,
        details=tuple(details),
    )


# ---------------------------------------------------------------------------------------------
# Evaluation on labelled buildings

METHODS = ("model", "rolling_median", "same_hour_7d")
TOLERANCES_H = (12, 24)


@dataclass(frozen=True, slots=True)
class BuildingScore:
    """One building, one method: the flags' point F1 and, per tolerance, LEAD and event F1."""

    building: str
    method: str
    point: Detection
    lead: dict[int, Detection]
    event: dict[int, Detection]
    flagged_h: int
    labelled_h: int


def score_flags(
    building: str, method: str, labels: npt.ArrayLike, flags: npt.ArrayLike
) -> BuildingScore:
    lab = np.asarray(labels, dtype=np.int8)
    flg = np.asarray(flags, dtype=np.int8)
    return BuildingScore(
        building=building,
        method=method,
        point=point_f1(lab, flg),
        lead={t: lead_f1(lab, flg, t) for t in TOLERANCES_H},
        event={t: event_f1(lab, flg, t) for t in TOLERANCES_H},
        flagged_h=int(flg.sum()),
        labelled_h=int(lab.sum()),
    )


def residuals_for(
    method: str,
    series: HourlySeries,
    session: ort.InferenceSession | None,
    calendar: Calendar,
) -> Residuals:
    if method == "model":
        if session is None:
            raise ValueError("the model method needs a session")
        return model_residuals(session, series.values, series.timestamps, calendar)
    return baseline_residuals(method, series.values, series.timestamps, calendar)


def flags_for_series(
    series: HourlySeries,
    res: Residuals,
    *,
    quantile: float = QUANTILE,
    floor: float = FLOOR,
) -> BoolArray:
    """Calibrate on the building's own whole series (no labels) and flag its hours."""
    calibration = calibrate_residuals(series.values, res.residual, quantile=quantile, floor=floor)
    _, flag, _, _, _ = flags_from(series.values, res.residual, calibration)
    return flag


@dataclass(frozen=True, slots=True)
class AnomalyReport:
    """Per-building scores of the model and the baselines, in the order evaluated."""

    scores: tuple[BuildingScore, ...]
    quantile: float
    floor: float

    def of(self, method: str) -> list[BuildingScore]:
        return [s for s in self.scores if s.method == method]

    def summary(self, method: str, how: str = "median") -> dict[str, float]:
        """Median (or mean) over buildings of each F1 column of :func:`format_report`."""
        mine = self.of(method)
        agg = np.median if how == "median" else np.mean
        out = {"point": float(agg([s.point.f1 for s in mine]))}
        for t in TOLERANCES_H:
            out[f"lead_{t}h"] = float(agg([s.lead[t].f1 for s in mine]))
            out[f"event_{t}h"] = float(agg([s.event[t].f1 for s in mine]))
        return out


def evaluate(
    series: Sequence[HourlySeries],
    session: ort.InferenceSession | None,
    calendar: Calendar | None = None,
    *,
    quantile: float = QUANTILE,
    floor: float = FLOOR,
    methods: Sequence[str] = METHODS,
) -> AnomalyReport:
    """Flag each labelled building's hours with the model and the baselines (module docstring).

    ``session`` may be ``None`` when ``methods`` holds baselines only."""
    calendar = calendar or Calendar()
    scores = []
    for building in series:
        if building.labels is None:
            raise ValueError(f"{building.name} has no labels to evaluate against")
        for method in methods:
            res = residuals_for(method, building, session, calendar)
            flags = flags_for_series(building, res, quantile=quantile, floor=floor)
            scores.append(score_flags(building.name, method, building.labels, flags))
    return AnomalyReport(scores=tuple(scores), quantile=quantile, floor=floor)


def _row(label: str, values: Sequence[float]) -> str:
    return f"{label:<22}" + "".join(f"{v:>11.3f}" for v in values)


def format_report(report: AnomalyReport) -> str:
    """Per-building rows of F1 for each method, then the median and mean over buildings.

    The ``event`` columns are the event F1 with tolerance as the LEAD benchmark computes it
    (:func:`~models.metrics.lead_f1`: compare their mean over buildings with Prabhu et al. 2024
    Table 4); the ``run`` columns are stricter (:func:`~models.metrics.event_f1`: each labelled
    run and each run of flags counted once).
    """
    columns = ["point"] + [f"{k}_{t}h" for t in TOLERANCES_H for k in ("lead", "event")]
    shown = {f"lead_{t}h": f"event_{t}h" for t in TOLERANCES_H}
    shown |= {f"event_{t}h": f"run_{t}h" for t in TOLERANCES_H}
    head = f"{'building / method':<22}" + "".join(f"{shown.get(c, c):>11}" for c in columns)
    lines = [
        "Anomaly flags against labels: F1 per building "
        f"(threshold: quantile {report.quantile} of own scores, floor {report.floor})",
        head,
    ]
    methods = list(dict.fromkeys(s.method for s in report.scores))
    for building in dict.fromkeys(s.building for s in report.scores):
        lines.append(building)
        for s in report.scores:
            if s.building != building:
                continue
            vals = [s.point.f1] + [d.f1 for t in TOLERANCES_H for d in (s.lead[t], s.event[t])]
            lines.append(_row(f"  {s.method}", vals))
    for how in ("median", "mean"):
        lines.append(f"{how} over {len(report.of(methods[0]))} buildings")
        for method in methods:
            summ = report.summary(method, how)
            lines.append(_row(f"  {method}", [summ[c] for c in columns]))
    lines.append(
        "event_* = event F1 with tolerance as the LEAD benchmark computes it (get_measures; "
        "compare the mean over buildings with Prabhu et al. 2024 Table 4: best 0.603 / 0.673 at "
        "12 / 24 h); run_* = stricter, each labelled run and each run of flags counted once."
    )
    return "\n".join(lines)
