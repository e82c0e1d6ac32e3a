"""The gateway's BLE service: the scanner, and what its sensors' frames become.

- A door that opens or closes becomes an access event (``opened`` / ``closed``, the sensor's name
  as the device, no credential): stored, summarised and synced like a gate's, with the sensor's
  tracker state (last counter, packet id, door state) as its cursor in the same transaction, so
  after a restart a recorded frame from before the last event is still refused and no event is
  repeated.
- Battery (%), illuminance (lx), temperature (°C), humidity (%), signal strength (dBm), the
  door state (1 open, 0 closed), and a leak, smoke or motion (1 or 0) become readings, at most
  every ``reading_interval_s`` per sensor and at once when the battery, the door or one of those
  states changes, or a button is pressed.
- The alerts of ``edge.doors`` are checked on every frame and every second: for every kind,
  silence and a low battery; a door held open; a leak, smoke, an SOS press (latched).

bleak is imported only here, so a gateway without door sensors never loads it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from bleak import BleakScanner

from edge.doors import DoorAlerts
from edge.schemas import BleSection
from edge.status import BleSensorStatus, BleStatus
from firmware_bridge.ble.scanner import BleScanner, ScannerFactory
from firmware_bridge.ble.tracker import Accepted, Resume, SensorSpec, SensorTracker
from firmware_bridge.events import AccessEvent
from firmware_bridge.readings import Reading

if TYPE_CHECKING:
    from edge.clock import Clock
    from edge.pipeline import Pipeline
    from edge.store import Store

log = logging.getLogger(__name__)

TICK_S = 1.0
UNITS = {
    "battery": "%",
    "illuminance": "lx",
    "temperature": "°C",
    "humidity": "%",
    "rssi": "dBm",
    "door_open": "",
    "leak": "",
    "smoke": "",
    "motion": "",
}
STATES = {"moisture": "leak", "smoke": "smoke", "motion": "motion", "occupancy": "motion"}
"""bthome-ble's binary keys stored as readings (1 or 0), and their points."""


def cursor_key(mac: str) -> str:
    return f"ble:{mac.upper()}"


