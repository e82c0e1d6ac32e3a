"""BTHome v2 advertisements in software: an encoder and a simulated Shelly BLU Door/Window.

:func:`encode_service_data` builds the service data a BTHome v2 device sends under UUID
``0000fcd2-0000-1000-8000-00805f9b34fb`` (https://bthome.io/format/): a device-information byte
(bit 0 encryption, bit 2 trigger based, bits 5-7 version 2), then the objects, each an object id
followed by its little-endian value, in ascending object id order. Encrypted frames follow
https://bthome.io/encryption/: AES-CCM with a 4-byte MIC, nonce = MAC (6 bytes, display order)
+ ``d2 fc`` + device-information byte + counter (4 bytes little-endian); the frame is the
device-information byte, the ciphertext, the counter and the MIC.

The object helpers (:func:`packet_id`, :func:`battery`, ...) take ids, sizes and factors from
bthome-ble's ``MEAS_TYPES``. :class:`SimulatedDoorSensor` behaves like a Shelly BLU Door/Window
(SBDW-002C) and is a pure function of time: no I/O, no clock, no asyncio. :class:`SimulatedSensor`
is what the other simulated sensors share (``sim.sensors``: Shelly BLU Motion, H&T, Button, leak
and smoke); :class:`ScriptedSensor` sends frames it is given.
"""

from __future__ import annotations

import bisect
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from enum import IntEnum
from typing import Final

from cryptography.hazmat.primitives.ciphers.aead import AESCCM

BTHOME_UUID: Final = "0000fcd2-0000-1000-8000-00805f9b34fb"
_UUID16_LE: Final = b"\xd2\xfc"
_VERSION_2: Final = 2 << 5
_ENCRYPTED: Final = 0x01
_TRIGGER_BASED: Final = 0x04
_MIC_LEN: Final = 4

# Object ids (bthome_ble.const.MEAS_TYPES; https://bthome.io/format/).
PACKET_ID: Final = 0x00  # uint8
BATTERY: Final = 0x01  # uint8, %
ILLUMINANCE: Final = 0x05  # uint24, 0.01 lux
WINDOW: Final = 0x2D  # uint8, 1 = open
BUTTON: Final = 0x3A  # uint8 event
ROTATION: Final = 0x3F  # sint16, 0.1 degree

BTHomeObject = tuple[int, bytes]
"""One BTHome object: its id and its little-endian value bytes."""


class ButtonEvent(IntEnum):
    """Button event values of object 0x3A."""

    NONE = 0
    PRESS = 1
    DOUBLE_PRESS = 2
    TRIPLE_PRESS = 3
    LONG_PRESS = 4


def _uint(value: int, size: int, what: str) -> bytes:
    if not 0 <= value < 1 << (8 * size):
        raise ValueError(f"{what} {value} does not fit in an unsigned {8 * size}-bit value")
    return value.to_bytes(size, "little")


def _sint(value: int, size: int, what: str) -> bytes:
    limit = 1 << (8 * size - 1)
    if not -limit <= value < limit:
        raise ValueError(f"{what} {value} does not fit in a signed {8 * size}-bit value")
    return value.to_bytes(size, "little", signed=True)


def packet_id(value: int) -> BTHomeObject:
    """Packet id (0x00, uint8): a revolving counter, new for every new frame."""
    return PACKET_ID, _uint(value, 1, "packet id")


def battery(percent: int) -> BTHomeObject:
    """Battery level (0x01, uint8, percent)."""
    if not 0 <= percent <= 100:
        raise ValueError(f"battery {percent} % is outside 0-100")
    return BATTERY, _uint(percent, 1, "battery")


def illuminance(lux: float) -> BTHomeObject:
    """Illuminance (0x05, uint24, factor 0.01 lux)."""
    return ILLUMINANCE, _uint(round(lux * 100), 3, "illuminance x 100")


def window(is_open: bool) -> BTHomeObject:
    """Window (0x2D, uint8): 1 open, 0 closed."""
    return WINDOW, bytes([1 if is_open else 0])


