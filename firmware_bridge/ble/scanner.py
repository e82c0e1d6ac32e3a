"""The BLE scanner service: bleak's scanner, kept running, feeding BTHome frames to the trackers.

One ``BleScanner`` owns the adapter. Its detection callback (``handle``) runs on the event loop for
every advertisement bleak reports: it finds the BTHome service data, decodes it with the sensor's
key, lets the sensor's tracker de-duplicate it, and hands what it accepted to ``on_frame``. It never
raises: a frame that cannot be used is counted under its reason and dropped.

Recovery: bleak says nothing when an adapter disappears or BlueZ stops reporting. So when no
advertisement at all (from any device) has arrived for ``restart_after_s``, the scanner is stopped
and started again. A start that fails, or a scan that ended without a single advertisement, is a
failure: the next start waits a jittered exponential backoff, and after ``unhealthy_after``
failures in a row the adapter is reported unhealthy (``status().healthy``) until an advertisement
arrives again.

Passive scanning (``mode="passive"``) asks BlueZ for an advertisement monitor matching BTHome's
service data, which BlueZ offers only when bluetoothd runs with ``--experimental``; without it the
start fails with an error that says so, and the adapter is reported unhealthy at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from bleak import BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from firmware_bridge.ble.bthome import BTHOME_UUID, AdvertError, RejectReason
from firmware_bridge.ble.tracker import Accepted, Resume, SensorSpec, SensorTracker

log = logging.getLogger(__name__)

ScanMode = Literal["active", "passive"]
PASSIVE_HINT = (
    "passive scanning needs BlueZ >= 5.56 started with --experimental (on Raspberry Pi OS: "
    "`sudo systemctl edit bluetooth`, ExecStart=/usr/libexec/bluetooth/bluetoothd --experimental), "
    'or set [ble] mode = "active"'
)
START_TIMEOUT_S = 10.0
UNCONFIGURED_KEPT = 256  # addresses of BTHome sensors in range that the config does not name

OnFrame = Callable[[SensorTracker, Accepted], None]


class Scanner(Protocol):
    """What the service needs of ``bleak.BleakScanner`` (a test injects faults through it)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


ScannerFactory = Callable[..., Scanner]


@dataclass(frozen=True, slots=True)
class SensorStatus:
    name: str
    mac: str
    encrypted: bool
    last_seen: float | None
    door_open: bool | None
    battery: float | None
    rssi: int | None
    accepted: int
    rejected: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class ScannerStatus:
    adapter: str
    mode: ScanMode
    scanning: bool
    healthy: bool
    reason: str | None  # why it is unhealthy or not scanning, if it is
    starts: int
    restarts: int  # stopped and started again because no advertisement came
    failures: int  # failures in a row (reset by an advertisement)
    advertisements: int  # every advertisement bleak reported, BTHome or not
    frames: int  # BTHome frames of configured sensors accepted
    rejected: Mapping[str, int]
    unconfigured: Mapping[str, int]  # BTHome frames per address the config does not name
    sensors: tuple[SensorStatus, ...]


