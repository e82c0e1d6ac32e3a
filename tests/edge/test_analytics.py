"""The models on the gateway: a real store with eight weeks of history, the shipped bundles.

A building meter, and a dwelling with an electricity and a water meter, are written into a real
SQLite store as counter readings and summarised as the gateway would. The hourly run then scores
and forecasts from the store, and its alerts go through a real pipeline into the store.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edge.alerts import Alert, AlertBook
from edge.analytics import Analytics
from edge.clock import Clock
from edge.config import parse_config
from edge.pipeline import Pipeline
from edge.schemas import GatewayConfig
from edge.store import Store
from firmware_bridge.readings import Reading
from models.calendar import Calendar
from nbedge.errors import InvalidOutput
from tests.support import alerts as support

NOW_HOUR = 1_718_028_000  # Monday 10 June 2024, 14:00 UTC (15:00 in London)
WEEKS = 8
HOURS = WEEKS * 168
START = NOW_HOUR - HOURS * 3600
CALENDAR = Calendar("Europe/London", "GB", "ENG")
GAP = NOW_HOUR - 100 * 3600  # the main meter did not answer for this hour
STAMPS = np.arange(np.datetime64(START // 3600, "h"), np.datetime64(NOW_HOUR // 3600, "h"))


def office_load(seed: int = 3) -> np.ndarray:
    """kWh per hour of an office: a working-day plateau on a base load, with noise."""
    rng = np.random.default_rng(seed)
    local = CALENDAR.local(STAMPS)
    working = (local.weekday < 5) & ~local.holiday & (local.hour >= 8) & (local.hour < 19)
    return 30.0 + 45.0 * working + rng.normal(0, 2.0, HOURS)


def dwelling_use(seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """kWh and litres per hour of a home lived in from 07:00 to 23:00 local, every day."""
    rng = np.random.default_rng(seed)
    local = CALENDAR.local(STAMPS)
    awake = (local.hour >= 7) & (local.hour < 23)
    active = awake & (rng.random(HOURS) < 0.97)
    kwh = 0.08 + rng.uniform(0, 0.02, HOURS) + active * rng.uniform(0.3, 1.2, HOURS)
    litres = np.where(active & (rng.random(HOURS) < 0.9), rng.uniform(5, 60, HOURS), 0.0)
    return kwh, litres


def counter_readings(device: str, point: str, unit: str, hourly: Sequence[float]) -> list[Reading]:
    total = 100.0
    readings = []
    for hour, used in enumerate(hourly):
        for k in range(2):
            total += used / 2
            at = START + hour * 3600 + k * 1800 + 5
            readings.append(Reading(device, point, round(total, 6), unit, at, int(at * 1e9)))
    return readings


def temperature(seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 15 + 6 * np.sin(np.arange(HOURS) / 24 * 2 * np.pi) + rng.normal(0, 1, HOURS)


def gauge_readings(device: str, point: str, unit: str, hourly: Sequence[float]) -> list[Reading]:
    """Three readings an hour whose mean is the hour's value."""
    readings = []
    for hour, value in enumerate(hourly):
        for k, delta in enumerate((-0.5, 0.0, 0.5)):
            at = START + hour * 3600 + k * 1200 + 7
            readings.append(Reading(device, point, value + delta, unit, at, int(at * 1e9)))
    return readings


CONFIG = """
[gateway]
id = "gw-models"
site = "site-models"
state_dir = "{state}"

[mqtt]
enabled = false

[site]
timezone = "Europe/London"
country = "GB"
subdivision = "ENG"

[[modbus.devices]]
name = "main"
profile = "eastron_sdm630"
host = "127.0.0.1"

[[modbus.devices]]
name = "flat"
profile = "eastron_sdm120"
host = "127.0.0.1"
unit_id = 2

[[modbus.devices]]
name = "water"
profile = "advantech_adam6050_water"
host = "127.0.0.1"
unit_id = 3

[models]
bundle_check_interval_s = 1
min_history_days = 14

[[models.demand]]
name = "office"
meters = ["main:import_energy"]
temperature = "main:voltage_l1"  # a gauge standing in for an outdoor thermometer
capacity_kwh = 70

[[models.anomaly]]
meter = "main:import_energy"

[[models.dwellings]]
name = "flat-1"
meters = ["flat:import_energy", "water:volume"]
"""


