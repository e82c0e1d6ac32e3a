"""What the gateway knows of each configured BTHome sensor: de-duplication, replay rejection, state.

A sensor repeats each frame several times (Shelly BLU: a burst per change, then a heartbeat), and
a recorded frame can be sent again by anyone in range. ``SensorTracker.take`` decodes a frame with
the sensor's key and lets it through once:

- encrypted sensors: by the encryption counter, which the sensor raises with every frame and which
  the AES-CCM MIC authenticates. The counter of the last accepted frame again is a duplicate; a
  lower one is a replay, rejected, except a restart: a counter below ``RESTART_BELOW`` after one at
  or above it (the sensor's counter starts again from zero after a battery change, as bthome-ble
  assumes too). Counters are only compared once the frame has decrypted, so a forged frame cannot
  move them;
- plain sensors: by the packet id; the same id within ``DUPLICATE_WINDOW_S`` is a duplicate (a plain
  frame cannot be authenticated, so nothing more can be said of its order).

The last counter, packet id and door state survive a restart in the store, with the door event that
changed them (``Resume``): a frame recorded before the last stored door event is still refused.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from firmware_bridge.ble.bthome import AdvertError, BTHomeAdvert, RejectReason, decode

RESTART_BELOW = 100
DUPLICATE_WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """A configured sensor: its name in the store, its address, its bind key (None if plain)."""

    name: str
    mac: str
    bind_key: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Resume:
    """The part of a tracker's state kept in the store (as the cursor ``ble:<MAC>``)."""

    counter: int | None = None
    packet_id: int | None = None
    door_open: bool | None = None

    def encode(self) -> str:
        def part(value: int | bool | None) -> str:
            return "" if value is None else str(int(value))

        return f"{part(self.counter)};{part(self.packet_id)};{part(self.door_open)}"

    @classmethod
    def parse(cls, text: str | None) -> Resume:
        """The state encoded by ``encode``; an empty state for None or an unreadable text."""
        if not text:
            return cls()
        try:
            counter, packet_id, door = (None if p == "" else int(p) for p in text.split(";"))
        except ValueError:
            return cls()
        door_open = None if door is None else door == 1
        return cls(counter=counter, packet_id=packet_id, door_open=door_open)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A frame let through, and whether it changed the door's state (from ``previous``)."""

    advert: BTHomeAdvert
    door_changed: bool
    previous: bool | None


class SensorTracker:
    """The state of one sensor, fed with its decoded frames (see the module doc)."""

    def __init__(self, spec: SensorSpec, resume: Resume | None = None) -> None:
        self.spec = spec
        resume = resume or Resume()
        self._counter = resume.counter
        self._packet_id = resume.packet_id
        self._packet_at: float | None = None
        self.door_open: bool | None = resume.door_open
        self.battery: float | None = None
        self.rssi: int | None = None
        self.last: BTHomeAdvert | None = None
        self.last_seen: float | None = None  # wall time of the last accepted frame
        self.accepted = 0
        self.restarts = 0  # encryption counters that started again from zero
        self.rejected: Counter[RejectReason] = Counter()

    def resume(self) -> Resume:
        return Resume(counter=self._counter, packet_id=self._packet_id, door_open=self.door_open)

    def take(self, name: str | None, rssi: int | None, data: bytes, time: float) -> Accepted:
        """Decode BTHome service data ``data`` with this sensor's key and let the frame
        through, or raise ``AdvertError`` with the reason it is refused (counted here)."""
        try:
            advert = decode(self.spec.mac, name, rssi, data, bind_key=self.spec.bind_key, time=time)
            self._check_order(advert)
        except AdvertError as exc:
            self.rejected[exc.reason] += 1
            raise
        except Exception as exc:  # a parser bug must not stop the scanner
            self.rejected["malformed"] += 1
            raise AdvertError("malformed", f"the parser failed: {type(exc).__name__}") from exc
        if advert.counter is not None:
            self._counter = advert.counter
        if advert.packet_id is not None:
            self._packet_id = advert.packet_id
            self._packet_at = advert.time
        previous = self.door_open
        door = advert.door_open
        changed = door is not None and previous is not None and door != previous
        if door is not None:
            self.door_open = door
        if advert.battery is not None:
            self.battery = advert.battery
        self.rssi = advert.rssi
        self.last = advert
        self.last_seen = advert.time
        self.accepted += 1
        return Accepted(advert=advert, door_changed=changed, previous=previous)

    def _check_order(self, advert: BTHomeAdvert) -> None:
        mac = self.spec.mac
        if advert.counter is not None:
            last = self._counter
            if last is None or advert.counter > last:
                return
            if advert.counter == last:
                raise AdvertError("duplicate", f"{mac}: counter {advert.counter} again")
            if advert.counter < RESTART_BELOW <= last:
                self.restarts += 1
                return
            raise AdvertError(
                "replay", f"{mac}: counter {advert.counter} after {last}: replayed or stale"
            )
        if (
            advert.packet_id is not None
            and advert.packet_id == self._packet_id
            and self._packet_at is not None
            and 0 <= advert.time - self._packet_at < DUPLICATE_WINDOW_S
        ):
            raise AdvertError("duplicate", f"{mac}: packet {advert.packet_id} again")
