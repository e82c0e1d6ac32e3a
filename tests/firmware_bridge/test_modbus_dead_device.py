"""One dead device among 20 on one Modbus TCP endpoint never delays the others by more than its
own timeout; a rebooting or slow meter is survived. Real pymodbus server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import datetime
from itertools import pairwise

import pytest

from firmware_bridge.modbus.bus import DeviceSpec, DeviceStateChange, ModbusTcpBus
from firmware_bridge.modbus.profiles import load_profile
from firmware_bridge.readings import Reading
from sim.modbus_server import SimulatedBuilding, meters_for
from tests.firmware_bridge.test_modbus_bus import running, wait_until

SDM120 = load_profile("eastron_sdm120")
START = datetime(2024, 5, 6, 19, 0)

pytestmark = pytest.mark.timeout(30)

LIVE = range(1, 20)  # units 1..19 answer
DEAD = 20  # served by nobody, on a server that stays mute for unknown units
INTERVAL_S = 0.2
TIMEOUT_S = 0.2
WINDOW_S = 3.0


def poll_times(readings: list[Reading], device: str, since_ns: int) -> list[int]:
    return sorted(
        {r.monotonic_ns for r in readings if r.device == device and r.monotonic_ns >= since_ns}
    )


def polls_in(readings: list[Reading], device: str, since_ns: int) -> int:
    return len(poll_times(readings, device, since_ns))


async def test_one_dead_device_among_20_costs_the_others_at_most_its_timeout() -> None:
    readings: list[Reading] = []
    states: list[DeviceStateChange] = []
    meters = meters_for(dict.fromkeys(LIVE, SDM120), start=START)
    async with SimulatedBuilding(
        meters, port=0, update_interval_s=0.5, unknown_units="silent"
    ) as building:
        devices = [DeviceSpec(f"m{unit}", unit, SDM120, INTERVAL_S) for unit in [*LIVE, DEAD]]
        bus = ModbusTcpBus(
            "127.0.0.1",
            building.port,
            devices,
            readings.append,
            timeout_s=TIMEOUT_S,
            offline_after=2,
            on_state=states.append,
        )
        async with running(bus):
            await wait_until(lambda: any(not s.online for s in states), timeout_s=5)
            # Steady state: the dead device is offline, so each poll of it costs one timeout.
            since_ns = time.monotonic_ns()
            await asyncio.sleep(WINDOW_S)
    # Every device is due every INTERVAL_S; a round of polls takes at most the interval plus the
    # dead device's timeout (the live answers on loopback take milliseconds). The median gap
    # between two polls of a live device says so; a stall of the whole machine lengthens a gap or
    # two, not the median.
    round_s = INTERVAL_S + TIMEOUT_S
    for unit in LIVE:
        times = poll_times(readings, f"m{unit}", since_ns)
        assert len(times) >= 4, f"m{unit}: {len(times)} polls in {WINDOW_S} s"
        gaps_s = [(b - a) / 1e9 for a, b in pairwise(times)]
        median_s = statistics.median(gaps_s)
        assert median_s <= 1.25 * round_s, f"m{unit}: median gap {median_s:.3f} s, {gaps_s}"
    status = bus.status()
    assert not status.device(f"m{DEAD}").online
    assert status.device(f"m{DEAD}").reads_ok == 0
    assert all(status.device(f"m{unit}").online for unit in LIVE)
    # One state change per device: the live ones came online, the dead one went offline.
    assert sorted((s.device, s.online) for s in states) == sorted(
        [(f"m{unit}", True) for unit in LIVE] + [(f"m{DEAD}", False)]
    )
    dead = next(s for s in states if not s.online)
    assert dead.last_ok_wall_time is None
    assert dead.consecutive_failures == 2
    assert "no answer" in dead.reason


async def test_a_meter_that_reboots_goes_offline_and_comes_back_with_its_counter_reset() -> None:
    readings: list[Reading] = []
    states: list[DeviceStateChange] = []
    meters = meters_for({1: SDM120, 2: SDM120}, start=START)
    meters[1].override("import_energy", 1000.0)
    async with SimulatedBuilding(meters, port=0, update_interval_s=0.1) as building:
        devices = [DeviceSpec("a", 1, SDM120, 0.1), DeviceSpec("b", 2, SDM120, 0.1)]
        bus = ModbusTcpBus(
            "127.0.0.1",
            building.port,
            devices,
            readings.append,
            timeout_s=0.2,
            offline_after=2,
            on_state=states.append,
        )
        async with running(bus):
            await wait_until(lambda: len(states) == 2)
            meters[1].override("import_energy", None)
            building.reboot(1, down_s=1.5)
            await wait_until(lambda: [s.online for s in states if s.device == "a"][-1] is False)
            b_polls = polls_in(readings, "b", 0)
            a_failed = bus.status().device("a").reads_failed
            await wait_until(lambda: [s.online for s in states if s.device == "a"][-1] is True)
            b_polls_while_a_down = polls_in(readings, "b", 0) - b_polls
            a_tries_while_down = bus.status().device("a").reads_failed - a_failed + 1
    assert [s.online for s in states if s.device == "a"] == [True, False, True]
    assert [s.online for s in states if s.device == "b"] == [True]
    # b kept being polled while a was silent: about once for each of a's tries (counted against
    # a's tries rather than the clock, so that a stall of the machine slows both alike).
    assert a_tries_while_down >= 2
    assert b_polls_while_a_down >= a_tries_while_down - 1, (
        b_polls_while_a_down,
        a_tries_while_down,
    )
    energy = [r.value for r in readings if r.device == "a" and r.point == "import_energy"]
    assert energy[0] == 1000.0
    assert energy[-1] < 1.0  # counted again from 0 after the reboot


async def test_a_slow_meter_below_the_timeout_is_read_and_stays_online() -> None:
    readings: list[Reading] = []
    async with SimulatedBuilding(meters_for({1: SDM120}, start=START), port=0) as building:
        building.set_delay(1, 0.15)
        bus = ModbusTcpBus(
            "127.0.0.1",
            building.port,
            [DeviceSpec("a", 1, SDM120, 0.1)],
            readings.append,
            timeout_s=0.5,
        )
        async with running(bus):
            started = time.monotonic()
            await wait_until(lambda: polls_in(readings, "a", 0) >= 3)
            elapsed = time.monotonic() - started
    assert elapsed >= 0.3  # three answers, each at least 0.15 s late (less the first's)
    status = bus.status().device("a")
    assert status.online
    assert status.timeouts == 0
