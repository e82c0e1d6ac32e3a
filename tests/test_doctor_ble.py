"""``nbedge doctor``'s Bluetooth check through the real bleak BlueZ backend against BlueZoo: the
adapter scans and hears the configured sensor; passive scanning, which BlueZoo (like a BlueZ
started without --experimental) cannot do, is refused with its fix; no BlueZ at all says so."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from edge.doctor import Level
from edge.doctor.service import ble_probe
from edge.schemas import GatewayConfig
from sim.bluez import BlueZAdvertiser, PrivateBlueZ, run_sensor
from sim.bthome import SimulatedDoorSensor

SENSOR_MAC = "00:00:00:00:0A:02"  # hci1's address: what hci0 hears the advertisement from
KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def config(tmp_path: Path, mode: str = "active") -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-1", "site": "site-1", "state_dir": str(tmp_path)},
            "ble": {
                "adapter": "hci0",
                "mode": mode,
                "sensors": [{"name": "entrance", "mac": SENSOR_MAC, "bind_key": KEY.hex()}],
            },
        }
    )


async def test_the_adapter_scans_and_hears_the_sensor(tmp_path: Path, bluez: PrivateBlueZ) -> None:
    sensor = SimulatedDoorSensor(
        mac=SENSOR_MAC, bind_key=KEY, start=time.time(), schedule=[], repeat_interval_s=1.0
    )
    async with (
        BlueZAdvertiser(bluez.address, adapter="hci1", local_name="SBDW-002C") as advertiser,
        asyncio.TaskGroup() as tasks,
    ):
        advertising = tasks.create_task(run_sensor(advertiser, sensor, tick_s=0.2))
        heard, possible = await ble_probe(config(tmp_path), seconds=3)
        (passive,) = await ble_probe(config(tmp_path, "passive"), seconds=2)
        advertising.cancel()
    assert heard.level is Level.OK, heard.text()
    assert "heard 1 of 1 sensors" in heard.text()
    assert possible.subject == "passive"
    assert "passive scanning is not possible on hci0" in possible.text()
    assert passive.level is Level.FAIL  # BlueZoo, like a stock BlueZ, has no passive scanning
    assert "passive scanning needs BlueZ" in passive.text()
    assert "--experimental" in (passive.fix_text() or "")


async def test_without_bluez_the_check_fails_with_its_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    (check,) = await ble_probe(config(tmp_path), seconds=1)
    assert check.level is Level.FAIL
    assert "cannot scan" in check.text()
    assert "bluetooth" in (check.fix_text() or "")
