"""ASHRAE Guideline 14 metrics and anomaly scores on small series computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.metrics import cv_rmse, event_f1, lead_f1, nmbe, point_f1, runs


def test_cv_rmse_and_nmbe_by_hand() -> None:
    actual = [10.0, 20.0, 30.0, 40.0]  # mean 25
    predicted = [12.0, 18.0, 33.0, 37.0]  # errors y - yhat: -2, 2, -3, 3
    # sum of squares 4 + 4 + 9 + 9 = 26; n - p = 4
    assert cv_rmse(actual, predicted) == pytest.approx(100 * math.sqrt(26 / 4) / 25)
    assert nmbe(actual, predicted) == pytest.approx(0.0)
    # one fitted parameter: n - p = 3
    assert cv_rmse(actual, predicted, n_params=1) == pytest.approx(100 * math.sqrt(26 / 3) / 25)


def test_nmbe_positive_means_under_prediction() -> None:
    assert nmbe([10.0, 10.0], [8.0, 9.0]) == pytest.approx(100 * 3 / (2 * 10))
    assert nmbe([10.0, 10.0], [12.0, 11.0]) < 0


def test_nan_pairs_are_skipped() -> None:
    actual = [10.0, np.nan, 30.0, 20.0]
    predicted = [10.0, 5.0, np.nan, 22.0]
    # pairs kept: (10, 10), (20, 22); mean 15; sum sq 4
    assert cv_rmse(actual, predicted) == pytest.approx(100 * math.sqrt(4 / 2) / 15)
    assert nmbe(actual, predicted) == pytest.approx(100 * -2 / (2 * 15))


def test_undefined_metrics_are_nan_not_errors() -> None:
    assert math.isnan(cv_rmse([np.nan], [1.0]))
    assert math.isnan(nmbe([0.0, 0.0], [1.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        cv_rmse([1.0, 2.0], [1.0])


def test_runs() -> None:
    assert runs([0, 1, 1, 0, 1]).tolist() == [[1, 3], [4, 5]]
    assert runs([]).shape == (0, 2)


def test_point_f1_by_hand() -> None:
    labels = [0, 1, 1, 1, 0, 0, 0, 0]
    flags = [0, 0, 1, 1, 1, 0, 0, 1]
    d = point_f1(labels, flags)
    assert (d.tp, d.fn, d.fp) == (2, 1, 2)
    assert d.precision == pytest.approx(0.5)
    assert d.recall == pytest.approx(2 / 3)
    assert d.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_lead_f1_counts_labelled_hours_and_flagged_hours() -> None:
    labels = np.zeros(100, dtype=int)
    labels[10:13] = 1  # hours 10, 11, 12
    labels[60] = 1
    flags = np.zeros(100, dtype=int)
    flags[14] = 1  # 2 h after the last labelled hour of the first event
    flags[90] = 1  # 30 h after hour 60
    d = lead_f1(labels, flags, tolerance_h=3)
    # hours 11, 12 are within 3 h of hour 14, hour 10 is 4 h away; 60 has no flag near
    assert (d.tp, d.fn, d.fp) == (2, 2, 1)
    d24 = lead_f1(labels, flags, tolerance_h=24)
    assert (d24.tp, d24.fn, d24.fp) == (3, 1, 1)
    d30 = lead_f1(labels, flags, tolerance_h=30)
    assert (d30.tp, d30.fn, d30.fp) == (4, 0, 0)


def test_event_f1_counts_each_event_and_each_alarm_once() -> None:
    labels = np.zeros(200, dtype=int)
    labels[10:40] = 1  # a 30 h event
    labels[100] = 1  # a 1 h event
    flags = np.zeros(200, dtype=int)
    flags[45:50] = 1  # one alarm, starting 6 h after the first event ends
    flags[150:170] = 1  # one long false alarm, 50 h after the second event
    d12 = event_f1(labels, flags, tolerance_h=12)
    assert (d12.tp, d12.fn, d12.fp) == (1, 1, 1)
    assert d12.f1 == pytest.approx(0.5)
    d5 = event_f1(labels, flags, tolerance_h=5)
    assert (d5.tp, d5.fn, d5.fp) == (0, 2, 2)
    d50 = event_f1(labels, flags, tolerance_h=50)
    assert (d50.tp, d50.fn, d50.fp) == (2, 0, 0)


def test_no_flags_scores_zero_not_nan() -> None:
    d = event_f1([0, 1, 0], [0, 0, 0], tolerance_h=12)
    assert (d.tp, d.fn, d.fp) == (0, 1, 0)
    assert d.f1 == 0.0
    assert lead_f1([0, 1, 0], [0, 0, 0], tolerance_h=12).f1 == 0.0


def test_labels_must_be_binary_and_aligned() -> None:
    with pytest.raises(ValueError, match="only 0 and 1"):
        point_f1([0, 2], [0, 1])
    with pytest.raises(ValueError, match="hours"):
        event_f1([0, 1], [0, 1, 0], tolerance_h=1)
