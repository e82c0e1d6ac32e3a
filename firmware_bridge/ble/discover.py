"""``nbedge scan ble``: the BTHome sensors in range, for an installer to copy into the config.

Listens for ``seconds`` and keeps, per address sending BTHome service data: its name, whether it
encrypts, its signal strength, how many frames it sent, and its last values (decoded when it is
plain, or when the key is given). An encrypted sensor without a key shows what can be seen
without one: its address, name and signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from firmware_bridge.ble.bthome import BTHOME_UUID, AdvertError, BTHomeAdvert, decode, is_encrypted
from firmware_bridge.ble.scanner import ScanMode, ScannerFactory, bluez_args


@dataclass(slots=True)
class FoundSensor:
    mac: str
    name: str | None = None
    encrypted: bool = False
    rssi: int | None = None
    frames: int = 0
    last: BTHomeAdvert | None = None
    problem: str | None = None  # why its frames could not be read (no key, wrong key, ...)
    values: dict[str, object] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """What to give as the sensor's ``kind`` in the configuration, from what it reports:
        ``door``, ``leak``, ``smoke``, ``motion``, ``button``, ``climate``; ``?`` if nothing
        says."""
        frame = self.last
        if frame is None:
            return "?"
        binary = frame.binary
        if frame.door_open is not None:
            return "door"
        for key, kind in (("moisture", "leak"), ("smoke", "smoke"), ("motion", "motion")):
            if key in binary:
                return kind
        if any(event.startswith("button") for event in frame.events) or "button" in self.values:
            return "button"
        if "temperature" in frame.values or "humidity" in frame.values:
            return "climate"
        return "?"


class Discovery:
    """The detection callback of a scan for BTHome sensors, and what it found."""

    def __init__(self, keys: Mapping[str, bytes] | None = None) -> None:
        self._keys = {mac.upper(): key for mac, key in (keys or {}).items()}
        self.found: dict[str, FoundSensor] = {}

    def handle(self, device: BLEDevice, advertisement: AdvertisementData) -> None:
        data = advertisement.service_data.get(BTHOME_UUID)
        if data is None:
            return
        mac = device.address.upper()
        sensor = self.found.setdefault(mac, FoundSensor(mac))
        sensor.frames += 1
        sensor.name = advertisement.local_name or sensor.name
        sensor.rssi = advertisement.rssi
        sensor.encrypted = is_encrypted(data)
        key = self._keys.get(mac) if sensor.encrypted else None
        try:
            frame = decode(
                mac, sensor.name, advertisement.rssi, data, bind_key=key, time=time.time()
            )
        except AdvertError as exc:
            sensor.problem = {
                "no_key": "encrypted: give its key to see values",
                "bad_key": "encrypted: the key given does not decrypt it",
            }.get(exc.reason, f"unreadable ({exc.reason})")
            return
        sensor.problem = None
        sensor.last = frame
        sensor.values.update(frame.values)
        sensor.values.update(frame.binary)
        for event in frame.events:
            source, _, kind = event.partition(":")
            sensor.values[source] = kind


async def discover(
    seconds: float,
    *,
    adapter: str | None = None,
    mode: ScanMode = "active",
    keys: Mapping[str, bytes] | None = None,
    scanner_factory: ScannerFactory = BleakScanner,
) -> list[FoundSensor]:
    """Scan for ``seconds``; the BTHome sensors heard, strongest signal first."""
    discovery = Discovery(keys)
    scanner = scanner_factory(
        detection_callback=discovery.handle, scanning_mode=mode, bluez=bluez_args(adapter, mode)
    )
    await scanner.start()
    try:
        await asyncio.sleep(seconds)
    finally:
        with contextlib.suppress(Exception):
            await scanner.stop()
    return sorted(discovery.found.values(), key=lambda s: -(s.rssi if s.rssi is not None else -999))
