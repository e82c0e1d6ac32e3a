"""What a reload (SIGHUP, ``systemctl reload nbedge-gateway``) may change in a running gateway.

A new configuration is compared with the running one, section by section. What the running
services can take without a restart (the Modbus devices and gates, the rules, the alert
policies, the model series and dwellings, the BLE sensors, the site's names) is applied; what
they were built on (the store, MQTT, the uplink, the local API, the BLE adapter and its scan
settings, the gateway's id and state folder, the logs) is logged as needing a restart and left
as it runs. The people file is read again whenever it changes, reload or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.schemas import BleSection, GatewayConfig

RESTART_SECTIONS = ("gateway", "store", "mqtt", "uplink", "local_api", "log")
"""Sections the running services were built on: a change waits for a restart."""
BLE_LIVE_KEYS = frozenset({"sensors", "reading_interval_s"})
"""The keys of ``[ble]`` a reload applies (the sensors); the others are the adapter's."""


@dataclass(frozen=True)
class Plan:
    """What a reload does: the configuration it runs on from now, and what changed."""

    config: GatewayConfig
    """The new configuration, with the sections that need a restart kept as they run."""
    needs_restart: tuple[str, ...] = ()
    """Changed keys that wait for a restart (``mqtt``, ``ble.adapter``...)."""
    modbus: bool = False
    rules: bool = False
    escalation: bool = False
    models: bool = False
    ble: bool = False
    site: bool = False
    removed: frozenset[str] = field(default_factory=frozenset)
    """Devices, gates, sensors and dwellings the new configuration no longer has."""

    @property
    def changed(self) -> tuple[str, ...]:
        """The parts applied, in words for the log."""
        parts = ("modbus", "rules", "escalation", "models", "ble", "site")
        return tuple(p for p in parts if getattr(self, p))


def plan(running: GatewayConfig, new: GatewayConfig) -> Plan:
    """Compare ``new`` with the ``running`` configuration."""
    needs = [name for name in RESTART_SECTIONS if getattr(running, name) != getattr(new, name)]
    old_ble, new_ble = running.ble, new.ble
    needs += [
        f"ble.{key}"
        for key in BleSection.model_fields
        if key not in BLE_LIVE_KEYS and getattr(old_ble, key) != getattr(new_ble, key)
    ]
    kept_ble = old_ble.model_copy(update={key: getattr(new_ble, key) for key in BLE_LIVE_KEYS})
    applied = new.model_copy(
        update={name: getattr(running, name) for name in RESTART_SECTIONS} | {"ble": kept_ble}
    )
    return Plan(
        config=applied,
        needs_restart=tuple(needs),
        modbus=running.modbus != new.modbus,
        rules=running.rules != new.rules,
        escalation=running.alerts != new.alerts,
        models=running.models != new.models,
        ble=old_ble.sensors != new_ble.sensors
        or old_ble.reading_interval_s != new_ble.reading_interval_s,
        site=running.site != new.site,
        removed=frozenset(_names(running) - _names(new)),
    )


def _names(config: GatewayConfig) -> set[str]:
    """Everything an alert may be about: devices, gates, sensors, dwellings."""
    return {
        *(d.name for d in config.modbus.devices),
        *(g.name for g in config.modbus.gates),
        *(s.name for s in config.ble.sensors),
        *(d.name for d in config.models.dwellings),
    }