def button(event: ButtonEvent | int) -> BTHomeObject:
    """Button event (0x3A, uint8): 1 press, 2 double press, 3 triple press, 4 long press."""
    return BUTTON, _uint(int(event), 1, "button event")


def rotation(degrees: float) -> BTHomeObject:
    """Rotation (0x3F, sint16, factor 0.1 degree)."""
    return ROTATION, _sint(round(degrees * 10), 2, "rotation x 10")


def mac_bytes(mac: str) -> bytes:
    """``"AA:BB:CC:DD:EE:FF"`` as 6 bytes in display order."""
    try:
        raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    except ValueError:
        raw = b""
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


def encode_service_data(
    objects: Sequence[BTHomeObject],
    *,
    mac: str,
    bind_key: bytes | None = None,
    counter: int = 0,
    trigger_based: bool = False,
) -> bytes:
    """The BTHome v2 service data for ``objects``, encrypted when ``bind_key`` is given.

    Objects are sorted by id (stably, so repeated ids keep their order). ``mac`` is only used
    in the nonce of encrypted frames; ``counter`` (uint32) must grow from frame to frame there.
    """
    nonce_mac = mac_bytes(mac)
    info = _VERSION_2 | (_TRIGGER_BASED if trigger_based else 0)
    payload = b"".join(
        bytes([object_id]) + value for object_id, value in sorted(objects, key=lambda o: o[0])
    )
    if bind_key is None:
        return bytes([info]) + payload
    if len(bind_key) != 16:
        raise ValueError(f"a BTHome bind key is 16 bytes, not {len(bind_key)}")
    info |= _ENCRYPTED
    counter_bytes = _uint(counter, 4, "encryption counter")
    nonce = nonce_mac + _UUID16_LE + bytes([info]) + counter_bytes
    sealed = AESCCM(bind_key, tag_length=_MIC_LEN).encrypt(nonce, payload, None)
    return bytes([info]) + sealed[:-_MIC_LEN] + counter_bytes + sealed[-_MIC_LEN:]


@dataclass(frozen=True, slots=True)
class DoorReading:
    """What a door sensor reports in one frame."""

    packet_id: int
    counter: int
    battery_pct: int
    illuminance_lux: float
    is_open: bool
    rotation_deg: float
    button: ButtonEvent

    def objects(self) -> list[BTHomeObject]:
        """The BTHome objects of this frame, as a Shelly BLU Door/Window orders them."""
        objs = [
            packet_id(self.packet_id),
            battery(self.battery_pct),
            illuminance(self.illuminance_lux),
            window(self.is_open),
        ]
        if self.button is not ButtonEvent.NONE:
            objs.append(button(self.button))
        objs.append(rotation(self.rotation_deg))
        return objs


_DAY_S: Final = 86_400.0


