"""BTHome sensors in software, named after the devices: Shelly BLU Motion, H&T and Button, and
a leak and a smoke sensor.

Each is a :class:`sim.bthome.SimulatedSensor`: a pure function of time (``advertise(now)``),
silent before ``start``, every frame with a new packet id and counter and the battery, plain or
encrypted with a bind key. Offsets (motions, presses, schedules) are seconds after ``start``.
Frames are built with the encoders of ``sim.bthome`` in the objects and device-information
flags the devices send, as far as Shelly documents them (docs/ble.md, "Simulated sensors").

    button = ShellyBluButton("7C:C6:B6:00:00:05", presses=[(35.0, ButtonEvent.PRESS)])
    button.advertise(start + 36.0)  # the press frame, repeated until the next frame
"""

from __future__ import annotations

import bisect
import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field

from sim.bthome import (
    BTHomeObject,
    ButtonEvent,
    SimulatedSensor,
    button,
    heartbeats,
    humidity_whole,
    illuminance,
    moisture,
    motion,
    smoke,
    temperature_tenths,
)

Presses = Sequence[tuple[float, ButtonEvent]]


def _sorted_presses(presses: Presses) -> tuple[list[float], list[ButtonEvent]]:
    ordered = sorted(presses, key=lambda p: p[0])
    return [at for at, _ in ordered], [event for _, event in ordered]


def _press_in_latest(
    times: list[float], events: list[ButtonEvent], t: float, other_frame: float
) -> list[BTHomeObject]:
    """The button object when the latest frame at ``t`` is a press (it is later than
    ``other_frame``, the latest frame of any other cause), else nothing."""
    i = bisect.bisect_right(times, t)
    if i and times[i - 1] >= other_frame:
        return [button(events[i - 1])]
    return []


def _check_interval(what: str, every_s: float | None) -> None:
    if every_s is not None and every_s <= 0:
        raise ValueError(f"{what} must be positive (or None: no such frames)")


@dataclass(slots=True)
class ShellyBluMotion(SimulatedSensor):
    """A Shelly BLU Motion (SBMO-003Z): motion and illuminance.

    The PIR sees movement at each offset of ``movements``. The first movement sends a frame with
    motion 1 and starts the blind time (``blind_time_s``); a movement within it restarts the
    countdown and sends nothing; when it runs out, a frame with motion 0. In beacon mode (a
    setting of the device) a frame with the last state every ``beacon_interval_s``, the first at
    ``start``; None: no beacon, no frame until the first movement.
    """

    mac: str
    _: KW_ONLY
    movements: Sequence[float] = ()
    blind_time_s: float = 30.0
    beacon_interval_s: float | None = 60.0
    illuminance_lux: float = 80.0
    name: str = "SBMO-003Z"
    bind_key: bytes | None = None
    start: float = 0.0
    battery_pct: int = 100
    first_packet_id: int = 0
    first_counter: int = 0
    trigger_based: bool = True
    _starts: list[float] = field(init=False, default_factory=list)
    _ends: list[float] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._check()
        _check_interval("beacon_interval_s", self.beacon_interval_s)
        if self.blind_time_s <= 0:
            raise ValueError("blind_time_s must be positive")
        for at in sorted(self.movements):
            if self._ends and at < self._ends[-1]:
                self._ends[-1] = at + self.blind_time_s  # the countdown starts again
            else:
                self._starts.append(at)
                self._ends.append(at + self.blind_time_s)

    def moving_at(self, t: float) -> bool:
        """Whether the sensor reports motion ``t`` seconds after ``start``."""
        i = bisect.bisect_right(self._starts, t) - 1
        return i >= 0 and t < self._ends[i]

    def frames_sent(self, t: float) -> int:
        return (
            heartbeats(t, self.beacon_interval_s)
            + bisect.bisect_right(self._starts, t)
            + bisect.bisect_right(self._ends, t)
        )

    def objects_at(self, t: float) -> list[BTHomeObject]:
        return [illuminance(self.illuminance_lux), motion(self.moving_at(t))]


