"""A community office's Home Assistant sees the building: a whole in-process gateway with a
simulated meter, logged in to a Mosquitto with the shipped configuration and ACL, and a client
logged in as Home Assistant's own account reading ``homeassistant/#``. Every discovery config
is one Home Assistant takes; a silent meter turns its cause's problem sensor ON; the button
acknowledges the alert (store, alert topic); bad presses are refused, counted, logged, and the
gateway carries on; the meter answering again turns it OFF; its sensors get values."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from edge.daemon import Gateway
from edge.people import PeopleStore, Role
from edge.schemas import GatewayConfig
from edge.store import Store
from sim.modbus_server import SimulatedBuilding, meters_for
from tests.conftest import BROKER_ACCOUNTS, Broker
from tests.edge.test_home_assistant import check_discovery
from tests.edge.test_mqtt import retained
from tests.test_end_to_end import eventually

pytestmark = pytest.mark.timeout(60)

SITE, GATEWAY = "maple-court", "gw-ha"
ROOT = f"nbedge/{SITE}/{GATEWAY}"
CAUSE = "device_silent-meter-1-link"


class HomeAssistant:
    """What Home Assistant's MQTT integration receives, logged in as its broker account."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.seen: dict[str, bytes] = {}

    async def listen(self) -> None:
        async for message in self.client.messages:
            self.seen[str(message.topic)] = bytes(message.payload)  # type: ignore[arg-type]

    def configs(self) -> dict[str, dict[str, Any]]:
        return {t: json.loads(p) for t, p in self.seen.items() if t.startswith("homeassistant/")}

    def state(self, cause: str) -> dict[str, Any] | None:
        payload = self.seen.get(f"{ROOT}/causes/{cause}")
        return json.loads(payload) if payload else None


@contextlib.asynccontextmanager
async def home_assistant(broker: Broker) -> AsyncIterator[HomeAssistant]:
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        identifier="home-assistant",
        username="homeassistant",
        password=BROKER_ACCOUNTS["homeassistant"],
        timeout=5,
    ) as client:
        await client.subscribe("homeassistant/#", qos=1, timeout=5)
        await client.subscribe(f"{ROOT}/#", qos=1, timeout=5)  # the ACL says what it gets
        ha = HomeAssistant(client)
        async with asyncio.TaskGroup() as tasks:
            listener = tasks.create_task(ha.listen())
            try:
                yield ha
            finally:
                listener.cancel()


