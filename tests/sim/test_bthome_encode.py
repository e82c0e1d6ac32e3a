"""The BTHome v2 encoder and the simulated door sensor, checked against bthome-ble and
against advertisements published by others."""

from __future__ import annotations

import itertools

import pytest
from bleak.backends.device import BLEDevice
from bthome_ble import BTHomeBluetoothDeviceData
from habluetooth import BluetoothServiceInfoBleak
from hypothesis import given
from hypothesis import strategies as st
from sensor_state_data import SensorUpdate

from sim.bthome import (
    BTHOME_UUID,
    ButtonEvent,
    SimulatedDoorSensor,
    battery,
    button,
    encode_service_data,
    illuminance,
    packet_id,
    rotation,
    window,
)

MAC = "3C:2E:F5:72:AC:62"
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")


def parse(
    data: bytes, *, mac: str = MAC, key: bytes | None = None, name: str = "SBDW-002C"
) -> tuple[BTHomeBluetoothDeviceData, SensorUpdate]:
    """bthome-ble's view of one advertisement, with a fresh parser."""
    info = BluetoothServiceInfoBleak(
        name=name,
        address=mac,
        rssi=-60,
        manufacturer_data={},
        service_data={BTHOME_UUID: data},
        service_uuids=[BTHOME_UUID],
        source="test",
        device=BLEDevice(mac, name, None),
        advertisement=None,
        connectable=False,
        time=1_700_000_000.0,
        tx_power=None,
    )
    device = BTHomeBluetoothDeviceData(bindkey=key)
    return device, device.update(info)


def values(update: SensorUpdate) -> dict[str, object]:
    """Every reading bthome-ble decoded, by key: numbers, binary states and events."""
    out: dict[str, object] = {k.key: v.native_value for k, v in update.entity_values.items()}
    out.update({k.key: v.native_value for k, v in update.binary_entity_values.items()})
    out.update({k.key: v.event_type for k, v in update.events.items()})
    out.pop("signal_strength", None)
    return out


# --- Published advertisements -------------------------------------------------------------


def test_reproduces_the_shelly_blu_door_window_sample_from_shellys_own_script() -> None:
    # Source: ALLTERCO/shelly-script-examples, ble-shelly-dw.js, header comment "sample Shelly
    # DW service_data payload": 0x40 0x00 0x4E 0x01 0x64 0x05 0x00 0x00 0x00 0x2D 0x01 0x3F 0x00
    # 0x00 (packet id 0x4E, battery 100 %, illuminance 0, window open, rotation 0). It predates
    # the trigger-based flag: device info 0x40.
    published = bytes.fromhex("40 004e 0164 05000000 2d01 3f0000")
    objects = [packet_id(0x4E), battery(100), illuminance(0), window(True), rotation(0)]
    assert encode_service_data(objects, mac=MAC) == published
    _, update = parse(published)
    assert values(update) == {
        "packet_id": 78,
        "battery": 100,
        "illuminance": 0,
        "window": True,
        "rotation": 0,
    }


# Source: Bluetooth-Devices/bthome-ble, tests/test_parser_v2.py (test_bindkey_correct,
# test_increasing_encryption_counter, test_decreasing_encryption_counter,
# test_reset_encryption_counter), the same key and MAC as bthome.io's encryption example and
# bthome-ble's bthome_v2_encryption.py. test_bindkey_correct asserts temperature 25.06 C and
# humidity 50.55 % (objects 02 ca09 03 bf13); the reset test's frames carry 25.07 C (02 cb09).
PUBLISHED_KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
PUBLISHED_MAC = "54:48:E6:8F:80:A5"
PUBLISHED_ENCRYPTED = [
    # (plain objects, counter, published service data)
    ("02ca0903bf13", 0x33221100, "41a47266c95f730011223378237214"),
    ("02ca0903bf13", 1122867, "41e445f3c9962b332211006c7c4519"),
    ("02ca0903bf13", 1122868, "413e932cc7175f34221100553876af"),
    ("02ca0903bf13", 1122866, "41723d3035fb88322211009e7414c0"),
    ("02cb0903bf13", 0xFFFFFFFF, "41ba0db07aeef6ffffffff21fd4600"),
    ("02cb0903bf13", 0, "41de40b50e676600000000d7cb95de"),
]


