"""A dwelling with a door sensor on the gateway: an outing is not a stop, a return is watched again.

The dwelling of ``test_analytics`` (an electricity and a water meter, eight weeks of history in a
real SQLite store) gets a BLE door sensor, ``flat-door``, named in its ``doors``. Its door events
are stored as the BLE adapter stores them (access events ``opened``/``closed``), in the history
too.
Then, on a Monday afternoon, use stops: right after the door opened (an outing), or with no door
event at all. The gateway runs hour by hour, its alerts going through a real pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edge.alerts import Alert, AlertBook
from edge.analytics import Analytics
from edge.clock import Clock
from edge.config import parse_config
from edge.pipeline import Pipeline
from edge.status import DwellingStatus
from edge.store import Store
from firmware_bridge.events import AccessEvent, AccessEventKind
from nbedge.errors import ConfigError
from tests.edge.test_analytics import CONFIG, NOW_HOUR, START, counter_readings, dwelling_use

DOOR_CONFIG = CONFIG.replace(
    'meters = ["flat:import_energy", "water:volume"]\n',
    'meters = ["flat:import_energy", "water:volume"]\ndoors = ["flat-door"]\n',
) + (
    """
[[ble.sensors]]
name = "flat-door"
mac = "38:39:8F:00:00:01"
"""
)
QUIET_FROM = NOW_HOUR  # 15:00 in London, an hour the flat is usually in use
QUIET_H = 8  # up to 23:00 local
LEFT_AT = QUIET_FROM - 15 * 60  # the door opens at 14:45 local, then no use
BACK_AT = QUIET_FROM + 3 * 3600 + 5 * 60  # and again at 18:05 local: back, and still no use


def door(at: float, event: AccessEventKind = "opened") -> AccessEvent:
    return AccessEvent("flat-door", event, None, at, int(at * 1e9))


def opening(at: float) -> list[AccessEvent]:
    """The door opened, and closed half a minute later, as the sensor reports it."""
    return [door(at), door(at + 30, "closed")]


def history_doors() -> list[AccessEvent]:
    """Out and back in, every morning and evening while the flat is in use, up to a day ago."""
    events = []
    first_day = START // 86_400 + 1
    for day in range(first_day, (NOW_HOUR - 24 * 3600) // 86_400):
        midnight = day * 86_400
        events += opening(midnight + 8 * 3600 + 1200) + opening(midnight + 17 * 3600 + 2400)
    return events


@dataclass
class Afternoon:
    store: Store
    changes: list[Alert]
    analytics: Analytics
    clock: list[float]  # the analytics' wall time, moved by the test

    async def hour(self, epoch: int) -> DwellingStatus:
        """Run the hourly models a minute past ``epoch``; the dwelling's status then."""
        self.clock[0] = epoch + 60.0
        await self.analytics.run_hour()
        return self.analytics.status().dwellings["flat-1"]

    async def raised(self) -> list[Alert]:
        """The ``use_stopped`` alerts raised, once the pipeline has recorded the first."""
        async with asyncio.timeout(10):
            while not any(a.rule == "use_stopped" for a in self.changes):
                await asyncio.sleep(0.05)
        return [a for a in self.changes if a.rule == "use_stopped" and a.event == "raised"]


async def afternoon(tmp_path: Path, doors: list[AccessEvent]) -> AsyncIterator[Afternoon]:
    config = parse_config(DOOR_CONFIG.format(state=tmp_path / "state"))
    kwh, litres = dwelling_use()
    kwh = np.r_[kwh, np.full(QUIET_H, 0.085)]  # a standby load: no use
    litres = np.r_[litres, np.zeros(QUIET_H)]
    readings = counter_readings("flat", "import_energy", "kWh", kwh) + counter_readings(
        "water", "volume", "m3", litres / 1000
    )
    counters = frozenset({("flat", "import_energy"), ("water", "volume")})
    clock = Clock(synchronised=lambda: True)
    async with Store(
        config.database_path, gateway_id="gw-doors", counters=counters, clock=clock
    ) as store:
        await store.write(readings, access=history_doors() + doors)
        await store.summarise(now=QUIET_FROM + QUIET_H * 3600 + 10, interval_s=3600, grace_s=5)
        changes: list[Alert] = []
        pipeline = Pipeline(store, rules=[], book=AlertBook(), on_alert=changes.append)
        writer = asyncio.create_task(pipeline.run())
        now = [float(QUIET_FROM)]
        analytics = Analytics(
            config, store, pipeline, clock=Clock(wall=lambda: now[0], synchronised=lambda: True)
        )
        try:
            await analytics.start()
            yield Afternoon(store, changes, analytics, now)
        finally:
            pipeline.close()
            await writer


