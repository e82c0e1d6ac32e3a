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
- ``water_leak`` and ``smoke``: active when a leak or smoke sensor turns wet or smoky (its first
  frame saying so, or one after a frame saying not); never inactive from the sensor: these are
  latched, and the person who resolves the alert ends it. Wet again after dry, while the alert
  is open, is one more event of it.
- ``sos``: active at each press of a button that means SOS (``sos_press``), each one more event
  of the open alert.
- ``press_to_test``: a button sends only when pressed, so instead of ``sensor_silent`` it is
  active after no frame for ``test_every_s``, and inactive at its next frame.

Each finding of a sensor with a ``label`` carries it as ``sensor_label``: the alert's text names
the sensor as people know it, on every channel (MQTT, the central API, the console).

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
LEAK_RULE = "water_leak"
SMOKE_RULE = "smoke"
SOS_RULE = "sos"
SOS_POINT = "button"
PRESS_TEST_RULE = "press_to_test"
LATCHED: dict[str, tuple[str, str]] = {
    "moisture": (LEAK_RULE, "leak"),
    "smoke": (SMOKE_RULE, "smoke"),
}
"""bthome-ble's binary key of a latched condition: its code and point."""
SILENT_RULE = "sensor_silent"
LOW_BATTERY_RULE = "low_battery"
ADAPTER_RULE = "ble_adapter"
DOOR_POINT = "door"
LINK_POINT = "link"
BATTERY_POINT = "battery"
BATTERY_CLEAR_MARGIN = 10.0
FRAMES_TO_CLEAR_SILENT = 2


def _label(sensor: BleSensorSection) -> dict[str, str]:
    return {"sensor_label": sensor.label} if sensor.label else {}


@dataclass(slots=True)
class _Door:
    config: BleSensorSection
    open_since: float | None = None  # monotonic
    last_frame: float | None = None  # monotonic
    frames_since_silent: int = 0
    """Frames heard since the sensor was last found silent (hysteresis, not an alert flag)."""
    silent: bool = False
    """The level of ``sensor_silent``: found silent, and not yet heard enough frames since."""
    binary: dict[str, bool] | None = None
    """The last state of each latched condition (``moisture``, ``smoke``) heard."""


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

    def frame(
        self,
        sensor: str,
        *,
        door_open: bool | None,
        battery: float | None,
        binary: Mapping[str, bool] | None = None,
        events: Sequence[str] = (),
    ) -> list[Finding]:
        """What one accepted frame of ``sensor`` finds."""
        door = self._doors[sensor]
        now = self._monotonic()
        findings: list[Finding] = []
        door.last_frame = now
        door.frames_since_silent += 1
        button = door.config.kind == "button"
        if button or door.frames_since_silent >= FRAMES_TO_CLEAR_SILENT:
            door.silent = False
            code = PRESS_TEST_RULE if button else SILENT_RULE
            findings.append(self._finding(code, door, LINK_POINT, False, 0.0))
        findings += self._latched(door, binary or {}, events)
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

    def _latched(
        self, door: _Door, binary: Mapping[str, bool], events: Sequence[str]
    ) -> list[Finding]:
        """A leak, smoke or an SOS press in this frame: a latched finding (see the module doc)."""
        findings = []
        config = door.config
        if config.kind in ("leak", "smoke"):
            before = door.binary if door.binary is not None else {}
            for key, (code, point) in LATCHED.items():
                if key in binary:
                    if binary[key] and not before.get(key, False):
                        findings.append(self._finding(code, door, point, True, 1.0))
                    before[key] = binary[key]
            door.binary = before
        elif config.kind == "button":
            for event in events:
                source, _, press = event.partition(":")
                pressed = source.startswith("button") and press not in ("", "none")
                if pressed and config.sos_press in ("any", press):
                    params = {"press": press}
                    findings.append(self._finding(SOS_RULE, door, SOS_POINT, True, 1.0, params))
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
            button = door.config.kind == "button"
            silent = door.config.test_every_s if button else door.config.silent_s
            since = door.last_frame if door.last_frame is not None else self._started
            if silent > 0 and now - since >= silent:
                door.frames_since_silent = 0
                door.silent = True
                silence: dict[str, str | int | float | bool] = {
                    "silent_s": now - since,
                    "variant": "never" if door.last_frame is None else "",
                }
                code = PRESS_TEST_RULE if button else SILENT_RULE
                findings.append(self._finding(code, door, LINK_POINT, True, now - since, silence))
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
            params=dict(params or {}) | _label(door.config),
        )
