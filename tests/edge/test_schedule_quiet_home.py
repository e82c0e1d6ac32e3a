"""A quiet home in a whole gateway in virtual time: a check-in, then a visit, on the gateway's
own hourly schedule.

The dwelling of tests/edge/test_analytics.py (an electricity and a water meter, a BLE motion
sensor, eight weeks of history) goes quiet at 11:00 local on a Monday, and its motion sensor sees
nobody from two hours later. The gateway runs on a ``VirtualTime`` clock; each reading reaches
its pipeline as virtual time reaches the moment it was taken, as acquisition would hand it over,
and time is moved across the hours. At each hourly run (``HOUR_DELAY_S`` past the hour) its
alerts are checked: nothing, then ``use_quiet`` ("please check in"), then ``use_stopped`` (a
visit) superseding it, each raised once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from edge.alerts import Alert
from edge.analytics import HOUR_DELAY_S
from edge.clock import Clock
from edge.config import parse_config
from edge.daemon import Gateway, counter_points
from edge.schemas import GatewayConfig
from edge.store import Store
from firmware_bridge.readings import Reading
from sim.radio import SimulatedRadio
from tests.conftest import free_port, wait_until
from tests.edge.test_analytics import (
    MOTION_DWELLING,
    MOTION_SENSOR,
    NOW_HOUR,
    counter_readings,
    dwelling_use,
    motion_readings,
)
from tests.support.clocks import VirtualTime

HOUR = 3600
QUIET_FROM = NOW_HOUR - 4 * HOUR  # 10:00 UTC, 11:00 in London
MORE_H = 2
"""Quiet hours with nobody seen after the history of test_analytics ends (at ``NOW_HOUR``)."""
STARTED = QUIET_FROM + 20 * 60 + 17.5  # 10:20:17.5 UTC

CONFIG = (
    """
[gateway]
id = "gw-quiet"
site = "site-quiet"
state_dir = "{state}"

[mqtt]
enabled = false

[local_api]
enabled = false

[rules.device_silent]
enabled = false

[store]
housekeeping_interval_s = 60
batch_max_delay_s = 0.05

[site]
timezone = "Europe/London"
country = "GB"
subdivision = "ENG"

[[modbus.devices]]
name = "flat"
profile = "eastron_sdm120"
host = "127.0.0.1"
port = {port}
unit_id = 2
poll_interval_s = 5

[[modbus.devices]]
name = "water"
profile = "advantech_adam6050_water"
host = "127.0.0.1"
port = {port}
unit_id = 3
poll_interval_s = 5

[models]
min_history_days = 14

[[models.dwellings]]
meters = ["flat:import_energy", "water:volume"]
"""
    + MOTION_DWELLING
    + MOTION_SENSOR
)


def quiet_home() -> list[Reading]:
    """The dwelling's readings as test_analytics' ``running`` fixture writes them ("later"),
    then ``MORE_H`` hours more of the same quiet; in the order they were taken."""
    kwh, litres = dwelling_use()
    kwh[-4:] = 0.085
    litres[-4:] = 0.0
    moved = (kwh > 0.2).astype(np.float64)
    moved[-4:] = [1.0, 1.0, 0.0, 0.0]
    kwh = np.append(kwh, np.full(MORE_H, 0.085))
    litres = np.append(litres, np.zeros(MORE_H))
    moved = np.append(moved, np.zeros(MORE_H))
    readings = (
        counter_readings("flat", "import_energy", "kWh", kwh.tolist())
        + counter_readings("water", "volume", "m3", (litres / 1000).tolist())
        + motion_readings(moved.tolist())
    )
    return sorted(readings, key=lambda r: r.wall_time)


async def seed(config: GatewayConfig, readings: list[Reading]) -> None:
    """The readings taken before the gateway starts, summarised as it would have."""
    async with Store(
        config.database_path,
        gateway_id=config.gateway.id,
        counters=counter_points(config),
        clock=Clock(synchronised=lambda: True),
    ) as store:
        await store.write(readings, [])
        await store.summarise(now=STARTED, interval_s=HOUR, grace_s=5)


async def hand_over(
    gateway: Gateway, virtual: VirtualTime, readings: deque[Reading], until: float
) -> None:
    """Move virtual time to ``until``, handing each reading to the gateway's pipeline at the
    moment it was taken; they are all written before it returns."""
    pipeline = gateway._pipeline
    assert pipeline is not None
    expected = pipeline.stats().written
    while readings and readings[0].wall_time <= until:
        await virtual.advance(readings[0].wall_time - virtual.time())
        pipeline.submit(readings.popleft())
        expected += 1
    await virtual.advance(until - virtual.time())
    # the writer waits in real time, not on the virtual clock
    await wait_until(lambda: pipeline.stats().written >= expected, timeout_s=10)


def of_the_home(gateway: Gateway) -> dict[str, Alert]:
    """The home's active alerts, by rule."""
    return {
        a.rule: a
        for a in gateway.active_alerts()
        if a.device == "flat-1" and a.condition == "active"
    }


