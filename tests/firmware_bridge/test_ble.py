"""BTHome frames through the scanner's detection callback, as bleak's own objects carry them."""

from __future__ import annotations

import logging

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from firmware_bridge.ble.bthome import BTHOME_UUID, AdvertError, decode
from firmware_bridge.ble.scanner import BleScanner
from firmware_bridge.ble.tracker import Accepted, Resume, SensorSpec, SensorTracker
from sim.bthome import (
    battery,
    button,
    encode_service_data,
    illuminance,
    packet_id,
    window,
)

MAC = "A4:C1:38:00:00:01"
KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
OTHER_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")


def advertisement(
    data: bytes, *, name: str | None = "SBDW-002C", rssi: int = -61
) -> tuple[BLEDevice, AdvertisementData]:
    """bleak's objects for one advertisement carrying BTHome service data ``data``."""
    device = BLEDevice(MAC, name, None)
    adv = AdvertisementData(
        local_name=name,
        manufacturer_data={},
        service_data={BTHOME_UUID: data},
        service_uuids=[BTHOME_UUID],
        tx_power=None,
        rssi=rssi,
        platform_data=(),
    )
    return device, adv


def door_frame(
    is_open: bool, pid: int, *, key: bytes | None = None, counter: int = 0, pct: int = 90
) -> bytes:
    objects = [packet_id(pid), battery(pct), illuminance(120.5), window(is_open)]
    return encode_service_data(objects, mac=MAC, bind_key=key, counter=counter, trigger_based=True)


class Recorder:
    def __init__(self) -> None:
        self.frames: list[Accepted] = []

    def __call__(self, tracker: SensorTracker, accepted: Accepted) -> None:
        self.frames.append(accepted)


def scanner_for(
    key: bytes | None = None, resume: Resume | None = None
) -> tuple[BleScanner, Recorder]:
    recorder = Recorder()
    scanner = BleScanner(
        [SensorSpec("entrance", MAC, key)],
        recorder,
        resume={MAC: resume} if resume else None,
        wall_clock=lambda: 1.7e9,
    )
    return scanner, recorder


async def test_a_plain_door_frame_gives_its_values_and_a_door_change() -> None:
    scanner, seen = scanner_for()
    scanner.handle(*advertisement(door_frame(False, 1)))
    scanner.handle(*advertisement(door_frame(True, 2, pct=89)))
    first, second = seen.frames
    assert first.advert.binary == {"window": False}
    assert first.advert.values == {"battery": 90.0, "illuminance": 120.5}
    assert first.advert.packet_id == 1
    assert not first.advert.encrypted
    assert first.door_changed is False  # nothing known before: no event
    assert second.door_changed is True
    assert second.previous is False
    assert second.advert.door_open is True
    assert second.advert.rssi == -61
    assert second.advert.name == "SBDW-002C"
    status = scanner.status()
    assert status.frames == 2
    (sensor,) = status.sensors
    assert (sensor.door_open, sensor.battery, sensor.accepted) == (True, 89.0, 2)


async def test_an_encrypted_frame_decrypts_with_its_key_only() -> None:
    scanner, seen = scanner_for(KEY)
    scanner.handle(*advertisement(door_frame(True, 7, key=KEY, counter=1000)))
    (frame,) = seen.frames
    assert frame.advert.encrypted
    assert frame.advert.counter == 1000
    assert frame.advert.door_open is True

    wrong, wrong_seen = scanner_for(OTHER_KEY)
    wrong.handle(*advertisement(door_frame(True, 7, key=KEY, counter=1000)))
    keyless, keyless_seen = scanner_for(None)
    keyless.handle(*advertisement(door_frame(True, 7, key=KEY, counter=1000)))
    downgraded, downgraded_seen = scanner_for(KEY)
    downgraded.handle(*advertisement(door_frame(True, 8)))
    assert wrong_seen.frames == keyless_seen.frames == downgraded_seen.frames == []
    assert wrong.status().rejected == {"bad_key": 1}
    assert keyless.status().rejected == {"no_key": 1}
    assert downgraded.status().rejected == {"downgrade": 1}
    assert downgraded.status().sensors[0].rejected == {"downgrade": 1}


async def test_repeats_are_dropped_and_replayed_counters_refused() -> None:
    scanner, seen = scanner_for(KEY)
    frames = [door_frame(i % 2 == 0, i, key=KEY, counter=500 + i) for i in range(5)]
    for data in frames:
        scanner.handle(*advertisement(data))
        scanner.handle(*advertisement(data))  # every frame is sent more than once
    assert [f.advert.counter for f in seen.frames] == [500, 501, 502, 503, 504]
    scanner.handle(*advertisement(frames[1]))  # recorded earlier, sent again
    assert len(seen.frames) == 5
    assert scanner.status().rejected == {"duplicate": 5, "replay": 1}
    assert scanner.trackers[MAC].door_open is True  # unchanged by the replay


async def test_a_counter_that_starts_again_from_zero_is_a_restart_not_a_replay() -> None:
    scanner, seen = scanner_for(KEY, Resume(counter=90_000, packet_id=3, door_open=False))
    scanner.handle(*advertisement(door_frame(True, 0, key=KEY, counter=2)))
    assert len(seen.frames) == 1
    assert seen.frames[0].door_changed  # the stored state was closed
    assert scanner.trackers[MAC].restarts == 1
    scanner.handle(*advertisement(door_frame(False, 1, key=KEY, counter=1)))
    assert scanner.status().rejected == {"replay": 1}