@pytest.fixture
async def went_out(tmp_path: Path) -> AsyncIterator[Afternoon]:
    async for running in afternoon(tmp_path, opening(LEFT_AT) + opening(BACK_AT)):
        yield running


@pytest.fixture
async def no_door(tmp_path: Path) -> AsyncIterator[Afternoon]:
    async for running in afternoon(tmp_path, []):
        yield running


def test_a_dwelling_door_that_is_no_ble_sensor_is_refused_with_its_name() -> None:
    text = DOOR_CONFIG.format(state="/tmp/unused").replace(
        'doors = ["flat-door"]', 'doors = ["flat-door", "front-door"]'
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    (issue,) = caught.value.issues  # the configured sensor, flat-door, is accepted
    assert "models.dwellings.0.doors.1: 'front-door' is not a sensor of [[ble.sensors]]" in str(
        issue
    )


async def test_door_openings_are_counted_per_hour_from_the_access_events(
    went_out: Afternoon,
) -> None:
    counts = await went_out.store.hourly_access(
        ["flat-door"], "opened", start=QUIET_FROM - 3600, hours=QUIET_H + 1
    )
    assert counts == [1, 0, 0, 0, 1, 0, 0, 0, 0]  # "closed" is not an opening
    assert await went_out.store.hourly_access(
        ["other"], "opened", start=QUIET_FROM - 3600, hours=2
    ) == [0, 0]


async def test_use_stopping_as_the_door_opens_is_an_outing_and_the_return_is_watched_again(
    went_out: Afternoon,
) -> None:
    # out: use stopped right after the door opened; hours usually in use pass with no alert
    for k in range(1, 4):
        status = await went_out.hour(QUIET_FROM + k * 3600)
        assert status.status == f"presumed out for {k} h (door)"
        assert status.reason == f"presumed out: the door opened, then no use for {k} h"
        assert (status.state, status.quiet_h) == ("away", k)
        assert status.last_door_hour == QUIET_FROM - 3600  # the hour it opened in: 14:00-15:00
    # back at 18:05 local, and still no use: the count starts again from the return
    for k in range(4, QUIET_H + 1):
        status = await went_out.hour(QUIET_FROM + k * 3600)
    assert status.status.startswith("alert: ")
    assert status.state == "alert"
    assert status.last_door_hour == QUIET_FROM + 3 * 3600  # back in the hour from 18:00
    (alert,) = await went_out.raised()  # one episode, one alert: none while presumed out
    assert alert.device == "flat-1"
    assert "no electricity or water use for 2 h since the door opened" in alert.message
    assert alert.raised_params["variant"] == "door"
    assert BACK_AT < alert.raised_at <= BACK_AT + 3 * 3600


async def test_the_same_quiet_afternoon_without_a_door_event_raises_use_stopped(
    no_door: Afternoon,
) -> None:
    for k in range(1, QUIET_H + 1):
        status = await no_door.hour(QUIET_FROM + k * 3600)
        assert not status.status.startswith("presumed out")
        assert status.state != "away"
    last_day = (NOW_HOUR - 24 * 3600) // 86_400 - 1  # its history's evening outing, from 17:40
    assert status.last_door_hour == last_day * 86_400 + 17 * 3600
    (alert,) = await no_door.raised()
    assert "no electricity or water use for 1 h, usually active" in alert.message
    assert alert.raised_at < BACK_AT  # raised while the flat with the door was presumed out
