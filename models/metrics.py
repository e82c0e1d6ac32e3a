"""Scores for demand forecasts (ASHRAE Guideline 14) and for anomaly flags (point and event F1).

Demand, with ``y`` the measured and ``ŷ`` the predicted hourly values, ``ȳ`` the mean of ``y``,
``n`` the number of hours where both are known and ``p`` the number of fitted model parameters::

    CV(RMSE) = 100 * sqrt( sum (y - ŷ)^2 / (n - p) ) / ȳ          [%]
    NMBE     = 100 * sum (y - ŷ) / ( (n - p) * ȳ )                 [%]

This is ASHRAE Guideline 14-2014 (Annex B / section 4.3); ``n - p`` are the degrees of freedom.
``p`` defaults to 0: the naive baselines fit nothing, and a forecast judged on held-out hours is not
a calibrated regression; with about 8760 hours the choice changes the figures by well under 0.1 %.
A positive NMBE means the forecast is too low (under-prediction), as in the Guideline. Hours where
either value is NaN are skipped. Guideline 14 accepts an hourly model at CV(RMSE) <= 30 % and
|NMBE| <= 10 %.

Anomalies: ``labels`` and ``flags`` are 0/1 arrays over the same hours. See :func:`point_f1`,
:func:`lead_f1` (the protocol of Prabhu et al. 2024, whose LEAD Table 4 we compare with) and
:func:`event_f1` (events as runs of labelled hours).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _known_pairs(actual: npt.ArrayLike, predicted: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    y = np.asarray(actual, dtype=np.float64)
    yhat = np.asarray(predicted, dtype=np.float64)
    if y.shape != yhat.shape:
        raise ValueError(f"actual has shape {y.shape}, predicted {yhat.shape}")
    known = ~(np.isnan(y) | np.isnan(yhat))
    return y[known], yhat[known]


def cv_rmse(actual: npt.ArrayLike, predicted: npt.ArrayLike, n_params: int = 0) -> float:
    """Coefficient of variation of the RMSE, in %, per ASHRAE Guideline 14 (module docstring).

    NaN when fewer than ``n_params + 1`` pairs are known or the mean of ``actual`` is 0.
    """
    y, yhat = _known_pairs(actual, predicted)
    dof = y.size - n_params
    if dof <= 0 or y.mean() == 0:
        return float("nan")
    return float(100.0 * np.sqrt(np.sum((y - yhat) ** 2) / dof) / y.mean())


def nmbe(actual: npt.ArrayLike, predicted: npt.ArrayLike, n_params: int = 0) -> float:
    """Normalised mean bias error, in %, per ASHRAE Guideline 14; positive = under-prediction."""
    y, yhat = _known_pairs(actual, predicted)
    dof = y.size - n_params
    if dof <= 0 or y.mean() == 0:
        return float("nan")
    return float(100.0 * np.sum(y - yhat) / (dof * y.mean()))


@dataclass(frozen=True, slots=True)
class Detection:
    """Counts and scores of one comparison of flags with labels.

    ``tp``, ``fn`` count labelled items (hours or events) found or missed; ``fp`` counts flagged
    items (hours or flag runs) with nothing labelled near them. Precision, recall and F1 are 0 when
    their denominator is 0 (no flags: precision 0; no labels: recall 0), so a detector that never
    fires scores 0, not NaN.
    """

    tp: int
    fn: int
    fp: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def _binary(name: str, arr: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    a = np.asarray(arr)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    if a.size and not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1")
    return a.astype(bool)


def _pair(labels: npt.ArrayLike, flags: npt.ArrayLike) -> tuple[npt.NDArray[np.bool_], ...]:
    lab, flg = _binary("labels", labels), _binary("flags", flags)
    if lab.shape != flg.shape:
        raise ValueError(f"labels have {lab.size} hours, flags {flg.size}")
    return lab, flg


def runs(mask: npt.ArrayLike) -> IntArray:
    """The runs of consecutive true hours as rows ``[start, stop)`` (shape ``(k, 2)``)."""
    m = np.asarray(mask, dtype=bool)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], m.astype(np.int8), [0]))))
    out: IntArray = edges.reshape(-1, 2).astype(np.int64)
    return out


def _distance_to_nearest(points: IntArray, targets: IntArray) -> IntArray:
    """For each point, the distance in hours to the nearest target (a large number if none)."""
    if targets.size == 0:
        return np.full(points.size, np.iinfo(np.int64).max // 2, dtype=np.int64)
    pos = np.searchsorted(targets, points)
    left = targets[np.clip(pos - 1, 0, targets.size - 1)]
    right = targets[np.clip(pos, 0, targets.size - 1)]
    nearest: IntArray = np.minimum(np.abs(points - left), np.abs(points - right)).astype(np.int64)
    return nearest


def point_f1(labels: npt.ArrayLike, flags: npt.ArrayLike) -> Detection:
    """Hour by hour, no tolerance: a flagged labelled hour is a TP, an unflagged one an FN, a
    flagged unlabelled hour an FP."""
    lab, flg = _pair(labels, flags)
    return Detection(
        tp=int(np.sum(lab & flg)), fn=int(np.sum(lab & ~flg)), fp=int(np.sum(~lab & flg))
    )


def lead_f1(labels: npt.ArrayLike, flags: npt.ArrayLike, tolerance_h: int) -> Detection:
    """The tolerance protocol of Prabhu, Valadi & Arjunan 2024 (LEAD Table 4, ``get_measures``).

    Every labelled hour is a TP when some flagged hour lies within ``tolerance_h`` hours of it
    (``|t_flag - t_label| <= tolerance_h``), else an FN; every flagged hour with no labelled hour
    within ``tolerance_h`` is an FP. TP and FN therefore count labelled hours, FP flagged hours.
    The paper averages precision, recall and F1 over buildings (not pooled counts): use the
    per-building :attr:`Detection.f1` and take the mean to compare with its table.
    """
    lab, flg = _pair(labels, flags)
    label_hours = np.flatnonzero(lab).astype(np.int64)
    flag_hours = np.flatnonzero(flg).astype(np.int64)
    if flag_hours.size == 0:
        return Detection(tp=0, fn=int(label_hours.size), fp=0)
    found = _distance_to_nearest(label_hours, flag_hours) <= tolerance_h
    unmatched = _distance_to_nearest(flag_hours, label_hours) > tolerance_h
    return Detection(tp=int(found.sum()), fn=int((~found).sum()), fp=int(unmatched.sum()))


def event_f1(labels: npt.ArrayLike, flags: npt.ArrayLike, tolerance_h: int) -> Detection:
    """Event-level F1: an event is a run of consecutive labelled hours, an alarm a run of
    consecutive flagged hours.

    An event ``[s, e]`` (first and last labelled hour) is detected (TP) when any flagged hour ``t``
    satisfies ``s - tolerance_h <= t <= e + tolerance_h``, else it is missed (FN). An alarm is false
    (FP) when none of its hours lies within ``tolerance_h`` of a labelled hour. This is the same
    nearness rule as :func:`lead_f1`, counted once per event and once per alarm, so a long event
    does not weigh more than a short one and a long alarm counts as one false alarm.
    """
    lab, flg = _pair(labels, flags)
    events, alarms = runs(lab), runs(flg)
    flag_hours = np.flatnonzero(flg).astype(np.int64)
    label_hours = np.flatnonzero(lab).astype(np.int64)
    tp = 0
    for start, stop in events:
        lo, hi = start - tolerance_h, stop - 1 + tolerance_h
        i = np.searchsorted(flag_hours, lo)
        if i < flag_hours.size and flag_hours[i] <= hi:
            tp += 1
    fp = 0
    for start, stop in alarms:
        lo, hi = start - tolerance_h, stop - 1 + tolerance_h
        i = np.searchsorted(label_hours, lo)
        if not (i < label_hours.size and label_hours[i] <= hi):
            fp += 1
    return Detection(tp=tp, fn=len(events) - tp, fp=fp)
