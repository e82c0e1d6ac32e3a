"""Find the Modbus unit ids that answer on a link, and suggest a packaged profile for each.

:func:`scan_units` is an async generator: it probes one unit id after the other and yields a
:class:`UnitProbe` for every unit, answered or not, so a caller can show progress and stop at any
time (closing the generator closes the connection). One request at a time, paced like a bus
(:func:`~firmware_bridge.modbus.bus.default_request_gap_s`), each bounded by ``timeout_s``.

**Is something there?** The first request to a unit reads the first probe register (below). Any
Modbus answer, registers or an exception reply, means a device is there, with two exceptions:
exception 0x0A (gateway path unavailable) and 0x0B (gateway target device failed to respond) are
what a Modbus TCP gateway answers *for* a device that is missing behind it, so they mean "no".
No answer within ``timeout_s``, or an answer with a bad CRC, means "no".

**Which profile?** A profile's probe points are its phase-to-neutral voltages: the points named
``voltage`` or ``voltage_l1``, ``voltage_l2``, ... (the names the voltage rule watches). A profile
matches a unit when every one of its probe points reads a plausible mains voltage, between
``PLAUSIBLE_V`` (90 to 270 V: 100/120 V and 230/240 V grids with their tolerances); a register
that holds 0, garbage, NaN or an exception reply fails. Of the matching profiles the one with the
most probe points wins (an SDM630 reads three phases, an SDM120 one; an SDM120 reads 0 where the
SDM630 keeps L2 and L3, so it does not match the SDM630); a tie suggests every tied profile.
Profiles without probe points are never suggested. A three-phase meter with only L1 live is
suggested as single-phase: the suggestion is a hint for the installer, not a verdict.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from pymodbus.client import ModbusBaseClient
from pymodbus.exceptions import ModbusException

from firmware_bridge.modbus.bus import Link, default_request_gap_s, make_client
from firmware_bridge.modbus.plan import decode_block, plan_reads
from firmware_bridge.modbus.profiles import DeviceProfile, PointSpec
from nbedge.errors import DecodeError, DeviceUnavailable

PLAUSIBLE_V: Final = (90.0, 270.0)
PROBE_POINT: Final = re.compile(r"^voltage(_l\d+)?$")
GATEWAY_EXCEPTIONS: Final = frozenset({0x0A, 0x0B})
_GUARD_S: Final = 1.0

_Span = tuple[str, int, int]
"""A read: function ("input" or "holding"), address, register count."""


@dataclass(frozen=True, slots=True)
class UnitProbe:
    """What one unit id answered."""

    unit_id: int
    answered: bool
    exception_code: int | None = None
    """The exception code of the first answer, if it was an exception reply."""
    profiles: tuple[str, ...] = ()
    """The suggested profiles: one, or several that tie; empty if none matched."""

    @property
    def answer(self) -> str:
        """``no``, ``yes`` or ``yes (exception 0x02)``."""
        if not self.answered:
            return "no"
        if self.exception_code is not None:
            return f"yes (exception {self.exception_code:#04x})"
        return "yes"


def probe_points(profile: DeviceProfile) -> tuple[PointSpec, ...]:
    """The points whose values decide whether ``profile`` matches (see the module doc)."""
    return tuple(p for p in profile.points if PROBE_POINT.match(p.name))


def parse_units(text: str) -> list[int]:
    """``"1-247"``, ``"2,5,10-20"``: unit ids 1..247, ascending, without repeats."""
    units: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise ValueError(f"not a unit id or range: {part.strip()!r}") from None
        if not 1 <= low <= high <= 247:
            raise ValueError(f"unit ids are 1..247, low to high: {part.strip()!r}")
        units.update(range(low, high + 1))
    return sorted(units)


async def scan_units(
    link: Link,
    units: Iterable[int],
    profiles: Sequence[DeviceProfile],
    *,
    timeout_s: float = 0.3,
    request_gap_s: float | None = None,
) -> AsyncIterator[UnitProbe]:
    """Probe each unit id in turn and yield what it answered (see the module doc).

    Raises :class:`DeviceUnavailable` when the link cannot be opened (or reopened).
    """
    if timeout_s <= 0:
        raise ValueError("timeout_s must be > 0")
    gap_s = default_request_gap_s(link) if request_gap_s is None else request_gap_s
    candidates = [(p.name, probe_points(p)) for p in profiles]
    candidates = [(name, points) for name, points in candidates if points]
    candidates.sort(key=lambda c: (-len(c[1]), c[0]))
    first_probe = candidates[0][1][0] if candidates else None
    scanner = _Scanner(link, timeout_s, gap_s)
    try:
        for unit in units:
            yield await scanner.probe(unit, first_probe, candidates)
    finally:
        scanner.close()


class _Scanner:
    """One client, one request at a time, reconnecting when pymodbus dropped the connection."""

    def __init__(self, link: Link, timeout_s: float, gap_s: float) -> None:
        self._link = link
        self._timeout_s = timeout_s
        self._gap_s = gap_s
        self._client: ModbusBaseClient | None = None
        self._line_free_at = 0.0

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    async def probe(
        self,
        unit: int,
        first: PointSpec | None,
        candidates: Sequence[tuple[str, tuple[PointSpec, ...]]],
    ) -> UnitProbe:
        """Ask ``unit`` once; if it answers, read every candidate's probe points (each distinct
        register range once) and pick the profiles that match."""
        answered, exception_code, registers = await self._read(unit, _span(first))
        if not answered:
            return UnitProbe(unit, answered=False)
        raw: dict[_Span, list[int] | None] = {_span(first): registers}
        matching: list[tuple[str, int]] = []
        for name, points in candidates:
            values = []
            for point in points:
                span = _span(point)
                if span not in raw:
                    raw[span] = (await self._read(unit, span))[2]
                values.append(_decode(point, raw[span]))
            if all(_plausible(value) for value in values):
                matching.append((name, len(points)))
        best = max((count for _, count in matching), default=0)
        suggested = tuple(name for name, count in matching if count == best)
        # A unit that returned registers to any probe answered normally: an exception to one
        # candidate's registers (another model's map) is not worth showing.
        if any(registers is not None for registers in raw.values()):
            exception_code = None
        return UnitProbe(unit, answered=True, exception_code=exception_code, profiles=suggested)

    async def _read(self, unit: int, span: _Span) -> tuple[bool, int | None, list[int] | None]:
        """(answered, exception code, registers) of one read."""
        client = await self._connected()
        function, address, count = span
        loop = asyncio.get_running_loop()
        wait_s = self._line_free_at - loop.time()
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        try:
            async with asyncio.timeout(self._timeout_s + _GUARD_S):
                if function == "input":
                    response = await client.read_input_registers(
                        address, count=count, device_id=unit
                    )
                else:
                    response = await client.read_holding_registers(
                        address, count=count, device_id=unit
                    )
        except (ModbusException, TimeoutError, OSError):
            return False, None, None
        finally:
            self._line_free_at = loop.time() + self._gap_s
        if response.isError():
            code = int(response.exception_code)
            return code not in GATEWAY_EXCEPTIONS, code, None
        return True, None, list(response.registers)

    async def _connected(self) -> ModbusBaseClient:
        if self._client is None:
            self._client = make_client(self._link, timeout_s=self._timeout_s, name="nbedge-scan")
        if not self._client.connected:
            try:
                async with asyncio.timeout(self._timeout_s + _GUARD_S):
                    ok = await self._client.connect()
            except TimeoutError:
                ok = False
            if not (ok and self._client.connected):
                raise DeviceUnavailable(self._link.endpoint, "cannot open the Modbus link")
        return self._client


def _span(point: PointSpec | None) -> _Span:
    """The read that fetches ``point``; without one, input register 0 (presence only)."""
    return ("input", 0, 1) if point is None else (point.function, point.address, point.count)


def _decode(point: PointSpec, registers: list[int] | None) -> float | None:
    if registers is None:
        return None
    try:
        decoded = decode_block(plan_reads([point])[0], registers)
    except DecodeError:
        return None
    return decoded[0][1] if decoded else None


def _plausible(value: float | None) -> bool:
    return value is not None and PLAUSIBLE_V[0] <= value <= PLAUSIBLE_V[1]
