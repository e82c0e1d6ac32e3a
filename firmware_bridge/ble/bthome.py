"""BTHome v2 advertisements decoded through bthome-ble, with the checks it leaves to its caller.

``decode`` turns the service data of one advertisement into a ``BTHomeAdvert`` or raises
``AdvertError`` with a reason that the scanner counts. bthome-ble parses the objects and decrypts;
what it does not do for us (see its notes in the project's protocol notes):

- its parser keeps state between advertisements (it returns the previous values for a frame it
  skipped, and its replay window trusts any counter after four seconds), so each advertisement
  is parsed by a fresh parser and de-duplication is the tracker's (``firmware_bridge.ble.tracker``);
- ``decryption_failed`` is True by default, even for plain sensors, and ``supported()`` is True
  with a wrong key: decryption is judged here from the frame's own encryption bit and the
  parser's ``bindkey_verified`` after this one frame;
- a plain frame from a sensor that has a key is refused (a downgrade), as is an encrypted frame
  without a key.

Pure: no I/O, no asyncio. The bind key never appears in an error or a log.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from bleak.backends.device import BLEDevice
from bthome_ble import BTHomeBluetoothDeviceData
from habluetooth import BluetoothServiceInfoBleak

BTHOME_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"
"""BTHome's 16-bit service UUID 0xFCD2, as bleak writes service data keys."""

DOOR_KEYS = ("door", "window", "opening", "garage_door")
"""bthome-ble's binary sensors that say a door or window is open (True) or closed (False)."""

RejectReason = Literal[
    "malformed",  # not a BTHome v2 frame, truncated, or no object could be read
    "no_key",  # encrypted, and the sensor has no bind key in the config
    "bad_key",  # encrypted, and the configured key does not decrypt it
    "downgrade",  # plain, from a sensor configured with a bind key
    "duplicate",  # the packet id or counter of the last accepted frame again
    "replay",  # an encryption counter lower than the last accepted one
]

_INFO_ENCRYPTED = 0x01
_INFO_VERSION_SHIFT = 5

# bthome-ble logs a warning per bad frame (with the sensor's address), a flood under attack:
# the scanner counts rejections and logs them at a bounded rate instead.
logging.getLogger("bthome_ble").setLevel(logging.ERROR)


class AdvertError(ValueError):
    """An advertisement refused, with the ``reason`` the scanner counts it under."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason: RejectReason = reason


@dataclass(frozen=True, slots=True)
class BTHomeAdvert:
    """One decoded BTHome advertisement of one sensor.

    ``values`` holds the numeric measurements under bthome-ble's keys (``battery`` in %,
    ``illuminance`` in lx, ``rotation`` in degrees, ...), ``binary`` the binary ones (``window``:
    True = open), ``events`` the button events as ``"button:press"``. ``counter`` is the
    encryption counter (None for plain frames), ``packet_id`` the BTHome packet id (None when the
    sensor sends none). ``time`` is when the gateway received it (UTC seconds).
    """

    mac: str
    name: str | None
    rssi: int | None
    time: float
    encrypted: bool
    packet_id: int | None
    counter: int | None
    values: Mapping[str, float] = field(default_factory=dict)
    binary: Mapping[str, bool] = field(default_factory=dict)
    events: tuple[str, ...] = ()

    @property
    def door_open(self) -> bool | None:
        """Whether the door or window is open, if this frame says."""
        for key in DOOR_KEYS:
            if key in self.binary:
                return self.binary[key]
        return None

    @property
    def battery(self) -> float | None:
        return self.values.get("battery")


def is_encrypted(data: bytes) -> bool:
    """Whether BTHome service data says it is encrypted (its device-information byte)."""
    return bool(data) and bool(data[0] & _INFO_ENCRYPTED)


def counter_of(data: bytes) -> int:
    """The encryption counter of encrypted BTHome v2 service data (before its 4-byte MIC)."""
    if len(data) < 1 + 1 + 8:
        raise AdvertError("malformed", "encrypted frame too short for a counter and a MIC")
    return int(struct.unpack_from("<I", data, len(data) - 8)[0])


def decode(
    mac: str,
    name: str | None,
    rssi: int | None,
    data: bytes,
    *,
    bind_key: bytes | None,
    time: float,
) -> BTHomeAdvert:
    """Decode BTHome v2 service data (``data``, the bytes under ``BTHOME_UUID``) of ``mac``."""
    if not data:
        raise AdvertError("malformed", "empty service data")
    if data[0] >> _INFO_VERSION_SHIFT != 2:
        raise AdvertError("malformed", f"BTHome version {data[0] >> _INFO_VERSION_SHIFT}, not 2")
    encrypted = is_encrypted(data)
    counter: int | None = None
    if encrypted:
        if bind_key is None:
            raise AdvertError("no_key", f"{mac} sends encrypted frames and has no bind key")
        counter = counter_of(data)
    elif bind_key is not None:
        raise AdvertError("downgrade", f"{mac} has a bind key and sent a plain frame")
    parser = BTHomeBluetoothDeviceData(bind_key)
    try:
        update = parser.update(_service_info(mac, name, rssi, data, time))
    except (ValueError, IndexError, struct.error, TypeError) as exc:
        raise AdvertError("malformed", f"{mac}: cannot parse: {type(exc).__name__}") from exc
    if encrypted and not parser.bindkey_verified:
        raise AdvertError("bad_key", f"{mac}: the configured bind key does not decrypt it")
    values: dict[str, float] = {}
    packet_id: int | None = None
    for key, value in update.entity_values.items():
        native = value.native_value
        if key.key == "packet_id":
            packet_id = int(native) if isinstance(native, int | float) else None
        elif key.key != "signal_strength" and isinstance(native, int | float):
            values[key.key] = float(native)
    binary = {key.key: bool(v.native_value) for key, v in update.binary_entity_values.items()}
    events = tuple(f"{key.key}:{event.event_type}" for key, event in update.events.items())
    if not values and not binary and not events and packet_id is None:
        raise AdvertError("malformed", f"{mac}: no object could be read")
    return BTHomeAdvert(
        mac=mac,
        name=name,
        rssi=rssi,
        time=time,
        encrypted=encrypted,
        packet_id=packet_id,
        counter=counter,
        values=values,
        binary=binary,
        events=events,
    )


def _service_info(
    mac: str, name: str | None, rssi: int | None, data: bytes, time: float
) -> BluetoothServiceInfoBleak:
    return BluetoothServiceInfoBleak(
        name=name or mac,
        address=mac,
        rssi=rssi if rssi is not None else -127,
        manufacturer_data={},
        service_data={BTHOME_UUID: data},
        service_uuids=[BTHOME_UUID],
        source="nbedge",
        device=BLEDevice(mac, name, None),
        advertisement=None,
        connectable=False,
        time=time,
        tx_power=None,
    )