MOTION_DWELLING = """name = "flat-1"
motion = ["flat-1-motion"]
stopped_after_h = 12
"""
MOTION_SENSOR = """
[[ble.sensors]]
name = "flat-1-motion"
kind = "motion"
mac = "A4:C1:38:00:00:01"
"""


def motion_readings(moved: Sequence[float]) -> list[Reading]:
    """A Shelly BLU Motion's ``motion`` state: 1 as it sees someone in an hour, 0 a while
    after; only 0 in the hours it saw nobody."""
    readings = []
    for hour, seen in enumerate(moved):
        for k, state in enumerate((seen, 0.0)):
            at = START + hour * 3600 + k * 1500 + 11
            readings.append(Reading("flat-1-motion", "motion", state, "", at, int(at * 1e9)))
    return readings


@dataclass
class Running:
    config: GatewayConfig
    store: Store
    pipeline: Pipeline
    book: AlertBook
    changes: list[Alert]
    analytics: Analytics
    now: list[float]
    """The analytics' wall clock: a test may move it."""


@pytest.fixture
async def running(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Running]:
    text = CONFIG.format(state=tmp_path / "state")
    # when parametrised: the dwelling's respond, or what its motion sensor saw in the quiet hours
    param = getattr(request, "param", None)
    motion = param if param in ("later", "moving") else None
    if param in ("within_3h", "calibrated"):
        text = text.replace('name = "flat-1"\n', f'name = "flat-1"\nrespond = "{param}"\n')
    if motion is not None:
        text = text.replace('name = "flat-1"\n', MOTION_DWELLING) + MOTION_SENSOR
    config = parse_config(text)
    office = office_load()
    office[-1] *= 4.0  # the hour that just ended: four times the usual
    kwh, litres = dwelling_use()
    kwh[-4:] = 0.085  # quiet for the four hours from 11:00 local, usually active ones
    litres[-4:] = 0.0
    readings = (
        gauge_readings("main", "voltage_l1", "V", temperature())
        + counter_readings("main", "import_energy", "kWh", office)
        + counter_readings("flat", "import_energy", "kWh", kwh)
        + counter_readings("water", "volume", "m3", litres / 1000)
    )
    if motion is not None:
        moved = (kwh > 0.2).astype(np.float64)  # seen moving in the hours of use
        moved[-4:] = {"later": [1.0, 1.0, 0.0, 0.0], "moving": 1.0}[motion]
        readings += motion_readings(moved)
    readings = [r for r in readings if not (r.device == "main" and GAP <= r.wall_time < GAP + 3600)]
    counters = frozenset(
        {("main", "import_energy"), ("flat", "import_energy"), ("water", "volume")}
    )
    clock = Clock(synchronised=lambda: True)
    async with Store(
        config.database_path, gateway_id="gw-models", counters=counters, clock=clock
    ) as store:
        await store.write(readings, [])
        await store.summarise(now=NOW_HOUR + 10, interval_s=3600, grace_s=5)
        book = AlertBook()
        changes: list[Alert] = []
        pipeline = Pipeline(store, rules=[], book=book, on_alert=changes.append)
        writer = asyncio.create_task(pipeline.run())
        now = [NOW_HOUR + 60.0]
        analytics = Analytics(
            config,
            store,
            pipeline,
            clock=Clock(wall=lambda: now[0], synchronised=lambda: True),
        )
        try:
            yield Running(config, store, pipeline, book, changes, analytics, now)
        finally:
            pipeline.close()
            await writer


async def settled(running: Running, rule: str) -> None:
    async with asyncio.timeout(10):
        while not any(a.rule == rule for a in running.changes):
            await asyncio.sleep(0.05)


