"""Threshold rules evaluated on every reading, before it is stored.

The voltage rule follows EN 50160: the supply voltage should stay within the nominal voltage
+-10 %. An alert is raised on the first reading outside the band and cleared only once a reading
is back inside the band by the hysteresis margin, so a voltage hovering at the limit does not flap.

The gate-fault rule raises a ``gate_fault`` alert while a gate controller reports the state
``fault`` (readings ``gate_state`` and ``gate_fault_code`` of firmware_bridge.modbus.gate), and
clears it when the gate leaves that state.

The device-silent rule turns a bus's device state changes into a ``device_silent`` alert per
device (point ``link``): raised when the device goes offline, cleared when it answers again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Protocol

from edge.alerts import Alert, AlertBook, alert_key
from edge.schemas import VoltageRuleSection
from firmware_bridge.modbus.bus import DeviceStateChange
from firmware_bridge.modbus.gate import FAULT_POINT, FAULTS, STATE_POINT, GateState
from firmware_bridge.readings import Reading

VOLTAGE_RULE = "voltage"
GATE_FAULT_RULE = "gate_fault"
DEVICE_SILENT_RULE = "device_silent"
LINK_POINT = "link"


def device_silent(change: DeviceStateChange, book: AlertBook) -> Alert | None:
    """The ``device_silent`` alert raised or cleared by ``change``, if any; ``book`` is updated.

    The alert's value is the number of failed polls in a row when it was raised (0 when cleared).
    """
    if change.online:
        return book.clear(
            alert_key(DEVICE_SILENT_RULE, change.device, LINK_POINT),
            message=f"{change.device} answers again",
            value=0.0,
            at=change.wall_time,
        )
    if change.last_ok_wall_time is None:
        since = "no answer since the gateway started"
    else:
        clock = datetime.fromtimestamp(change.last_ok_wall_time, UTC).strftime("%H:%M:%S")
        since = f"no answer since {clock} UTC"
    failures = change.consecutive_failures
    why = f"{failures} failed polls; last: {change.reason}" if failures else change.reason
    return book.raise_(
        rule=DEVICE_SILENT_RULE,
        device=change.device,
        point=LINK_POINT,
        severity="warning",
        message=f"{change.device} silent: {since} ({why})",
        value=float(failures),
        at=change.wall_time,
    )


class Rule(Protocol):
    def evaluate(self, readings: Iterable[Reading], book: AlertBook) -> list[Alert]:
        """The alerts raised or cleared by ``readings``, in order; ``book`` is updated."""
        ...


class GateFaultRule:
    """``gate_fault`` while a gate controller is in fault (see the module doc)."""

    def __init__(self) -> None:
        self._fault_code: dict[str, int] = {}

    def evaluate(self, readings: Iterable[Reading], book: AlertBook) -> list[Alert]:
        changes: list[Alert] = []
        for reading in readings:
            if reading.point == FAULT_POINT:
                self._fault_code[reading.device] = int(reading.value)
            elif reading.point == STATE_POINT:
                change = self._check(reading, book)
                if change is not None:
                    changes.append(change)
        return changes

    def _check(self, reading: Reading, book: AlertBook) -> Alert | None:
        if reading.value == GateState.FAULT:
            code = self._fault_code.get(reading.device, 0)
            return book.raise_(
                rule=GATE_FAULT_RULE,
                device=reading.device,
                point=STATE_POINT,
                severity="warning",
                message=f"{reading.device} in fault: {FAULTS.get(code, 'other')} (code {code})",
                value=float(code),
                at=reading.wall_time,
            )
        return book.clear(
            alert_key(GATE_FAULT_RULE, reading.device, STATE_POINT),
            message=f"{reading.device} out of fault",
            value=0.0,
            at=reading.wall_time,
        )


class VoltageRule:
    def __init__(self, config: VoltageRuleSection) -> None:
        band = config.nominal_v * config.tolerance_pct / 100
        margin = config.nominal_v * config.hysteresis_pct / 100
        self.low = config.nominal_v - band
        self.high = config.nominal_v + band
        self._clear_low = self.low + margin
        self._clear_high = self.high - margin
        self._points = frozenset(config.points)

    def evaluate(self, readings: Iterable[Reading], book: AlertBook) -> list[Alert]:
        """The alerts raised or cleared by ``readings``, in order; ``book`` is updated."""
        changes: list[Alert] = []
        for reading in readings:
            if reading.point not in self._points:
                continue
            change = self._check(reading, book)
            if change is not None:
                changes.append(change)
        return changes

    def _check(self, reading: Reading, book: AlertBook) -> Alert | None:
        value = reading.value
        if value < self.low or value > self.high:
            side = "under" if value < self.low else "over"
            limit = self.low if value < self.low else self.high
            return book.raise_(
                rule=VOLTAGE_RULE,
                device=reading.device,
                point=reading.point,
                severity="warning",
                message=f"{side}voltage on {reading.point}: {value:.1f} {reading.unit}"
                f" (limit {limit:.1f} V, EN 50160)",
                value=value,
                at=reading.wall_time,
            )
        key = alert_key(VOLTAGE_RULE, reading.device, reading.point)
        if book.is_active(key) and self._clear_low <= value <= self._clear_high:
            return book.clear(
                key,
                message=f"voltage on {reading.point} back to {value:.1f} {reading.unit}",
                value=value,
                at=reading.wall_time,
            )
        return None