async def test_home_assistant_sees_the_building_and_acknowledges_an_alert(
    tmp_path: Path, secured_mosquitto: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "gw"
    state.mkdir()
    PeopleStore(state / "people.json").add("homeassistant", Role.RESPONDER, display="社区办公室")
    meters = meters_for({1: "eastron_sdm120"}, start=datetime.now())
    async with (
        SimulatedBuilding(meters, port=0, update_interval_s=0.1) as building,
        home_assistant(secured_mosquitto) as ha,
    ):
        config = GatewayConfig.model_validate(
            {
                "gateway": {"id": GATEWAY, "site": SITE, "state_dir": str(state)},
                "store": {"batch_max_delay_s": 0.05},
                "mqtt": {
                    "host": secured_mosquitto.host,
                    "port": secured_mosquitto.port,
                    "username": "nbedge-gateway",
                    "password": BROKER_ACCOUNTS["nbedge-gateway"],
                    "keepalive_s": 5,
                    "home_assistant": {"enabled": True, "state_interval_s": 1},
                },
                "modbus": {
                    "devices": [
                        {
                            "name": "meter-1",
                            "label": "3号楼电表",
                            "profile": "eastron_sdm120",
                            "host": "127.0.0.1",
                            "port": building.port,
                            "unit_id": 1,
                            "poll_interval_s": 0.2,
                            "timeout_s": 0.3,
                        }
                    ]
                },
                "local_api": {"enabled": False},
            }
        )
        gateway = Gateway(config)
        stop = asyncio.Event()
        running = asyncio.create_task(gateway.run(stop))
        try:
            await asyncio.wait_for(gateway.ready.wait(), 15)
            # Discovery: the meter's cause and its voltage, the store's disk, four main points.
            await eventually(lambda: len(ha.configs()) == 3 * 2 + 4, 10, "no discovery")
            components = [check_discovery(t, c) for t, c in ha.configs().items()]
            assert sorted(components) == ["binary_sensor"] * 3 + ["button"] * 3 + ["sensor"] * 4
            configs = {c["unique_id"].split("-nbedge-")[1]: c for c in ha.configs().values()}
            problem = configs[f"{CAUSE}-problem"]
            button = configs[f"{CAUSE}-acknowledge"]
            assert problem["name"] == "3号楼电表：无应答"
            # Shown as OFF before anything happens.
            await eventually(lambda: ha.state(CAUSE) is not None, 5, "no state")
            assert ha.state(CAUSE)["problem"] == "OFF"  # type: ignore[index]
            assert ha.seen[f"{ROOT}/status"] == b"online"

            # A meter's sensor gets its value.
            energy = configs["meter-1-import_energy"]
            assert (energy["device_class"], energy["state_class"]) == ("energy", "total_increasing")
            await eventually(lambda: energy["state_topic"] in ha.seen, 10, "no energy value")
            assert float(ha.seen[energy["state_topic"]]) >= 0
            # Nobody but the gateway and Home Assistant reads a home's use.
            assert await retained(secured_mosquitto, f"{ROOT}/points/#", 0.3, user="siren-1") == {}

            # The meter goes silent: the problem is ON, with the alert's attributes.
            building.silence(1)
            await eventually(lambda: (ha.state(CAUSE) or {}).get("problem") == "ON", 10, "not ON")
            now = ha.state(CAUSE)
            assert now is not None
            assert (now["severity"], now["alert_state"], now["can_acknowledge"]) == (
                "warning",
                "new",
                True,
            )
            assert now["text_en"].startswith("meter-1 silent: no answer since ")
            assert now["text_zh_hans"].startswith("meter-1 无应答：")
            alert_id = now["alert_id"]
            assert now["raised_at"] is not None

            # Bad presses first: refused, counted, logged; the gateway carries on.
            async with aiomqtt.Client(
                secured_mosquitto.host,
                secured_mosquitto.port,
                identifier="siren",
                username="siren-1",
                password=BROKER_ACCOUNTS["siren-1"],
                timeout=5,
            ) as siren:
                # On Home Assistant's topic: the ACL drops it. On its own: nobody of the gateway.
                await siren.publish(button["command_topic"], b"PRESS", qos=1, timeout=5)
                siren_topic = button["command_topic"].replace("/homeassistant", "/siren-1")
                await siren.publish(siren_topic, b"PRESS", qos=1, timeout=5)
            bad = [b"press", b"\xff\xfe", b"PRESS" * 100, b'{"action": "acknowledge"}', b"ON"]
            for payload in bad:
                await ha.client.publish(button["command_topic"], payload, qos=1, timeout=5)
            unknown = f"{ROOT}/causes/voltage-nowhere-voltage/acknowledge/homeassistant"
            await ha.client.publish(unknown, b"PRESS", qos=1, timeout=5)

            async def refused() -> dict[str, int]:
                mqtt = (await gateway.status()).mqtt
                assert mqtt is not None
                counts: dict[str, int] = dict(mqtt.commands.refused)
                return {reason: n for reason, n in counts.items() if n}

            # (a JSON command is longer than a press may be: too large)
            expected = {"malformed": 2, "not_utf8": 1, "too_large": 2, "not_a_person": 1}
            expected["unknown_cause"] = 1
            await eventually(lambda: _equal(refused(), expected), 10, "refusals not counted")
            logged = [
                r for r in caplog.records if r.getMessage().startswith("mqtt command refused")
            ]
            assert len(logged) == sum(expected.values())
            assert all(r.levelno == logging.WARNING for r in logged)
            assert ha.state(CAUSE)["alert_state"] == "new"  # type: ignore[index]

            # Home Assistant's button: the alert is acknowledged, by the office.
            await ha.client.publish(button["command_topic"], b"PRESS", qos=1, timeout=5)
            await eventually(
                lambda: (ha.state(CAUSE) or {}).get("alert_state") == "acknowledged",
                10,
                "not acknowledged",
            )
            now = ha.state(CAUSE)
            assert now is not None
            assert (now["problem"], now["acknowledged_by"], now["can_acknowledge"]) == (
                "ON",
                "社区办公室",
                False,
            )
            alert_topic = f"{ROOT}/alerts/{alert_id}"
            assert json.loads(ha.seen[alert_topic])["state"] == "acknowledged"
            section = (await gateway.status()).mqtt
            assert section is not None
            assert section.connected
            assert section.commands.applied == 1

            # The meter answers again: cleared and resolved by itself, OFF.
            building.resume(1)
            await eventually(lambda: (ha.state(CAUSE) or {}).get("problem") == "OFF", 10, "ON")
            assert ha.state(CAUSE)["open"] is False  # type: ignore[index]
            assert ha.seen[alert_topic] == b""
        finally:
            stop.set()
            await asyncio.wait_for(running, 20)
        await eventually(lambda: ha.seen[f"{ROOT}/status"] == b"offline", 5, "not offline")

    async with Store(config.database_path, gateway_id=GATEWAY) as store:
        history = await store.alert_history(alert_id)
    steps = [(e["event"], e["via"], e["by"]) for e in history]
    assert steps == [
        ("raised", "rule", None),
        ("acknowledged", "mqtt", "社区办公室"),
        ("cleared", "rule", None),
        ("resolved", "policy", None),
    ]


async def _equal(counts: Any, expected: dict[str, int]) -> bool:
    return bool(await counts == expected)
