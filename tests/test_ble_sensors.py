"""A leak sensor and an SOS button through the real bleak BlueZ backend, end to end.

BlueZoo (a mock BlueZ on a private D-Bus) runs three adapters: a leak sensor advertises on hci1,
an encrypted SOS button on hci2, and a whole gateway scans on hci0. As a new user who adds the
two by their addresses would see: latched critical alerts on MQTT and at the central API that
wait for a person; the button pressed again is one more event of the same alert; the leak
sensor drying does not end its alert, the person who resolves it does.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from edge.daemon import Gateway
from edge.schemas import GatewayConfig
from sim.bluez import BlueZAdvertiser, HarnessUnavailable, private_bluez, run_sensor
from sim.bthome import ButtonEvent
from sim.sensors import LeakSensor, ShellyBluButton
from tests.conftest import Broker, free_port
from tests.test_end_to_end import GATEWAY, SITE, central_api, eventually, pull

LEAK_MAC = "00:00:00:00:0A:02"  # hci1
BUTTON_MAC = "00:00:00:00:0A:03"  # hci2
KEY = bytes.fromhex("5c21ab39c1d7cc1ab1aee224cd096db9")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def test_a_leak_and_an_sos_press_raise_latched_critical_alerts(
    tmp_path: Path, mosquitto: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapters = ("00:00:00:00:0A:01", LEAK_MAC, BUTTON_MAC)
    try:
        harness_context = private_bluez(adapters, scan_interval_s=1)
        bluez = await harness_context.__aenter__()
    except HarnessUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bluez.address)
    retained: dict[str, dict[str, Any]] = {}
    try:
        async with (
            central_api(tmp_path) as central,
            aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="grid-worker") as worker,
            BlueZAdvertiser(bluez.address, adapter="hci1", local_name="leak") as leak_radio,
            BlueZAdvertiser(bluez.address, adapter="hci2", local_name="SBBT-002C") as button_radio,
        ):
            await worker.subscribe(f"nbedge/{SITE}/{GATEWAY}/alerts/+", qos=1)
            config = GatewayConfig.model_validate(
                {
                    "gateway": {"id": GATEWAY, "site": SITE, "state_dir": str(tmp_path / "gw")},
                    "store": {"batch_max_delay_s": 0.05},
                    "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
                    "uplink": {
                        "url": central["url"],
                        "token": central["token"],
                        "interval_s": 0.2,
                        "drain_jitter_s": 0,
                    },
                    "local_api": {"port": free_port()},
                    "ble": {
                        "adapter": "hci0",
                        "sensors": [
                            {"name": "flat-301-leak", "kind": "leak", "mac": LEAK_MAC},
                            {
                                "name": "flat-301-sos",
                                "kind": "button",
                                "mac": BUTTON_MAC,
                                "bind_key": KEY.hex(),
                            },
                        ],
                    },
                }
            )
            gateway = Gateway(config)
            stop = asyncio.Event()

            async def listen() -> None:
                async for message in worker.messages:
                    if message.payload:
                        body = json.loads(message.payload)  # type: ignore[arg-type]
                        retained[body["rule"]] = body

            async with asyncio.TaskGroup() as tasks:
                running = tasks.create_task(gateway.run(stop))
                listener = tasks.create_task(listen())
                await asyncio.wait_for(gateway.ready.wait(), 15)
                start = time.time() + 1.0
                leak = LeakSensor(
                    LEAK_MAC, start=start, active_between=[(3.0, 8.0)], heartbeat_s=None
                )
                sos = ShellyBluButton(
                    BUTTON_MAC,
                    bind_key=KEY,
                    start=start,
                    presses=[(1.0, ButtonEvent.PRESS), (6.0, ButtonEvent.LONG_PRESS)],
                )
                radios = [
                    tasks.create_task(run_sensor(leak_radio, leak, tick_s=0.2)),
                    tasks.create_task(run_sensor(button_radio, sos, tick_s=0.2)),
                ]

                def pressed_twice() -> dict[str, Any] | None:
                    alert = retained.get("sos")
                    return (
                        alert
                        if alert
                        and alert["event"]["event"] == "raised"
                        and alert["params"].get("press") == "long_press"
                        else None
                    )

                sos_alert = await eventually(pressed_twice, 40, f"sos on MQTT: {retained}")
                assert (sos_alert["severity"], sos_alert["needs_person"]) == ("critical", True)
                assert sos_alert["condition"] == "active"
                leak_alert = await eventually(
                    lambda: retained.get("water_leak"), 30, f"water_leak on MQTT: {retained}"
                )
                assert leak_alert["severity"] == "critical"
                assert leak_alert["texts"]["zh-Hans"] == "flat-301-leak 检测到漏水"
                await asyncio.sleep(max(0.0, start + 10.0 - time.time()))  # the sensor is dry
                still = [a for a in gateway.active_alerts() if a.rule == "water_leak"]
                assert [a.condition for a in still] == ["active"]  # latched

                async def at_the_platform() -> list[str]:
                    events = await pull(central, "alerts")
                    return sorted({e["rule"] for e in events} & {"sos", "water_leak"})

                assert await eventually(at_the_platform, 20, "alerts never synced") == [
                    "sos",
                    "water_leak",
                ]
                (open_sos,) = [a for a in gateway.active_alerts() if a.rule == "sos"]
                assert open_sos.event_n >= 2  # both presses, one alert
                result = gateway.act(open_sos.alert_id, "resolve", by="王芳", outcome="help_given")
                assert result.refused is None
                await eventually(
                    lambda: not [a for a in gateway.active_alerts() if a.rule == "sos"],
                    10,
                    "the resolved SOS still open",
                )
                stop.set()
                await running
                listener.cancel()
                for radio in radios:
                    radio.cancel()
    finally:
        await harness_context.__aexit__(None, None, None)