class BleScanner:
    """Scan until cancelled; see the module doc."""

    def __init__(
        self,
        sensors: Sequence[SensorSpec],
        on_frame: OnFrame,
        *,
        adapter: str | None = None,
        mode: ScanMode = "active",
        restart_after_s: float = 60.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        unhealthy_after: int = 3,
        resume: Mapping[str, Resume] | None = None,
        scanner_factory: ScannerFactory = BleakScanner,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        resume = resume or {}
        self.trackers = {
            spec.mac.upper(): SensorTracker(spec, resume.get(spec.mac.upper())) for spec in sensors
        }
        self._on_frame = on_frame
        self.adapter = adapter
        self.mode: ScanMode = mode
        self._restart_after_s = restart_after_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._unhealthy_after = unhealthy_after
        self._factory = scanner_factory
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._scanning = False
        self._healthy = True
        self._reason: str | None = None
        self._starts = 0
        self._restarts = 0
        self._failures = 0
        self._advertisements = 0
        self._frames = 0
        self._rejected: Counter[str] = Counter()
        self._unconfigured: Counter[str] = Counter()
        self._last_advert = 0.0  # monotonic time of the last advertisement of any device
        self._since_start = 0  # advertisements since the scanner last started
        self._logged_rejections = 0

    # --- the detection callback --------------------------------------------------------------

    def handle(self, device: BLEDevice, advertisement: AdvertisementData) -> None:
        """bleak's detection callback: one advertisement of ``device``. Never raises."""
        self._advertisements += 1
        self._since_start += 1
        self._last_advert = time.monotonic()
        if not self._healthy:
            self._set_health(True, None)
        data = advertisement.service_data.get(BTHOME_UUID)
        if data is None:
            return
        mac = device.address.upper()
        tracker = self.trackers.get(mac)
        if tracker is None:
            self._note_unconfigured(mac)
            return
        try:
            accepted = tracker.take(
                advertisement.local_name, advertisement.rssi, data, self._wall_clock()
            )
        except AdvertError as exc:
            self._count_rejected(exc.reason, tracker.spec.name, str(exc))
            return
        self._frames += 1
        try:
            self._on_frame(tracker, accepted)
        except Exception:
            log.exception("handling a BLE frame failed", extra={"sensor": tracker.spec.name})

    def _note_unconfigured(self, mac: str) -> None:
        if mac in self._unconfigured or len(self._unconfigured) < UNCONFIGURED_KEPT:
            self._unconfigured[mac] += 1
        else:
            self._rejected["unconfigured"] += 1

    def _count_rejected(self, reason: RejectReason, sensor: str, message: str) -> None:
        self._rejected[reason] += 1
        if reason == "duplicate":
            return
        self._logged_rejections += 1
        n = self._logged_rejections
        if n <= 10 or n % 1000 == 0:  # a flood (an attack, a broken sensor) is not a log flood
            log.warning(
                "BLE frame refused",
                extra={"sensor": sensor, "reason": reason, "detail": message, "refused": n},
            )

    # --- the service -------------------------------------------------------------------------

    async def run(self) -> None:
        """Keep the scanner running until cancelled (see the module doc)."""
        backoff = self._backoff_initial_s
        while True:
            scanner = self._new_scanner()
            self._since_start = 0  # frames may arrive while it starts
            try:
                async with asyncio.timeout(START_TIMEOUT_S):
                    await scanner.start()
            except (BleakError, OSError, TimeoutError, ValueError) as exc:
                self._failed(explain_failure(exc, self.mode))
                await self._stop(scanner)
            else:
                self._starts += 1
                self._scanning = True
                if not self._since_start:
                    self._last_advert = time.monotonic()
                try:
                    await self._watch()
                finally:
                    self._scanning = False
                    await self._stop(scanner)
                if self._since_start:
                    self._failures = 0
                    backoff = self._backoff_initial_s
                    continue  # it worked until it went quiet: start again at once
                self._failed(f"no advertisement for {self._restart_after_s:.0f} s")
            delay = backoff * (0.5 + self._rng.random())
            backoff = min(self._backoff_max_s, backoff * 2)
            await asyncio.sleep(delay)

    def _new_scanner(self) -> Scanner:
        return self._factory(
            detection_callback=self.handle,
            scanning_mode=self.mode,
            bluez=bluez_args(self.adapter, self.mode),
        )

    async def _watch(self) -> None:
        """Return once no advertisement has arrived for ``restart_after_s``."""
        while True:
            quiet = time.monotonic() - self._last_advert
            if quiet >= self._restart_after_s:
                self._restarts += 1
                log.warning(
                    "no BLE advertisement; restarting the scanner",
                    extra={"adapter": self.adapter or "default", "quiet_s": round(quiet)},
                )
                return
            await asyncio.sleep(min(self._restart_after_s - quiet, 5.0) + 0.01)

    async def _stop(self, scanner: Scanner) -> None:
        with contextlib.suppress(BleakError, OSError, TimeoutError, ValueError, AssertionError):
            async with asyncio.timeout(START_TIMEOUT_S):
                await scanner.stop()

    def _failed(self, reason: str) -> None:
        self._failures += 1
        self._reason = reason
        if self._failures == 1:
            log.warning(
                "BLE scanner failed; retrying",
                extra={"adapter": self.adapter or "default", "reason": reason},
            )
        if self._healthy and (reason == PASSIVE_HINT or self._failures >= self._unhealthy_after):
            self._set_health(False, reason)

    def _set_health(self, healthy: bool, reason: str | None) -> None:
        self._healthy = healthy
        self._reason = reason
        if healthy:
            log.info("BLE adapter healthy again", extra={"adapter": self.adapter or "default"})
        else:
            log.error(
                "BLE adapter unhealthy",
                extra={
                    "adapter": self.adapter or "default",
                    "reason": reason,
                    "failures": self._failures,
                },
            )

    def status(self) -> ScannerStatus:
        return ScannerStatus(
            adapter=self.adapter or "default",
            mode=self.mode,
            scanning=self._scanning,
            healthy=self._healthy,
            reason=self._reason,
            starts=self._starts,
            restarts=self._restarts,
            failures=self._failures,
            advertisements=self._advertisements,
            frames=self._frames,
            rejected=dict(self._rejected),
            unconfigured=dict(self._unconfigured),
            sensors=tuple(
                SensorStatus(
                    name=t.spec.name,
                    mac=t.spec.mac,
                    encrypted=t.spec.bind_key is not None,
                    last_seen=t.last_seen,
                    door_open=t.door_open,
                    battery=t.battery,
                    rssi=t.rssi,
                    accepted=t.accepted,
                    rejected={str(k): v for k, v in t.rejected.items()},
                )
                for t in self.trackers.values()
            ),
        )


def bluez_args(adapter: str | None, mode: ScanMode) -> BlueZScannerArgs:
    """bleak's BlueZ arguments: LE only, the adapter, and for passive scanning a monitor that
    matches BTHome's service data (UUID 0xFCD2, little-endian)."""
    bluez: BlueZScannerArgs = {"filters": {"Transport": "le"}}
    if adapter:
        bluez["adapter"] = adapter
    if mode == "passive":
        bluez["or_patterns"] = [
            OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\xd2\xfc")
        ]
    return bluez


def explain_failure(exc: BaseException, mode: ScanMode) -> str:
    """Why the scanner could not start, in words an installer can act on."""
    text = str(exc) or type(exc).__name__
    if mode == "passive" and ("experimental" in text or "AdvertisementMonitor" in text):
        return PASSIVE_HINT
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError | PermissionError):
        return f"cannot reach BlueZ on the system D-Bus ({exc.strerror}): is bluetoothd running?"
    if "org.bluez" in text and ("ServiceUnknown" in text or "not provided" in text):
        return "BlueZ (bluetoothd) is not running"
    if isinstance(exc, TimeoutError):
        return f"the scanner did not start within {START_TIMEOUT_S:.0f} s"
    return text