async def test_a_spike_in_the_building_raises_unusual_use_with_its_reason(running: Running) -> None:
    analytics = running.analytics
    await analytics.start()
    await analytics.run_hour()
    await settled(running, "unusual_use")
    meter = analytics.status().meters["main:import_energy"]
    assert meter.status.startswith("unusual: use ")
    assert meter.score > 6.0
    raised = [a for a in running.changes if a.rule == "unusual_use"]
    assert len(raised) == 1
    assert raised[0].device == "main"
    assert "the usual for Monday 14:00" in raised[0].message  # 13:00 UTC is 14:00 in London
    assert math.isclose(raised[0].value, meter.score)


async def test_a_dwelling_quiet_for_hours_it_is_usually_active_raises_use_stopped(
    running: Running,
) -> None:
    analytics = running.analytics
    await analytics.start()
    await analytics.run_hour()
    await settled(running, "use_stopped")
    (alert,) = [a for a in running.changes if a.rule == "use_stopped"]
    assert alert.severity == "critical"
    assert alert.device == "flat-1"
    assert alert.message.startswith("flat-1: no electricity or water use for 4 h, usually active")
    assert alert.text("zh-Hans").startswith("flat-1：已 4 小时无用电和用水")
    assert alert.needs_person  # critical: a person resolves it, not the clearing
    dwelling = analytics.status().dwellings["flat-1"]
    assert dwelling.status.startswith("alert: ")
    assert (dwelling.state, dwelling.quiet_h) == ("alert", 4.0)
    assert dwelling.last_door_hour is None  # it has no door sensor
    assert dwelling.threshold >= 3.0  # calibrated, capped to answer within 3 h (below)
    assert dwelling.respond == "within_3h"
    # what each choice would cost it, from its own history
    within, calibrated = dwelling.choices["within_3h"], dwelling.choices["calibrated"]
    assert dwelling.threshold == within.threshold
    assert calibrated.threshold >= dwelling.threshold
    assert dwelling.past_alarms_per_month == within.past_alarms_per_month >= 0
    assert dwelling.response_h == within.response_h <= 3
    assert calibrated.response_h >= dwelling.response_h
    # the next hour with use clears it


@pytest.mark.parametrize("running", ["later"], indirect=True)
async def test_a_quiet_home_is_a_check_in_then_a_visit_when_its_motion_sensor_agrees(
    running: Running,
) -> None:
    # use stops 4 h ago, and the motion sensor sees nobody 2 h later: hour by hour from the first
    analytics = running.analytics
    running.now[0] -= 3 * 3600
    await analytics.start()
    seen = []
    for _ in range(4):
        await analytics.run_hour()
        await asyncio.sleep(0.2)  # the pipeline writes the findings
        seen.append(analytics.status().dwellings["flat-1"].state)
        running.now[0] += 3600
    assert seen == ["quiet", "quiet", "alert", "alert"]
    await settled(running, "use_stopped")
    (alert,) = [a for a in running.changes if a.rule == "use_stopped"]
    assert alert.severity == "critical"
    assert alert.params["stopped_by"] == "motion"
    assert "no electricity or water use for 3 h and no movement seen for 1 h" in alert.message
    assert "1 小时未感应到有人活动" in alert.text("zh-Hans")
    # the check-in came first, and the visit superseded it
    quiet = [a for a in running.changes if a.rule == "use_quiet"]
    assert quiet
    assert quiet[0].severity == "warning"
    assert "please check in" in quiet[0].message
    assert running.changes.index(quiet[0]) < running.changes.index(alert)
    assert not [a for a in running.book.active() if a.rule == "use_quiet"]
    (handed_over,) = [a for a in running.changes if a.rule == "use_quiet" and a.event == "cleared"]
    assert handed_over.message == "flat-1: still quiet; a visit is asked for now"
    assert handed_over.text("zh-Hans") == "flat-1：仍无用水用电，现已改为请上门查看"
    dwelling = analytics.status().dwellings["flat-1"]
    assert dwelling.state == "alert"
    assert analytics.dwellings["flat-1"].detector.presence is not None


