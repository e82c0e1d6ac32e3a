"""Door sensor alerts: a door held open, a sensor gone silent, a low battery; each with hysteresis.

- ``door_held_open`` (warning): the door has been open for ``held_open_s``; cleared when it closes.
  It can only be raised again after the door has been open for ``held_open_s`` once more.
- ``sensor_silent`` (warning): no frame from the sensor for ``silent_s`` (counted from the
  gateway's start for a sensor never heard); cleared by the second frame after it, so one stray
  frame from a sensor at the edge of range does not clear and raise it again and again.
- ``low_battery`` (info): the battery at or below ``low_battery_pct``; cleared once it reads 10
  points above (a battery's reading rises and falls with temperature around any one threshold).
- ``ble_adapter`` (critical): the scanner reports the adapter unhealthy; cleared when
  advertisements arrive again.

Durations are measured on the monotonic clock; the alerts are stamped with the wall clock. Pure
logic with injected clocks: ``edge.ble`` feeds it frames and calls ``tick`` every second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge.alerts import AlertBook, Severity, Verdict, alert_key
from edge.schemas import BleSensorSection

HELD_OPEN_RULE = "door_held_open"
SILENT_RULE = "sensor_silent"
LOW_BATTERY_RULE = "low_battery"
ADAPTER_RULE = "ble_adapter"
DOOR_POINT = "door"
LINK_POINT = "link"
BATTERY_POINT = "battery"
BATTERY_CLEAR_MARGIN = 10.0
FRAMES_TO_CLEAR_SILENT = 2


@dataclass(slots=True)
class _Door:
    config: BleSensorSection
    open_since: float | None = None  # monotonic
    last_frame: float | None = None  # monotonic
    held_raised: bool = False
    silent_raised: bool = False
    frames_since_silent: int = 0
    battery_raised: bool = False


class DoorAlerts:
    """The three alerts of each door sensor and the adapter's (see the module doc)."""

    def __init__(
        self,
        sensors: Sequence[BleSensorSection],
        book: AlertBook,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._monotonic = monotonic
        self._wall = wall_clock
        self._started = monotonic()
        self._doors = {sensor.name: _Door(sensor) for sensor in sensors}
        for door in self._doors.values():
            name = door.config.name
            door.held_raised = book.is_active(alert_key(HELD_OPEN_RULE, name, DOOR_POINT))
            door.silent_raised = book.is_active(alert_key(SILENT_RULE, name, LINK_POINT))
            door.battery_raised = book.is_active(alert_key(LOW_BATTERY_RULE, name, BATTERY_POINT))
        self._adapter_raised = book.is_active(alert_key(ADAPTER_RULE, "ble", LINK_POINT))

    def frame(self, sensor: str, *, door_open: bool | None, battery: float | None) -> list[Verdict]:
        """What one accepted frame of ``sensor`` changes."""
        door = self._doors[sensor]
        now = self._monotonic()
        verdicts: list[Verdict] = []
        door.last_frame = now
        if door.silent_raised:
            door.frames_since_silent += 1
            if door.frames_since_silent >= FRAMES_TO_CLEAR_SILENT:
                door.silent_raised = False
                verdicts.append(
                    self._verdict(SILENT_RULE, door, LINK_POINT, False, f"{sensor} heard again", 0)
                )
        if door_open is True and door.open_since is None:
            door.open_since = now
        elif door_open is False:
            if door.held_raised:
                open_s = 0.0 if door.open_since is None else now - door.open_since
                door.held_raised = False
                verdicts.append(
                    self._verdict(
                        HELD_OPEN_RULE,
                        door,
                        DOOR_POINT,
                        False,
                        f"{sensor} closed after {_duration(open_s)} open",
                        open_s,
                    )
                )
            door.open_since = None
        if battery is not None:
            low = door.config.low_battery_pct
            if not door.battery_raised and battery <= low:
                door.battery_raised = True
                message = f"{sensor} battery at {battery:.0f} % (replace at {low:.0f} %)"
                verdicts.append(
                    self._verdict(LOW_BATTERY_RULE, door, BATTERY_POINT, True, message, battery)
                )
            elif door.battery_raised and battery >= low + BATTERY_CLEAR_MARGIN:
                door.battery_raised = False
                message = f"{sensor} battery at {battery:.0f} %"
                verdicts.append(
                    self._verdict(LOW_BATTERY_RULE, door, BATTERY_POINT, False, message, battery)
                )
        return verdicts

    def tick(
        self, *, adapter_healthy: bool = True, adapter_reason: str | None = None
    ) -> list[Verdict]:
        """What the passing of time changes: doors held open, sensors gone silent, the adapter."""
        now = self._monotonic()
        verdicts: list[Verdict] = []
        for door in self._doors.values():
            name = door.config.name
            held = door.config.held_open_s
            if (
                held > 0
                and door.open_since is not None
                and not door.held_raised
                and now - door.open_since >= held
            ):
                door.held_raised = True
                open_s = now - door.open_since
                verdicts.append(
                    self._verdict(
                        HELD_OPEN_RULE,
                        door,
                        DOOR_POINT,
                        True,
                        f"{name} open for {_duration(open_s)} (limit {_duration(held)})",
                        open_s,
                    )
                )
            silent = door.config.silent_s
            since = door.last_frame if door.last_frame is not None else self._started
            if silent > 0 and not door.silent_raised and now - since >= silent:
                door.silent_raised = True
                door.frames_since_silent = 0
                heard = "never heard" if door.last_frame is None else "no frame"
                verdicts.append(
                    self._verdict(
                        SILENT_RULE,
                        door,
                        LINK_POINT,
                        True,
                        f"{name} silent: {heard} for {_duration(now - since)}",
                        now - since,
                    )
                )
        if adapter_healthy == self._adapter_raised:
            self._adapter_raised = not adapter_healthy
            message = (
                "BLE adapter receives again"
                if adapter_healthy
                else f"BLE adapter unhealthy: {adapter_reason or 'no reason given'}"
            )
            verdicts.append(
                Verdict(
                    rule=ADAPTER_RULE,
                    device="ble",
                    point=LINK_POINT,
                    active=not adapter_healthy,
                    severity="critical",
                    message=message,
                    value=0.0 if adapter_healthy else 1.0,
                    at=self._wall(),
                )
            )
        return verdicts

    def _verdict(
        self, rule: str, door: _Door, point: str, active: bool, message: str, value: float
    ) -> Verdict:
        severity: Severity = "info" if rule == LOW_BATTERY_RULE else "warning"
        return Verdict(
            rule=rule,
            device=door.config.name,
            point=point,
            active=active,
            severity=severity,
            message=message,
            value=float(value),
            at=self._wall(),
        )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
