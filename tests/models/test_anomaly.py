"""The anomaly model: features, ONNX parity, scoring of injected anomalies, calibration, LEAD."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models import anomaly
from models.anomaly import (
    CONTEXT_H,
    FEATURE_NAMES,
    N_FEATURES,
    Calibration,
    CalibrationError,
    anomaly_features,
    calibrate,
    evaluate,
    format_report,
    score,
)
from models.calendar import Calendar
from models.runtime import open_session, predict
from models.series import HourlySeries, load_lead
from nbedge.errors import InvalidOutput

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
UTC = Calendar()
START = np.datetime64("2024-01-01T00", "h")  # a Monday
WEEK = 168


def office(weeks: int, seed: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps and an office-like hourly load: 20 at night and weekends, 50 on weekdays
    08:00-18:00, 3 % multiplicative noise."""
    rng = np.random.default_rng(seed)
    n = weeks * WEEK
    stamps = START + np.arange(n).astype("timedelta64[h]")
    hour = np.arange(n) % 24
    day = (np.arange(n) // 24) % 7
    load = 20 + 30 * ((hour >= 8) & (hour < 18) & (day < 5))
    return stamps, scale * load * (1 + 0.03 * rng.standard_normal(n))


def test_feature_rows_have_the_documented_shape() -> None:
    stamps, load = office(6, seed=1)
    rows = anomaly_features(load, stamps, UTC)
    assert rows.shape == (len(load), N_FEATURES) == (6 * WEEK, len(FEATURE_NAMES))
    assert rows.dtype == np.float32
    assert np.isnan(rows[:24, 3:]).all()  # no history yet: no level, no lags
    assert not np.isnan(rows[CONTEXT_H:]).any()  # full context: every feature known
    # Tuesday 14:00 of week 5: calendar columns, and the lags of a regular week are near 50 / L
    t = 4 * WEEK + 24 + 14
    assert rows[t, :3].tolist() == [14.0, 1.0, 0.0]
    level = anomaly.recent_level(load)[t]
    assert level == pytest.approx(20, rel=0.05)
    assert rows[t, FEATURE_NAMES.index("same_hour_7d_ago")] == pytest.approx(50 / level, rel=0.1)


def test_features_do_not_depend_on_the_meter_scale() -> None:
    stamps, load = office(6, seed=2)
    a = anomaly_features(load, stamps, UTC)
    b = anomaly_features(load * 1234.5, stamps, UTC)
    np.testing.assert_allclose(a, b, rtol=1e-5, equal_nan=True)


def test_gateway_tail_rows_equal_the_whole_series_rows() -> None:
    stamps, load = office(8, seed=3)
    load[np.random.default_rng(0).choice(len(load), 60, replace=False)] = np.nan
    load[700:710] = 0.0
    whole = anomaly_features(load, stamps, UTC)
    for t in (CONTEXT_H, CONTEXT_H + 1, 900, 1100, len(load) - 1):
        tail = anomaly_features(load[t - CONTEXT_H : t + 1], stamps[t - CONTEXT_H : t + 1], UTC)
        np.testing.assert_array_equal(tail[-1], whole[t])


@pytest.fixture(scope="module")
def trained() -> tuple[Any, bytes]:
    """A small model of the shipped kind trained on synthetic office buildings."""
    pytest.importorskip("sklearn")
    pytest.importorskip("skl2onnx")
    from models.train_anomaly import fit, to_onnx, training_matrix

    buildings = []
    for seed, scale in ((10, 1.0), (11, 7.0), (12, 0.2)):
        stamps, load = office(8, seed, scale)
        buildings.append(HourlySeries(f"office_{seed}", stamps, load))
    x, y = training_matrix(buildings, UTC, rows_per_building=2000)
    model = fit(x, y, max_iter=40)
    return model, to_onnx(model)


def test_onnx_output_equals_scikit_learn(trained: tuple[Any, bytes]) -> None:
    model, onnx = trained
    stamps, load = office(7, seed=20, scale=3.0)
    load[np.random.default_rng(1).choice(len(load), 80, replace=False)] = np.nan
    rows = anomaly_features(load, stamps, UTC)
    rows = rows[~np.isnan(anomaly.recent_level(load))]
    assert np.isnan(rows).any()  # NaN features take the learned branch in both
    expected = model.predict(rows)
    got = predict(open_session(onnx), rows)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_training_is_deterministic(trained: tuple[Any, bytes]) -> None:
    from models.train_anomaly import fit, to_onnx, training_matrix

    buildings = []
    for seed, scale in ((10, 1.0), (11, 7.0), (12, 0.2)):
        stamps, load = office(8, seed, scale)
        buildings.append(HourlySeries(f"office_{seed}", stamps, load))
    x, y = training_matrix(buildings, UTC, rows_per_building=2000)
    assert to_onnx(fit(x, y, max_iter=40)) == trained[1]


@pytest.fixture(scope="module")
def meter(trained: tuple[Any, bytes]) -> tuple[Any, np.ndarray, np.ndarray, Calibration]:
    """A new office meter (not trained on) calibrated on its first 8 weeks."""
    session = open_session(trained[1])
    stamps, load = office(10, seed=30, scale=2.5)
    calibration = calibrate(load[: 8 * WEEK], stamps[: 8 * WEEK], UTC, session)
    return session, stamps, load, calibration


def _score_at(meter: Any, load: np.ndarray, t: int) -> anomaly.ScoredHours:
    session, stamps, _, calibration = meter
    lo = t - CONTEXT_H
    return score(session, load[lo : t + 1], stamps[lo : t + 1], UTC, calibration)


TUESDAY_14 = 8 * WEEK + 24 + 14


def test_a_normal_week_is_not_flagged(meter: Any) -> None:
    session, stamps, load, calibration = meter
    lo = 9 * WEEK - CONTEXT_H
    scored = score(session, load[lo:], stamps[lo:], UTC, calibration)
    week = slice(-WEEK, None)
    assert not scored.flag[week].any()
    assert np.nanmax(scored.score[week]) < calibration.threshold
    np.testing.assert_allclose(scored.expected[week], load[-WEEK:], rtol=0.15)


def test_a_spike_is_flagged_with_its_ratio(meter: Any) -> None:
    load = meter[2].copy()
    load[TUESDAY_14] *= 3.4
    scored = _score_at(meter, load, TUESDAY_14)
    assert scored.flag[-1]
    assert scored.kind[-1] == "high"
    assert scored.score[-1] > 5 * scored.threshold
    assert scored.reason[-1].startswith("use 3.")
    assert "the usual for Tuesday 14:00 (expected 12" in scored.reason[-1]  # 2.5 x 50 = 125


def test_a_drop_is_flagged(meter: Any) -> None:
    load = meter[2].copy()
    load[TUESDAY_14] *= 0.1
    scored = _score_at(meter, load, TUESDAY_14)
    assert scored.flag[-1]
    assert scored.kind[-1] == "low"
    assert scored.reason[-1].startswith("use 9")  # about 90 % below
    assert "% below the usual for Tuesday 14:00" in scored.reason[-1]


def test_a_stuck_reading_is_flagged_as_flat(meter: Any) -> None:
    load = meter[2].copy()
    start = 8 * WEEK + 24 * 3  # Thursday 00:00, night load
    load[start : start + 9] = 50.0
    scored = _score_at(meter, load, start + 8)
    assert meter[3].flat_limit_h == anomaly.FLAT_MIN_H
    assert scored.flag[-1]
    assert scored.kind[-1] == "flat"
    assert scored.reason[-1] == "reading unchanged at 50 for 9 h"
    assert not scored.flag[-9 : -9 + anomaly.FLAT_MIN_H - 1].any()  # shorter runs are fine


def test_a_zero_run_is_flagged(meter: Any) -> None:
    load = meter[2].copy()
    start = 8 * WEEK + 24 * 5 + 2  # Saturday 02:00
    load[start : start + 5] = 0.0
    scored = _score_at(meter, load, start + 4)
    assert scored.kind[-1] == "zero"
    assert scored.reason[-1] == "no consumption for 5 h"


def test_calibration_comes_from_the_meters_own_history(meter: Any) -> None:
    session, stamps, load, calibration = meter
    assert calibration.threshold >= anomaly.FLOOR
    assert calibration.hours == 8 * WEEK - 24  # hours with a level (>= 24 known before them)
    assert calibration.zero_limit_h == anomaly.ZERO_MIN_H
    assert Calibration.from_dict(json.loads(json.dumps(calibration.to_dict()))) == calibration
    # a water-like meter that reads 0 every night for 6 hours tolerates longer zero runs
    nightly = load[: 8 * WEEK].copy()
    nightly[(np.arange(8 * WEEK) % 24) < 6] = 0.0
    water = calibrate(nightly, stamps[: 8 * WEEK], UTC, session)
    assert water.zero_limit_h == 12
    # a noisier meter gets a wider scale
    noisy = load[: 8 * WEEK] * (1 + 0.2 * np.random.default_rng(5).standard_normal(8 * WEEK))
    assert calibrate(noisy, stamps[: 8 * WEEK], UTC, session).scale > 3 * calibration.scale
    with pytest.raises(CalibrationError, match="at least"):
        calibrate(load[:WEEK], stamps[:WEEK], UTC, session)
    with pytest.raises(CalibrationError, match="anomaly-1"):
        Calibration.from_dict({**calibration.to_dict(), "feature_version": "anomaly-0"})


def _graph(kind: str) -> bytes:
    """A hand-made ONNX model with the right input and a wrong output."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, N_FEATURES])
    if kind == "nan":  # log of a negative number
        nodes = [
            helper.make_node("ReduceSum", ["features"], ["s"], keepdims=1),
            helper.make_node("Abs", ["s"], ["a"]),
            helper.make_node("Neg", ["a"], ["n"]),
            helper.make_node("Constant", [], ["one"], value=helper.make_tensor("c", 1, [], [1.0])),
            helper.make_node("Sub", ["n", "one"], ["m"]),
            helper.make_node("Log", ["m"], ["y"]),
        ]
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])
    else:  # two columns per row
        nodes = [helper.make_node("Identity", ["features"], ["y"])]
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, N_FEATURES])
    graph = helper.make_graph(nodes, "bad", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    data: bytes = model.SerializeToString()
    return data


@pytest.mark.parametrize("kind", ["nan", "shape"])
def test_invalid_model_output_is_detected(kind: str) -> None:
    session = open_session(_graph(kind))
    stamps, load = office(5, seed=40)
    rows = anomaly_features(load, stamps, UTC)[CONTEXT_H:]
    with pytest.raises(InvalidOutput):
        predict(session, rows)


def test_reasons_read_well() -> None:
    assert (
        anomaly.reason("high", measured=41.0, expected=12.1, hour=14, weekday=1)
        == "use 3.4x the usual for Tuesday 14:00 (expected 12.1, measured 41)"
    )
    assert anomaly.reason("flat", measured=5.25, run_h=9) == "reading unchanged at 5.25 for 9 h"
    assert anomaly.reason("zero", measured=0.0, run_h=5) == "no consumption for 5 h"


lead_data = pytest.mark.skipif(
    not (DATA / "README.md").exists(),
    reason="the public data folder ../shared/data (next to the repository) is absent",
)


@lead_data
def test_lead_baseline_figures_and_report() -> None:
    """The naive baseline on the six LEAD buildings (no model needed): figures measured here."""
    lead = load_lead(DATA / "lead_subset")
    report = evaluate(lead, session=None, methods=("rolling_median",))
    median = report.summary("rolling_median")
    assert median["lead_24h"] == pytest.approx(0.672, abs=0.01)
    text = format_report(report)
    assert "lead_118" in text
    assert "median over 6 buildings" in text
    header = text.splitlines()[1].split()
    assert header[-5:] == ["point", "event_12h", "run_12h", "event_24h", "run_24h"]
    assert "event_* = event F1 with tolerance as the LEAD benchmark computes it" in text


@lead_data
def test_shipped_training_reproduces_the_leave_one_building_out_figures() -> None:
    """Trains the shipped model (about 32 s here) and checks its leave-one-building-out card."""
    from models.train_anomaly import train

    card = train(DATA).card
    lobo = card["evaluation"]["leave_one_building_out"]
    assert lobo["model"]["median"]["lead_24h"] == pytest.approx(0.844, abs=0.02)
    assert lobo["model"]["mean"]["lead_24h"] == pytest.approx(0.755, abs=0.02)
    assert lobo["model"]["median"]["lead_24h"] > lobo["rolling_median"]["median"]["lead_24h"]
    assert card["evaluation"]["best_global_grid_point"] == {
        "quantile": anomaly.QUANTILE,
        "floor": anomaly.FLOOR,
    }


def test_the_last_rows_alone_equal_the_whole_computation() -> None:
    rng = np.random.default_rng(5)
    n = CONTEXT_H + 50
    values = 30 + 10 * rng.random(n)
    values[rng.choice(n, 40, replace=False)] = np.nan
    stamps = np.arange(np.datetime64("2024-03-01T00", "h"), np.datetime64("2024-03-01T00", "h") + n)
    calendar = Calendar("Europe/London", "GB", "ENG")
    whole = anomaly_features(values, stamps, calendar)
    for last in (1, 7, n):
        np.testing.assert_array_equal(
            anomaly_features(values, stamps, calendar, last=last), whole[-last:]
        )