@pytest.mark.parametrize("running", ["later"], indirect=True)
async def test_a_start_that_replays_both_stages_raises_them_in_order_once(
    running: Running,
) -> None:
    analytics = running.analytics
    await analytics.start()
    await analytics.run_hour()  # the first run replays the day: check-in, then visit
    await settled(running, "use_stopped")
    raised = [(a.rule, a.condition) for a in running.changes if a.rule.startswith("use_")]
    assert raised[:3] == [
        ("use_quiet", "active"),
        ("use_stopped", "active"),
        ("use_quiet", "cleared"),
    ]
    (quiet,) = [a for a in running.changes if a.rule == "use_quiet" and a.condition == "active"]
    assert quiet.params["hours_quiet"] == 2.0  # as it was when the check-in was due
    assert "stopped_by" not in quiet.params
    # a restart during the visit: the day is replayed again, and no check-in is raised anew
    before = len(running.changes)
    again = Analytics(
        running.config,
        running.store,
        running.pipeline,
        clock=Clock(wall=lambda: running.now[0], synchronised=lambda: True),
    )
    await again.start()
    await again.run_hour()
    await asyncio.sleep(0.2)
    assert [a.rule for a in running.changes[before:] if a.rule.startswith("use_")] == []
    assert again.status().dwellings["flat-1"].state == "alert"


@pytest.mark.parametrize("running", ["moving"], indirect=True)
async def test_a_quiet_home_where_someone_moves_about_is_a_check_in(running: Running) -> None:
    analytics = running.analytics
    await analytics.start()
    await analytics.run_hour()
    await settled(running, "use_quiet")
    (alert,) = [a for a in running.changes if a.rule == "use_quiet"]
    assert alert.severity == "warning"
    assert alert.device == "flat-1"
    # someone moves about: no visit before the 12 quiet hours the config allows
    assert not any(a.rule == "use_stopped" for a in running.changes)
    dwelling = analytics.status().dwellings["flat-1"]
    assert dwelling.status.startswith("please check in: ")
    assert dwelling.state == "quiet"


@pytest.mark.parametrize("running", ["calibrated"], indirect=True)
async def test_a_dwelling_that_responds_calibrated_uses_its_uncapped_threshold(
    running: Running,
) -> None:
    analytics = running.analytics
    await analytics.start()
    await analytics.run_hour()
    dwelling = analytics.status().dwellings["flat-1"]
    assert dwelling.respond == "calibrated"
    calibrated = dwelling.choices["calibrated"]
    assert dwelling.threshold == calibrated.threshold
    assert dwelling.past_alarms_per_month == calibrated.past_alarms_per_month
    assert dwelling.response_h == calibrated.response_h
    detector = analytics.dwellings["flat-1"].detector
    assert detector.model.params.respond == "calibrated"
    assert detector.model.threshold == detector.model.calibration["calibrated"]


def write_state_bundle(
    running: Running, key: Path, onnx: bytes, *, feature_version: str, rows: np.ndarray
) -> Path:
    """A bundle signed with ``key`` in the gateway's state folder, as an operator puts one."""
    from models.bundle import TrainedModel, build_card, load_private_key, write_bundle
    from models.runtime import open_session

    output = open_session(onnx).run(None, {"features": rows})[0].reshape(-1)
    trained = TrainedModel(
        "anomaly",
        onnx,
        {
            "kind": "anomaly",
            "feature_version": feature_version,
            "inputs": [f"f{i}" for i in range(rows.shape[1])],
            "output": "expected value / level",
        },
    )
    card = build_card(
        trained, version="test", check_features=rows.tolist(), check_output=output.tolist()
    )
    folder = running.config.gateway.state_dir / "models" / "anomaly"
    return write_bundle(folder, onnx, card, load_private_key(key))


