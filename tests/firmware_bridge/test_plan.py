"""Read plans and register codecs: raw registers in, typed values out; golden tables, hypothesis."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.modbus.plan import (
    REGISTER_TYPES,
    ReadBlock,
    decode_block,
    decode_point,
    encode_point,
    plan_reads,
)
from firmware_bridge.modbus.profiles import DeviceProfile, PointSpec, load_profile
from nbedge.errors import DecodeError

SDM630 = load_profile("eastron_sdm630")
SDM120 = load_profile("eastron_sdm120")


def point(name: str, address: int, type_: str = "float32", function: str = "input") -> PointSpec:
    return PointSpec(name=name, function=function, address=address, type=type_, unit="")  # type: ignore[arg-type]


def spans(blocks: list[ReadBlock]) -> list[tuple[str, int, int]]:
    return [(b.function, b.address, b.count) for b in blocks]


# --- planning ----------------------------------------------------------------------


def test_sdm630_is_read_in_three_requests() -> None:
    blocks = plan_reads(SDM630.points, SDM630.max_registers, SDM630.max_gap)
    assert spans(blocks) == [("input", 0x00, 18), ("input", 0x34, 22), ("input", 0x156, 2)]
    assert [p.name for p in blocks[1].points] == ["total_power", "frequency", "import_energy"]


def test_sdm120_spans_small_gaps_but_not_the_jump_to_0x156() -> None:
    blocks = plan_reads(SDM120.points, SDM120.max_registers, max_gap=16)
    assert spans(blocks) == [("input", 0x00, 14), ("input", 0x46, 4), ("input", 0x156, 2)]
    blocks = plan_reads(SDM120.points, max_registers=125, max_gap=100)
    assert spans(blocks) == [("input", 0x00, 0x4A), ("input", 0x156, 2)]


def test_neighbours_coalesce_regardless_of_input_order() -> None:
    points = [point("c", 4), point("a", 0), point("b", 2)]
    (block,) = plan_reads(points, max_gap=0)
    assert (block.address, block.count) == (0, 6)
    assert [p.name for p in block.points] == ["a", "b", "c"]


def test_a_gap_wider_than_max_gap_splits_the_read() -> None:
    points = [point("a", 0), point("b", 10)]
    assert spans(plan_reads(points, max_gap=8)) == [("input", 0, 12)]  # 8 unused registers
    assert spans(plan_reads(points, max_gap=7)) == [("input", 0, 2), ("input", 10, 2)]


def test_no_read_exceeds_max_registers() -> None:
    points = [point(f"p{i}", 2 * i) for i in range(100)]  # 200 contiguous registers
    blocks = plan_reads(points)
    assert spans(blocks) == [("input", 0, 124), ("input", 124, 76)]
    assert all(b.count <= 80 for b in plan_reads(points, max_registers=80))
    assert sum(len(b.points) for b in blocks) == 100


def test_input_and_holding_registers_are_never_mixed() -> None:
    points = [point("h", 2, function="holding"), point("i", 0), point("h0", 0, function="holding")]
    assert spans(plan_reads(points)) == [("input", 0, 2), ("holding", 0, 4)]


def test_overlapping_points_share_a_read() -> None:
    points = [point("wide", 0, "float64"), point("inner", 1, "uint16")]
    assert spans(plan_reads(points, max_gap=0)) == [("input", 0, 4)]


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_registers"):
        plan_reads([], max_registers=126)
    with pytest.raises(ValueError, match="max_gap"):
        plan_reads([], max_gap=-1)
    with pytest.raises(ValueError, match="needs 4 registers"):
        plan_reads([point("wide", 0, "float64")], max_registers=2)
    assert plan_reads([]) == []


# --- decoding: golden tables (raw register pairs as the meter sends them) ----------

SDM630_GOLDEN: dict[str, tuple[tuple[int, int], float]] = {
    "voltage_l1": ((0x4366, 0x0000), 230.0),
    "voltage_l2": ((0x4367, 0x8000), 231.5),
    "voltage_l3": ((0x4365, 0x4000), 229.25),
    "current_l1": ((0x4120, 0x0000), 10.0),
    "current_l2": ((0x40B0, 0x0000), 5.5),
    "current_l3": ((0x3E80, 0x0000), 0.25),
    "power_l1": ((0x450F, 0xC000), 2300.0),
    "power_l2": ((0x449F, 0x2800), 1273.25),
    "power_l3": ((0x4266, 0x0000), 57.5),
    "total_power": ((0x4562, 0xEC00), 3630.75),
    "frequency": ((0x4247, 0xEB85), 49.97999954223633),
    "import_energy": ((0x4640, 0xE600), 12345.5),
    "total_energy": ((0x4974, 0x2400), 1_000_000.0),
}
SDM120_GOLDEN: dict[str, tuple[tuple[int, int], float]] = {
    "voltage": ((0x4383, 0x0000), 262.0),
    "current": ((0x0000, 0x0000), 0.0),
    "power": ((0xBF80, 0x0000), -1.0),
    "frequency": ((0x4248, 0x0000), 50.0),
    "import_energy": ((0x4640, 0xE600), 12345.5),
    "total_energy": ((0x4640, 0xE600), 12345.5),
}


def device_image(profile: DeviceProfile, raw: dict[str, tuple[int, int]]) -> dict[int, int]:
    """Address -> register, as a meter holds them; gaps read as 0."""
    image: dict[int, int] = {}
    for p in profile.points:
        image[p.address], image[p.address + 1] = raw[p.name]
    return image


@pytest.mark.parametrize(("profile", "golden"), [(SDM630, SDM630_GOLDEN), (SDM120, SDM120_GOLDEN)])
def test_golden_registers_decode_to_the_datasheet_values(
    profile: DeviceProfile, golden: dict[str, tuple[tuple[int, int], float]]
) -> None:
    image = device_image(profile, {name: regs for name, (regs, _) in golden.items()})
    decoded: dict[str, float] = {}
    for block in plan_reads(profile.points, profile.max_registers, profile.max_gap):
        registers = [image.get(a, 0) for a in range(block.address, block.end)]
        decoded.update((p.name, v) for p, v in decode_block(block, registers))
    assert decoded == {name: value for name, (_, value) in golden.items()}


def test_nan_and_infinity_are_dropped_not_yielded() -> None:
    (block,) = plan_reads(SDM630.points[:4])  # voltages l1..l3, current l1
    registers = [0x7FC0, 0x0000, 0x4366, 0x0000, 0x7F80, 0x0000, 0xFF80, 0x0000]
    values = decode_block(block, registers)
    assert [(p.name, v) for p, v in values] == [("voltage_l2", 230.0)]
    assert len(block.points) - len(values) == 3  # what the bus counts as dropped


def test_a_wrong_register_count_is_a_decode_error() -> None:
    (block,) = plan_reads(SDM630.points[:2])
    with pytest.raises(DecodeError, match="expected 4"):
        decode_block(block, [0x4366, 0x0000, 0x4366])
    with pytest.raises(DecodeError):
        decode_point(SDM630.points[0], [0x4366])
    with pytest.raises(DecodeError, match="outside"):
        decode_point(SDM630.points[0], [0x4366, 0x10000])


def test_word_order_and_scale() -> None:
    little = PointSpec("e", "input", 0, "uint32", "Wh", word_order="little")
    assert decode_point(little, [0x5678, 0x1234]) == 0x12345678
    tenths = PointSpec("t", "input", 0, "int16", "degC", scale=0.1)
    assert decode_point(tenths, [0xFFFB]) == pytest.approx(-0.5)
    assert encode_point(tenths, -0.5) == [0xFFFB]
    assert encode_point(little, 0x12345678) == [0x5678, 0x1234]


def test_encoding_a_value_that_does_not_fit_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode_point(PointSpec("x", "input", 0, "uint16", ""), 70000)
    with pytest.raises(ValueError, match="does not fit"):
        encode_point(PointSpec("x", "input", 0, "float32", ""), 1e39)


# --- hypothesis ----------------------------------------------------------------------

INT_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**53), 2**53),  # values are floats: 64-bit integers are exact up to 2**53
    "uint64": (0, 2**53),
}
word_orders = st.sampled_from(["big", "little"])


@given(value=st.floats(width=32, allow_nan=False, allow_infinity=False), order=word_orders)
def test_float32_round_trips_exactly(value: float, order: str) -> None:
    p = PointSpec("x", "input", 0, "float32", "", word_order=order)  # type: ignore[arg-type]
    registers = encode_point(p, value)
    assert len(registers) == 2
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert decode_point(p, registers) == value


@given(value=st.floats(allow_nan=False, allow_infinity=False), order=word_orders)
def test_float64_round_trips_exactly(value: float, order: str) -> None:
    p = PointSpec("x", "input", 0, "float64", "", word_order=order)  # type: ignore[arg-type]
    assert decode_point(p, encode_point(p, value)) == value


@st.composite
def typed_ints(draw: st.DrawFn) -> tuple[str, int]:
    type_ = draw(st.sampled_from(sorted(INT_RANGES)))
    low, high = INT_RANGES[type_]
    return type_, draw(st.integers(low, high))


def test_64_bit_integers_encode_exactly_at_their_limits() -> None:
    p = PointSpec("x", "input", 0, "uint64", "")
    assert encode_point(p, 2**64 - 1) == [0xFFFF] * 4
    assert encode_point(PointSpec("x", "input", 0, "int64", ""), -(2**63)) == [0x8000, 0, 0, 0]


@given(typed=typed_ints(), order=word_orders)
def test_integers_round_trip_exactly(typed: tuple[str, int], order: str) -> None:
    type_, value = typed
    p = PointSpec("x", "holding", 0, type_, "", word_order=order)  # type: ignore[arg-type]
    registers = encode_point(p, value)
    assert len(registers) == REGISTER_TYPES[type_].registers
    assert decode_point(p, registers) == value


@given(raw=st.integers(-(2**15), 2**15 - 1), scale=st.sampled_from([0.1, 0.01, 10.0, 0.5]))
def test_scaled_integers_round_trip(raw: int, scale: float) -> None:
    p = PointSpec("x", "input", 0, "int16", "", scale=scale)
    assert encode_point(p, decode_point(p, encode_point(p, raw * scale))) == encode_point(
        p, raw * scale
    )
    assert decode_point(p, encode_point(p, raw * scale)) == pytest.approx(raw * scale)


@given(
    type_=st.sampled_from(sorted(REGISTER_TYPES)),
    order=word_orders,
    address=st.integers(0, 20),
    registers=st.lists(st.integers(-(2**20), 2**20), max_size=40),
)
def test_decoding_arbitrary_registers_raises_nothing_but_decode_error(
    type_: str, order: str, address: int, registers: list[int]
) -> None:
    points = [
        PointSpec("a", "input", address, type_, "", word_order=order),  # type: ignore[arg-type]
        PointSpec("b", "input", address + 8, "float32", ""),
    ]
    (block,) = plan_reads(points, max_gap=8)
    try:
        values = decode_block(block, registers)
    except DecodeError:
        return
    assert len(registers) == block.count
    assert all(math.isfinite(v) for _, v in values)


def test_decode_matches_struct_for_a_known_pattern() -> None:
    p = PointSpec("x", "input", 0, "float32", "", word_order="little")
    high, low = struct.unpack(">HH", struct.pack(">f", 230.0))
    assert decode_point(p, [low, high]) == 230.0