@pytest.mark.parametrize(("plain", "counter", "published"), PUBLISHED_ENCRYPTED)
def test_reproduces_bthome_bles_published_encrypted_frames(
    plain: str, counter: int, published: str
) -> None:
    raw = bytes.fromhex(plain)
    objects = [(raw[0], raw[1:3]), (raw[3], raw[4:6])]
    encoded = encode_service_data(
        objects, mac=PUBLISHED_MAC, bind_key=PUBLISHED_KEY, counter=counter
    )
    assert encoded.hex() == published


def test_the_published_encrypted_frame_decodes_to_the_published_values() -> None:
    data = bytes.fromhex(PUBLISHED_ENCRYPTED[0][2])
    device, update = parse(data, mac=PUBLISHED_MAC, key=PUBLISHED_KEY, name="TEST DEVICE")
    assert device.bindkey_verified
    assert values(update) == {"temperature": 25.06, "humidity": 50.55}


# --- Round trips through bthome-ble --------------------------------------------------------


DOOR_OBJECTS = [
    packet_id(17),
    battery(87),
    illuminance(1234.56),
    window(True),
    button(ButtonEvent.LONG_PRESS),
    rotation(-12.3),
]
DOOR_VALUES = {
    "packet_id": 17,
    "battery": 87,
    "illuminance": 1234.56,
    "window": True,
    "button": "long_press",
    "rotation": -12.3,
}


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_a_door_frame_round_trips_through_bthome_ble(key: bytes | None) -> None:
    data = encode_service_data(DOOR_OBJECTS, mac=MAC, bind_key=key, counter=5)
    device, update = parse(data, key=key)
    assert values(update) == DOOR_VALUES
    assert device.bindkey_verified is (key is not None)
    assert device.encryption_scheme.name == ("NONE" if key is None else "BTHOME_BINDKEY")


@pytest.mark.parametrize(
    ("event", "name"),
    [
        (ButtonEvent.PRESS, "press"),
        (ButtonEvent.DOUBLE_PRESS, "double_press"),
        (ButtonEvent.LONG_PRESS, "long_press"),
    ],
)
def test_button_events_decode_to_their_names(event: ButtonEvent, name: str) -> None:
    _, update = parse(
        encode_service_data([button(event)], mac=MAC, bind_key=KEY, counter=1), key=KEY
    )
    assert values(update) == {"button": name}


def test_objects_are_sent_in_ascending_id_order_with_the_right_sizes() -> None:
    shuffled = [rotation(1.5), window(False), packet_id(3), illuminance(0.01), battery(5)]
    data = encode_service_data(shuffled, mac=MAC)
    assert data == bytes.fromhex("40 0003 0105 05010000 2d00 3f0f00")


def test_the_device_information_byte_says_version_2_encryption_and_trigger() -> None:
    assert encode_service_data([], mac=MAC)[0] == 0x40
    assert encode_service_data([], mac=MAC, trigger_based=True)[0] == 0x44
    assert encode_service_data([], mac=MAC, bind_key=KEY, trigger_based=True)[0] == 0x45


def test_a_wrong_key_fails_decryption_and_yields_no_reading() -> None:
    data = encode_service_data(DOOR_OBJECTS, mac=MAC, bind_key=KEY, counter=9)
    device, update = parse(data, key=bytes(16))
    assert not device.bindkey_verified
    assert values(update) == {}


def test_the_mac_is_part_of_the_nonce() -> None:
    data = encode_service_data(DOOR_OBJECTS, mac=MAC, bind_key=KEY, counter=9)
    device, update = parse(data, mac="3C:2E:F5:72:AC:63", key=KEY)
    assert not device.bindkey_verified
    assert values(update) == {}