async def test_a_new_bundle_swaps_in_a_bad_one_is_refused_and_invalid_output_rolls_back(
    tmp_path: Path,
) -> None:
    pytest.importorskip("sklearn")
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LinearRegression

    from models import anomaly
    from models.bundle import generate_key
    from models.train_anomaly import fit, to_onnx

    key = tmp_path / "operator.pem"
    public = generate_key(key)
    config = parse_config(
        CONFIG.format(state=tmp_path / "state").replace(
            "[models]\n", f'[models]\ntrusted_keys = ["{public}"]\n'
        )
    )
    rng = np.random.default_rng(0)
    x = rng.normal(1, 0.3, size=(400, anomaly.N_FEATURES)).astype(np.float32)
    y = x[:, 3] * 0.5 + x[:, 7] * 0.5
    clock = Clock(synchronised=lambda: True)
    async with Store(config.database_path, gateway_id="gw", clock=clock) as store:
        pipeline = Pipeline(store, rules=[], book=AlertBook(), on_alert=lambda _: None)
        analytics = Analytics(
            config,
            store,
            pipeline,
            clock=Clock(wall=lambda: NOW_HOUR + 60.0, synchronised=lambda: True),
        )
        running = Running(config, store, pipeline, AlertBook(), [], analytics, [NOW_HOUR + 60.0])
        await analytics.start()
        slot = analytics.slots["anomaly"]
        assert slot.active is not None
        shipped = slot.active.bundle.card.sha256

        # a new model, signed by a trusted key, replaces the shipped one without a restart
        write_state_bundle(
            running, key, to_onnx(fit(x, y)), feature_version="anomaly-1", rows=x[:8]
        )
        await analytics.check_bundles()
        assert slot.active.bundle.card.sha256 != shipped
        new = slot.active.bundle.card.sha256
        assert analytics.status().models["anomaly"].swaps == 2

        # one made for other features is refused; the new one stays in use
        write_state_bundle(
            running, key, to_onnx(fit(x, y * 2)), feature_version="anomaly-0", rows=x[:8]
        )
        await analytics.check_bundles()
        assert slot.active.bundle.card.sha256 == new
        status = analytics.status()
        assert status.bundles_refused == 1
        assert "feature version 'anomaly-0'" in status.bundle_errors[-1]

        # one that loads but answers NaN to the features of a real hour (a linear model knows
        # nothing of missing lags) is taken, then dropped at its first invalid output
        linear = LinearRegression().fit(x, y)
        onnx = convert_sklearn(
            linear,
            initial_types=[("features", FloatTensorType([None, anomaly.N_FEATURES]))],
            target_opset={"": 17, "ai.onnx.ml": 3},
        ).SerializeToString()
        write_state_bundle(running, key, bytes(onnx), feature_version="anomaly-1", rows=x[:8])
        await analytics.check_bundles()
        assert slot.active.bundle.card.version == "test"
        nan_row = x[:1].copy()
        nan_row[0, 3] = np.nan
        with pytest.raises(InvalidOutput):
            slot.run(nan_row)
        assert slot.active.bundle.card.sha256 == new
        assert analytics.status().models["anomaly"].rollbacks == 1


