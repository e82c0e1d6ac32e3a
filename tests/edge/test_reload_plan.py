"""What a reload applies and what waits for a restart (``edge.reload.plan``)."""

from __future__ import annotations

from edge.config import parse_config
from edge.reload import plan

BASE = """
[gateway]
id = "gw-1"
site = "site-1"

[mqtt]
port = 1883

[ble]
adapter = "hci0"

[[ble.sensors]]
name = "entrance"
mac = "AA:BB:CC:DD:EE:01"

[[modbus.devices]]
name = "main"
profile = "eastron_sdm630"
host = "10.0.0.2"
"""


def test_sensors_and_devices_apply_the_adapter_and_mqtt_wait() -> None:
    running = parse_config(BASE)
    new = parse_config(
        BASE.replace('adapter = "hci0"', 'adapter = "hci1"')
        .replace("port = 1883", "port = 1884")
        .replace('name = "entrance"', 'name = "back-door"')
        .replace('host = "10.0.0.2"', 'host = "10.0.0.3"')
    )
    change = plan(running, new)
    assert change.needs_restart == ("mqtt", "ble.adapter")
    assert change.changed == ("modbus", "ble")
    assert change.removed == {"entrance"}
    assert change.config.mqtt.port == 1883  # kept as it runs
    assert change.config.ble.adapter == "hci0"
    assert [s.name for s in change.config.ble.sensors] == ["back-door"]
    assert change.config.modbus.devices[0].host == "10.0.0.3"


def test_the_same_file_changes_nothing() -> None:
    running = parse_config(BASE)
    change = plan(running, parse_config(BASE))
    assert change.needs_restart == ()
    assert change.changed == ()
    assert change.removed == frozenset()
    assert change.config == running