@pytest.mark.parametrize(
    "make",
    [
        lambda: battery(101),
        lambda: packet_id(256),
        lambda: illuminance(167_772.16),
        lambda: rotation(3276.8),
        lambda: encode_service_data([], mac="nope"),
        lambda: encode_service_data([], mac=MAC, bind_key=b"short"),
        lambda: encode_service_data([], mac=MAC, bind_key=KEY, counter=1 << 32),
    ],
)
def test_values_that_do_not_fit_are_refused(make: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        make()  # type: ignore[operator]


@given(
    pid=st.integers(0, 255),
    pct=st.integers(0, 100),
    lux_centi=st.integers(0, (1 << 24) - 1),
    is_open=st.booleans(),
    deci_deg=st.integers(-(1 << 15), (1 << 15) - 1),
    counter=st.integers(0, (1 << 32) - 1),
    encrypted=st.booleans(),
)
def test_any_door_frame_round_trips(
    pid: int,
    pct: int,
    lux_centi: int,
    is_open: bool,
    deci_deg: int,
    counter: int,
    encrypted: bool,
) -> None:
    key = KEY if encrypted else None
    objects = [
        packet_id(pid),
        battery(pct),
        illuminance(lux_centi / 100),
        window(is_open),
        rotation(deci_deg / 10),
    ]
    _, update = parse(encode_service_data(objects, mac=MAC, bind_key=key, counter=counter), key=key)
    got = values(update)
    assert got["packet_id"] == pid
    assert got["battery"] == pct
    assert got["illuminance"] == pytest.approx(lux_centi / 100)
    assert got["window"] is is_open
    assert got["rotation"] == pytest.approx(deci_deg / 10)


# --- The simulated Shelly BLU Door/Window -------------------------------------------------


def decoded(sensor: SimulatedDoorSensor, now: float) -> dict[str, object]:
    data = sensor.advertise(now)
    assert data is not None, f"sensor silent at {now}"
    device, update = parse(data, mac=sensor.mac, key=sensor.bind_key, name=sensor.name)
    assert device.bindkey_verified is (sensor.bind_key is not None)
    return values(update)


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_the_door_opens_and_closes_on_its_schedule(key: bytes | None) -> None:
    sensor = SimulatedDoorSensor(
        mac=MAC, bind_key=key, start=1000.0, schedule=[(10.0, 40.0), (100.0, 101.0)]
    )
    assert decoded(sensor, 1005.0)["window"] is False
    opened = decoded(sensor, 1010.0)
    assert opened["window"] is True
    assert opened["rotation"] == 0  # the angle follows 2 s later, as on the real device
    tilted = decoded(sensor, 1012.0)
    assert tilted["window"] is True
    assert 5 <= float(tilted["rotation"]) <= 90  # type: ignore[arg-type]
    assert decoded(sensor, 1040.0)["window"] is False
    assert decoded(sensor, 1100.5)["window"] is True
    assert decoded(sensor, 1101.0)["rotation"] == 0


def test_every_frame_has_a_new_packet_id_and_the_state_repeats_between_changes() -> None:
    sensor = SimulatedDoorSensor(mac=MAC, schedule=[(90.0, 150.0)], repeat_interval_s=60.0)
    ids = [decoded(sensor, t)["packet_id"] for t in (0.0, 59.0, 60.0, 90.0, 92.0, 120.0, 150.0)]
    # boot, (nothing new), heartbeat, open, angle report, heartbeat, close
    assert ids == [0, 0, 1, 2, 3, 4, 5]
    assert decoded(sensor, 119.0)["window"] is True
    assert sensor.advertise(59.0) == sensor.advertise(0.5)


def test_the_packet_id_wraps_after_255_and_the_counter_keeps_growing() -> None:
    sensor = SimulatedDoorSensor(mac=MAC, bind_key=KEY, schedule=[], repeat_interval_s=1.0)
    assert decoded(sensor, 255.0)["packet_id"] == 255
    assert decoded(sensor, 256.0)["packet_id"] == 0
    reading = sensor.reading(256.0)
    assert reading is not None
    assert reading.counter == 256
    data = sensor.advertise(256.0)
    assert data is not None
    assert int.from_bytes(data[-8:-4], "little") == 256


def test_the_battery_drains_to_low_and_an_empty_sensor_is_silent() -> None:
    sensor = SimulatedDoorSensor(
        mac=MAC, schedule=[], battery_start_pct=30.0, battery_drain_pct_per_day=24.0
    )
    assert decoded(sensor, 0.0)["battery"] == 30
    assert decoded(sensor, 86_400.0)["battery"] == 6
    assert decoded(sensor, 86_400.0 * 1.2)["battery"] == 1
    assert sensor.advertise(86_400.0 * 1.25) is None


def test_the_sensor_is_silent_in_its_windows_and_packet_ids_jump_after() -> None:
    sensor = SimulatedDoorSensor(
        mac=MAC, schedule=[(30.0, 35.0)], repeat_interval_s=10.0, silent_between=[(20.0, 50.0)]
    )
    assert decoded(sensor, 19.0)["packet_id"] == 1
    assert sensor.advertise(20.0) is None
    assert sensor.advertise(49.9) is None
    after = decoded(sensor, 50.0)
    # after the boot frame (0) and heartbeat 10 (1): heartbeats 20, 30, 40 and open 30,
    # angle 32, close 35 went unheard (2-7); the heartbeat at 50 is heard
    assert after["packet_id"] == 8
    assert after["window"] is False


def test_nothing_is_sent_before_the_sensor_starts() -> None:
    sensor = SimulatedDoorSensor(mac=MAC, start=100.0, schedule=[])
    assert sensor.advertise(99.0) is None
    assert decoded(sensor, 100.0)["packet_id"] == 0


def test_a_button_press_is_one_frame_with_the_event() -> None:
    sensor = SimulatedDoorSensor(mac=MAC, bind_key=KEY, schedule=[], repeat_interval_s=60.0)
    sensor.press_button(30.0, ButtonEvent.DOUBLE_PRESS)
    assert "button" not in decoded(sensor, 29.0)
    pressed = decoded(sensor, 30.0)
    assert pressed["button"] == "double_press"
    assert pressed["packet_id"] == 1
    after = decoded(sensor, 60.0)
    assert "button" not in after
    assert after["packet_id"] == 2


def test_frames_carry_the_shelly_trigger_based_flag() -> None:
    plain = SimulatedDoorSensor(mac=MAC, schedule=[]).advertise(0.0)
    encrypted = SimulatedDoorSensor(mac=MAC, bind_key=KEY, schedule=[]).advertise(0.0)
    assert plain is not None
    assert encrypted is not None
    assert (plain[0], encrypted[0]) == (0x44, 0x45)
    device, _ = parse(plain)
    assert device.sleepy_device


def test_a_seeded_random_schedule_is_deterministic_whatever_the_call_order() -> None:
    times = [t * 7.3 for t in range(2000)]
    a = SimulatedDoorSensor(mac=MAC, bind_key=KEY, seed=42)
    b = SimulatedDoorSensor(mac=MAC, bind_key=KEY, seed=42)
    forwards = [a.advertise(t) for t in times]
    backwards = [b.advertise(t) for t in reversed(times)][::-1]
    assert forwards == backwards
    other = SimulatedDoorSensor(mac=MAC, bind_key=KEY, seed=43)
    assert [other.advertise(t) for t in times] != forwards
    openings = a.openings(times[-1])
    assert len(openings) >= 10
    assert all(o < c for o, c in openings)
    assert all(c1 <= o2 for (_, c1), (o2, _) in itertools.pairwise(openings))
    assert any(a.is_open_at(t) for t in times)


def test_a_schedule_out_of_order_is_refused() -> None:
    with pytest.raises(ValueError, match="schedule pair"):
        SimulatedDoorSensor(mac=MAC, schedule=[(10.0, 20.0), (15.0, 30.0)])
