"""The integer-encoded profiles end to end: the simulator serves them over real Modbus TCP on
127.0.0.1 and ``ModbusTcpBus`` reads back what was served, scale and word order included."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from firmware_bridge.modbus.bus import DeviceSpec, ModbusTcpBus
from firmware_bridge.modbus.profiles import load_profile
from firmware_bridge.readings import Reading
from sim.meter import SimulatedMeter
from sim.modbus_server import SimulatedBuilding, meters_for
from tests.conftest import wait_until

EM24 = load_profile("carlo_gavazzi_em24")
WATER = load_profile("advantech_adam6050_water")
START = datetime(2024, 5, 6, 19, 0)  # a Monday evening: the household is busy

pytestmark = pytest.mark.timeout(30)


def latest(readings: list[Reading], device: str) -> dict[str, Reading]:
    return {r.point: r for r in readings if r.device == device}


async def test_an_em24_and_a_water_counter_read_back_what_the_simulator_served() -> None:
    meters: dict[int, SimulatedMeter] = meters_for({1: EM24, 2: WATER}, start=START, seed=3)
    meters[1].override("power_l3", -1234.5)  # a phase exporting: a negative INT32
    meters[1].override("current_l2", 70.0)  # 70000 mA: needs the high word, low word first
    meters[1].override("import_energy", 123456.7)
    meters[2].override("volume", 1234.567)  # 1,234,567 pulses of 1 L
    readings: list[Reading] = []
    # A long update interval: the values served stay those of the first refresh.
    async with SimulatedBuilding(meters, port=0, update_interval_s=60) as building:
        devices = [DeviceSpec("flat_c", 1, EM24, 0.1), DeviceSpec("water_main", 2, WATER, 0.1)]
        bus = ModbusTcpBus("127.0.0.1", building.port, devices, readings.append)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(bus.run(), name="bus")
            try:
                await wait_until(
                    lambda: (
                        len(latest(readings, "flat_c")) == len(EM24.points)
                        and len(latest(readings, "water_main")) == 1
                    )
                )
            finally:
                task.cancel()
    for device, meter in (("flat_c", meters[1]), ("water_main", meters[2])):
        got = latest(readings, device)
        assert set(got) == set(meter.last_values) == set(meter.profile.point_names)
        for name, reading in got.items():
            point = meter.profile.point(name)
            # Integers carry the value to the point's resolution: within half a step of it.
            assert reading.value == pytest.approx(
                meter.last_values[name], abs=point.scale / 2 + 1e-9
            ), name
            assert reading.unit == point.unit
    em24 = latest(readings, "flat_c")
    assert em24["power_l3"].value == pytest.approx(-1234.5)
    assert em24["current_l2"].value == pytest.approx(70.0)
    assert em24["import_energy"].value == pytest.approx(123456.7)
    assert 220.0 < em24["voltage_l1"].value < 240.0  # not a word-swapped 15 million volts
    assert 49.9 <= em24["frequency"].value <= 50.1
    assert latest(readings, "water_main")["volume"].value == pytest.approx(1234.567)
    assert all(d.online and d.reads_failed == 0 for d in bus.status().devices)
