"""What Home Assistant is told: discovery configs, a cause's state, a meter's main points.

``Discovery(config)`` builds, with no I/O, the retained discovery config of each entity (a
``problem`` binary sensor and a ``button`` per alert cause, a ``sensor`` per main point of a
meter), all on one device (the building, i.e. this gateway) and available while the gateway's
status topic says ``online``; and the JSON state of a cause. A meter's *main points* are the
names of ``MAIN_POINTS`` whose unit and kind ``UNITS`` knows. docs/home-assistant.md has the
topics, the payloads, and what ON and OFF mean.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Final

from edge.alerts import CATALOGUE, Alert
from edge.alerts.payload import iso
from edge.home_assistant.causes import ANOMALY_RULE, Cause, labels, safe_id
from edge.i18n import N_, translation
from edge.rules import VOLTAGE_RULE
from edge.schemas import GatewayConfig
from firmware_bridge.modbus.profiles import load_profile

PRESS: Final = "PRESS"
"""The payload of a button press (Home Assistant's default ``payload_press``, set anyway)."""


@dataclass(frozen=True, slots=True)
class PointClass:
    """How Home Assistant reads a point: its device class, unit, state class, decimals."""

    device_class: str
    unit: str
    state_class: str
    precision: int


UNITS: Final[dict[tuple[str, str], PointClass]] = {
    ("kwh", "counter"): PointClass("energy", "kWh", "total_increasing", 2),
    ("wh", "counter"): PointClass("energy", "Wh", "total_increasing", 0),
    ("m3", "counter"): PointClass("water", "m³", "total_increasing", 3),
    ("m³", "counter"): PointClass("water", "m³", "total_increasing", 3),
    ("l", "counter"): PointClass("water", "L", "total_increasing", 0),
    ("w", "gauge"): PointClass("power", "W", "measurement", 0),
    ("kw", "gauge"): PointClass("power", "kW", "measurement", 2),
    ("v", "gauge"): PointClass("voltage", "V", "measurement", 1),
}
"""A profile's (unit, kind) to Home Assistant's classes; other units are not announced."""

MAIN_POINTS: Final[dict[str, str]] = {
    "import_energy": N_("energy imported"),
    "export_energy": N_("energy exported"),
    "total_energy": N_("energy, total"),
    "volume": N_("water used"),
    "power": N_("power"),
    "total_power": N_("power"),
    "voltage": N_("voltage"),
    "voltage_l1": N_("voltage L1"),
    "voltage_l2": N_("voltage L2"),
    "voltage_l3": N_("voltage L3"),
}
"""A meter's points announced as sensors, with the words of their names."""

PROBLEM_NAME: Final = N_("{subject}: {problem}")
BUTTON_NAME: Final = N_("{subject}: acknowledge {problem}")


@dataclass(frozen=True, slots=True)
class Sensor:
    """One main point of one meter."""

    device: str
    point: str
    point_class: PointClass
    expire_after_s: int
    """No value for this long (the meter silent, the gateway gone): Home Assistant shows it
    unavailable."""


def main_sensors(config: GatewayConfig) -> list[Sensor]:
    """Every meter's main points, in the configuration's order."""
    interval = config.mqtt.home_assistant.state_interval_s
    sensors = []
    for device in config.modbus.devices:
        expire = math.ceil(3 * max(interval, device.poll_interval_s, 20.0))
        for point in load_profile(device.profile).points:
            found = UNITS.get((point.unit.strip().lower(), point.kind))
            if point.name in MAIN_POINTS and found is not None:
                sensors.append(Sensor(device.name, point.name, found, expire))
    return sensors


def entity_slug(*parts: str) -> str:
    """An object id Home Assistant takes for an entity id: ``[a-z0-9_]``, no ``__``, no ``_``
    at either end."""
    return re.sub(r"[^a-z0-9]+", "_", "_".join(parts).lower()).strip("_") or "nbedge"


def _fill(template: str, **values: str) -> str:
    try:
        return template.format_map(values)
    except (KeyError, ValueError, IndexError):  # a bad translation names the entity anyway
        return " ".join(values.values())


def _version() -> str | None:
    try:
        return metadata.version("nbedge")
    except metadata.PackageNotFoundError:
        return None


class Discovery:
    """The topics and payloads of one gateway's entities (see the module doc)."""

    def __init__(self, config: GatewayConfig) -> None:
        mqtt = config.mqtt
        ha = mqtt.home_assistant
        site, gateway = config.gateway.site, config.gateway.id
        self.root = f"{mqtt.topic_prefix}/{site}/{gateway}"
        self.prefix = ha.discovery_prefix
        self.account = ha.account
        self.node = safe_id(gateway, "nbedge")  # a gateway id is unique in the fleet
        self._gateway = gateway
        self._tr = translation(ha.language)
        self._labels = labels(config)
        version = _version()
        self._device: dict[str, Any] = {
            "identifiers": [self.node],
            "name": ha.name or f"{site} {gateway}",
            "manufacturer": "nbedge",
            "model": "nbedge gateway",
            "serial_number": gateway,
        }
        self._origin: dict[str, Any] = {"name": "nbedge"}
        if version is not None:
            self._device["sw_version"] = version
            self._origin["sw_version"] = version
        self.status_topic = f"{self.root}/status"

    # --- topics --------------------------------------------------------------------------

    @property
    def press_filter(self) -> str:
        return f"{self.root}/causes/+/acknowledge/+"

    def cause_topic(self, cause: Cause) -> str:
        return f"{self.root}/causes/{cause.cause_id}"

    def press_topic(self, cause: Cause) -> str:
        return f"{self.cause_topic(cause)}/acknowledge/{self.account}"

    def point_topic(self, device: str, point: str) -> str:
        return f"{self.root}/points/{device}/{point}"

    def config_topic(self, component: str, object_id: str) -> str:
        return f"{self.prefix}/{component}/{self.node}/{object_id}/config"

    # --- discovery configs ---------------------------------------------------------------

    def problem(self, cause: Cause) -> tuple[str, dict[str, Any]]:
        """The ``binary_sensor`` of a cause: ON while its alert is open and active."""
        topic = self.cause_topic(cause)
        payload = self._common(
            "binary_sensor",
            f"{cause.cause_id}-problem",
            entity_slug(self._gateway, cause.rule, cause.device, cause.point),
            self._name(PROBLEM_NAME, cause),
        ) | {
            "device_class": "problem",
            "state_topic": topic,
            "value_template": "{{ value_json.problem }}",
            "payload_on": "ON",
            "payload_off": "OFF",
            "json_attributes_topic": topic,
            "qos": 1,
        }
        return self.config_topic("binary_sensor", f"{cause.cause_id}-problem"), payload

    def button(self, cause: Cause) -> tuple[str, dict[str, Any]]:
        """The ``button`` that acknowledges a cause's open alert, available while it is new."""
        payload = self._common(
            "button",
            f"{cause.cause_id}-acknowledge",
            entity_slug(self._gateway, cause.rule, cause.device, cause.point, "acknowledge"),
            self._name(BUTTON_NAME, cause),
        ) | {
            "command_topic": self.press_topic(cause),
            "payload_press": PRESS,
            "qos": 1,
            "retain": False,
            "icon": "mdi:check-circle-outline",
            "availability": [
                *self._availability(),
                {
                    "topic": self.cause_topic(cause),
                    "value_template": "{{ 'online' if value_json.can_acknowledge else 'offline' }}",
                    "payload_available": "online",
                    "payload_not_available": "offline",
                },
            ],
            "availability_mode": "all",
        }
        return self.config_topic("button", f"{cause.cause_id}-acknowledge"), payload

    def sensor(self, sensor: Sensor) -> tuple[str, dict[str, Any]]:
        """The ``sensor`` of a meter's main point."""
        object_id = safe_id(sensor.device, sensor.point)
        subject = self._labels.get(sensor.device, sensor.device)
        point_class = sensor.point_class
        payload = self._common(
            "sensor",
            object_id,
            entity_slug(self._gateway, sensor.device, sensor.point),
            f"{subject} {self._point_words(sensor.point)}",
        ) | {
            "state_topic": self.point_topic(sensor.device, sensor.point),
            "device_class": point_class.device_class,
            "unit_of_measurement": point_class.unit,
            "state_class": point_class.state_class,
            "suggested_display_precision": point_class.precision,
            "expire_after": sensor.expire_after_s,
        }
        return self.config_topic("sensor", object_id), payload

    # --- states --------------------------------------------------------------------------

    def cause_state(self, cause: Cause, alert: Alert | None) -> dict[str, Any]:
        """The retained JSON of a cause: ``problem`` ON while its alert is open and active;
        the alert's state (``alert_state``: Home Assistant drops an attribute named state)."""
        if alert is not None and not alert.open:
            alert = None
        return {
            "problem": "ON" if alert is not None and alert.condition == "active" else "OFF",
            "open": alert is not None,
            "can_acknowledge": alert is not None and alert.state == "new",
            "alert_id": None if alert is None else alert.alert_id,
            "severity": CATALOGUE[cause.rule].severity if alert is None else alert.severity,
            "condition": None if alert is None else alert.condition,
            "alert_state": None if alert is None else alert.state,
            "acknowledged_by": None if alert is None else alert.acknowledged_by,
            "acknowledged_at": None if alert is None else iso(alert.acknowledged_at),
            "raised_at": None if alert is None else iso(alert.raised_at),
            "cleared_at": None if alert is None else iso(alert.cleared_at),
            "text_en": None if alert is None else alert.text("en"),
            "text_zh_hans": None if alert is None else alert.text("zh-Hans"),
            "rule": cause.rule,
            "device": cause.device,
            "point": cause.point,
        }

    @staticmethod
    def point_value(value: float) -> bytes | None:
        """A reading as a sensor's state; ``None`` for what is not a number."""
        return None if not math.isfinite(value) else format(value, ".10g").encode()

    # --- internals -----------------------------------------------------------------------

    def _common(self, component: str, object_id: str, slug: str, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "unique_id": f"{self.node}-{object_id}",
            "default_entity_id": f"{component}.{slug}",
            "availability": self._availability(),
            "device": self._device,
            "origin": self._origin,
        }

    def _availability(self) -> list[dict[str, str]]:
        return [
            {
                "topic": self.status_topic,
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ]

    def _name(self, template: str, cause: Cause) -> str:
        subject = self._labels.get(cause.device, cause.device)
        if cause.rule == VOLTAGE_RULE and cause.point != "voltage":  # a phase of three
            subject = f"{subject} {self._point_words(cause.point)}"
        elif cause.rule == ANOMALY_RULE:
            subject = f"{subject} {self._point_words(cause.point.split(':')[-1])}"
        kind = CATALOGUE[cause.rule]
        return _fill(
            self._tr.gettext(template), subject=subject, problem=self._tr.gettext(kind.title)
        )

    def _point_words(self, point: str) -> str:
        return self._tr.gettext(MAIN_POINTS[point]) if point in MAIN_POINTS else point
