"""Integer-encoded profiles: the EM24 and the water pulse counter, raw registers -> values.

Unlike the Eastron floats, these meters send integers in fixed units (scale = 1 / "value weight")
with the low word first. The tables below are written from the protocol documents named in each
profile; decoding goes through the real ``plan_reads`` + ``decode_block``.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.modbus.plan import decode_block, decode_point, encode_point, plan_reads
from firmware_bridge.modbus.profiles import DeviceProfile, PointSpec, load_profile

EM24 = load_profile("carlo_gavazzi_em24")
WATER = load_profile("advantech_adam6050_water")

# (name, function, zero-based address, type, word order, unit, scale, kind), from table 2.3-1 of
# the EM24-DIN PFA, PFB & X models communication protocol: Modicon 3000nn is address nn - 1.
EM24_TABLE = [
    ("voltage_l1", "input", 0x0000, "int32", "little", "V", 0.1, "gauge"),  # 300001, V x10
    ("voltage_l2", "input", 0x0002, "int32", "little", "V", 0.1, "gauge"),  # 300003
    ("voltage_l3", "input", 0x0004, "int32", "little", "V", 0.1, "gauge"),  # 300005
    ("current_l1", "input", 0x000C, "int32", "little", "A", 0.001, "gauge"),  # 300013, A x1000
    ("current_l2", "input", 0x000E, "int32", "little", "A", 0.001, "gauge"),  # 300015
    ("current_l3", "input", 0x0010, "int32", "little", "A", 0.001, "gauge"),  # 300017
    ("power_l1", "input", 0x0012, "int32", "little", "W", 0.1, "gauge"),  # 300019, W x10
    ("power_l2", "input", 0x0014, "int32", "little", "W", 0.1, "gauge"),  # 300021
    ("power_l3", "input", 0x0016, "int32", "little", "W", 0.1, "gauge"),  # 300023
    ("total_power", "input", 0x0028, "int32", "little", "W", 0.1, "gauge"),  # 300041, W sum
    ("frequency", "input", 0x0037, "int16", "big", "Hz", 0.1, "gauge"),  # 300056, Hz x10
    ("import_energy", "input", 0x003E, "int32", "little", "kWh", 0.1, "counter"),  # 300063
]
# The ADAM-6050W manual: Counter = (value of 40002) x 65536 + (value of 40001), 1 L per pulse.
WATER_TABLE = [
    ("volume", "holding", 0x0000, "uint32", "little", "m3", 0.001, "counter"),  # 40001..40002
]

# 64 input registers from 0x0000, as an EM24 answers one read of the whole map. Each INT32 is
# [low word, high word]. Registers no point names (line-to-line volts, VA, var, PF, demand...)
# carry plausible values: decoding must skip them.
EM24_REGISTERS = [0] * 64
EM24_REGISTERS[0x00:0x06] = [0x0901, 0x0000, 0x08FA, 0x0000, 0x0906, 0x0000]  # 230.5 229.8 231.0
EM24_REGISTERS[0x06:0x0C] = [0x0FA0, 0x0000] * 3  # V L-L 400.0 V, not in the profile
EM24_REGISTERS[0x0C:0x12] = [0x1403, 0x0000, 0x1170, 0x0001, 0x00FA, 0x0000]  # 5.123 70.000 0.25
EM24_REGISTERS[0x12:0x18] = [0x2E20, 0x0000, 0x7457, 0x0002, 0xCFC7, 0xFFFF]  # W L3 -1234.5
EM24_REGISTERS[0x28:0x2A] = [0x723E, 0x0002]  # W sum 16031.8
EM24_REGISTERS[0x32:0x36] = [0x03E8, 0x03E8, 0xFC18, 0x0000]  # PF 1.000, 1.000, -1.000: skipped
EM24_REGISTERS[0x37] = 0x01F3  # 49.9 Hz
EM24_REGISTERS[0x3E:0x40] = [0xD687, 0x0012]  # 123456.7 kWh
EM24_VALUES = {
    "voltage_l1": 230.5,
    "voltage_l2": 229.8,
    "voltage_l3": 231.0,
    "current_l1": 5.123,
    "current_l2": 70.0,  # 70000 mA: the high word (0x0001) is the second register
    "current_l3": 0.25,
    "power_l1": 1180.8,
    "power_l2": 16085.5,
    "power_l3": -1234.5,  # INT32 -12345: the phase exports
    "total_power": 16031.8,
    "frequency": 49.9,
    "import_energy": 123456.7,
}


def table_of(profile: DeviceProfile) -> list[tuple[str, str, int, str, str, str, float, str]]:
    return [
        (p.name, p.function, p.address, p.type, p.word_order, p.unit, p.scale, p.kind)
        for p in profile.points
    ]


@pytest.mark.parametrize(
    ("profile", "table", "manufacturer"),
    [(EM24, EM24_TABLE, "Carlo Gavazzi"), (WATER, WATER_TABLE, "Advantech")],
)
def test_integer_profiles_match_the_protocol_tables(
    profile: DeviceProfile,
    table: list[tuple[str, str, int, str, str, str, float, str]],
    manufacturer: str,
) -> None:
    assert table_of(profile) == table
    assert profile.manufacturer == manufacturer
    assert profile.counter_names == {row[0] for row in table if row[7] == "counter"}


def test_em24_registers_decode_to_the_datasheet_values() -> None:
    (block,) = plan_reads(EM24.points, EM24.max_registers, EM24.max_gap)
    assert (block.function, block.address, block.count) == ("input", 0x0000, 64)
    values = {p.name: v for p, v in decode_block(block, EM24_REGISTERS)}
    assert set(values) == set(EM24_VALUES)
    for name, expected in EM24_VALUES.items():
        assert values[name] == pytest.approx(expected, abs=1e-9), name
    assert values["power_l1"] + values["power_l2"] + values["power_l3"] == pytest.approx(
        values["total_power"]
    )


def test_em24_words_read_high_first_would_be_nonsense() -> None:
    """The word order is what makes 70000 mA read as 70 A and -12345 as -1234.5 W."""
    current = EM24.point("current_l2")
    power = EM24.point("power_l3")
    assert decode_point(current, [0x1170, 0x0001]) == pytest.approx(70.0)
    assert decode_point(power, [0xCFC7, 0xFFFF]) == pytest.approx(-1234.5)
    swapped_current = PointSpec("c", "input", 0, "int32", "A", word_order="big", scale=0.001)
    swapped_power = PointSpec("p", "input", 0, "int32", "W", word_order="big", scale=0.1)
    assert decode_point(swapped_current, [0x1170, 0x0001]) == pytest.approx(292_552.705)
    assert decode_point(swapped_power, [0xCFC7, 0xFFFF]) == pytest.approx(-80_897_638.5)


@pytest.mark.parametrize(
    ("registers", "cubic_metres"),
    [
        ([0x0000, 0x0000], 0.0),
        ([0xD687, 0x0012], 1234.567),  # 1,234,567 pulses of 1 L
        ([0xFFFF, 0x0000], 65.535),  # the low word full, the high word not yet
        ([0x0000, 0x0001], 65.536),  # one more pulse carries into the high word
        ([0x5E00, 0xB2D0], 3_000_000.0),  # above 2**31 pulses: unsigned, never negative
    ],
)
def test_water_pulse_counts_decode_to_cubic_metres(
    registers: list[int], cubic_metres: float
) -> None:
    (block,) = plan_reads(WATER.points, WATER.max_registers, WATER.max_gap)
    assert (block.function, block.address, block.count) == ("holding", 0x0000, 2)
    ((point, value),) = decode_block(block, registers)
    assert point.name == "volume"
    assert value == pytest.approx(cubic_metres, abs=1e-9)


def test_a_profile_for_another_litres_per_pulse_is_only_another_scale() -> None:
    ten_litres = PointSpec(
        "volume", "holding", 0, "uint32", "m3", word_order="little", scale=0.01, kind="counter"
    )
    assert decode_point(ten_litres, [0xD687, 0x0012]) == pytest.approx(12_345.67)


def test_the_simulator_encodes_what_the_gateway_decodes() -> None:
    """encode_point (what the simulator serves) is the inverse of decode for the golden values."""
    for name, value in EM24_VALUES.items():
        point = EM24.point(name)
        offset = point.address
        assert encode_point(point, value) == EM24_REGISTERS[offset : offset + point.count], name
    assert encode_point(WATER.point("volume"), 1234.567) == [0xD687, 0x0012]


# --- hypothesis: scaled 32-bit integers in both word orders ---------------------------------

int32s = st.integers(-(2**31), 2**31 - 1)
scales = st.sampled_from([0.1, 0.01, 0.001, 1.0, 10.0])
orders = st.sampled_from(["big", "little"])


@given(raw=int32s, scale=scales, order=orders, signed=st.booleans())
def test_scaled_32_bit_integers_round_trip_through_the_registers(
    raw: int, scale: float, order: str, signed: bool
) -> None:
    type_ = "int32" if signed else "uint32"
    raw = raw if signed else raw + 2**31
    point = PointSpec("x", "input", 0, type_, "", word_order=order, scale=scale)  # type: ignore[arg-type]
    registers = encode_point(point, raw * scale)
    assert len(registers) == 2
    low, high = (registers[1], registers[0]) if order == "big" else (registers[0], registers[1])
    assert (high << 16 | low) == raw & 0xFFFF_FFFF  # the order puts the words where it says
    assert decode_point(point, registers) == pytest.approx(raw * scale, rel=1e-12, abs=1e-12)
