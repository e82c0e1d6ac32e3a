"""The simulated radio feeds the gateway's real BLE scanner: decoded, decrypted, de-duplicated
frames of simulated sensors, bleak's own types, and nothing once the scan stops."""

from __future__ import annotations

import asyncio
import time

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from firmware_bridge.ble.bthome import BTHomeAdvert
from firmware_bridge.ble.scanner import BleScanner
from firmware_bridge.ble.tracker import Accepted, SensorSpec, SensorTracker
from sim.bthome import BTHOME_UUID, ButtonEvent
from sim.radio import SimulatedRadio
from sim.sensors import LeakSensor, ShellyBluButton, ShellyBluMotion

LEAK, BUTTON, MOTION = "7C:C6:B6:00:00:01", "7C:C6:B6:00:00:02", "7C:C6:B6:00:00:03"
KEY = bytes.fromhex("5c21ab39c1d7cc1ab1aee224cd096db9")


def test_a_round_hears_each_sensor_that_is_not_silent_as_bleak_reports_it() -> None:
    now = 1000.0
    radio = SimulatedRadio(
        [
            LeakSensor(LEAK, start=now),
            ShellyBluButton(BUTTON, start=now),  # not pressed yet: silent
        ],
        clock=lambda: now,
    )
    heard: list[tuple[BLEDevice, AdvertisementData]] = []
    assert radio.hear(lambda device, adv: heard.append((device, adv))) == 1
    ((device, adv),) = heard
    assert (device.address, device.name) == (LEAK, "leak")
    assert adv.local_name == "leak"
    assert adv.service_data == {BTHOME_UUID: LeakSensor(LEAK, start=now).advertise(now)}
    assert adv.service_uuids == [BTHOME_UUID]
    assert -83 <= adv.rssi <= -49


async def test_the_scanner_hears_simulated_sensors_through_its_whole_path() -> None:
    start = time.time()
    sensors = [
        LeakSensor(LEAK, start=start, active_between=[(0.3, float("inf"))]),
        ShellyBluButton(BUTTON, bind_key=KEY, start=start, presses=[(0.5, ButtonEvent.PRESS)]),
        ShellyBluMotion(MOTION, start=start),
    ]
    radio = SimulatedRadio(sensors, interval_s=0.1)
    frames: list[tuple[str, Accepted]] = []

    def on_frame(tracker: SensorTracker, accepted: Accepted) -> None:
        frames.append((tracker.spec.name, accepted))

    specs = [
        SensorSpec("leak", LEAK),
        SensorSpec("sos", BUTTON, bind_key=KEY),
        SensorSpec("motion", MOTION),
    ]
    scanner = BleScanner(specs, on_frame, scanner_factory=radio)
    async with asyncio.TaskGroup() as tasks:
        running = tasks.create_task(scanner.run())
        await asyncio.sleep(1.0)
        running.cancel()
    status = scanner.status()
    assert status.scanning is False
    assert radio.scans == 1
    by_name: dict[str, list[BTHomeAdvert]] = {"leak": [], "sos": [], "motion": []}
    for name, accepted in frames:
        by_name[name].append(accepted.advert)
    assert [f.binary.get("moisture") for f in by_name["leak"]] == [False, True]
    (press,) = by_name["sos"]
    assert press.encrypted
    assert press.events == ("button:press",)
    assert [f.binary.get("motion") for f in by_name["motion"]] == [False]
    # about ten rounds, and every repeat of a frame refused as a duplicate
    assert 12 <= status.advertisements <= 35
    assert status.frames == 4
    assert status.rejected["duplicate"] == status.advertisements - 4
    assert {s.name: s.rssi for s in status.sensors}["leak"] is not None

    count = status.advertisements
    await asyncio.sleep(0.3)
    assert scanner.status().advertisements == count  # stopped: nothing heard


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        SimulatedRadio([], interval_s=0)
