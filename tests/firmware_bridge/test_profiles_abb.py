"""The ABB B23/B24 profile: ABB's mapping table, raw registers -> values, and served end to end.

The register values come from ABB's own read-out examples for the EQ meter Modbus mapping (A43/A44
User Manual 2CMC48001M0201 rev C, 9.11.1 "Reading energy values" and 9.11.2 "Reading
Instrumentation values"), where the manual gives them; the rest are worked out by hand from the
mapping table's stated encoding (arithmetic in the comments). Decoding goes through the real
``plan_reads`` + ``decode_block``; serving through the simulator and a real ``ModbusTcpBus``.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime

import pytest

from firmware_bridge.modbus.bus import DeviceSpec, ModbusTcpBus
from firmware_bridge.modbus.plan import decode_block, decode_point, encode_point, plan_reads
from firmware_bridge.modbus.profiles import DeviceProfile, PointSpec, load_profile
from firmware_bridge.readings import Reading
from sim.meter import SimulatedMeter
from sim.modbus_server import SimulatedBuilding, meters_for
from tests.conftest import wait_until

ABB = load_profile("abb_b23")
START = datetime(2024, 5, 6, 19, 0)  # a Monday evening: the household is busy

# (name, function, address as sent on the bus, type, word order, unit, scale, kind), from ABB's
# mapping tables: "Start reg (Hex)" is the address itself (not minus 40001), function 03 reads it.
ABB_TABLE = [
    ("voltage_l1", "holding", 0x5B00, "uint32", "big", "V", 0.1, "gauge"),  # L1-N, 0,1 V
    ("voltage_l2", "holding", 0x5B02, "uint32", "big", "V", 0.1, "gauge"),  # L2-N
    ("voltage_l3", "holding", 0x5B04, "uint32", "big", "V", 0.1, "gauge"),  # L3-N
    ("current_l1", "holding", 0x5B0C, "uint32", "big", "A", 0.01, "gauge"),  # 0,01 A
    ("current_l2", "holding", 0x5B0E, "uint32", "big", "A", 0.01, "gauge"),
    ("current_l3", "holding", 0x5B10, "uint32", "big", "A", 0.01, "gauge"),
    ("total_power", "holding", 0x5B14, "int32", "big", "W", 0.01, "gauge"),  # 0,01 W, signed
    ("power_l1", "holding", 0x5B16, "int32", "big", "W", 0.01, "gauge"),
    ("power_l2", "holding", 0x5B18, "int32", "big", "W", 0.01, "gauge"),
    ("power_l3", "holding", 0x5B1A, "int32", "big", "W", 0.01, "gauge"),
    ("frequency", "holding", 0x5B2C, "uint16", "big", "Hz", 0.01, "gauge"),  # 0,01 Hz
    ("power_factor", "holding", 0x5B3A, "int16", "big", "", 0.001, "gauge"),  # 0,001, signed
    ("import_energy", "holding", 0x5000, "uint64", "big", "kWh", 0.01, "counter"),  # 0,01 kWh
    ("export_energy", "holding", 0x5004, "uint64", "big", "kWh", 0.01, "counter"),
]

# 8 holding registers from 0x5000, high word first. ABB 9.11.1 reads them (and more) at once:
# "00 00 00 00 00 0D 12 90 ;Total active import energy ... -> 8567.20 kWh" and
# "00 00 00 00 00 03 12 09 ;Total active export energy ... -> 2012.25 kWh".
ENERGY_REGISTERS = [0x0000, 0x0000, 0x000D, 0x1290, 0x0000, 0x0000, 0x0003, 0x1209]
ENERGY_VALUES = {"import_energy": 8567.20, "export_energy": 2012.25}

# 59 holding registers from 0x5B00 to 0x5B3A, as one read of the instrumentation area answers.
# Registers no point names (line voltages, neutral current, var, VA, phase angles) carry ABB's
# example values, and three addresses without a quantity answer FFFF: decoding must skip them all.
INSTANT_REGISTERS = [0] * 59
# Phase voltages, worked out by hand (ABB's example page starts after them): 230.5 V / 0.1 = 2305
# = 0x0901, 229.8 V -> 2298 = 0x08FA, 231.0 V -> 2310 = 0x0906.
INSTANT_REGISTERS[0x00:0x06] = [0x0000, 0x0901, 0x0000, 0x08FA, 0x0000, 0x0906]
# Line voltages, not in the profile: L1-L2 405.0 V (by hand), then ABB's L3-L2 0FCA = 4042 ->
# 404.2 V and L1-L3 0FC0 = 4032 -> 403.2 V.
INSTANT_REGISTERS[0x06:0x0C] = [0x0000, 0x0FD2, 0x0000, 0x0FCA, 0x0000, 0x0FC0]
# ABB: L1 current 00000065 = 101 -> 1.01 A, L2 000000C9 = 201 -> 2.01 A, L3 0000012E = 302 ->
# 3.02 A, neutral (not in the profile) 00000086 = 134 -> 1.34 A.
INSTANT_REGISTERS[0x0C:0x14] = [0, 0x0065, 0, 0x00C9, 0, 0x012E, 0, 0x0086]
# ABB: active total 0001E8E4 = 125156 -> 1251.56 W; L1 00005AE2 = 23266 -> 232.66 W;
# L2 0000B097 = 45207 -> 452.07 W; L3 0000DD6B = 56683 -> 566.83 W.
INSTANT_REGISTERS[0x14:0x1C] = [0x0001, 0xE8E4, 0, 0x5AE2, 0, 0xB097, 0, 0xDD6B]
# ABB, not in the profile: reactive total, L1, L2 (FFFFD04A = -12214 -> -122.14 var), L3; then
# apparent total, L1, L2, L3.
INSTANT_REGISTERS[0x1C:0x24] = [0, 0x7541, 0, 0x001C, 0xFFFF, 0xD04A, 0, 0xA4DB]
INSTANT_REGISTERS[0x24:0x2C] = [0x0002, 0x25C3, 0, 0x5AE2, 0, 0xB6DF, 0x0001, 0x1402]
INSTANT_REGISTERS[0x2C] = 0x1383  # ABB: frequency 1383 = 4995 -> 49.95 Hz
# ABB, not in the profile: power phase angles (total, L1..L3), voltage phase angles (U1..U3),
# "FF FF FF FF FF FF ;... means no data available at these addresses", current phase angles.
INSTANT_REGISTERS[0x2D:0x34] = [0x0087, 0x0000, 0xFF6A, 0x016F, 0x0000, 0x04AF, 0xFB4E]
INSTANT_REGISTERS[0x34:0x37] = [0xFFFF, 0xFFFF, 0xFFFF]
INSTANT_REGISTERS[0x37:0x3A] = [0xFFF3, 0x0409, 0xFCAE]
INSTANT_REGISTERS[0x3A] = 0x03CC  # ABB: total power factor 03CC = 972 -> 0.972
INSTANT_VALUES = {
    "voltage_l1": 230.5,
    "voltage_l2": 229.8,
    "voltage_l3": 231.0,
    "current_l1": 1.01,
    "current_l2": 2.01,
    "current_l3": 3.02,
    "total_power": 1251.56,
    "power_l1": 232.66,
    "power_l2": 452.07,
    "power_l3": 566.83,
    "frequency": 49.95,
    "power_factor": 0.972,
}


def table_of(profile: DeviceProfile) -> list[tuple[str, str, int, str, str, str, float, str]]:
    return [
        (p.name, p.function, p.address, p.type, p.word_order, p.unit, p.scale, p.kind)
        for p in profile.points
    ]


def test_the_profile_matches_abbs_mapping_tables() -> None:
    assert table_of(ABB) == ABB_TABLE
    assert (ABB.manufacturer, ABB.model) == ("ABB", "B23, B24")
    assert "2CMC485003M0201" in ABB.source
    assert ABB.counter_names == {"import_energy", "export_energy"}
    # ABB: at most 125 registers per function 03 read, and gaps read FFFF rather than failing.
    assert (ABB.max_registers, ABB.max_gap) == (125, 16)


def test_the_points_are_two_reads_energy_and_instrumentation() -> None:
    blocks = plan_reads(ABB.points, ABB.max_registers, ABB.max_gap)
    spans = [(b.function, b.address, b.count) for b in blocks]
    assert spans == [("holding", 0x5000, 8), ("holding", 0x5B00, 59)]


def test_energy_registers_decode_to_abbs_example_values() -> None:
    energy, _ = plan_reads(ABB.points, ABB.max_registers, ABB.max_gap)
    values = {p.name: v for p, v in decode_block(energy, ENERGY_REGISTERS)}
    assert values == pytest.approx(ENERGY_VALUES, abs=1e-9)


def test_instrumentation_registers_decode_to_abbs_example_values() -> None:
    _, instant = plan_reads(ABB.points, ABB.max_registers, ABB.max_gap)
    values = {p.name: v for p, v in decode_block(instant, INSTANT_REGISTERS)}
    assert set(values) == set(INSTANT_VALUES)
    for name, expected in INSTANT_VALUES.items():
        assert values[name] == pytest.approx(expected, abs=1e-9), name
    # ABB's example is consistent: the phases add up to the total.
    assert values["power_l1"] + values["power_l2"] + values["power_l3"] == pytest.approx(
        values["total_power"]
    )


@pytest.mark.parametrize(
    ("name", "registers", "value"),
    [
        # -1234.56 W (exporting) is -123456, two's complement 2**32 - 123456 = 0xFFFE1DC0.
        ("total_power", [0xFFFE, 0x1DC0], -1234.56),
        # -0.500 (leading, or exporting) is -500, 2**16 - 500 = 65036 = 0xFE0C.
        ("power_factor", [0xFE0C], -0.5),
        # 42,949,672.96 kWh is 2**32 hundredths: only the second word is 1; 64 bits need all four.
        ("import_energy", [0x0000, 0x0001, 0x0000, 0x0000], 42_949_672.96),
        # 50.00 Hz is 5000 = 0x1388; a uint16, so it does not take the next register.
        ("frequency", [0x1388], 50.0),
    ],
)
def test_signs_and_widths_follow_the_mapping_table(
    name: str, registers: list[int], value: float
) -> None:
    point = ABB.point(name)
    assert decode_point(point, registers) == pytest.approx(value, abs=1e-9)
    assert encode_point(point, value) == registers


def test_words_read_low_first_would_be_nonsense() -> None:
    """ABB sends the high word first: the other order turns 1251.56 W into -3.9 MW."""
    total_power = ABB.point("total_power")
    import_energy = ABB.point("import_energy")
    voltage = ABB.point("voltage_l1")
    assert decode_point(total_power, [0x0001, 0xE8E4]) == pytest.approx(1251.56)
    assert decode_point(import_energy, [0, 0, 0x000D, 0x1290]) == pytest.approx(8567.20)
    assert decode_point(voltage, [0x0000, 0x0901]) == pytest.approx(230.5)
    swapped_power = PointSpec("p", "holding", 0, "int32", "W", word_order="little", scale=0.01)
    swapped_energy = PointSpec("e", "holding", 0, "uint64", "kWh", word_order="little", scale=0.01)
    swapped_voltage = PointSpec("v", "holding", 0, "uint32", "V", word_order="little", scale=0.1)
    # 0xE8E40001 as int32 is -387,710,975 hundredths of a watt.
    assert decode_point(swapped_power, [0x0001, 0xE8E4]) == pytest.approx(-3_877_109.75)
    # 0x1290000D00000000 hundredths of a kWh: about 1.3e16 kWh.
    assert decode_point(swapped_energy, [0, 0, 0x000D, 0x1290]) == pytest.approx(
        0x1290_000D_0000_0000 * 0.01
    )
    assert decode_point(swapped_voltage, [0x0000, 0x0901]) == pytest.approx(15_106_048.0)


def test_abbs_invalid_values_are_dropped_not_stored() -> None:
    """A quantity a variant lacks reads "invalid": all FFFF unsigned, 7FFF... signed (a Steel B23
    has no export register). Each point names that raw value, so the reading is dropped (and
    counted by the bus as values_dropped), never a huge counter or a 429496729.5 V phase."""
    invalid = {
        "export_energy": [0xFFFF] * 4,
        "voltage_l2": [0xFFFF, 0xFFFF],
        "total_power": [0x7FFF, 0xFFFF],
        "frequency": [0xFFFF],
        "power_factor": [0x7FFF],
    }
    for name, registers in invalid.items():
        assert math.isnan(decode_point(ABB.point(name), registers)), name
    # One step below the sentinel is a value like any other.
    assert decode_point(ABB.point("frequency"), [0xFFFE]) == pytest.approx(655.34)
    assert all(point.invalid is not None for point in ABB.points)


def test_the_simulator_encodes_abbs_example_registers() -> None:
    """encode_point (what the simulator serves) gives back ABB's example registers."""
    for name, value in {**INSTANT_VALUES, **ENERGY_VALUES}.items():
        point = ABB.point(name)
        base = 0x5000 if point.address < 0x5B00 else 0x5B00
        image = ENERGY_REGISTERS if base == 0x5000 else INSTANT_REGISTERS
        offset = point.address - base
        assert encode_point(point, value) == image[offset : offset + point.count], name