@dataclass(slots=True)
class SimulatedDoorSensor:
    """A Shelly BLU Door/Window in software, a pure function of time.

    Times ``now`` are on the caller's clock; ``start`` is when the sensor was switched on, and
    schedule, presses and silences are offsets in seconds from it. Before ``start`` the sensor is
    silent.

    - The door opens and closes on ``schedule`` ((open_at_s, close_at_s) pairs); with no
      schedule, a random one drawn from ``seed`` (gaps of mean ``open_every_s``, open for a
      mean ``open_for_s``).
    - Every frame has a new packet id (uint8, wraps) and, when encrypted, a new counter: the
      boot frame at ``start``, every state change, the angle report ``angle_delay_s`` after an
      opening (as the real device measures its tilt after 2 s), every button press, and a
      heartbeat every ``repeat_interval_s`` repeating the state.
    - Battery drains linearly by ``battery_drain_pct_per_day``; at 0 % the sensor is silent.
    - In ``silent_between`` windows nothing is sent; frames still count (the device sent
      them, nobody heard), so packet ids jump when the sensor is heard again.
    - Frames have the trigger-based flag (0x44, encrypted 0x45), as Shelly BLU firmware sends.

    The same seed, schedule, presses and ``now`` give the same bytes, whatever the call order.
    """

    mac: str
    name: str = "SBDW-002C"
    bind_key: bytes | None = None
    seed: int = 0
    start: float = 0.0
    schedule: Sequence[tuple[float, float]] | None = None
    open_every_s: float = 600.0
    open_for_s: float = 30.0
    repeat_interval_s: float = 60.0
    angle_delay_s: float = 2.0
    battery_start_pct: float = 100.0
    battery_drain_pct_per_day: float = 0.0
    illuminance_lux: float = 120.0
    silent_between: Sequence[tuple[float, float]] = ()
    first_packet_id: int = 0
    first_counter: int = 0
    trigger_based: bool = True
    _opens: list[float] = field(init=False, default_factory=list)
    _closes: list[float] = field(init=False, default_factory=list)
    _angles: list[float] = field(init=False, default_factory=list)
    _presses: list[tuple[float, int]] = field(init=False, default_factory=list)
    _rng: random.Random | None = field(init=False, default=None)
    _generated_until: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        mac_bytes(self.mac)
        if self.bind_key is not None and len(self.bind_key) != 16:
            raise ValueError(f"a BTHome bind key is 16 bytes, not {len(self.bind_key)}")
        if self.repeat_interval_s <= 0:
            raise ValueError("repeat_interval_s must be positive")
        for start_s, end_s in self.silent_between:
            if end_s < start_s:
                raise ValueError(f"silent window ({start_s}, {end_s}) ends before it starts")
        if self.schedule is None:
            self._rng = random.Random(self.seed)
            return
        previous_close = -math.inf
        for open_at, close_at in self.schedule:
            if not previous_close <= open_at < close_at:
                raise ValueError(
                    f"schedule pair ({open_at}, {close_at}) is not after the previous one "
                    "or closes before it opens"
                )
            self._add_opening(open_at, close_at)
            previous_close = close_at
        self._generated_until = math.inf

    def _add_opening(self, open_at: float, close_at: float) -> None:
        self._opens.append(open_at)
        self._closes.append(close_at)
        if open_at + self.angle_delay_s < close_at:
            self._angles.append(open_at + self.angle_delay_s)

    def _extend_schedule(self, until: float) -> None:
        """Draw random openings (from the seed, in order) until one starts after ``until``."""
        rng = self._rng
        if rng is None:
            return
        while self._generated_until <= until:
            last_close = self._closes[-1] if self._closes else 0.0
            open_at = last_close + rng.expovariate(1.0 / self.open_every_s)
            close_at = open_at + max(1.0, rng.expovariate(1.0 / self.open_for_s))
            self._add_opening(open_at, close_at)
            self._generated_until = open_at

    def press_button(self, at_s: float, event: ButtonEvent = ButtonEvent.PRESS) -> None:
        """Press the button ``at_s`` seconds after ``start``: one frame with the event."""
        bisect.insort(self._presses, (at_s, int(event)))

    def openings(self, until_s: float) -> list[tuple[float, float]]:
        """The (open_at_s, close_at_s) pairs that open before ``until_s``."""
        self._extend_schedule(until_s)
        n = bisect.bisect_left(self._opens, until_s)
        return list(zip(self._opens[:n], self._closes[:n], strict=True))

    def is_open_at(self, t: float) -> bool:
        """Whether the door is open ``t`` seconds after ``start``."""
        self._extend_schedule(t)
        i = bisect.bisect_right(self._opens, t) - 1
        return i >= 0 and t < self._closes[i]

    def battery_at(self, t: float) -> float:
        """Battery level in percent ``t`` seconds after ``start``."""
        drained = self.battery_drain_pct_per_day * max(t, 0.0) / _DAY_S
        return max(0.0, min(100.0, self.battery_start_pct - drained))

    def frames_sent(self, t: float) -> int:
        """How many frames the sensor has sent by ``t`` (inclusive), the boot frame included."""
        if t < 0:
            return 0
        self._extend_schedule(t)
        return (
            1
            + math.floor(t / self.repeat_interval_s)
            + bisect.bisect_right(self._opens, t)
            + bisect.bisect_right(self._closes, t)
            + bisect.bisect_right(self._angles, t)
            + bisect.bisect_right(self._presses, (t, math.inf))
        )

    def _is_silent(self, t: float) -> bool:
        if t < 0 or self.battery_at(t) <= 0:
            return True
        return any(start_s <= t < end_s for start_s, end_s in self.silent_between)

    def _last_event(self, times: list[float], t: float) -> float:
        i = bisect.bisect_right(times, t)
        return times[i - 1] if i else -math.inf

    def reading(self, now: float) -> DoorReading | None:
        """What the sensor reports at ``now``: its latest frame, or None while silent."""
        t = now - self.start
        if self._is_silent(t):
            return None
        sent = self.frames_sent(t)
        index = sent - 1
        is_open = self.is_open_at(t)
        angle = 0.0
        if is_open:
            i = bisect.bisect_right(self._opens, t) - 1
            if t >= self._opens[i] + self.angle_delay_s:
                angle = round(random.Random(f"{self.seed}:angle:{i}").uniform(5.0, 90.0), 1)
        event = ButtonEvent.NONE
        p = bisect.bisect_right(self._presses, (t, math.inf))
        if p:
            press_at, press_event = self._presses[p - 1]
            others = max(
                0.0,
                math.floor(t / self.repeat_interval_s) * self.repeat_interval_s,
                self._last_event(self._opens, t),
                self._last_event(self._closes, t),
                self._last_event(self._angles, t),
            )
            if press_at >= others:
                event = ButtonEvent(press_event)
        noise = random.Random(f"{self.seed}:lux:{index}").uniform(0.9, 1.1)
        return DoorReading(
            packet_id=(self.first_packet_id + index) % 256,
            counter=(self.first_counter + index) % (1 << 32),
            battery_pct=round(self.battery_at(t)),
            illuminance_lux=round(self.illuminance_lux * noise, 2),
            is_open=is_open,
            rotation_deg=angle,
            button=event,
        )

    def advertise(self, now: float) -> bytes | None:
        """The service data the sensor sends at ``now``, or None while it is silent."""
        current = self.reading(now)
        if current is None:
            return None
        return encode_service_data(
            current.objects(),
            mac=self.mac,
            bind_key=self.bind_key,
            counter=current.counter,
            trigger_based=self.trigger_based,
        )


