"""The private BlueZ (BlueZoo) harness: bleak's real BlueZ backend on hci0 sees what the
advertiser on hci1 sends, and sees it change."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from sim.bluez import BlueZAdvertiser, PrivateBlueZ, run_sensor
from sim.bthome import BTHOME_UUID, SimulatedDoorSensor, battery, encode_service_data, window

ADVERTISER_MAC = "00:00:00:00:0A:02"


class Seen:
    """Service data seen by a scanner callback, per device address, in order."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, bytes, str | None]] = []
        self.changed = asyncio.Event()

    def callback(self, device: BLEDevice, adv: AdvertisementData) -> None:
        data = adv.service_data.get(BTHOME_UUID)
        if data is not None:
            self.frames.append((device.address, data, adv.local_name))
            self.changed.set()

    async def until(self, data: bytes, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not any(frame == data for _, frame, _ in self.frames):
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def scanning(seen: Seen) -> AsyncIterator[None]:
    scanner = BleakScanner(detection_callback=seen.callback, bluez={"adapter": "hci0"})
    async with asyncio.timeout(10):
        await scanner.start()
    try:
        yield
    finally:
        async with asyncio.timeout(10):
            await scanner.stop()


async def test_bleak_on_hci0_sees_the_advertiser_on_hci1_and_its_changes(
    bluez: PrivateBlueZ,
) -> None:
    assert bluez.adapters == ("hci0", "hci1")
    first = encode_service_data([battery(90), window(False)], mac=ADVERTISER_MAC)
    second = encode_service_data([battery(90), window(True)], mac=ADVERTISER_MAC)
    seen = Seen()
    async with (
        BlueZAdvertiser(bluez.address, adapter="hci1", local_name="SBDW-002C") as adv,
        scanning(seen),
    ):
        await adv.set_service_data(first)
        await seen.until(first)
        address, _, name = seen.frames[-1]
        assert address == ADVERTISER_MAC
        assert name == "SBDW-002C"
        await adv.set_service_data(second)
        await seen.until(second)
        heard = len(seen.frames)
        await asyncio.sleep(1.5)  # more than one BlueZoo scan interval
        # BlueZoo reports an unchanged advertisement with no new callback
        assert len(seen.frames) == heard
    assert {address for address, _, _ in seen.frames} == {ADVERTISER_MAC}


async def test_a_simulated_sensor_is_heard_opening_and_goes_off_air_while_silent(
    bluez: PrivateBlueZ,
) -> None:
    now = [0.0]
    sensor = SimulatedDoorSensor(
        mac=ADVERTISER_MAC, schedule=[(5.0, 10.0)], silent_between=[(20.0, 30.0)]
    )
    closed, opened, back = sensor.advertise(0.0), sensor.advertise(5.0), sensor.advertise(30.0)
    assert closed is not None
    assert opened is not None
    assert back is not None
    seen = Seen()
    async with (
        BlueZAdvertiser(bluez.address, adapter="hci1") as adv,
        scanning(seen),
        asyncio.TaskGroup() as tg,
    ):
        runner = tg.create_task(run_sensor(adv, sensor, tick_s=0.05, clock=lambda: now[0]))
        await seen.until(closed)
        now[0] = 5.0
        await seen.until(opened)
        now[0] = 20.0
        async with asyncio.timeout(5):
            while adv.registered:
                await asyncio.sleep(0.02)
        heard = len(seen.frames)
        await asyncio.sleep(1.5)  # more than one BlueZoo scan interval
        assert len(seen.frames) == heard
        now[0] = 30.0
        await seen.until(back)
        runner.cancel()
