"""Sensors of every kind: real BTHome frames (encoded by the simulator, decoded by bthome-ble)
of leak, smoke and motion sensors, an H&T and a button, and what they find; latched alerts in
the alert book; what ``nbedge scan ble`` suggests as a sensor's kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.alerts import Alert, AlertBook, Finding
from edge.alerts.payload import alert_payload
from edge.cli import main
from edge.doors import DoorAlerts
from edge.schemas import BleSensorSection
from firmware_bridge.ble.bthome import BTHomeAdvert, decode
from firmware_bridge.ble.discover import FoundSensor
from sim.bthome import (
    ButtonEvent,
    ScriptedSensor,
    battery,
    button,
    humidity,
    moisture,
    motion,
    packet_id,
    smoke,
    temperature,
    window,
)

MAC = "00:00:00:00:0A:02"


def frame(*objects: Any) -> BTHomeAdvert:
    sensor = ScriptedSensor(MAC, [(0.0, list(objects))])
    data = sensor.advertise(1.0)
    assert data is not None
    return decode(MAC, "sensor", -60, data, bind_key=None, time=1.0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def alerts_of(kind: str, **options: Any) -> tuple[DoorAlerts, Clock]:
    clock = Clock()
    sensor = BleSensorSection(name="s1", mac=MAC, kind=kind, **options)  # type: ignore[arg-type]
    return DoorAlerts([sensor], monotonic=clock, wall_clock=clock), clock


def found(alerts: DoorAlerts, advert: BTHomeAdvert) -> list[tuple[str, bool]]:
    findings = alerts.frame(
        "s1",
        door_open=advert.door_open,
        battery=advert.battery,
        binary=advert.binary,
        events=advert.events,
    )
    ignored = ("sensor_silent", "press_to_test", "low_battery")
    return [(f.code, f.active) for f in findings if f.code not in ignored]


def test_a_leak_is_found_when_it_turns_wet_and_never_cleared_by_the_sensor() -> None:
    alerts, _ = alerts_of("leak")
    assert found(alerts, frame(moisture(False))) == []
    assert found(alerts, frame(moisture(True))) == [("water_leak", True)]
    assert found(alerts, frame(moisture(True))) == []  # the same wet, repeated
    assert found(alerts, frame(moisture(False))) == []  # dry: still nothing cleared
    assert found(alerts, frame(moisture(True))) == [("water_leak", True)]  # wet again


def test_smoke_as_a_leak() -> None:
    alerts, _ = alerts_of("smoke")
    assert found(alerts, frame(smoke(True))) == [("smoke", True)]


@pytest.mark.parametrize(
    ("sos_press", "event", "sos"),
    [
        ("any", ButtonEvent.PRESS, True),
        ("any", ButtonEvent.LONG_PRESS, True),
        ("long_press", ButtonEvent.PRESS, False),
        ("long_press", ButtonEvent.LONG_PRESS, True),
        ("double_press", ButtonEvent.DOUBLE_PRESS, True),
    ],
)
def test_which_press_means_sos(sos_press: str, event: ButtonEvent, sos: bool) -> None:
    alerts, _ = alerts_of("button", sos_press=sos_press)
    assert found(alerts, frame(button(event))) == ([("sos", True)] if sos else [])


def test_a_button_heard_by_no_one_for_a_month_asks_to_be_pressed() -> None:
    alerts, clock = alerts_of("button", test_every_s=30 * 86_400)
    clock.now = 30 * 86_400 - 1
    assert not [f for f in alerts.tick() if f.active and f.code != "ble_adapter"]
    clock.now = 30 * 86_400
    (reminder,) = [f for f in alerts.tick() if f.active and f.code != "ble_adapter"]
    assert reminder.code == "press_to_test"  # not sensor_silent: a button sends when pressed
    findings = alerts.frame("s1", door_open=None, battery=95.0, events=("button:press",))
    assert ("press_to_test", False) in [(f.code, f.active) for f in findings]


def test_a_latched_alert_repeats_and_ends_with_its_resolution() -> None:
    alerts, clock = alerts_of("button")
    book = AlertBook()

    def press(event: str, at: float) -> list[Alert]:
        clock.now = at
        findings = alerts.frame("s1", door_open=None, battery=None, events=(event,))
        return [change for f in findings if f.code == "sos" for change in book.apply(f)]

    (first,) = press("button:press", 10.0)
    assert (first.event, first.severity, first.needs_person) == ("raised", "critical", True)
    (again,) = press("button:long_press", 20.0)
    assert again.alert_id == first.alert_id
    assert (again.event, again.event_n) == ("raised", 2)
    assert again.params["press"] == "long_press"
    inactive = Finding(code="sos", device="s1", point="button", active=False, value=0, at=30)
    assert book.apply(inactive) == []  # nothing but a person ends it
    result = book.act(
        first.alert_id, "resolve", by="王芳", outcome="help_given", at=40.0, via="local_api"
    )
    (resolved,) = result.changes
    assert (resolved.condition, resolved.state) == ("cleared", "resolved")
    assert book.open() == []


def test_readings_of_an_h_and_t_and_a_motion_sensor_decode() -> None:
    climate = frame(temperature(31.5), humidity(64.0))
    assert climate.values["temperature"] == pytest.approx(31.5)
    assert climate.values["humidity"] == pytest.approx(64.0)
    assert frame(motion(True)).binary == {"motion": True}


@pytest.mark.parametrize(
    ("objects", "kind"),
    [
        ([window(True)], "door"),
        ([moisture(False)], "leak"),
        ([smoke(False)], "smoke"),
        ([motion(False)], "motion"),
        ([button(ButtonEvent.PRESS)], "button"),
        ([temperature(21.0), humidity(40.0)], "climate"),
        ([battery(50)], "?"),
    ],
)
def test_scan_suggests_the_kind_to_configure(objects: list[Any], kind: str) -> None:
    sensor = FoundSensor(MAC)
    sensor.last = frame(packet_id(3), *objects)
    assert sensor.kind == kind


def test_config_check_counts_the_sensors_by_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sensors = "".join(
        f'\n[[ble.sensors]]\nname = "s{i}"\nkind = "{kind}"\nmac = "A4:C1:38:00:00:0{i}"\n'
        for i, kind in enumerate(["leak", "button", "leak"])
    )
    path = tmp_path / "gateway.toml"
    path.write_text('[gateway]\nid = "gw-1"\nsite = "site-1"\n' + sensors)
    assert main(["config", "check", str(path)]) == 0, capsys.readouterr().err
    assert "0 Modbus device(s), 3 BLE sensor(s) (1 button, 2 leak))" in capsys.readouterr().out


def test_a_sensor_with_a_label_is_named_by_it_on_every_channel() -> None:
    alerts, _ = alerts_of("leak", label="3-201 卫生间")
    book = AlertBook()
    findings = alerts.frame("s1", door_open=None, battery=90.0, binary={"moisture": True})
    (raised,) = [change for f in findings if f.code == "water_leak" for change in book.apply(f)]
    assert raised.device == "s1"  # the id stays the key; people read the label
    assert raised.text("en") == "water leak at 3-201 卫生间"
    assert raised.text("zh-Hans") == "3-201 卫生间 检测到漏水"
    payload = alert_payload(raised, site="site-1", gateway="gw-1")  # MQTT and the local API
    assert payload["texts"]["zh-Hans"] == "3-201 卫生间 检测到漏水"
    assert payload["params"]["sensor_label"] == "3-201 卫生间"
    unnamed, _ = alerts_of("leak")
    (finding,) = [
        f
        for f in unnamed.frame("s1", door_open=None, battery=None, binary={"moisture": True})
        if f.code == "water_leak"
    ]
    assert "sensor_label" not in finding.params
