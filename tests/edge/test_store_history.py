"""A point's history for the console's charts, on real SQLite files: hourly buckets across
summarised and unsummarised time, gaps, counters' consumption, the bounds, unknown points, and a
whole gateway's ``meter_history``."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from edge.daemon import Gateway
from edge.schemas import GatewayConfig
from edge.store import Store
from edge.store.history import MAX_RECENT, Bucket, History
from firmware_bridge.readings import Reading
from sim.modbus_server import SimulatedBuilding, meters_for
from tests.edge.test_clock import NS
from tests.test_end_to_end import eventually

HOUR = 3600
H0 = 1_800_000_000 // HOUR * HOUR  # an hour boundary
COUNTERS = frozenset({("m1", "import_energy")})


def volts(hour: int, minute: int) -> float:
    """A voltage that tells its hour: 220 + hour, +1 on odd minutes."""
    return 220.0 + hour + minute % 2


def gauge_readings(hours: Sequence[int], minutes: int = 60) -> list[Reading]:
    return [
        Reading("m1", "voltage_l1", volts(h, m), "V", at, int(at * NS))
        for h in hours
        for m in range(minutes)
        for at in [H0 + h * HOUR + m * 60]
    ]


def energy_readings(
    hours: Sequence[int], *, kwh_per_hour: float = 2.0, minutes: int = 60, total: float = 1000.0
) -> list[Reading]:
    """An energy register read every minute, rising ``kwh_per_hour`` an hour; an hour left out
    still uses energy, which the next reading shows."""
    readings = []
    for h in hours:
        for m in range(minutes):
            at = H0 + h * HOUR + m * 60
            total_at = total + (h * 60 + m + 1) * kwh_per_hour / 60
            readings.append(Reading("m1", "import_energy", total_at, "kWh", at, int(at * NS)))
    return readings


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    async with Store(tmp_path / "gw.db", gateway_id="gw", counters=COUNTERS) as opened:
        yield opened


def figures(bucket: Bucket) -> tuple[float, int, float | None, float | None, float | None]:
    return (bucket.start, bucket.count, bucket.min, bucket.max, bucket.last)


async def test_a_gauge_has_hours_from_the_summaries_and_from_the_readings_not_summarised(
    store: Store,
) -> None:
    await store.write(gauge_readings([0, 1, 2]) + gauge_readings([3], minutes=30))
    assert await store.summarise(now=H0 + 3 * HOUR + 1800, interval_s=HOUR) == 3
    until = H0 + 3 * HOUR + 1800

    history = await store.meter_history("m1", "voltage_l1", since=H0, until=until)

    assert (history.unit, history.kind, history.since, history.until) == ("V", "gauge", H0, until)
    assert [figures(b) for b in history.hours] == [
        (H0, 60, 220.0, 221.0, 221.0),
        (H0 + HOUR, 60, 221.0, 222.0, 222.0),
        (H0 + 2 * HOUR, 60, 222.0, 223.0, 223.0),
        (H0 + 3 * HOUR, 30, 223.0, 224.0, 224.0),  # the current hour so far, from raw readings
    ]
    assert [b.mean for b in history.hours] == pytest.approx([220.5, 221.5, 222.5, 223.5])
    assert all(b.delta is None for b in [*history.hours, *history.recent])
    assert history.hours[-1].end == H0 + 4 * HOUR > until
    # The half hour not summarised, a bucket a minute.
    assert [(b.start, b.count, b.last) for b in history.recent] == [
        (H0 + 3 * HOUR + m * 60, 1, volts(3, m)) for m in range(30)
    ]
    assert (history.min, history.max) == (220.0, 224.0)
    assert history.latest is not None
    assert (history.latest.value, history.latest.at) == (224.0, H0 + 3 * HOUR + 29 * 60)


async def test_an_hour_reads_the_same_before_and_after_it_is_summarised(store: Store) -> None:
    await store.write(gauge_readings([0, 1]) + energy_readings([0, 1]))
    until = H0 + 2 * HOUR + 10
    raw = [
        await store.meter_history("m1", point, since=H0, until=until)
        for point in ("voltage_l1", "import_energy")
    ]
    assert await store.summarise(now=until, interval_s=HOUR) == 4
    summarised = [
        await store.meter_history("m1", point, since=H0, until=until)
        for point in ("voltage_l1", "import_energy")
    ]

    for before, after in zip(raw, summarised, strict=True):
        assert len(before.recent) == 120
        assert after.recent == []
        assert [figures(b) for b in before.hours] == [figures(b) for b in after.hours]
        assert [b.mean for b in before.hours] == pytest.approx([b.mean for b in after.hours])
        assert (before.min, before.max, before.latest) == (after.min, after.max, after.latest)
    # The first hour of a new meter has nothing before it to join: its use is not known.
    assert [b.delta for b in summarised[1].hours] == [None, pytest.approx(2.0), None]


async def test_a_counter_charts_its_use_per_hour_and_a_gap_makes_the_next_hour_unknown(
    store: Store,
) -> None:
    # Hour 2 has no reading (the meter was away) but used energy all the same.
    await store.write(energy_readings([-1, 0, 1, 3]) + energy_readings([4], minutes=30))
    await store.summarise(now=H0 + 4 * HOUR + 1800, interval_s=HOUR)
    until = H0 + 4 * HOUR + 1800

    history = await store.meter_history("m1", "import_energy", since=H0, until=until)

    assert (history.unit, history.kind) == ("kWh", "counter")
    assert [b.count for b in history.hours] == [60, 60, 0, 60, 30]
    assert [b.delta for b in history.hours] == [
        pytest.approx(2.0),  # joins the hour before the window
        pytest.approx(2.0),
        None,  # no reading
        None,  # carries hour 2's energy too: it cannot be placed in one hour
        pytest.approx(1.0),  # this half hour, from the readings not summarised
    ]
    # The register's value is there too, for whoever wants the reading itself.
    assert history.hours[1].last == pytest.approx(1000.0 + 120 * 2.0 / 60)
    assert history.hours[2].mean is None
    assert sum(b.delta or 0 for b in history.recent) == pytest.approx(1.0)
    assert history.latest is not None
    assert history.latest.value == pytest.approx(1000.0 + (4 * 60 + 30) * 2.0 / 60)


async def test_a_counter_reset_is_no_negative_use(store: Store) -> None:
    before = energy_readings([0])
    after = energy_readings([1], total=-2.0)  # the meter was replaced: it starts near 0
    await store.write(before + after)

    history = await store.meter_history("m1", "import_energy", since=H0, until=H0 + 2 * HOUR)

    assert history.hours[1].delta == pytest.approx(2.0 - 2.0 / 60)  # all but the reset step
    assert all(b.delta is not None and b.delta >= 0 for b in history.recent)


async def test_a_fast_meter_tail_is_thinned_and_the_window_is_whole_hours(store: Store) -> None:
    at = [H0 + k * 5.0 for k in range(2 * 720)]  # every 5 s for two hours, nothing summarised
    await store.write([Reading("m1", "voltage_l1", 230.0, "V", t, int(t * NS)) for t in at])

    history = await store.meter_history("m1", "voltage_l1", since=H0 + 1234, until=at[-1] + 1)

    assert history.since == H0  # rounded down to the hour
    assert [b.count for b in history.hours] == [720, 720]
    assert len(history.recent) <= MAX_RECENT
    assert sum(b.count for b in history.recent) == 2 * 720
    assert all((b.end - b.start) % 60 == 0 and b.start % 60 == 0 for b in history.recent)
    few = await store.meter_history("m1", "voltage_l1", since=H0, until=at[-1] + 1, max_recent=10)
    assert len(few.recent) <= 10
    assert sum(b.count for b in few.recent) == 2 * 720
    with pytest.raises(ValueError, match="since"):
        await store.meter_history("m1", "voltage_l1", since=H0, until=H0)
    with pytest.raises(ValueError, match="168 hours"):
        await store.meter_history("m1", "voltage_l1", since=H0, until=H0 + 168 * HOUR + 1)
    week = await store.meter_history("m1", "voltage_l1", since=H0, until=H0 + 168 * HOUR)
    assert len(week.hours) == 168
    with pytest.raises(ValueError, match="max_recent"):
        await store.meter_history("m1", "voltage_l1", since=H0, until=H0 + 1, max_recent=1)


async def test_a_week_comes_from_the_summaries_once_the_raw_readings_are_gone(
    store: Store,
) -> None:
    at = [H0 + k * 900.0 for k in range(8 * 96)]  # every 15 minutes for eight days
    await store.write([Reading("m1", "voltage_l1", 230.0, "V", t, int(t * NS)) for t in at])
    now = H0 + 8 * 86_400 + 10
    await store.summarise(now=now, interval_s=HOUR)
    assert await store.prune(now=now, retention_s=60) == len(at)

    # as the gateway asks: the current hour and the 167 before it
    since = now // HOUR * HOUR - 167 * HOUR
    week = await store.meter_history("m1", "voltage_l1", since=since, until=now)
    hour = await store.meter_history("m1", "voltage_l1", since=now - 1, until=now)

    assert len(week.hours) == 168
    assert [b.count for b in week.hours] == [4] * 167 + [0]  # the hour that just began is empty
    assert (week.min, week.max, week.recent) == (230.0, 230.0, [])
    assert week.latest is not None
    assert (week.latest.value, week.latest.at) == (230.0, at[-1])  # kept after its reading went
    assert hour.latest is None  # nothing yet this hour
    assert [b.count for b in hour.hours] == [0]


async def test_an_unknown_device_or_point_is_a_key_error(store: Store) -> None:
    await store.write(gauge_readings([0], minutes=1))
    with pytest.raises(KeyError, match="m2/voltage_l1"):
        await store.meter_history("m2", "voltage_l1", since=H0, until=H0 + HOUR)
    with pytest.raises(KeyError, match="m1/voltage_l9"):
        await store.meter_history("m1", "voltage_l9", since=H0, until=H0 + HOUR)


async def test_the_history_reads_no_table_in_full(tmp_path: Path) -> None:
    statements: list[str] = []

    class Traced(sqlite3.Connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.set_trace_callback(statements.append)

    path = tmp_path / "gw.db"
    async with Store(path, gateway_id="gw", counters=COUNTERS, connection_factory=Traced) as store:
        await store.write(energy_readings([0, 1]))
        await store.summarise(now=H0 + HOUR + 10, interval_s=HOUR)
        statements.clear()
        await store.meter_history("m1", "import_energy", since=H0, until=H0 + 2 * HOUR)
        await store.latest_readings()
        read = list(statements)

    conn = sqlite3.connect(path)
    try:
        plans = {
            sql: [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
            for sql in read
            if sql.lstrip().upper().startswith("SELECT")
        }
    finally:
        conn.close()
    steps = [(sql, step) for sql, plan in plans.items() for step in plan]
    on_readings = [step for _, step in steps if step.split()[1] == "readings"]
    on_summaries = [step for _, step in steps if step.split()[1] == "summaries"]
    # readings only by a range of ids (the ones not summarised, or not in point_latest yet)
    assert on_readings
    assert all(s == "SEARCH readings USING INTEGER PRIMARY KEY (rowid>?)" for s in on_readings)
    assert on_summaries
    by_period = "SEARCH summaries USING INDEX summaries_by_period"
    assert all(s.startswith(by_period) for s in on_summaries)
    # point_latest (one row per point) and the small keyed tables may be read whole
    assert {step.split()[1] for _, step in steps} <= {
        "readings",
        "summaries",
        "point_latest",
        "point_last",
        "meta",
        "TEMP",
    }


async def test_a_running_gateway_serves_the_history_of_its_meters(tmp_path: Path) -> None:
    meters = meters_for({1: "eastron_sdm630"}, start=datetime.now())
    async with SimulatedBuilding(meters, port=0, update_interval_s=0.1) as building:
        config = GatewayConfig.model_validate(
            {
                "gateway": {"id": "gw", "site": "site", "state_dir": str(tmp_path / "gw")},
                "store": {"batch_max_delay_s": 0.05},
                "mqtt": {"enabled": False},
                "local_api": {"enabled": False},
                "modbus": {
                    "devices": [
                        {
                            "name": "meter-1",
                            "profile": "eastron_sdm630",
                            "unit_id": 1,
                            "host": "127.0.0.1",
                            "port": building.port,
                            "poll_interval_s": 0.1,
                        }
                    ]
                },
            }
        )
        gateway = Gateway(config)
        stop = asyncio.Event()
        running = asyncio.create_task(gateway.run(stop))
        try:
            await asyncio.wait_for(gateway.ready.wait(), 10)
            await eventually(lambda: gateway.latest_readings(), 5, "no readings")

            volts: History = await gateway.meter_history("meter-1", "voltage_l1", 24)
            energy = await gateway.meter_history("meter-1", "import_energy", 168)
            with pytest.raises(KeyError):
                await gateway.meter_history("meter-1", "no_such_point", 24)
            with pytest.raises(KeyError):
                await gateway.meter_history("meter-9", "voltage_l1", 24)
            for hours in (0, 169):
                with pytest.raises(ValueError, match="hours"):
                    await gateway.meter_history("meter-1", "voltage_l1", hours)
        finally:
            stop.set()
            await asyncio.wait_for(running, 10)

    assert (volts.unit, volts.kind, len(volts.hours)) == ("V", "gauge", 24)
    assert (energy.unit, energy.kind, len(energy.hours)) == ("kWh", "counter", 168)
    assert sum(b.count for b in volts.hours) > 0
    assert volts.recent
    assert volts.latest is not None
    assert 180 < volts.latest.value < 280
    assert volts.since == volts.hours[0].start
    assert volts.since % HOUR == 0
    body = volts.model_dump(mode="json")  # what the local API sends
    assert set(body) >= {"device", "point", "unit", "kind", "hours", "recent", "latest"}
