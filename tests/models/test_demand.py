"""The demand model: features, the training rows, ONNX export and scoring, the evaluation report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models import demand
from models.calendar import Calendar
from models.demand import (
    FEATURE_NAMES,
    HISTORY_H,
    HORIZON_H,
    MIN_KNOWN_H,
    demand_features,
    forecast,
    training_matrix,
)
from models.runtime import open_session, predict
from models.series import HourlySeries, load_uci_household
from nbedge.errors import InvalidOutput

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
HAVE_DATA = (DATA / "README.md").exists()
LONDON = Calendar(timezone="Europe/London", country="GB", subdivision="ENG")
COL = {name: i for i, name in enumerate(FEATURE_NAMES)}
TEMPERATURE_COLUMNS = [i for name, i in COL.items() if name.startswith("temperature")]


def office(name: str, start: str, days: int, seed: int, scale: float = 100.0) -> HourlySeries:
    """A synthetic office: busy 08-18 local on weekdays, a weekly rhythm, noise, a few gaps."""
    rng = np.random.default_rng(seed)
    stamps = np.arange(np.datetime64(start, "h"), np.datetime64(start, "h") + days * 24)
    local = LONDON.local(stamps)
    busy = (local.hour >= 8) & (local.hour < 18) & (local.weekday < 5) & ~local.holiday
    hours = np.arange(len(stamps))
    temperature = 10 + 8 * np.sin(2 * np.pi * hours / (24 * 365)) + 3 * np.sin(hours / 24 * 6.28)
    values = scale * (1 + 1.5 * busy + 0.02 * np.maximum(0, 15 - temperature))
    values *= 1 + 0.05 * rng.standard_normal(len(values))
    values[rng.random(len(values)) < 0.01] = np.nan
    return HourlySeries(name=name, timestamps=stamps, values=values, temperature=temperature)


def window(series: HourlySeries, origin: str) -> tuple[np.ndarray, np.ndarray | None]:
    i = int(np.flatnonzero(series.timestamps == np.datetime64(origin, "h"))[0])
    temp = None if series.temperature is None else series.temperature[i - HISTORY_H : i]
    return series.values[i - HISTORY_H : i], temp


# --- features ------------------------------------------------------------------------------------


def test_one_row_per_forecast_hour_with_named_columns() -> None:
    s = office("a", "2019-03-01", 20, seed=1)
    history, temp = window(s, "2019-03-15T00")
    result = demand_features(history, temp, np.datetime64("2019-03-15T00", "h"), LONDON)
    assert result is not None
    rows, level = result
    assert rows.shape == (HORIZON_H, len(FEATURE_NAMES))
    assert rows.dtype == np.float32
    assert level == pytest.approx(np.nanmean(history))
    assert list(rows[:, COL["horizon_h"]]) == list(range(24))
    # same hour one day and one week before: inside the history, divided by the level
    h = 5
    assert rows[h, COL["same_hour_1d_ago"]] == pytest.approx(history[HISTORY_H - 24 + h] / level)
    assert rows[h, COL["same_hour_7d_ago"]] == pytest.approx(history[h] / level)
    assert rows[0, COL["last_1h"]] == pytest.approx(history[-1] / level)
    assert temp is not None
    assert rows[0, COL["temperature_last_1h"]] == pytest.approx(temp[-1])


def test_scaling_the_history_scales_the_level_only() -> None:
    s = office("a", "2019-03-01", 20, seed=2)
    history, temp = window(s, "2019-03-15T07")
    origin = np.datetime64("2019-03-15T07", "h")
    base = demand_features(history, temp, origin, LONDON)
    scaled = demand_features(history * 37.5, temp, origin, LONDON)
    assert base is not None
    assert scaled is not None
    assert scaled[1] == pytest.approx(base[1] * 37.5)
    np.testing.assert_allclose(scaled[0], base[0], rtol=1e-6)


def test_calendar_columns_on_christmas_day_2019() -> None:
    history = np.full(HISTORY_H, 50.0)
    result = demand_features(history, None, np.datetime64("2019-12-25T00", "h"), LONDON)
    assert result is not None
    rows = result[0]
    # Wednesday 25 December, GMT: local hour = UTC hour; the holiday and off-day flags are set
    assert list(rows[:, COL["hour"]]) == list(range(24))
    assert set(rows[:, COL["weekday"]]) == {2}
    assert set(rows[:, COL["holiday"]]) == {1}
    assert set(rows[:, COL["off_day"]]) == {1}
    # the day before (Tuesday 24) is a working day; 4 days before is Saturday 21
    assert set(rows[:, COL["off_day_1d_ago"]]) == {0}
    assert set(rows[:, COL["off_day_4d_ago"]]) == {1}
    # without a country no day is a holiday
    plain = demand_features(history, None, np.datetime64("2019-12-25T00", "h"), Calendar())
    assert plain is not None
    assert set(plain[0][:, COL["holiday"]]) == {0}
    assert set(plain[0][:, COL["off_day"]]) == {0}


def test_local_hour_follows_summer_time() -> None:
    result = demand_features(
        np.full(HISTORY_H, 5.0), None, np.datetime64("2019-07-01T00", "h"), LONDON
    )
    assert result is not None
    assert result[0][0, COL["hour"]] == 1  # 00:00 UTC is 01:00 BST


def test_no_forecast_from_a_too_incomplete_history() -> None:
    origin = np.datetime64("2019-03-15T00", "h")
    history = np.full(HISTORY_H, 10.0)
    history[: HISTORY_H - MIN_KNOWN_H] = np.nan
    assert demand_features(history, None, origin, LONDON) is not None
    history[HISTORY_H - MIN_KNOWN_H] = np.nan
    assert demand_features(history, None, origin, LONDON) is None
    assert demand_features(np.zeros(HISTORY_H), None, origin, LONDON) is None  # level 0


def test_without_temperature_only_the_temperature_columns_are_missing() -> None:
    s = office("a", "2019-03-01", 20, seed=3)
    history, temp = window(s, "2019-03-15T00")
    origin = np.datetime64("2019-03-15T00", "h")
    with_t = demand_features(history, temp, origin, LONDON)
    without = demand_features(history, None, origin, LONDON)
    assert with_t is not None
    assert without is not None
    assert np.isnan(without[0][:, TEMPERATURE_COLUMNS]).all()
    assert not np.isnan(with_t[0][:, TEMPERATURE_COLUMNS]).any()
    others = [i for i in range(len(FEATURE_NAMES)) if i not in TEMPERATURE_COLUMNS]
    np.testing.assert_array_equal(without[0][:, others], with_t[0][:, others])


def test_a_missing_hour_gives_a_missing_feature() -> None:
    history = np.full(HISTORY_H, 10.0)
    history[HISTORY_H - 24] = np.nan  # the same hour yesterday as the first forecast hour
    result = demand_features(history, None, np.datetime64("2019-03-15T00", "h"), LONDON)
    assert result is not None
    assert np.isnan(result[0][0, COL["same_hour_1d_ago"]])
    assert result[0][1, COL["same_hour_1d_ago"]] == pytest.approx(1.0)


# --- training rows -------------------------------------------------------------------------------


def assert_matrix_is_per_origin_features(
    series: HourlySeries, calendar: Calendar, start: str, end: str, stride_h: int
) -> None:
    x, y, level = training_matrix(series, calendar, start, end, stride_h=stride_h)
    first = int(np.flatnonzero(series.timestamps == np.datetime64(start, "h"))[0])
    stop = int(np.flatnonzero(series.timestamps < np.datetime64(end, "h"))[-1]) + 1
    xs, ys = [], []
    for i in range(first, stop, stride_h):
        temp = None if series.temperature is None else series.temperature[i - HISTORY_H : i]
        result = demand_features(
            series.values[i - HISTORY_H : i], temp, series.timestamps[i], calendar
        )
        if result is None:
            continue
        truth = series.values[i : i + HORIZON_H]
        hours = np.arange(i, i + HORIZON_H)
        keep = ~np.isnan(truth) & (hours < stop)
        xs.append(result[0][keep])
        ys.append(truth[keep] / result[1])
    np.testing.assert_array_equal(x, np.concatenate(xs))
    np.testing.assert_allclose(y, np.concatenate(ys), rtol=1e-12)
    assert len(level) == len(y)


def test_training_matrix_is_demand_features_per_origin_synthetic() -> None:
    s = office("a", "2019-01-01", 40, seed=4)
    assert_matrix_is_per_origin_features(s, LONDON, "2019-01-10", "2019-02-05", stride_h=7)


def test_training_matrix_drops_anomalous_targets() -> None:
    s = office("a", "2019-01-01", 20, seed=5)
    labels = np.zeros(len(s.values), dtype=np.int8)
    day = np.arange(14 * 24, 15 * 24)  # 2019-01-15
    labels[day[~np.isnan(s.values[day])][:2]] = 1  # two known hours labelled anomalous
    labelled = HourlySeries(s.name, s.timestamps, s.values, s.temperature, labels)
    x_all, _, _ = training_matrix(s, LONDON, "2019-01-15", "2019-01-16")
    x_lab, _, _ = training_matrix(labelled, LONDON, "2019-01-15", "2019-01-16")
    assert len(x_lab) == len(x_all) - 2


# --- training, ONNX, scoring ---------------------------------------------------------------------


def small_training_set() -> tuple[np.ndarray, np.ndarray]:
    from models import train_demand

    train = [office(f"b{i}", "2018-01-01", 90, seed=10 + i, scale=10.0**i) for i in range(3)]
    return train_demand.build_matrix(train, LONDON, "2018-01-08", "2018-04-01")


@pytest.fixture(scope="module")
def small_model() -> tuple[object, bytes]:
    pytest.importorskip("sklearn")
    pytest.importorskip("skl2onnx")
    from models import train_demand

    x, y = small_training_set()
    model = train_demand.fit(x, y, max_iter=40)
    return model, train_demand.to_onnx(model)


def test_onnx_matches_scikit_learn_including_missing_values(
    small_model: tuple[object, bytes],
) -> None:
    model, onnx = small_model
    s = office("held", "2018-01-01", 60, seed=99, scale=3.0)
    x, _, _ = training_matrix(s, LONDON, "2018-01-08", "2018-03-01", stride_h=5)
    rng = np.random.default_rng(0)
    x = x.copy()
    x[rng.random(x.shape) < 0.1] = np.nan  # NaN spread over every column
    assert np.isnan(x).any(axis=1).sum() > len(x) / 2
    session = open_session(onnx)
    assert [i.name for i in session.get_inputs()] == ["features"]
    assert session.get_inputs()[0].shape[1] == len(FEATURE_NAMES)
    got = predict(session, x)
    expected = model.predict(x)  # type: ignore[attr-defined]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_same_onnx_bytes_from_two_fits(small_model: tuple[object, bytes]) -> None:
    from models import train_demand

    x, y = small_training_set()
    assert train_demand.to_onnx(train_demand.fit(x, y, max_iter=40)) == small_model[1]


def test_forecast_returns_24_values_near_the_truth(small_model: tuple[object, bytes]) -> None:
    session = open_session(small_model[1])
    s = office("held", "2018-01-01", 60, seed=98, scale=250.0)  # a scale never seen
    history, temp = window(s, "2018-02-14T13")
    got = forecast(session, history, temp, np.datetime64("2018-02-14T13", "h"), LONDON)
    assert got is not None
    assert got.shape == (24,)
    assert np.isfinite(got).all()
    truth = s.values[np.flatnonzero(s.timestamps == np.datetime64("2018-02-14T13", "h"))[0] :][:24]
    known = ~np.isnan(truth)
    assert np.sqrt(np.mean((got - truth)[known] ** 2)) / truth[known].mean() < 0.15
    assert forecast(session, np.full(HISTORY_H, np.nan), None, s.timestamps[500], LONDON) is None


def test_invalid_model_output_is_detected() -> None:
    pytest.importorskip("onnx")
    from onnx import NodeProto, TensorProto, helper

    features = helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, None])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)

    def model(*nodes: NodeProto) -> bytes:
        graph = helper.make_graph(
            list(nodes),
            "bad",
            [features],
            [out],
            initializer=[helper.make_tensor("i0", TensorProto.INT64, [1], [0])],
        )
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        return bytes(proto.SerializeToString())

    history = np.full(HISTORY_H, 10.0)
    origin = np.datetime64("2019-03-15T00", "h")
    identity = open_session(model(helper.make_node("Identity", ["features"], ["out"])))
    with pytest.raises(InvalidOutput, match="shape"):
        forecast(identity, history, None, origin, LONDON)
    log_of_zero = open_session(
        model(
            helper.make_node("Gather", ["features", "i0"], ["col"], axis=1),
            helper.make_node("Sub", ["col", "col"], ["zero"]),
            helper.make_node("Log", ["zero"], ["out"]),
        )
    )
    with pytest.raises(InvalidOutput, match="not finite"):
        forecast(log_of_zero, history, None, origin, LONDON)


def test_report_has_the_model_and_both_baselines(small_model: tuple[object, bytes]) -> None:
    session = open_session(small_model[1])
    series = [office(f"h{i}", "2018-01-01", 75, seed=50 + i, scale=7.0) for i in range(3)]
    report = demand.evaluate(series, session, "2018-02-01", "2018-03-15", LONDON)
    assert report.buildings == ["h0", "h1", "h2"]
    for b in report.buildings:
        assert report.score(b, "model").hours > 900
        # the model has learned the weekly rhythm better than repeating yesterday
        assert report.score(b, "model").cv_rmse < report.score(b, "previous_day").cv_rmse
    text = demand.format_report(report)
    assert "median" in text
    assert "model: within ASHRAE 30 %: 3 of 3" in text
    assert "previous_week" in text
    # the batched evaluation gives what forecast() gives at a midnight origin
    actual, predicted = demand.model_forecasts(
        series[0], session, "2018-02-01", "2018-03-15", LONDON
    )
    history, temp = window(series[0], "2018-02-10T00")
    one = forecast(session, history, temp, np.datetime64("2018-02-10T00", "h"), LONDON)
    assert one is not None
    np.testing.assert_allclose(predicted[9 * 24 : 10 * 24], one, rtol=1e-9)
    i = int(np.flatnonzero(series[0].timestamps == np.datetime64("2018-02-01T00", "h"))[0])
    np.testing.assert_array_equal(actual, series[0].values[i : i + len(actual)])


# --- the shared public data ----------------------------------------------------------------------

needs_data = pytest.mark.skipif(not HAVE_DATA, reason="the public data ../shared/data is absent")


@needs_data
def test_training_matrix_is_demand_features_per_origin_real() -> None:
    from models.series import load_cambridge_estates

    (b16,) = load_cambridge_estates(DATA / "cambridge_estates", buildings=["UCam_Building_b16"])
    # 2019's last weeks: the Christmas closure, the change of year and one missing-value run
    assert_matrix_is_per_origin_features(b16, LONDON, "2018-12-01", "2019-01-10", stride_h=7)


@needs_data
def test_split_is_the_stated_rule() -> None:
    from models import train_demand

    names = sorted(p.name for p in (DATA / "cambridge_estates" / "electricity").iterdir())
    assert list(train_demand.ALL_BUILDINGS) == names
    assert list(train_demand.HELD_OUT_BUILDINGS) == names[2::3]
    assert len(train_demand.HELD_OUT_BUILDINGS) == 6
    assert not set(train_demand.HELD_OUT_BUILDINGS) & set(train_demand.TRAIN_BUILDINGS)


@pytest.mark.slow
@pytest.mark.timeout(900)  # about 2.5 minutes here (models/train_demand.py)
@needs_data
def test_shipped_model_reproduces_its_held_out_figures() -> None:
    from models import train_demand

    trained = train_demand.train(DATA)
    held = trained.card["evaluation"]["held_out"]["median"]
    assert held["model"]["cv_rmse"] == pytest.approx(13.0, abs=0.3)
    assert held["previous_week"]["cv_rmse"] == pytest.approx(17.15, abs=0.01)
    assert held["model"]["cv_rmse"] < held["previous_week"]["cv_rmse"] - 3
    assert trained.card["evaluation"]["held_out"]["within_ashrae_30"]["model"] == [5, 6]
    lead = trained.card["evaluation"]["other_sources"]["lead"]["median"]
    assert lead["model"]["cv_rmse"] == pytest.approx(14.71, abs=0.3)
    assert trained.card["inputs"] == list(FEATURE_NAMES)
    assert len(trained.onnx) < 2_000_000


@needs_data
def test_uci_household_in_kwh() -> None:
    pytest.importorskip("sklearn")

    uci = load_uci_household(
        DATA / "uci_household_power" / "household_power_consumption_hourly.csv"
    )
    assert uci.timestamps[0] == np.datetime64("2006-12-16T17", "h")
    assert len(uci.values) == 34589
    assert uci.values[0] == pytest.approx(152.024002075 / 60)  # the first hour's sum of kW / 60
