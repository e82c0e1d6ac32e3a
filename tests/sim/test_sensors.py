"""The simulated Shelly BLU Motion, H&T and Button, leak and smoke sensors, decoded by bthome-ble:
what each frame says, when frames are sent, the objects and flags the devices send."""

from __future__ import annotations

import math

import pytest

from sim.bthome import ButtonEvent, ScriptedSensor, SimulatedSensor, moisture
from sim.sensors import LeakSensor, ShellyBluButton, ShellyBluHT, ShellyBluMotion, SmokeSensor
from tests.sim.test_bthome_encode import KEY, MAC, parse, values


def decoded(sensor: SimulatedSensor, now: float) -> dict[str, object]:
    data = sensor.advertise(now)
    assert data is not None, f"sensor silent at {now}"
    device, update = parse(data, mac=sensor.mac, key=sensor.bind_key, name=sensor.name)
    assert device.bindkey_verified is (sensor.bind_key is not None)
    return values(update)


def packet_ids(sensor: SimulatedSensor, times: list[float]) -> list[object]:
    return [decoded(sensor, t)["packet_id"] for t in times]


# --- Shelly BLU Motion --------------------------------------------------------------------


def test_motion_starts_with_a_frame_and_ends_one_blind_time_after_the_last_movement() -> None:
    sensor = ShellyBluMotion(
        MAC, start=1000.0, movements=[10.0, 25.0, 100.0], blind_time_s=30.0, beacon_interval_s=60
    )
    assert sensor.advertise(999.0) is None
    assert decoded(sensor, 1000.0) == {
        "packet_id": 0,
        "battery": 100,
        "illuminance": 80.0,
        "motion": False,
    }
    assert decoded(sensor, 1010.0)["motion"] is True
    # 25 s restarts the countdown without a frame: motion until 55 s, then the no-motion frame.
    assert decoded(sensor, 1054.0) == decoded(sensor, 1010.0)
    assert decoded(sensor, 1055.0)["motion"] is False
    # boot, motion, no motion, beacon (60 s), motion (100 s), beacon (120 s), no motion (130 s)
    times = [1000.0, 1010.0, 1055.0, 1060.0, 1100.0, 1120.0, 1130.0]
    assert packet_ids(sensor, times) == [0, 1, 2, 3, 4, 5, 6]
    assert decoded(sensor, 1129.0)["motion"] is True


def test_the_motion_frame_is_packet_id_battery_illuminance_motion_trigger_based() -> None:
    # The objects in the order of the theengs decoder for SBMO-003Z: 44 00 pp 01 bb 05 llllll 21 mm
    sensor = ShellyBluMotion(MAC, movements=[5.0], illuminance_lux=232.0, battery_pct=97)
    assert sensor.advertise(5.0) == bytes.fromhex("44 0001 0161 05a05a00 2101")


def test_without_beacon_mode_the_motion_sensor_sends_only_on_motion() -> None:
    sensor = ShellyBluMotion(MAC, movements=[20.0], beacon_interval_s=None)
    assert sensor.advertise(19.0) is None
    assert packet_ids(sensor, [20.0, 49.0, 50.0, 5000.0]) == [0, 0, 1, 1]


def test_an_encrypted_motion_sensor_counts_every_frame() -> None:
    sensor = ShellyBluMotion(MAC, bind_key=KEY, beacon_interval_s=10.0, first_counter=7)
    assert decoded(sensor, 35.0)["motion"] is False  # decrypted with the key
    data = sensor.advertise(35.0)
    assert data is not None
    assert data[0] == 0x45
    assert int.from_bytes(data[-8:-4], "little") == 7 + 3


# --- Shelly BLU H&T -----------------------------------------------------------------------


def test_the_ht_sends_its_schedule_every_minute_in_its_own_objects() -> None:
    sensor = ShellyBluHT(MAC, schedule=[(0.0, 24.3, 51.0), (120.0, 33.5, 38.4)])
    # 0x2E humidity (uint8, %) and 0x45 temperature (sint16, 0.1 °C), as Shelly documents them
    assert sensor.advertise(0.0) == bytes.fromhex("44 0000 0164 2e33 45f300")
    assert decoded(sensor, 59.0) == {
        "packet_id": 0,
        "battery": 100,
        "humidity": 51,
        "temperature": 24.3,
    }
    # the new values are measured at the next frame, not at the change
    assert decoded(sensor, 150.0)["temperature"] == 33.5
    assert decoded(sensor, 150.0)["humidity"] == 38
    assert packet_ids(sensor, [0.0, 60.0, 119.0, 120.0, 600.0]) == [0, 1, 1, 2, 10]


