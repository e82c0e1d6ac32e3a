"""Door sensor findings: a door held open, a sensor gone silent, a low battery; each with
hysteresis. Findings are levels (active or not, on every frame and tick); the alert book decides
what changed, so nothing here knows whether an alert is raised.

- ``door_held_open``: active once the door has been open for ``held_open_s``; inactive when it
  closes. It can only be active again after the door has been open for ``held_open_s`` once more.
- ``sensor_silent``: active after no frame for ``silent_s`` (counted from the gateway's start
  for a sensor never heard); inactive from the second frame after it, so one stray frame from a
  sensor at the edge of range does not clear and raise it again and again.
- ``low_battery``: active at or below ``low_battery_pct``; inactive 10 points above (a battery's
  reading rises and falls with temperature around any one threshold).
- ``ble_adapter``: active while the scanner reports the adapter unhealthy.

Durations are measured on the monotonic clock; findings are stamped with the wall clock. Pure
logic with injected clocks: ``edge.ble`` feeds it frames and calls ``tick`` every second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from edge.alerts import Finding
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
    frames_since_silent: int = 0
    """Frames heard since the sensor was last found silent (hysteresis, not an alert flag)."""
    silent: bool = False
    """The level of ``sensor_silent``: found silent, and not yet heard enough frames since."""


class DoorAlerts:
    """The findings of each door sensor and of the adapter (see the module doc)."""

    def __init__(
        self,
        sensors: Sequence[BleSensorSection],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._monotonic = monotonic
        self._wall = wall_clock
        self._started = monotonic()
        self._doors = {sensor.name: _Door(sensor) for sensor in sensors}

    def frame(self, sensor: str, *, door_open: bool | None, battery: float | None) -> list[Finding]:
        """What one accepted frame of ``sensor`` finds."""
        door = self._doors[sensor]
        now = self._monotonic()
        findings: list[Finding] = []
        door.last_frame = now
        door.frames_since_silent += 1
        if door.frames_since_silent >= FRAMES_TO_CLEAR_SILENT:
            door.silent = False
            findings.append(self._finding(SILENT_RULE, door, LINK_POINT, False, 0.0))
        if door_open is True and door.open_since is None:
            door.open_since = now
        elif door_open is False:
            open_s = 0.0 if door.open_since is None else now - door.open_since
            params = {"open_s": open_s}
            findings.append(self._finding(HELD_OPEN_RULE, door, DOOR_POINT, False, open_s, params))
            door.open_since = None
        if battery is not None:
            low = door.config.low_battery_pct
            params = {"battery": battery, "low": low}
            if battery <= low:
                findings.append(
                    self._finding(LOW_BATTERY_RULE, door, BATTERY_POINT, True, battery, params)
                )
            elif battery >= low + BATTERY_CLEAR_MARGIN:
                findings.append(
                    self._finding(LOW_BATTERY_RULE, door, BATTERY_POINT, False, battery, params)
                )
        return findings

    def online(self, sensor: str) -> bool | None:
        """Whether ``sensor`` is heard: False while ``sensor_silent`` is found (with its
        hysteresis), None if it has not been heard since start and is not yet silent."""
        door = self._doors[sensor]
        if door.silent:
            return False
        return None if door.last_frame is None else True

    def tick(
        self, *, adapter_healthy: bool = True, adapter_reason: str | None = None
    ) -> list[Finding]:
        """What the passing of time finds: doors held open, sensors gone silent, the adapter."""
        now = self._monotonic()
        findings: list[Finding] = []
        for door in self._doors.values():
            held = door.config.held_open_s
            if held > 0 and door.open_since is not None and now - door.open_since >= held:
                open_s = now - door.open_since
                params = {"open_s": open_s, "limit_s": float(held)}
                findings.append(
                    self._finding(HELD_OPEN_RULE, door, DOOR_POINT, True, open_s, params)
                )
            silent = door.config.silent_s
            since = door.last_frame if door.last_frame is not None else self._started
            if silent > 0 and now - since >= silent:
                door.frames_since_silent = 0
                door.silent = True
                silence: dict[str, str | int | float | bool] = {
                    "silent_s": now - since,
                    "variant": "never" if door.last_frame is None else "",
                }
                findings.append(
                    self._finding(SILENT_RULE, door, LINK_POINT, True, now - since, silence)
                )
        findings.append(
            Finding(
                code=ADAPTER_RULE,
                device="ble",
                point=LINK_POINT,
                active=not adapter_healthy,
                value=0.0 if adapter_healthy else 1.0,
                at=self._wall(),
                params={"reason": adapter_reason or "no reason given"},
            )
        )
        return findings

    def _finding(
        self,
        code: str,
        door: _Door,
        point: str,
        active: bool,
        value: float,
        params: Mapping[str, str | int | float | bool] | None = None,
    ) -> Finding:
        return Finding(
            code=code,
            device=door.config.name,
            point=point,
            active=active,
            value=float(value),
            at=self._wall(),
            params=dict(params or {}),
        )
