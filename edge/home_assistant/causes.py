"""Alert causes as Home Assistant sees them: each one a problem sensor and a button, for good.

A cause is what ``AlertBook`` keys alerts by: the code (rule), the device and the point. Its
alerts come and go (a new id each time); the cause stays, so Home Assistant's entities follow
causes. ``known_causes(config)`` lists the causes the configuration implies, to announce them
before anything happens; any other is announced when its first alert is seen.

``safe_id(*parts)`` names a cause (or a meter's point) in topics and Home Assistant ids: only
``[A-Za-z0-9_-]``, the same on every start, one per cause.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

from edge.alerts import alert_key
from edge.doors import (
    ADAPTER_RULE,
    BATTERY_POINT,
    DOOR_POINT,
    HELD_OPEN_RULE,
    LATCHED,
    LOW_BATTERY_RULE,
    PRESS_TEST_RULE,
    SILENT_RULE,
    SOS_POINT,
    SOS_RULE,
)
from edge.doors import LINK_POINT as SENSOR_LINK_POINT
from edge.rules import DEVICE_SILENT_RULE, GATE_FAULT_RULE, LINK_POINT, VOLTAGE_RULE
from edge.schemas import BleSensorSection, GatewayConfig
from edge.store.disk import DISK_FULL_RULE
from edge.store.housekeeping import DISK_FULL_POINT
from firmware_bridge.modbus.gate import STATE_POINT
from firmware_bridge.modbus.profiles import load_profile

# Raised in modules this one must not import (the models' and the daemon's); a test checks them.
DEMAND_RULE: Final = "demand_capacity"
DEMAND_POINT: Final = "forecast"
ANOMALY_RULE: Final = "unusual_use"
CESSATION_RULE: Final = "use_stopped"
QUIET_RULE: Final = "use_quiet"
DWELLING_POINT: Final = "use"
REFUSED_RULE: Final = "records_refused"
REFUSED_POINT: Final = "uplink"
ADAPTER_DEVICE: Final = "ble"

_WORD = re.compile(r"[A-Za-z0-9_]+")
_NAME = re.compile(r"[A-Za-z0-9_-]+")


def safe_id(*parts: str) -> str:
    """``parts`` joined by ``-`` when they are only letters, digits and ``_``, but for the one
    before the last (a device's name), which may hold ``-`` too; otherwise each with any other
    character as ``_``, then 8 hex digits of the parts' SHA-256. The first form is one to one
    (the dashes before and after the device's are the joins); the second always has as many
    dashes as parts, and differs from every other id by its digest."""
    middle = len(parts) - 2
    if all(
        (_NAME if i == middle else _WORD).fullmatch(part) is not None
        for i, part in enumerate(parts)
    ):
        return "-".join(parts)
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:8]
    return "-".join([*(re.sub(r"[^A-Za-z0-9_]", "_", part) or "_" for part in parts), digest])


@dataclass(frozen=True, slots=True)
class Cause:
    """One alert cause: an alert code of the catalogue, a device, a point."""

    rule: str
    device: str
    point: str

    @property
    def key(self) -> str:
        """The alert book's key of this cause."""
        return alert_key(self.rule, self.device, self.point)

    @property
    def cause_id(self) -> str:
        return safe_id(self.rule, self.device, self.point)


def known_causes(config: GatewayConfig) -> list[Cause]:
    """The causes this configuration can raise alerts for, in a stable order."""
    causes: list[Cause] = []
    silent = config.rules.device_silent.enabled
    voltage = config.rules.voltage
    for device in config.modbus.devices:
        if silent:
            causes.append(Cause(DEVICE_SILENT_RULE, device.name, LINK_POINT))
        if voltage.enabled:
            names = load_profile(device.profile).point_names
            causes += [Cause(VOLTAGE_RULE, device.name, p) for p in names if p in voltage.points]
    for gate in config.modbus.gates:
        if silent:
            causes.append(Cause(DEVICE_SILENT_RULE, gate.name, LINK_POINT))
        causes.append(Cause(GATE_FAULT_RULE, gate.name, STATE_POINT))
    for sensor in config.ble.sensors:
        causes += _sensor_causes(sensor)
    if config.ble.enabled:
        causes.append(Cause(ADAPTER_RULE, ADAPTER_DEVICE, SENSOR_LINK_POINT))
    for home in config.models.dwellings:
        causes.append(Cause(QUIET_RULE, home.name, DWELLING_POINT))
        causes.append(Cause(CESSATION_RULE, home.name, DWELLING_POINT))
    for watched in config.models.anomaly:
        causes.append(Cause(ANOMALY_RULE, watched.meter.split(":")[0], watched.meter))
    for series in config.models.demand:
        if series.capacity_kwh is not None:
            causes.append(Cause(DEMAND_RULE, series.name, DEMAND_POINT))
    gateway = config.gateway.id
    if config.uplink is not None and config.uplink.enabled:
        causes.append(Cause(REFUSED_RULE, gateway, REFUSED_POINT))
    causes.append(Cause(DISK_FULL_RULE, gateway, DISK_FULL_POINT))
    return list(dict.fromkeys(causes))


def _sensor_causes(sensor: BleSensorSection) -> list[Cause]:
    """What a BLE sensor of its kind raises (``edge.doors``): a button, which sends only when
    pressed, its SOS and its press-to-test reminder in place of silence."""
    name, kind = sensor.name, sensor.kind
    causes = []
    if kind == "door" and sensor.held_open_s > 0:
        causes.append(Cause(HELD_OPEN_RULE, name, DOOR_POINT))
    causes += [Cause(code, name, point) for code, point in LATCHED.values() if point == kind]
    if kind == "button":
        causes.append(Cause(SOS_RULE, name, SOS_POINT))
        if sensor.test_every_s > 0:
            causes.append(Cause(PRESS_TEST_RULE, name, SENSOR_LINK_POINT))
    elif sensor.silent_s > 0:
        causes.append(Cause(SILENT_RULE, name, SENSOR_LINK_POINT))
    causes.append(Cause(LOW_BATTERY_RULE, name, BATTERY_POINT))
    return causes


def labels(config: GatewayConfig) -> dict[str, str]:
    """What people read for each device, gate, door sensor and dwelling that has a label."""
    named: list[tuple[str, str | None]] = [
        *((d.name, d.label) for d in config.modbus.devices),
        *((g.name, g.label) for g in config.modbus.gates),
        *((s.name, s.label) for s in config.ble.sensors),
        *((h.name, h.label) for h in config.models.dwellings),
    ]
    return {name: label for name, label in named if label is not None}