async def test_the_gateway_feeds_the_demand_model_what_training_computes_on_the_same_history(
    running: Running,
) -> None:
    from models import demand
    from models.series import HourlySeries

    series = running.config.models.demand[0]
    history, temps = await running.analytics.demand_inputs(series, NOW_HOUR)
    gateway = demand.demand_features(history, temps, np.datetime64(NOW_HOUR // 3600, "h"), CALENDAR)
    assert gateway is not None
    # The same history as a training series: the hour with no readings is missing, and so is the
    # hour after it, whose counter step holds both hours' energy (edge.store.hourly).
    office = office_load()
    office[-1] *= 4.0
    gap = (GAP - START) // 3600
    office[gap : gap + 2] = np.nan
    temps_known = temperature()
    temps_known[gap] = np.nan
    training = HourlySeries("office", STAMPS, office, temps_known)
    rows, level, _, _ = demand.series_rows(training, CALENDAR, np.array([len(STAMPS)]))
    assert np.isnan(history[-100:-98]).all()
    # Equal up to float32 rounding: the store's hours are differences of a counter's running
    # total (kept to 6 decimals, like a meter register), so they differ from the exact values by
    # up to a micro-kWh, which can flip the last bit of a float32 feature. Missing features
    # (NaN) are in the same places.
    np.testing.assert_allclose(gateway[0], rows, rtol=1e-6, atol=0)
    assert gateway[1] == pytest.approx(level[0], rel=1e-9)


async def test_forecasts_are_stored_for_the_central_api_compared_and_checked_against_capacity(
    running: Running,
) -> None:
    from edge.store.forecasts import Forecast
    from models.metrics import cv_rmse

    office = office_load()
    earlier = NOW_HOUR - 48 * 3600
    actual = office[-48:-24]
    await running.store.write_forecast(
        Forecast("office", earlier - 60, earlier, tuple(actual * 1.1), "earlier model", 70.0)
    )
    analytics = running.analytics
    await analytics.start()
    await analytics.run_hour()
    await settled(running, "demand_capacity")
    status = analytics.status().demand["office"]
    forecast = status.forecast
    assert forecast.start == NOW_HOUR
    assert len(forecast.kwh) == 24
    assert all(v >= 0 for v in forecast.kwh)
    # the office's working hours (09:00-18:00 local) are forecast well above its nights
    assert max(forecast.kwh) > 1.5 * min(forecast.kwh)
    assert status.cv_rmse_7d == pytest.approx(cv_rmse(actual, actual * 1.1))
    stored = await running.store.forecasts("office", NOW_HOUR)
    assert [f.values for f in stored] == [forecast.kwh]
    assert (await running.store.stats()).outbox["forecast"] == 2  # for the central API
    (alert,) = [a for a in running.changes if a.rule == "demand_capacity"]
    assert "above the capacity of 70 kWh" in alert.message
    assert alert.value == pytest.approx(max(forecast.kwh))


async def test_an_unusual_use_alert_reloaded_after_a_restart_clears_after_three_usual_hours(
    tmp_path: Path,
) -> None:
    config = parse_config(CONFIG.format(state=tmp_path / "state"))
    readings = counter_readings("main", "import_energy", "kWh", office_load())  # no spike
    async with Store(
        config.database_path,
        gateway_id="gw-models",
        counters=frozenset({("main", "import_energy")}),
        clock=Clock(synchronised=lambda: True),
    ) as store:
        await store.write(readings, [])
        await store.summarise(now=NOW_HOUR + 10, interval_s=3600, grace_s=5)
        # The gateway stopped with an unusual_use alert raised; its book comes back from the store.
        before = AlertBook()
        earlier = support.raise_alert(
            before,
            rule="unusual_use",
            device="main",
            point="main:import_energy",
            at=NOW_HOUR - 5 * 3600,
            params={"variant": "zero", "run_h": 5},
        )
        await store.write([], [earlier])
        book = AlertBook(await store.open_alerts())
        changes: list[Alert] = []
        pipeline = Pipeline(store, rules=[], book=book, on_alert=changes.append)
        writer = asyncio.create_task(pipeline.run())
        now = [0.0]
        analytics = Analytics(
            config, store, pipeline, clock=Clock(wall=lambda: now[0], synchronised=lambda: True)
        )
        try:
            await analytics.start()
            for k in (2, 1, 0):  # three usual hours, each scored a minute after it ended
                now[0] = NOW_HOUR - k * 3600 + 60.0
                await analytics.run_hour()
            async with asyncio.timeout(10):
                while not any(c.event == "cleared" for c in changes):
                    await asyncio.sleep(0.05)
        finally:
            pipeline.close()
            await writer
        reopened = await store.open_alerts()
    [cleared] = [c for c in changes if c.event == "cleared"]
    assert cleared.alert_id == earlier.alert_id
    assert cleared.message == "main:import_energy: usual use again for 3 h"
    assert [a.rule for a in reopened] == ["demand_capacity"]  # not unusual_use: resolved auto
