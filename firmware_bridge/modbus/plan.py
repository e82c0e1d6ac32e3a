"""Read plans and register codecs for Modbus points: pure functions, no I/O.

One table, :data:`REGISTER_TYPES`, maps each profile ``type`` to pymodbus's
``ModbusClientMixin.DATATYPE`` and its register count. Profile validation, read planning,
decoding and encoding all use it, so a type is added in one place.

- :func:`plan_reads` coalesces a device's points into as few reads as the device allows.
- :func:`decode_block` turns the registers of one read into ``(point, value)`` pairs. Values are
  floats (as in :class:`~firmware_bridge.readings.Reading`): 64-bit integers are exact to 2**53.
- :func:`encode_point` turns a value into registers (the simulator serves these).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal

from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.exceptions import ModbusException

from nbedge.errors import DecodeError

if TYPE_CHECKING:
    from firmware_bridge.modbus.profiles import PointSpec

Function = Literal["input", "holding"]
"""Which register table a point lives in: input registers (function 4) or holding (function 3)."""

WordOrder = Literal["big", "little"]
"""``big``: the high word comes first (ABCD); ``little``: the low word comes first (CDAB)."""

MODBUS_MAX_REGISTERS: Final = 125
"""The most registers one read (function 3 or 4) may ask for, by the Modbus specification."""

DEFAULT_MAX_GAP: Final = 16
"""How many unused registers a read may span rather than becoming two reads.

One more request costs a round trip (on RS-485 the meter's turnaround, tens of ms); 16 unused
registers cost 32 bytes, about 35 ms at 9,600 baud and nothing on TCP.
"""

_DT = ModbusClientMixin.DATATYPE


@dataclass(frozen=True, slots=True)
class RegisterType:
    """How a profile ``type`` is stored: its pymodbus data type and how many registers it takes."""

    datatype: ModbusClientMixin.DATATYPE
    registers: int
    is_float: bool


REGISTER_TYPES: Final[Mapping[str, RegisterType]] = MappingProxyType(
    {
        "int16": RegisterType(_DT.INT16, 1, is_float=False),
        "uint16": RegisterType(_DT.UINT16, 1, is_float=False),
        "int32": RegisterType(_DT.INT32, 2, is_float=False),
        "uint32": RegisterType(_DT.UINT32, 2, is_float=False),
        "int64": RegisterType(_DT.INT64, 4, is_float=False),
        "uint64": RegisterType(_DT.UINT64, 4, is_float=False),
        "float32": RegisterType(_DT.FLOAT32, 2, is_float=True),
        "float64": RegisterType(_DT.FLOAT64, 4, is_float=True),
    }
)


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read: ``count`` registers of one function from ``address``, and the points in it."""

    function: Function
    address: int
    count: int
    points: tuple[PointSpec, ...]

    @property
    def end(self) -> int:
        """The first address after the block."""
        return self.address + self.count


def register_count(type_name: str) -> int:
    """How many registers a value of ``type_name`` takes (KeyError for an unknown type)."""
    return REGISTER_TYPES[type_name].registers


_FUNCTION_ORDER: Final[Mapping[str, int]] = {"input": 0, "holding": 1}


def plan_reads(
    points: Iterable[PointSpec],
    max_registers: int = MODBUS_MAX_REGISTERS,
    max_gap: int = DEFAULT_MAX_GAP,
) -> list[ReadBlock]:
    """Coalesce points into reads of at most ``max_registers`` spanning gaps of <= ``max_gap``.

    Points are grouped by function and sorted by address; a point joins the current read when it
    starts no more than ``max_gap`` registers after the read's end and the read stays within
    ``max_registers``. Blocks come out input registers first, then holding, by address.
    """
    if not 1 <= max_registers <= MODBUS_MAX_REGISTERS:
        raise ValueError(f"max_registers must be 1..{MODBUS_MAX_REGISTERS}, not {max_registers}")
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, not {max_gap}")
    ordered = sorted(points, key=lambda p: (_FUNCTION_ORDER[p.function], p.address))
    blocks: list[ReadBlock] = []
    current: list[PointSpec] = []
    start = end = 0
    for point in ordered:
        size = register_count(point.type)
        if size > max_registers:
            raise ValueError(f"point {point.name!r} needs {size} registers > {max_registers}")
        point_end = point.address + size
        fits = (
            bool(current)
            and current[0].function == point.function
            and point.address - end <= max_gap
            and max(end, point_end) - start <= max_registers
        )
        if fits:
            current.append(point)
            end = max(end, point_end)
            continue
        if current:
            blocks.append(ReadBlock(current[0].function, start, end - start, tuple(current)))
        current, start, end = [point], point.address, point_end
    if current:
        blocks.append(ReadBlock(current[0].function, start, end - start, tuple(current)))
    return blocks


def decode_point(point: PointSpec, registers: list[int]) -> float:
    """Decode one point from exactly its registers, word order and scale applied.

    Raises :class:`DecodeError` for a wrong register count or a register outside 0..65535.
    The result may be NaN or infinite (a meter's "not available", or the point's ``invalid`` raw
    value, decoded as NaN); :func:`decode_block` drops those.
    """
    kind = REGISTER_TYPES[point.type]
    if len(registers) != kind.registers:
        raise DecodeError(
            f"{point.name}: {len(registers)} registers, {point.type} needs {kind.registers}"
        )
    if any(not 0 <= r <= 0xFFFF for r in registers):
        raise DecodeError(f"{point.name}: register value outside 0..65535 in {registers}")
    try:
        raw = ModbusClientMixin.convert_from_registers(
            registers, kind.datatype, word_order=point.word_order
        )
    except (ModbusException, struct.error, OverflowError) as exc:
        raise DecodeError(f"{point.name}: {exc}") from exc
    if not isinstance(raw, int | float):
        raise DecodeError(f"{point.name}: decoded to {type(raw).__name__}, not a number")
    if point.invalid is not None and raw == point.invalid:
        return math.nan
    return float(raw) * point.scale


def decode_block(block: ReadBlock, registers: list[int]) -> list[tuple[PointSpec, float]]:
    """Decode the registers of one read into ``(point, value)`` pairs, in the block's point order.

    ``registers`` must hold exactly ``block.count`` values, else :class:`DecodeError`. NaN and
    infinite values are left out: the caller counts them as ``len(block.points) - len(result)``.
    """
    if len(registers) != block.count:
        raise DecodeError(
            f"read at {block.address:#06x}: got {len(registers)} registers, expected {block.count}"
        )
    values: list[tuple[PointSpec, float]] = []
    for point in block.points:
        offset = point.address - block.address
        value = decode_point(point, registers[offset : offset + register_count(point.type)])
        if math.isfinite(value):
            values.append((point, value))
    return values


def encode_point(point: PointSpec, value: float) -> list[int]:
    """Encode ``value`` (in the point's unit, so divided by its scale) into the point's registers.

    Integer types are rounded; a value out of the type's range raises :class:`ValueError`.
    """
    kind = REGISTER_TYPES[point.type]
    exact = isinstance(value, int) and point.scale == 1.0
    raw = value if exact else value / point.scale
    try:
        if kind.is_float:
            return ModbusClientMixin.convert_to_registers(
                raw, kind.datatype, word_order=point.word_order
            )
        return ModbusClientMixin.convert_to_registers(
            round(raw), kind.datatype, word_order=point.word_order
        )
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"{point.name}: {value} does not fit {point.type}: {exc}") from exc
