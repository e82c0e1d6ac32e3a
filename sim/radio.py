"""A simulated radio: BTHome sensors in software, heard through the gateway's own BLE scanner.

``SimulatedRadio(sensors)`` is a ``scanner_factory`` for ``firmware_bridge.ble.scanner.BleScanner``
(``Gateway(config, scanner_factory=...)``). The scanner it makes calls the detection callback
every ``interval_s`` (a second) for each sensor that is not silent, with bleak's own
``BLEDevice`` and ``AdvertisementData``: the sensor's ``advertise(now)`` under the BTHome UUID,
its local name and a plausible RSSI; until it is stopped. A sensor repeats its last frame
between two new ones, as real ones do; the gateway's trackers drop the repeats.

Only the radio is simulated: tracking, decryption, bthome-ble, readings and alerts are the
gateway's. It is there so that ``nbedge demo``, and any machine without a Bluetooth adapter,
runs the whole BLE path; tests of the real path use bleak's BlueZ backend against BlueZoo
(``sim.bluez``, tests/test_ble_bluez.py and tests/test_ble_sensors.py).
"""

from __future__ import annotations

import asyncio
import random
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Protocol

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from sim.bthome import BTHOME_UUID

DetectionCallback = Callable[[BLEDevice, AdvertisementData], None]


class Advertiser(Protocol):
    """A simulated BTHome sensor (``sim.bthome``, ``sim.sensors``)."""

    @property
    def mac(self) -> str: ...
    @property
    def name(self) -> str: ...
    def advertise(self, now: float) -> bytes | None: ...


class SimulatedRadio:
    """A factory of scans over ``sensors``, called as bleak's ``BleakScanner`` is."""

    def __init__(
        self,
        sensors: Sequence[Advertiser],
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
    ) -> None:
        """``clock`` gives the ``now`` the sensors are asked at (wall time, as their ``start``)."""
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.sensors = tuple(sensors)
        self.interval_s = interval_s
        self._clock = clock
        self._rng = random.Random(seed)
        self.scans = 0
        """Scans started (the gateway's scanner starts one again after a silence)."""

    def __call__(self, *, detection_callback: DetectionCallback, **_options: object) -> RadioScan:
        """A new scan; bleak's options (``scanning_mode``, ``bluez``) do not apply here."""
        return RadioScan(self, detection_callback)

    def hear(self, callback: DetectionCallback) -> int:
        """One round: every sensor that is not silent heard once. Returns how many were."""
        now = self._clock()
        heard = 0
        for sensor in self.sensors:
            data = sensor.advertise(now)
            if data is None:
                continue
            heard += 1
            callback(
                BLEDevice(sensor.mac, sensor.name, None),
                AdvertisementData(
                    local_name=sensor.name,
                    manufacturer_data={},
                    service_data={BTHOME_UUID: data},
                    service_uuids=[BTHOME_UUID],
                    tx_power=None,
                    rssi=self._rssi(sensor.mac),
                    platform_data=(),
                ),
            )
        return heard

    def _rssi(self, mac: str) -> int:
        """-50 to -80 dBm, fixed per sensor (its distance), give or take 3 dBm per frame."""
        distance = zlib.crc32(mac.upper().encode()) % 28
        return -52 - distance + self._rng.randint(-3, 3)


class RadioScan:
    """One scan: rounds of ``SimulatedRadio.hear`` on the event loop from ``start`` to ``stop``."""

    def __init__(self, radio: SimulatedRadio, callback: DetectionCallback) -> None:
        self._radio = radio
        self._callback = callback
        self._next: asyncio.TimerHandle | asyncio.Handle | None = None

    @property
    def scanning(self) -> bool:
        return self._next is not None

    async def start(self) -> None:
        if self._next is None:
            self._radio.scans += 1
            self._next = asyncio.get_running_loop().call_soon(self._round)

    async def stop(self) -> None:
        if self._next is not None:
            self._next.cancel()
            self._next = None

    def _round(self) -> None:
        # The next round first: a callback that raises must not end the scan.
        loop = asyncio.get_running_loop()
        self._next = loop.call_later(self._radio.interval_s, self._round)
        self._radio.hear(self._callback)
