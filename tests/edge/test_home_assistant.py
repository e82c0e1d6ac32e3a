"""The building in Home Assistant, without a broker: the causes a configuration implies, their ids,
the discovery configs checked against Home Assistant's own schema, what ON and OFF mean, the
meters' main points and their pace, and button presses (any bytes at all)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge import analytics, daemon
from edge.alerts import AlertBook, Finding
from edge.home_assistant import Cause, HomeAssistantBridge, Message, known_causes, safe_id
from edge.home_assistant import causes as ha_causes
from edge.mqtt_commands import REASONS, Commands
from edge.people import PeopleStore, Role
from edge.schemas import GatewayConfig
from firmware_bridge.readings import Reading
from tests.support import alerts as support

T0 = 1_800_000_000.0

# What Home Assistant requires of a discovery config, read in home-assistant/core,
# homeassistant/components/mqtt/ (December 2026):
# - config.py: MQTT_RO_SCHEMA has vol.Required(CONF_STATE_TOPIC); binary_sensor.py and sensor.py
#   build their schemas on it. button.py: vol.Required(CONF_COMMAND_TOPIC).
# - schemas.py: MQTT_ENTITY_DEVICE_INFO_SCHEMA is valid only with a non-empty "identifiers" or
#   "connections" (validate_device_has_at_least_one_identifier); "availability" is a list of
#   {"topic", "payload_available", "payload_not_available", "value_template"}, exclusive with
#   "availability_topic"; availability_mode one of all, any, latest (const.py).
# - discovery.py: TOPIC_MATCHER, <component>/[<node_id>/]<object_id>/config with node and object
#   ids of [a-zA-Z0-9_-].
# - const.py: CONF_DEFAULT_ENTITY_ID "default_entity_id" (object_id is deprecated since 2025.10),
#   an entity id core.py's VALID_ENTITY_ID accepts, of the component's domain.
# - sensor.py: state_class among the sensor's STATE_CLASSES; the device classes and units below
#   are SensorDeviceClass's and the units HA lists for them (UnitOfEnergy, UnitOfVolume, ...).
# Our own rule on top: every entity has a name, a unique_id, the device, and availability.
REQUIRED: dict[str, set[str]] = {
    "binary_sensor": {"state_topic"},
    "sensor": {"state_topic"},
    "button": {"command_topic"},
}
OURS = {"name", "unique_id", "default_entity_id", "device", "availability", "origin"}
TOPIC_MATCHER = re.compile(
    r"(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config"
)
VALID_ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")
SENSOR_CLASSES = {
    "energy": ({"Wh", "kWh", "MWh"}, {"total", "total_increasing"}),
    "water": ({"L", "m³"}, {"total", "total_increasing"}),
    "power": ({"W", "kW"}, {"measurement"}),
    "voltage": ({"V", "mV"}, {"measurement"}),
}
ALLOWED_SUBSCRIBE = re.compile(r"^[^#+\x00]+$")


def check_discovery(topic: str, config: dict[str, Any], prefix: str = "homeassistant") -> str:
    """Fail unless ``config`` on ``topic`` is a config Home Assistant takes; its component."""
    found = TOPIC_MATCHER.fullmatch(topic.removeprefix(f"{prefix}/"))
    assert found is not None, topic
    component = found["component"]
    assert component in REQUIRED, topic
    missing = (REQUIRED[component] | OURS) - set(config)
    assert not missing, (topic, missing)
    assert "availability_topic" not in config  # exclusive with availability
    assert config["device"]["identifiers"], topic
    assert all(isinstance(i, str) for i in config["device"]["identifiers"])
    assert isinstance(config["name"], str)
    assert config["name"].strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]+", config["unique_id"]), config["unique_id"]
    entity_id = config["default_entity_id"]
    assert VALID_ENTITY_ID.match(entity_id), entity_id
    assert entity_id.split(".")[0] == component
    for item in config["availability"]:
        assert set(item) <= {
            "topic",
            "payload_available",
            "payload_not_available",
            "value_template",
        }
        assert ALLOWED_SUBSCRIBE.match(item["topic"])
    assert config.get("availability_mode", "latest") in {"all", "any", "latest"}
    if component == "sensor":
        units, state_classes = SENSOR_CLASSES[config["device_class"]]
        assert config["unit_of_measurement"] in units, config
        assert config["state_class"] in state_classes, config
    if component == "binary_sensor":
        assert config["device_class"] == "problem"
    if component == "button":
        assert config.get("payload_press", "PRESS") == "PRESS"
        assert config.get("retain") is False
    return component


def config_of(**mqtt: Any) -> GatewayConfig:
    """A building with two meters, a gate, a door sensor and a watched dwelling."""
    return GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-0001", "site": "maple-court-12"},
            "mqtt": {"home_assistant": {"enabled": True, **mqtt}},
            "uplink": {"url": "https://central.example.org", "token": "t"},
            "modbus": {
                "devices": [
                    {"name": "main", "label": "总表", "profile": "eastron_sdm630", "host": "h"},
                    {"name": "flat-3", "profile": "eastron_sdm120", "host": "h", "unit_id": 2},
                    {
                        "name": "water-3",
                        "profile": "advantech_adam6050_water",
                        "host": "h2",
                    },
                ],
                "gates": [{"name": "gate.east", "label": "3号楼东门", "host": "h3"}],
            },
            "ble": {
                "sensors": [{"name": "door-3", "label": "301室入户门", "mac": "aa:bb:cc:dd:ee:01"}]
            },
            "models": {
                "dwellings": [
                    {
                        "name": "home-3",
                        "label": "2单元301",
                        "meters": ["flat-3:import_energy", "water-3:volume"],
                        "doors": ["door-3"],
                    }
                ],
                "anomaly": [{"meter": "main:import_energy"}],
                "demand": [
                    {"name": "building", "meters": ["main:import_energy"], "capacity_kwh": 70}
                ],
            },
        }
    )


def drain(bridge: HomeAssistantBridge) -> list[Message]:
    sent = []
    while (message := bridge.next()) is not None:
        bridge.sent(message)
        sent.append(message)
    return sent


def test_the_configuration_announces_every_cause_it_can_raise() -> None:
    keys = {cause.key for cause in known_causes(config_of())}
    assert keys == {
        "device_silent.main.link",
        "voltage.main.voltage_l1",
        "voltage.main.voltage_l2",
        "voltage.main.voltage_l3",
        "device_silent.flat-3.link",
        "voltage.flat-3.voltage",
        "device_silent.water-3.link",
        "device_silent.gate.east.link",
        "gate_fault.gate.east.gate_state",
        "door_held_open.door-3.door",
        "sensor_silent.door-3.link",
        "low_battery.door-3.battery",
        "ble_adapter.ble.link",
        "use_quiet.home-3.use",
        "use_stopped.home-3.use",
        "unusual_use.main.main:import_energy",
        "demand_capacity.building.forecast",
        "records_refused.gw-0001.uplink",
        "disk_full.gw-0001.store",
    }


def test_the_causes_are_those_the_sources_raise() -> None:
    """The causes named here for modules it does not import are theirs."""
    assert (analytics.DEMAND_RULE, analytics.DEMAND_POINT) == (
        ha_causes.DEMAND_RULE,
        ha_causes.DEMAND_POINT,
    )
    assert analytics.DWELLING_POINT == ha_causes.DWELLING_POINT
    assert (analytics.CESSATION_RULE, analytics.QUIET_RULE, analytics.ANOMALY_RULE) == (
        ha_causes.CESSATION_RULE,
        ha_causes.QUIET_RULE,
        ha_causes.ANOMALY_RULE,
    )
    found: list[Finding] = []

    class Pipeline:
        def submit_finding(self, finding: Finding) -> None:
            found.append(finding)

    gateway = daemon.Gateway(config_of())
    gateway._pipeline = Pipeline()  # type: ignore[assignment]
    gateway._records_refused(2, "gw-0001:x: refused")
    assert found[0].key in {cause.key for cause in known_causes(config_of())}


def test_cause_ids_are_safe_stable_and_one_per_cause() -> None:
    causes = known_causes(config_of())
    ids = [cause.cause_id for cause in causes]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", i) for i in ids)
    by_key = {cause.key: cause.cause_id for cause in causes}
    # The same on every start (and in every release: Home Assistant keys its entities by them).
    assert by_key["voltage.flat-3.voltage"] == "voltage-flat-3-voltage"
    assert by_key["device_silent.gate.east.link"] == "device_silent-gate_east-link-499bce0b"
    assert by_key["unusual_use.main.main:import_energy"] == (
        "unusual_use-main-main_import_energy-1a89f4a4"
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["voltage", "device_silent", "unusual_use"]),
            st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,8}", fullmatch=True),
            st.from_regex(r"[a-z][a-z0-9_:.-]{0,8}", fullmatch=True),
        ),
        min_size=2,
        max_size=30,
        unique=True,
    )
)
def test_two_causes_never_share_an_id(causes: list[tuple[str, str, str]]) -> None:
    ids = [safe_id(*cause) for cause in causes]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", i) for i in ids)


def test_every_discovery_config_is_one_home_assistant_takes() -> None:
    bridge = HomeAssistantBridge(config_of())
    bridge.connected([])
    sent = drain(bridge)
    configs = {m.topic: json.loads(m.payload) for m in sent if m.topic.endswith("/config")}
    components = [check_discovery(topic, config) for topic, config in configs.items()]
    causes = len(known_causes(config_of()))
    assert components.count("binary_sensor") == components.count("button") == causes
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)
    assert all(m.retain and m.qos == 1 for m in sent)
    # One device, the building, for every entity.
    assert {json.dumps(c["device"], sort_keys=True) for c in configs.values()} == {
        json.dumps(next(iter(configs.values()))["device"], sort_keys=True)
    }
    # Every cause shows as OFF before anything happens.
    states = [json.loads(m.payload) for m in sent if "/causes/" in m.topic]
    assert len(states) == causes
    assert {s["problem"] for s in states} == {"OFF"}


def test_labels_name_the_entities_in_the_configured_language() -> None:
    names = {c.cause_id: c for c in known_causes(config_of())}
    bridge = HomeAssistantBridge(config_of(name="枫林苑12号楼"))
    d = bridge.discovery
    gate = next(c for c in names.values() if c.key == "gate_fault.gate.east.gate_state")
    volts = next(c for c in names.values() if c.key == "voltage.main.voltage_l2")
    home = next(c for c in names.values() if c.key == "use_stopped.home-3.use")
    assert d.problem(gate)[1]["name"] == "3号楼东门：道闸故障"
    assert d.problem(volts)[1]["name"] == "总表 L2 相电压：电压越限"
    assert d.button(home)[1]["name"] == "2单元301：确认用水用电停止"
    assert d.problem(gate)[1]["device"]["name"] == "枫林苑12号楼"
    english = HomeAssistantBridge(config_of(language="en")).discovery
    assert english.problem(gate)[1]["name"] == "3号楼东门: gate fault"
    assert english.button(volts)[1]["name"] == "总表 voltage L2: acknowledge voltage out of range"
    assert english.problem(gate)[1]["device"]["name"] == "maple-court-12 gw-0001"


def test_the_meters_main_points_are_sensors_of_their_class() -> None:
    bridge = HomeAssistantBridge(config_of())
    sensors = {(s.device, s.point): bridge.discovery.sensor(s)[1] for s in bridge.sensors()}
    shown = {
        key: (c["device_class"], c["unit_of_measurement"], c["state_class"])
        for key, c in sensors.items()
    }
    assert shown == {
        ("main", "voltage_l1"): ("voltage", "V", "measurement"),
        ("main", "voltage_l2"): ("voltage", "V", "measurement"),
        ("main", "voltage_l3"): ("voltage", "V", "measurement"),
        ("main", "total_power"): ("power", "W", "measurement"),
        ("main", "import_energy"): ("energy", "kWh", "total_increasing"),
        ("main", "total_energy"): ("energy", "kWh", "total_increasing"),
        ("flat-3", "voltage"): ("voltage", "V", "measurement"),
        ("flat-3", "power"): ("power", "W", "measurement"),
        ("flat-3", "import_energy"): ("energy", "kWh", "total_increasing"),
        ("flat-3", "total_energy"): ("energy", "kWh", "total_increasing"),
        ("water-3", "volume"): ("water", "m³", "total_increasing"),
    }
    assert sensors[("main", "import_energy")]["name"] == "总表 正向有功电能"
    assert sensors[("water-3", "volume")]["state_topic"] == (
        "nbedge/maple-court-12/gw-0001/points/water-3/volume"
    )


def test_a_point_is_published_at_most_once_per_interval() -> None:
    bridge = HomeAssistantBridge(config_of(state_interval_s=60))
    woken: list[int] = []
    bridge.wake = lambda: woken.append(1)
    seen: list[Reading] = []
    sink = bridge.tee(seen.append)
    for n in range(48):  # four minutes of polls every 5 s
        at = n * 5.0
        sink(Reading("main", "import_energy", 100 + n / 10, "kWh", T0 + at, int(at * 1e9)))
        sink(Reading("main", "current_l1", 3.0, "A", T0 + at, int(at * 1e9)))  # not a main point
        sink(Reading("main", "total_power", float("nan"), "W", T0 + at, int(at * 1e9)))
    assert len(seen) == 48 * 3  # the store still gets everything
    sent = drain(bridge)
    assert [(m.topic, m.payload) for m in sent] == [
        ("nbedge/maple-court-12/gw-0001/points/main/import_energy", b"103.6")
    ]  # taken at 0, 60, 120 and 180 s; the latest of those waits while nothing is sent
    assert bridge.points == 1


def test_published_every_interval_while_connected() -> None:
    bridge = HomeAssistantBridge(config_of(state_interval_s=60))
    values = []
    for n in range(48):
        at = n * 5.0
        bridge.reading(Reading("flat-3", "power", float(n), "W", T0 + at, int(at * 1e9)))
        values += [m.payload for m in drain(bridge)]
    assert values == [b"0", b"12", b"24", b"36"]


def test_on_while_the_alert_is_open_and_active() -> None:
    bridge = HomeAssistantBridge(config_of())
    bridge.connected([])
    drain(bridge)
    book = AlertBook()

    def state(cause: str) -> dict[str, Any]:
        [message] = [m for m in drain(bridge) if m.topic.endswith(cause)]
        return dict(json.loads(message.payload))

    # A home whose use stopped: raised, acknowledged, cleared (a person must still resolve it).
    raised = support.raise_alert(book, rule="use_stopped", device="home-3", point="use", at=T0)
    bridge.alert(raised)
    now = state("use_stopped-home-3-use")
    assert (now["problem"], now["alert_state"], now["can_acknowledge"]) == ("ON", "new", True)
    assert (now["alert_id"], now["severity"]) == (raised.alert_id, "critical")
    assert now["raised_at"] == "2027-01-15T08:00:00+00:00"
    assert now["text_zh_hans"] == raised.text("zh-Hans")
    assert now["text_en"] == raised.message
    [acked] = book.act(raised.alert_id, "acknowledge", by="王芳", via="mqtt", at=T0 + 60).changes
    bridge.alert(acked)
    now = state("use_stopped-home-3-use")
    assert (now["problem"], now["alert_state"], now["acknowledged_by"]) == (
        "ON",
        "acknowledged",
        "王芳",
    )
    assert now["can_acknowledge"] is False
    [cleared] = support.clear_alert(book, acked, at=T0 + 3600)
    bridge.alert(cleared)
    now = state("use_stopped-home-3-use")
    assert (now["problem"], now["open"], now["condition"]) == ("OFF", True, "cleared")
    [resolved] = book.act(
        raised.alert_id, "resolve", by="王芳", via="mqtt", at=T0 + 3700, outcome="resident_ok"
    ).changes
    bridge.alert(resolved)
    now = state("use_stopped-home-3-use")
    assert (now["problem"], now["open"], now["alert_id"]) == ("OFF", False, None)


def test_a_cause_first_seen_at_runtime_is_announced_before_its_state() -> None:
    bridge = HomeAssistantBridge(config_of())
    bridge.connected([])
    drain(bridge)
    alert = support.raise_alert(AlertBook(), rule="voltage", device="sub-7", point="voltage_l1")
    bridge.alert(alert)
    topics = [m.topic.split("/")[-2:] for m in drain(bridge)]
    assert topics == [
        ["voltage-sub-7-voltage_l1-problem", "config"],
        ["voltage-sub-7-voltage_l1-acknowledge", "config"],
        ["causes", "voltage-sub-7-voltage_l1"],
    ]
    assert Cause("voltage", "sub-7", "voltage_l1") in bridge.causes()
    bridge.connected([alert])  # after a restart, from the book's open alerts
    states = [json.loads(m.payload) for m in drain(bridge) if "/causes/voltage-sub-7" in m.topic]
    assert [s["problem"] for s in states] == ["ON"]


SENSORS = [
    {"name": "leak-3", "kind": "leak", "mac": "aa:bb:cc:dd:ee:02"},
    {"name": "smoke-3", "kind": "smoke", "mac": "aa:bb:cc:dd:ee:03"},
    {"name": "sos-3", "kind": "button", "mac": "aa:bb:cc:dd:ee:04"},
    {"name": "motion-3", "kind": "motion", "mac": "aa:bb:cc:dd:ee:05"},
]


def with_sensors(config: GatewayConfig, sensors: list[dict[str, Any]]) -> GatewayConfig:
    data = config.model_dump(mode="json", exclude_unset=True)
    data["ble"]["sensors"] = [*data["ble"]["sensors"], *sensors]
    return GatewayConfig.model_validate(data)


def test_each_kind_of_sensor_announces_what_it_raises() -> None:
    keys = {c.key for c in known_causes(with_sensors(config_of(), SENSORS))}
    assert {
        "water_leak.leak-3.leak",
        "smoke.smoke-3.smoke",
        "sos.sos-3.button",
        "press_to_test.sos-3.link",
        "sensor_silent.motion-3.link",
    } <= keys
    assert {f"low_battery.{s['name']}.battery" for s in SENSORS} <= keys
    # no door held open but for a door; no silence for a button, which sends only when pressed
    assert [k for k in keys if k.startswith("door_held_open.")] == ["door_held_open.door-3.door"]
    assert "sensor_silent.sos-3.link" not in keys


def test_a_reload_deletes_the_entities_of_what_left_and_announces_what_came() -> None:
    before = with_sensors(config_of(), SENSORS[:1])
    bridge = HomeAssistantBridge(before)
    bridge.connected([])
    drain(bridge)
    book = AlertBook()
    leak = support.raise_alert(book, rule="water_leak", device="leak-3", point="leak", params={})
    bridge.alert(leak)
    drain(bridge)
    data = before.model_dump(mode="json", exclude_unset=True)
    data["ble"]["sensors"] = [s for s in data["ble"]["sensors"] if s["name"] != "leak-3"]
    data["ble"]["sensors"].append(SENSORS[2])
    data["modbus"]["devices"] = [d for d in data["modbus"]["devices"] if d["name"] != "main"]
    data["models"]["anomaly"], data["models"]["demand"] = [], []
    after = GatewayConfig.model_validate(data)
    bridge.reconfigure(after, removed={"leak-3", "main"})
    sent = {m.topic: m.payload for m in drain(bridge)}
    emptied = {topic for topic, payload in sent.items() if payload == b""}
    # the leak sensor's entities are deleted, and the meter's sensors and last values ...
    assert any("/low_battery-leak-3-battery-problem/config" in t for t in emptied)
    assert any(t.endswith("/causes/low_battery-leak-3-battery") for t in emptied)
    assert any(t.endswith("/points/main/import_energy") for t in emptied)
    assert all(s.device != "main" for s in bridge.sensors())
    # ... but not the leak's: a person must still see to it
    assert not any("water_leak" in t for t in emptied)
    assert Cause("water_leak", "leak-3", "leak") in bridge.causes()
    # the new button is announced, and what stays is announced again, nothing of it deleted
    assert any("/sos-sos-3-button-problem/config" in t and sent[t] for t in sent)
    assert any("/door_held_open-door-3-door-problem/config" in t and sent[t] for t in sent)
    assert not any("door-3" in t or "flat-3" in t for t in emptied)
    # resolved, the leak's entities go too
    (resolved,) = book.act(
        leak.alert_id, "resolve", by="王芳", outcome="help_given", at=2e9, via="local_api"
    ).changes
    bridge.alert(resolved)
    emptied = {m.topic for m in drain(bridge) if m.payload == b""}
    assert any("/water_leak-leak-3-leak-problem/config" in t for t in emptied)
    assert any("/water_leak-leak-3-leak-acknowledge/config" in t for t in emptied)
    assert any(t.endswith("/causes/water_leak-leak-3-leak") for t in emptied)
    assert all(c.device not in ("leak-3", "main") for c in bridge.causes())
    # a removed device's alert cleared afterwards does not bring its entity back
    quiet = support.raise_alert(book, rule="low_battery", device="leak-3", point="battery")
    (cleared, *_) = book.apply(
        Finding(
            code="low_battery",
            device="leak-3",
            point="battery",
            active=False,
            value=0.0,
            at=2e9 + 1,
            params={"removed": True},
        )
    )
    assert quiet.key == cleared.key
    bridge.alert(cleared)
    assert drain(bridge) == []


def commands_for(folder: Path, book: AlertBook) -> Commands:
    people = PeopleStore(folder / "people.json")
    if not people.people():
        people.add("homeassistant", Role.RESPONDER, display="社区办公室")
        people.add("siren-1", Role.VIEWER)
    return Commands(people, act=book.act, alert=book.get, now=lambda: T0 + 60)


def test_a_press_acknowledges_the_open_alert_of_its_cause(tmp_path: Path) -> None:
    book = AlertBook()
    alert = support.raise_alert(book, rule="voltage", device="main", point="voltage_l1", at=T0)
    commands = commands_for(tmp_path, book)
    answer = commands.press("c", alert.alert_id, "homeassistant", b"PRESS", retained=False)
    assert answer is not None
    assert (answer.result, answer.event_id) == ("applied", f"{alert.alert_id}.2")
    current = book.get(alert.alert_id)
    assert current is not None
    assert (current.state, current.acknowledged_by, current.via) == (
        "acknowledged",
        "社区办公室",
        "mqtt",
    )
    refusals = [
        ("c", alert.alert_id, "siren-1", b"PRESS", False, True, "role"),
        ("c", alert.alert_id, "stranger", b"PRESS", False, True, "not_a_person"),
        ("c", alert.alert_id, "homeassistant", b"press", False, True, "malformed"),
        ("c", alert.alert_id, "homeassistant", b"\xff\xfePRESS", False, True, "not_utf8"),
        ("c", alert.alert_id, "homeassistant", b"PRESS" * 10, False, True, "too_large"),
        ("c", alert.alert_id, "homeassistant", b"PRESS", True, True, "retained"),
        ("c", None, "homeassistant", b"PRESS", False, True, "unknown_alert"),
        ("x", None, "homeassistant", b"PRESS", False, False, "unknown_cause"),
    ]
    for cause, alert_id, user, payload, retained, known, reason in refusals:
        answer = commands.press(cause, alert_id, user, payload, retained=retained, known=known)
        assert answer is not None
        assert (answer.result, answer.reason) == ("refused", reason), reason
    assert {r: n for r, n in commands.counts()["refused"].items() if n} == {
        r: 1 for *_, r in refusals
    }
    assert commands.press("c", alert.alert_id, "homeassistant", b"", retained=False) is None
    assert commands.counts()["ignored_empty"] == 1


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=st.binary(max_size=64) | st.sampled_from([b"PRESS", b"PRESS ", b"ON"]))
def test_any_bytes_on_the_button_topic_and_only_press_acts(tmp_path: Path, payload: bytes) -> None:
    book = AlertBook()
    alert = support.raise_alert(book, rule="voltage", device="main", point="voltage_l1", at=T0)
    commands = commands_for(tmp_path, book)
    answer = commands.press("c", alert.alert_id, "homeassistant", payload, retained=False)
    current = book.get(alert.alert_id)
    assert current is not None
    if payload == b"PRESS":
        assert answer is not None
        assert answer.result == "applied"
        assert current.state == "acknowledged"
        return
    assert current.state == "new"
    if payload == b"":
        assert answer is None
        return
    assert answer is not None
    assert answer.result == "refused"
    assert answer.reason in REASONS
    assert sum(commands.counts()["refused"].values()) == 1


def test_home_assistant_needs_mqtt() -> None:
    with pytest.raises(ValueError, match=r"home_assistant\.enabled needs mqtt\.enabled"):
        GatewayConfig.model_validate(
            {
                "gateway": {"id": "g", "site": "s"},
                "mqtt": {"enabled": False, "home_assistant": {"enabled": True}},
            }
        )
    assert (
        GatewayConfig.model_validate(
            {"gateway": {"id": "g", "site": "s"}}
        ).mqtt.home_assistant.enabled
        is False
    )