MOISTURE: Final = 0x20  # uint8, 1 = wet
MOTION: Final = 0x21  # uint8, 1 = motion
SMOKE: Final = 0x29  # uint8, 1 = smoke
TEMPERATURE: Final = 0x02  # sint16, 0.01 °C
HUMIDITY: Final = 0x03  # uint16, 0.01 %
HUMIDITY_WHOLE: Final = 0x2E  # uint8, 1 %
TEMPERATURE_TENTHS: Final = 0x45  # sint16, 0.1 °C


def moisture(wet: bool) -> BTHomeObject:
    """Moisture (0x20, uint8): 1 wet (a leak), 0 dry."""
    return MOISTURE, bytes([1 if wet else 0])


def motion(moving: bool) -> BTHomeObject:
    """Motion (0x21, uint8): 1 motion seen."""
    return MOTION, bytes([1 if moving else 0])


def smoke(smoky: bool) -> BTHomeObject:
    """Smoke (0x29, uint8): 1 smoke detected."""
    return SMOKE, bytes([1 if smoky else 0])


def temperature(celsius: float) -> BTHomeObject:
    """Temperature (0x02, sint16, factor 0.01 °C)."""
    return TEMPERATURE, _sint(round(celsius * 100), 2, "temperature x 100")


def humidity(percent: float) -> BTHomeObject:
    """Humidity (0x03, uint16, factor 0.01 %)."""
    return HUMIDITY, _uint(round(percent * 100), 2, "humidity x 100")