async def test_the_state_kept_in_the_store_refuses_frames_from_before_a_restart() -> None:
    before, _ = scanner_for(KEY)
    old = door_frame(True, 1, key=KEY, counter=300)
    before.handle(*advertisement(old))
    before.handle(*advertisement(door_frame(False, 2, key=KEY, counter=301)))
    kept = Resume.parse(before.trackers[MAC].resume().encode())
    assert kept == Resume(counter=301, packet_id=2, door_open=False)
    after, after_seen = scanner_for(KEY, kept)
    after.handle(*advertisement(old))
    assert after_seen.frames == []
    assert after.status().rejected == {"replay": 1}


async def test_a_plain_packet_id_seen_again_within_a_minute_is_a_duplicate() -> None:
    clock = [1000.0]
    recorder = Recorder()
    scanner = BleScanner([SensorSpec("entrance", MAC)], recorder, wall_clock=lambda: clock[0])
    scanner.handle(*advertisement(door_frame(True, 9)))
    scanner.handle(*advertisement(door_frame(True, 9)))
    clock[0] += 61  # 256 frames later the id comes round again
    scanner.handle(*advertisement(door_frame(True, 9)))
    assert len(recorder.frames) == 2
    assert scanner.status().rejected == {"duplicate": 1}


async def test_a_button_press_is_an_event() -> None:
    scanner, seen = scanner_for()
    data = encode_service_data([packet_id(4), battery(80), button(1)], mac=MAC)
    scanner.handle(*advertisement(data))
    assert seen.frames[0].advert.events == ("button:press",)
    assert seen.frames[0].advert.door_open is None


async def test_frames_of_unconfigured_sensors_and_other_devices_are_counted_apart() -> None:
    scanner, seen = scanner_for()
    other = BLEDevice("11:22:33:44:55:66", None, None)
    scanner.handle(other, advertisement(door_frame(True, 1))[1])
    scanner.handle(other, advertisement(door_frame(True, 2))[1])
    no_bthome = AdvertisementData(None, {76: b"\x02\x15"}, {}, [], None, -70, ())
    scanner.handle(other, no_bthome)
    status = scanner.status()
    assert seen.frames == []
    assert status.unconfigured == {"11:22:33:44:55:66": 2}
    assert status.advertisements == 3


async def test_the_bind_key_never_reaches_a_log_or_a_repr(caplog: pytest.LogCaptureFixture) -> None:
    scanner, _ = scanner_for(KEY)
    with caplog.at_level(logging.DEBUG):
        scanner.handle(*advertisement(door_frame(True, 1, key=OTHER_KEY, counter=5)))
        scanner.handle(*advertisement(door_frame(True, 2)))
        with pytest.raises(AdvertError) as error:
            decode(
                MAC, None, None, door_frame(True, 1, key=OTHER_KEY, counter=5), bind_key=KEY, time=0
            )
    records = " ".join(str(record.__dict__) for record in caplog.records)
    text = records + repr(scanner.trackers[MAC].spec) + str(error.value)
    for key in (KEY, OTHER_KEY):
        assert key.hex() not in text.lower()
    assert [r.__dict__.get("reason") for r in caplog.records if r.name.startswith("firmware")] == [
        "bad_key",
        "downgrade",
    ]


# Published frames of real devices (sources in tests/sim/test_bthome_encode.py):
# a Shelly BLU Door/Window, plain (ALLTERCO/shelly-script-examples, ble-shelly-dw.js), and
# encrypted frames with their key and address from bthome-ble's own test suite.
SHELLY_DW = bytes.fromhex("40004e0164050000002d013f0000")
PUBLISHED_MAC = "54:48:E6:8F:80:A5"
PUBLISHED_KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
PUBLISHED = [  # in the order the tests there send them
    (1122866, "41723d3035fb88322211009e7414c0"),
    (1122867, "41e445f3c9962b332211006c7c4519"),
    (1122868, "413e932cc7175f34221100553876af"),
]


async def test_a_real_shelly_blu_door_window_frame() -> None:
    scanner, seen = scanner_for()
    scanner.handle(*advertisement(SHELLY_DW))
    (frame,) = seen.frames
    assert frame.advert.packet_id == 78
    assert frame.advert.values == {"battery": 100.0, "illuminance": 0.0, "rotation": 0.0}
    assert frame.advert.door_open is True


async def test_published_encrypted_frames_decrypt_in_order_and_a_replay_is_refused() -> None:
    recorder = Recorder()
    scanner = BleScanner([SensorSpec("lab", PUBLISHED_MAC, PUBLISHED_KEY)], recorder)
    device = BLEDevice(PUBLISHED_MAC, "TEST DEVICE", None)
    for _, data in PUBLISHED:
        adv = AdvertisementData(None, {}, {BTHOME_UUID: bytes.fromhex(data)}, [], None, -70, ())
        scanner.handle(device, adv)
    assert [f.advert.counter for f in recorder.frames] == [c for c, _ in PUBLISHED]
    assert recorder.frames[0].advert.values == {"temperature": 25.06, "humidity": 50.55}
    replayed = bytes.fromhex(PUBLISHED[0][1])
    scanner.handle(device, AdvertisementData(None, {}, {BTHOME_UUID: replayed}, [], None, -70, ()))
    assert len(recorder.frames) == 3
    assert scanner.status().rejected == {"replay": 1}