async def recorded(config: GatewayConfig) -> dict[str, list[list[dict[str, Any]]]]:
    """Every alert of the home the store holds, open or closed: by rule, each one's events."""
    async with Store(config.database_path, gateway_id=config.gateway.id) as store:
        alerts = await store.open_alerts() + await store.closed_alerts(0.0)
        events: dict[str, list[list[dict[str, Any]]]] = {}
        for alert in alerts:
            if alert.device == "flat-1":
                events.setdefault(alert.rule, []).append(await store.alert_history(alert.alert_id))
    return events


async def test_a_quiet_home_is_a_check_in_then_a_visit_on_the_hour_as_its_motion_sensor_agrees(
    tmp_path: Path,
) -> None:
    config = parse_config(CONFIG.format(state=tmp_path / "state", port=free_port()))
    readings = quiet_home()
    await seed(config, [r for r in readings if r.wall_time < STARTED])
    to_come = deque(r for r in readings if r.wall_time >= STARTED)
    # some 25,000 steps (the BLE service ticks every second), each made fast; what the store
    # writer does in real time meanwhile is waited for (hand_over)
    virtual = VirtualTime(STARTED, spin_turns=20)
    # a radio with no sensor in range: no adapter is needed, and none is touched
    gateway = Gateway(config, clock=virtual.clock(), scanner_factory=SimulatedRadio([]))
    stop = asyncio.Event()
    running = asyncio.create_task(gateway.run(stop))
    runs: list[tuple[float, dict[str, Alert]]] = []  # each run's time, the home's alerts after
    try:
        await wait_until(
            lambda: (
                gateway.analytics is not None
                and gateway.analytics.stats.runs == 1
                and virtual.asleep({"analytics", "housekeeping", "ble-alerts"})
            ),
            timeout_s=30,
        )
        analytics = gateway.analytics
        assert analytics is not None
        assert analytics.stats.last_run_at == STARTED  # the run at start
        runs.append((STARTED, of_the_home(gateway)))
        for k in range(1, 5 + MORE_H):
            due = QUIET_FROM + k * HOUR + HOUR_DELAY_S
            # an hour's readings are written before the summary pass after it
            await hand_over(gateway, virtual, to_come, due - HOUR_DELAY_S)
            await hand_over(gateway, virtual, to_come, due - 0.5)
            assert analytics.stats.runs == k, f"a run before {due}"
            await virtual.advance(0.5)
            assert analytics.stats.runs == k + 1, f"the run due at {due} did not come"
            assert analytics.stats.last_run_at == due
            runs.append((due, of_the_home(gateway)))
        assert not to_come
        assert analytics.stats.failures == 0
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await running

    # 10:20 and 11:01 UTC: in use, then quiet for 1 h; 12:01: quiet for 2 h, a check-in; from
    # 13:01 the motion sensor has seen nobody for an hour too: a visit
    assert [set(alerts) for _, alerts in runs] == [
        set(),
        set(),
        {"use_quiet"},
        *[{"use_stopped"}] * (2 + MORE_H),
    ]
    (checked_at, checking), (visited_at, visiting) = runs[2], runs[3]
    quiet, stopped = checking["use_quiet"], visiting["use_stopped"]
    assert quiet.raised_at == checked_at < visited_at == stopped.raised_at
    assert quiet.severity == "warning"
    assert "please check in" in quiet.message
    assert quiet.text("zh-Hans")
    assert quiet.text("zh-Hans") != quiet.message
    assert stopped.severity == "critical"
    assert stopped.params["stopped_by"] == "motion"
    assert "no electricity or water use for 3 h and no movement seen for 1 h" in stopped.message
    assert all(a["use_stopped"].alert_id == stopped.alert_id for _, a in runs[3:])

    # as stored: each raised once; the check-in cleared as the visit was raised, superseded
    stored = await recorded(config)
    assert set(stored) == {"use_quiet", "use_stopped"}
    (quiet_events,) = stored["use_quiet"]
    (stopped_events,) = stored["use_stopped"]
    assert [e["event"] for e in quiet_events] == ["raised", "cleared", "resolved"]
    assert [e["event"] for e in stopped_events].count("raised") == 1
    raised, cleared, _ = quiet_events
    assert raised["at"] == checked_at
    assert cleared["at"] == visited_at
    assert cleared["message"] == "flat-1: still quiet; a visit is asked for now"