class DoorSensors:
    """Run the scanner until cancelled and turn frames into events, readings and alerts."""

    def __init__(
        self,
        config: BleSection,
        store: Store,
        pipeline: Pipeline,
        *,
        clock: Clock | None = None,
        scanner_factory: ScannerFactory | None = None,
    ) -> None:
        """``clock`` is the gateway's (default: the store's); ``scanner_factory`` makes the
        scanners (default: bleak's; ``sim.radio.SimulatedRadio`` where there is no adapter)."""
        self.config = config
        self._scanner_factory = BleakScanner if scanner_factory is None else scanner_factory
        self._store = store
        self._pipeline = pipeline
        self._clock = clock = store.clock if clock is None else clock
        self._wall = clock.wall_time
        self._monotonic = clock.monotonic
        self._alerts = DoorAlerts(
            config.sensors, monotonic=clock.monotonic, wall_clock=clock.wall_time
        )
        self._last_readings: dict[str, float] = {}  # sensor name -> monotonic time
        self._last_battery: dict[str, float] = {}
        self._last_states: dict[str, dict[str, bool]] = {}
        self._refused: deque[tuple[AccessEvent, tuple[str, str]]] = deque(maxlen=10_000)
        self.scanner: BleScanner | None = None

    async def run(self) -> None:
        specs = [
            SensorSpec(name=s.name, mac=s.mac, bind_key=s.key_bytes) for s in self.config.sensors
        ]
        resume = {
            spec.mac: Resume.parse(await self._store.cursor(cursor_key(spec.mac))) for spec in specs
        }
        self.scanner = scanner = BleScanner(
            specs,
            self._on_frame,
            adapter=self.config.adapter,
            mode=self.config.mode,
            restart_after_s=self.config.restart_after_s,
            backoff_max_s=self.config.backoff_max_s,
            unhealthy_after=self.config.unhealthy_after,
            resume=resume,
            scanner_factory=self._scanner_factory,
            wall_clock=self._wall,
        )
        log.info(
            "BLE scanner starting",
            extra={
                "adapter": self.config.adapter or "default",
                "mode": self.config.mode,
                "sensors": len(specs),
            },
        )
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(scanner.run(), name="ble-scanner")
            tasks.create_task(self._tick_forever(), name="ble-alerts")

    def status(self) -> BleStatus | None:
        """The scanner and its sensors (``/api/status`` -> ``ble``), None until it runs; each
        sensor's ``online`` is the level of its ``sensor_silent`` alert (``edge.doors``)."""
        if self.scanner is None:
            return None
        scanner = self.scanner.status()
        sensors = tuple(
            BleSensorStatus.model_validate(sensor, from_attributes=True).model_copy(
                update={"online": self._alerts.online(sensor.name)}
            )
            for sensor in scanner.sensors
        )
        return BleStatus.model_validate(scanner, from_attributes=True).model_copy(
            update={"sensors": sensors}
        )

    def _on_frame(self, tracker: SensorTracker, accepted: Accepted) -> None:
        frame = accepted.advert
        name = tracker.spec.name
        if accepted.door_changed:
            event = AccessEvent(
                device=name,
                event="opened" if frame.door_open else "closed",
                credential_ref=None,
                wall_time=frame.time,
                monotonic_ns=self._clock.monotonic_ns(),
            )
            self._submit_event(event, (cursor_key(tracker.spec.mac), tracker.resume().encode()))
        battery_changed = (
            frame.battery is not None and self._last_battery.get(name) != frame.battery
        )
        states = {STATES[k]: v for k, v in frame.binary.items() if k in STATES}
        known = self._last_states.setdefault(name, {})
        states_changed = any(known.get(point) != value for point, value in states.items())
        known.update(states)
        now = self._monotonic()
        last = self._last_readings.get(name)
        if (
            accepted.door_changed
            or battery_changed
            or states_changed
            or frame.events
            or last is None
            or now - last >= self.config.reading_interval_s
        ):
            self._last_readings[name] = now
            if frame.battery is not None:
                self._last_battery[name] = frame.battery
            self._submit_readings(tracker, frame.time)
        found = self._alerts.frame(
            name,
            door_open=frame.door_open,
            battery=frame.battery,
            binary=frame.binary,
            events=frame.events,
        )
        for finding in found:
            self._pipeline.submit_finding(finding)

    def _submit_event(self, event: AccessEvent, cursor: tuple[str, str]) -> None:
        if not self._pipeline.submit_access(event, cursor):
            self._refused.append((event, cursor))  # offered again on the next tick

    def _submit_readings(self, tracker: SensorTracker, wall_time: float) -> None:
        frame = tracker.last
        if frame is None:
            return
        values: dict[str, float] = {}
        for point in ("battery", "illuminance", "temperature", "humidity"):
            if point in frame.values:
                values[point] = frame.values[point]
        for point, state in self._last_states.get(tracker.spec.name, {}).items():
            values[point] = 1.0 if state else 0.0
        if frame.rssi is not None:
            values["rssi"] = float(frame.rssi)
        if tracker.door_open is not None:
            values["door_open"] = 1.0 if tracker.door_open else 0.0
        stamp = self._clock.monotonic_ns()
        for point, value in values.items():
            self._pipeline.submit(
                Reading(
                    device=tracker.spec.name,
                    point=point,
                    value=value,
                    unit=UNITS[point],
                    wall_time=wall_time,
                    monotonic_ns=stamp,
                )
            )

    async def _tick_forever(self) -> None:
        while True:
            await self._clock.sleep(TICK_S)
            while self._refused:
                event, cursor = self._refused[0]
                if not self._pipeline.submit_access(event, cursor):
                    break
                self._refused.popleft()
            status = self.scanner.status() if self.scanner is not None else None
            findings = self._alerts.tick(
                adapter_healthy=status.healthy if status is not None else True,
                adapter_reason=status.reason if status is not None else None,
            )
            for finding in findings:
                self._pipeline.submit_finding(finding)
