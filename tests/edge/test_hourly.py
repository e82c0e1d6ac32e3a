"""Hourly series from the store's summaries: the values the models see on the gateway."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from edge.clock import Clock
from edge.store import Store
from firmware_bridge.readings import Reading

START = 1_700_000_000 // 3600 * 3600  # on the hour
READS_PER_HOUR = 4


async def write_counter(
    store: Store,
    hourly: Sequence[float],
    *,
    device: str = "main",
    point: str = "import_energy",
    start: int = START,
    absent: Sequence[float] = (),
) -> None:
    """Counter readings four times an hour whose hourly increase is ``hourly``.

    A NaN hour has no readings (the meter did not answer) but the energy ``absent[i]`` of the i-th
    such hour is still used, as it would be: the next reading carries it.
    """
    total = 1000.0
    gaps = iter(absent)
    readings = []
    for hour, kwh in enumerate(hourly):
        if math.isnan(kwh):
            total += next(gaps, 0.0)
            continue
        for k in range(READS_PER_HOUR):
            total += kwh / READS_PER_HOUR
            at = start + hour * 3600 + k * 900 + 1
            readings.append(Reading(device, point, total, "kWh", at, int(at * 1e9)))
    await store.write(readings, [])


async def test_counter_hours_are_the_summaries_deltas_and_a_gap_makes_two_unknown(
    tmp_path: Path,
) -> None:
    counters = frozenset({("main", "import_energy")})
    clock = Clock(synchronised=lambda: True)
    async with Store(tmp_path / "gw.db", gateway_id="gw", counters=counters, clock=clock) as store:
        hourly = [5.0, 7.5, math.nan, 4.0, 6.0, 3.25]
        await write_counter(store, hourly, absent=[9.0])
        await store.summarise(now=START + 7 * 3600, interval_s=900, grace_s=5)
        got = await store.hourly("main", "import_energy", start=START, hours=7, how="delta")
        # hour 0: no period before it is known; hour 2: absent; hour 3: carries hour 2's 9 kWh
        assert math.isnan(got[0])
        assert got[1] == pytest.approx(7.5)
        assert math.isnan(got[2])
        assert math.isnan(got[3])
        assert got[4:6] == pytest.approx([6.0, 3.25])
        assert math.isnan(got[6])  # no readings yet


async def test_gauge_hours_are_count_weighted_means(tmp_path: Path) -> None:
    clock = Clock(synchronised=lambda: True)
    async with Store(tmp_path / "gw.db", gateway_id="gw", clock=clock) as store:
        readings = [
            Reading("weather", "temperature", value, "degC", at, int(at * 1e9))
            for value, at in ((10.0, START + 10), (12.0, START + 1000), (14.0, START + 2000))
        ]
        await store.write(readings, [])
        await store.summarise(now=START + 2 * 3600, interval_s=1800, grace_s=5)
        got = await store.hourly("weather", "temperature", start=START, hours=2, how="mean")
        assert got[0] == pytest.approx(12.0)
        assert math.isnan(got[1])


async def test_unsynchronised_summaries_are_left_out(tmp_path: Path) -> None:
    counters = frozenset({("main", "import_energy")})
    clock = Clock(synchronised=lambda: False)
    async with Store(tmp_path / "gw.db", gateway_id="gw", counters=counters, clock=clock) as store:
        await write_counter(store, [5.0, 5.0, 5.0])
        await store.summarise(now=START + 4 * 3600, interval_s=3600, grace_s=5)
        got = await store.hourly("main", "import_energy", start=START, hours=3, how="delta")
        assert all(math.isnan(v) for v in got)
        # a gateway whose clock never synchronised uses what it has
        got = await store.hourly(
            "main",
            "import_energy",
            start=START,
            hours=3,
            how="delta",
            synced_only=False,
        )
        assert math.isnan(got[0])
        assert got[1:] == pytest.approx([5.0, 5.0])


async def test_an_hourly_history_then_shorter_periods_join_up(tmp_path: Path) -> None:
    """An imported history in hourly summaries, then the gateway's own 15-minute ones."""
    counters = frozenset({("main", "import_energy")})
    clock = Clock(synchronised=lambda: True)
    async with Store(tmp_path / "gw.db", gateway_id="gw", counters=counters, clock=clock) as store:
        await write_counter(store, [2.0, 3.0, 4.0])
        await store.summarise(now=START + 3 * 3600 + 10, interval_s=3600, grace_s=5)
        readings = []
        total = 1009.0
        for k in range(8):  # hours 3 and 4, four readings each
            total += 0.5
            at = START + 3 * 3600 + k * 900 + 1
            readings.append(Reading("main", "import_energy", total, "kWh", at, int(at * 1e9)))
        await store.write(readings, [])
        await store.summarise(now=START + 5 * 3600 + 10, interval_s=900, grace_s=5)
        got = await store.hourly("main", "import_energy", start=START, hours=5, how="delta")
        assert math.isnan(got[0])
        assert got[1:] == pytest.approx([3.0, 4.0, 2.0, 2.0])