def test_a_press_on_the_ht_is_one_frame_with_the_button_then_the_next_minute_without() -> None:
    sensor = ShellyBluHT(MAC, presses=[(30.0, ButtonEvent.PRESS)])
    pressed = decoded(sensor, 30.0)
    assert pressed["button"] == "press"
    assert pressed["packet_id"] == 1
    later = decoded(sensor, 60.0)
    assert "button" not in later
    assert later["packet_id"] == 2


def test_the_ht_schedule_must_start_at_zero_and_be_in_order() -> None:
    with pytest.raises(ValueError, match="schedule"):
        ShellyBluHT(MAC, schedule=[(10.0, 20.0, 50.0)])
    with pytest.raises(ValueError, match="schedule"):
        ShellyBluHT(MAC, schedule=[(0.0, 20.0, 50.0), (30.0, 1.0, 1.0), (20.0, 2.0, 2.0)])


# --- Shelly BLU Button --------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_the_button_sends_one_frame_per_press_with_its_kind(key: bytes | None) -> None:
    presses = [
        (5.0, ButtonEvent.PRESS),
        (9.0, ButtonEvent.DOUBLE_PRESS),
        (14.0, ButtonEvent.TRIPLE_PRESS),
        (20.0, ButtonEvent.LONG_PRESS),
    ]
    sensor = ShellyBluButton(MAC, bind_key=key, presses=presses)
    assert sensor.advertise(4.9) is None  # a button sends only when pressed
    got = [(decoded(sensor, t)["packet_id"], decoded(sensor, t)["button"]) for t in (5, 9, 14, 99)]
    assert got == [(0, "press"), (1, "double_press"), (2, "triple_press"), (3, "long_press")]


def test_the_button_frame_is_packet_id_battery_button_trigger_based() -> None:
    sensor = ShellyBluButton(MAC, presses=[(0.0, ButtonEvent.PRESS)], battery_pct=70)
    assert sensor.advertise(0.0) == bytes.fromhex("44 0000 0146 3a01")


def test_in_beacon_mode_the_button_also_sends_frames_without_an_event() -> None:
    sensor = ShellyBluButton(MAC, presses=[(30.0, ButtonEvent.PRESS)], beacon_interval_s=3600)
    beacon = decoded(sensor, 0.0)
    assert "button" not in beacon
    assert beacon["packet_id"] == 0
    assert decoded(sensor, 30.0)["button"] == "press"
    assert "button" not in decoded(sensor, 3600.0)
    assert decoded(sensor, 3600.0)["packet_id"] == 2


# --- Leak and smoke sensors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "key"), [(LeakSensor, "moisture"), (SmokeSensor, "smoke")], ids=["leak", "smoke"]
)
def test_an_alarm_sensor_reports_its_state_at_each_change_and_heartbeat(
    kind: type[LeakSensor] | type[SmokeSensor], key: str
) -> None:
    sensor = kind(MAC, start=50.0, active_between=[(20.0, 25.0), (40.0, math.inf)])
    assert sensor.advertise(49.0) is None
    assert decoded(sensor, 50.0)[key] is False
    assert decoded(sensor, 70.0)[key] is True
    assert decoded(sensor, 74.9)[key] is True
    assert decoded(sensor, 75.0)[key] is False
    assert decoded(sensor, 90.0)[key] is True
    assert decoded(sensor, 50.0 + 3600.0)[key] is True  # still on
    # boot, wet, dry, wet again, heartbeat at 60 s
    assert packet_ids(sensor, [50.0, 70.0, 75.0, 90.0, 110.0]) == [0, 1, 2, 3, 4]


def test_the_leak_sensor_sends_what_a_scripted_sensor_would() -> None:
    leak = LeakSensor(MAC, active_between=[(3.0, 8.0)], heartbeat_s=None, battery_pct=95)
    scripted = ScriptedSensor(
        MAC, [(0.0, [moisture(False)]), (3.0, [moisture(True)]), (8.0, [moisture(False)])]
    )
    for t in (0.0, 2.0, 3.0, 7.0, 8.0, 100.0):
        assert leak.advertise(t) == scripted.advertise(t)


def test_alarm_windows_must_be_in_order() -> None:
    with pytest.raises(ValueError, match="not after"):
        LeakSensor(MAC, active_between=[(10.0, 20.0), (15.0, 30.0)])
    with pytest.raises(ValueError, match="positive"):
        SmokeSensor(MAC, heartbeat_s=0)