@dataclass(slots=True)
class ShellyBluHT(SimulatedSensor):
    """A Shelly BLU H&T (SBHT-003C): temperature and humidity every ``interval_s`` (a minute,
    the first frame at ``start``), and a frame at each press of its button.

    ``schedule`` holds (offset, °C, %): the values from that offset on, until the next entry.
    """

    mac: str
    _: KW_ONLY
    schedule: Sequence[tuple[float, float, float]] = ((0.0, 24.0, 50.0),)
    interval_s: float = 60.0
    presses: Presses = ()
    name: str = "SBHT-003C"
    bind_key: bytes | None = None
    start: float = 0.0
    battery_pct: int = 100
    first_packet_id: int = 0
    first_counter: int = 0
    trigger_based: bool = True
    _offsets: list[float] = field(init=False, default_factory=list)
    _press_times: list[float] = field(init=False, default_factory=list)
    _press_events: list[ButtonEvent] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._check()
        _check_interval("interval_s", self.interval_s)
        self._offsets = [at for at, _, _ in self.schedule]
        if not self._offsets or self._offsets[0] > 0 or self._offsets != sorted(self._offsets):
            raise ValueError("the schedule starts at 0 (or before) and is in time order")
        self._press_times, self._press_events = _sorted_presses(self.presses)

    def values_at(self, t: float) -> tuple[float, float]:
        """Temperature (°C) and humidity (%) ``t`` seconds after ``start``."""
        _, celsius, percent = self.schedule[bisect.bisect_right(self._offsets, t) - 1]
        return celsius, percent

    def frames_sent(self, t: float) -> int:
        return heartbeats(t, self.interval_s) + bisect.bisect_right(self._press_times, t)

    def objects_at(self, t: float) -> list[BTHomeObject]:
        celsius, percent = self.values_at(t)
        measured = math.floor(t / self.interval_s) * self.interval_s
        pressed = _press_in_latest(self._press_times, self._press_events, t, measured)
        return [humidity_whole(percent), *pressed, temperature_tenths(celsius)]


@dataclass(slots=True)
class ShellyBluButton(SimulatedSensor):
    """A Shelly BLU Button (SBBT-002C): a frame at each press of ``presses``, with its kind
    (press, double, triple, long), and nothing else; in beacon mode (a setting of the device,
    off unless ``beacon_interval_s`` is given) also a frame without a button event at ``start``
    and every ``beacon_interval_s``.
    """

    mac: str
    _: KW_ONLY
    presses: Presses = ()
    beacon_interval_s: float | None = None
    name: str = "SBBT-002C"
    bind_key: bytes | None = None
    start: float = 0.0
    battery_pct: int = 100
    first_packet_id: int = 0
    first_counter: int = 0
    trigger_based: bool = True
    _press_times: list[float] = field(init=False, default_factory=list)
    _press_events: list[ButtonEvent] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._check()
        _check_interval("beacon_interval_s", self.beacon_interval_s)
        self._press_times, self._press_events = _sorted_presses(self.presses)

    def frames_sent(self, t: float) -> int:
        return heartbeats(t, self.beacon_interval_s) + bisect.bisect_right(self._press_times, t)

    def objects_at(self, t: float) -> list[BTHomeObject]:
        beacon = (
            -math.inf
            if self.beacon_interval_s is None
            else math.floor(t / self.beacon_interval_s) * self.beacon_interval_s
        )
        return _press_in_latest(self._press_times, self._press_events, t, beacon)


@dataclass(slots=True)
class _AlarmSensor(SimulatedSensor):
    """A sensor with one binary state: a frame at ``start``, at each change and every
    ``heartbeat_s`` with the state. ``active_between`` holds (from, until) offsets."""

    mac: str
    _: KW_ONLY
    active_between: Sequence[tuple[float, float]] = ()
    heartbeat_s: float | None = 60.0
    name: str = "BTHome"
    bind_key: bytes | None = None
    start: float = 0.0
    battery_pct: int = 100
    first_packet_id: int = 0
    first_counter: int = 0
    trigger_based: bool = True
    _changes: list[float] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._check()
        _check_interval("heartbeat_s", self.heartbeat_s)
        previous = -math.inf
        for begins, ends in self.active_between:
            if not previous <= begins < ends:
                raise ValueError(
                    f"({begins}, {ends}) is not after the one before or ends before it begins"
                )
            self._changes += [begins, ends]
            previous = ends

    def active_at(self, t: float) -> bool:
        """Whether the state is on ``t`` seconds after ``start``."""
        return bisect.bisect_right(self._changes, t) % 2 == 1

    def frames_sent(self, t: float) -> int:
        boot = 1 if self.heartbeat_s is None else 0  # a heartbeat's first frame is at start
        return boot + heartbeats(t, self.heartbeat_s) + bisect.bisect_right(self._changes, t)

    def objects_at(self, t: float) -> list[BTHomeObject]:
        return [self._state(self.active_at(t))]

    @abstractmethod
    def _state(self, on: bool) -> BTHomeObject:
        """The state's object."""


@dataclass(slots=True)
class LeakSensor(_AlarmSensor):
    """A BTHome water leak sensor: moisture (0x20), 1 while wet (``active_between``)."""

    name: str = "leak"

    def _state(self, on: bool) -> BTHomeObject:
        return moisture(on)


@dataclass(slots=True)
class SmokeSensor(_AlarmSensor):
    """A BTHome smoke sensor: smoke (0x29), 1 while it detects smoke (``active_between``)."""

    name: str = "smoke"

    def _state(self, on: bool) -> BTHomeObject:
        return smoke(on)