# --- served by the simulator, read back by the gateway's bus --------------------------------


def latest(readings: list[Reading], device: str) -> dict[str, Reading]:
    return {r.point: r for r in readings if r.device == device}


@pytest.mark.timeout(30)
async def test_a_b23_reads_back_what_the_simulator_served() -> None:
    meters: dict[int, SimulatedMeter] = meters_for({1: "abb_b23"}, start=START, seed=5)
    meter = meters[1]
    meter.override("total_power", -1234.56)  # exporting: a negative INT32
    meter.override("power_factor", -0.5)  # a negative INT16
    meter.override("import_energy", 42_949_672.96)  # needs the second of four registers
    meter.override("export_energy", 2012.25)
    readings: list[Reading] = []
    # A long update interval: the values served stay those of the first refresh.
    async with SimulatedBuilding(meters, port=0, update_interval_s=60) as building:
        bus = ModbusTcpBus(
            "127.0.0.1", building.port, [DeviceSpec("flat_d", 1, ABB, 0.1)], readings.append
        )
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(bus.run(), name="bus")
            try:
                await wait_until(lambda: len(latest(readings, "flat_d")) == len(ABB.points))
            finally:
                task.cancel()
    got = latest(readings, "flat_d")
    assert set(got) == set(meter.last_values) == set(ABB.point_names)
    for name, reading in got.items():
        point = ABB.point(name)
        # Integers carry the value to the point's resolution: within half a step of it.
        assert reading.value == pytest.approx(
            meter.last_values[name], abs=point.scale / 2 + 1e-9
        ), name
        assert reading.unit == point.unit
    assert got["total_power"].value == pytest.approx(-1234.56)
    assert got["power_factor"].value == pytest.approx(-0.5)
    assert got["import_energy"].value == pytest.approx(42_949_672.96)
    assert got["export_energy"].value == pytest.approx(2012.25)
    # What the simulator makes of a B23 is a plausible three-phase meter, not word-swapped junk.
    for phase in (1, 2, 3):
        assert 220.0 < got[f"voltage_l{phase}"].value < 240.0
        assert got[f"current_l{phase}"].value >= 0.0
        assert got[f"power_l{phase}"].value >= 0.0
    assert 49.9 <= got["frequency"].value <= 50.1
    assert all(d.online and d.reads_failed == 0 for d in bus.status().devices)
