"""Naive day-ahead baselines: the rolling-origin protocol on synthetic series."""

from __future__ import annotations

import numpy as np
import pytest

from models.baselines import day_ahead_forecasts, evaluate_baselines, median_by_method, previous_day
from models.series import HourlySeries


def hourly(name: str, start: str, values: np.ndarray) -> HourlySeries:
    stamps = np.arange(
        np.datetime64(start, "h"), np.datetime64(start, "h") + len(values), np.timedelta64(1, "h")
    )
    return HourlySeries(name=name, timestamps=stamps, values=values.astype(np.float64))


def test_weekly_pattern_is_perfect_for_previous_week() -> None:
    # 5 weeks; each day of the week has its own level, each hour its own shape
    hours = np.arange(35 * 24)
    values = 10 + (hours // 24 % 7) * 3 + np.sin(hours % 24 / 24 * 2 * np.pi)
    s = hourly("weekly", "2019-01-01T00", values)
    scores = {x.method: x for x in evaluate_baselines([s], "2019-01-15", "2019-02-05")}
    assert scores["previous_week"].cv_rmse == pytest.approx(0.0)
    assert scores["previous_week"].hours == 21 * 24
    assert scores["previous_day"].cv_rmse > 5


def test_forecasts_use_history_only() -> None:
    values = np.arange(10 * 24, dtype=np.float64)  # strictly increasing: any peek would show
    s = hourly("ramp", "2019-01-01T00", values)
    actual, forecast = day_ahead_forecasts(s, "2019-01-09", "2019-01-10", previous_day)
    np.testing.assert_array_equal(actual, values[8 * 24 : 9 * 24])
    np.testing.assert_array_equal(forecast, values[7 * 24 : 8 * 24])


def test_hours_before_the_series_are_not_scored() -> None:
    s = hourly("short", "2019-01-03T00", np.ones(5 * 24))
    scores = evaluate_baselines([s], "2019-01-01", "2019-01-08")
    by = {x.method: x for x in scores}
    assert by["previous_day"].hours == 4 * 24  # 01-04 .. 01-07
    assert by["previous_week"].hours == 0
    assert np.isnan(by["previous_week"].cv_rmse)


def test_median_over_buildings() -> None:
    hours = np.arange(21 * 24)
    a = hourly("a", "2019-01-01T00", 10 + (hours % 24 == 12))
    b = hourly("b", "2019-01-01T00", 10 + 5 * (hours // 24 % 2))
    c = hourly("c", "2019-01-01T00", 10 + 2 * (hours // 24 % 7 == 0))
    scores = evaluate_baselines([a, b, c], "2019-01-08", "2019-01-22")
    cvs = sorted(x.cv_rmse for x in scores if x.method == "previous_day")
    assert median_by_method(scores)["previous_day"][0] == pytest.approx(cvs[1])