def humidity_whole(percent: float) -> BTHomeObject:
    """Humidity (0x2E, uint8, whole percent), as the Shelly BLU H&T sends it."""
    return HUMIDITY_WHOLE, _uint(round(percent), 1, "humidity")


def temperature_tenths(celsius: float) -> BTHomeObject:
    """Temperature (0x45, sint16, factor 0.1 °C), as the Shelly BLU H&T sends it."""
    return TEMPERATURE_TENTHS, _sint(round(celsius * 10), 2, "temperature x 10")


class SimulatedSensor(ABC):
    """What the simulated BTHome sensors other than the door share: each frame a new packet id
    and, when encrypted, a new counter; the battery in every frame; silent before ``start``.

    A subclass says how many frames it has sent by ``t`` seconds after ``start`` (``frames_sent``)
    and what its latest frame measures (``objects_at``); ``advertise`` puts them together. A
    pure function of time, as :class:`SimulatedDoorSensor` is: no I/O, no clock, no asyncio.
    """

    __slots__ = ()

    mac: str
    name: str
    bind_key: bytes | None
    start: float
    battery_pct: int
    first_packet_id: int
    first_counter: int
    trigger_based: bool

    def _check(self) -> None:
        mac_bytes(self.mac)
        if self.bind_key is not None and len(self.bind_key) != 16:
            raise ValueError(f"a BTHome bind key is 16 bytes, not {len(self.bind_key)}")
        battery(self.battery_pct)

    @abstractmethod
    def frames_sent(self, t: float) -> int:
        """How many frames the sensor has sent by ``t`` (inclusive), ``t`` >= 0."""

    @abstractmethod
    def objects_at(self, t: float) -> list[BTHomeObject]:
        """The measurements of the latest frame at ``t`` (not the packet id and battery)."""

    def advertise(self, now: float) -> bytes | None:
        """The service data the sensor sends at ``now``, or None before its first frame."""
        t = now - self.start
        sent = self.frames_sent(t) if t >= 0 else 0
        if sent == 0:
            return None
        index = sent - 1
        objects = [
            packet_id((self.first_packet_id + index) % 256),
            battery(self.battery_pct),
            *self.objects_at(t),
        ]
        return encode_service_data(
            objects,
            mac=self.mac,
            bind_key=self.bind_key,
            counter=(self.first_counter + index) % (1 << 32),
            trigger_based=self.trigger_based,
        )


def heartbeats(t: float, every_s: float | None) -> int:
    """Frames sent by ``t`` by a heartbeat at 0 and every ``every_s`` (none if None)."""
    return 0 if every_s is None else math.floor(t / every_s) + 1


@dataclass(slots=True)
class ScriptedSensor(SimulatedSensor):
    """A BTHome sensor that sends what it is told, when. ``script`` holds (offset from ``start``
    in seconds, objects); each entry is a new frame (a new packet id and counter, the battery
    added), repeated until the next one, as these sensors repeat a frame for a while. For a
    sensor that behaves like a device, see ``sim.sensors``."""

    mac: str
    script: Sequence[tuple[float, Sequence[BTHomeObject]]]
    _: KW_ONLY
    name: str = "BTHome"
    bind_key: bytes | None = None
    start: float = 0.0
    battery_pct: int = 95
    first_packet_id: int = 0
    first_counter: int = 0
    trigger_based: bool = True
    _offsets: list[float] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._check()
        self._offsets = [at for at, _ in self.script]
        if self._offsets != sorted(self._offsets):
            raise ValueError("the script's frames must be in time order")

    def frames_sent(self, t: float) -> int:
        return bisect.bisect_right(self._offsets, t)

    def objects_at(self, t: float) -> list[BTHomeObject]:
        return list(self.script[self.frames_sent(t) - 1][1])
