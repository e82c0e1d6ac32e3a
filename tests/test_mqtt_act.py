"""A grid worker acts on an alert over MQTT, end to end: a whole in-process gateway logged in
to a Mosquitto with the shipped configuration and ACL, a person of its people file, her phone
logged in as her own broker account. The command reaches the store (the alert's history) and
the retained alert; the answer names the event; a bad command shows in the status."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from edge.alerts import AlertBook
from edge.daemon import Gateway
from edge.people import PeopleStore, Role
from edge.schemas import GatewayConfig
from edge.status import MqttStatus
from edge.store import Store
from tests.conftest import BROKER_ACCOUNTS, Broker, wait_until
from tests.edge.test_mqtt import retained
from tests.support import alerts as support

pytestmark = pytest.mark.timeout(60)

SITE, GATEWAY = "maple-court", "gw-act"
ROOT = f"nbedge/{SITE}/{GATEWAY}"
T0 = 1_800_000_000.0


def account(broker: Broker, user: str) -> aiomqtt.Client:
    return aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=f"app-{user}",
        username=user,
        password=BROKER_ACCOUNTS[user],
        timeout=5,
    )


async def answer_to(app: aiomqtt.Client, topic: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Publish a command on ``topic`` and wait for the gateway's answer."""
    await app.publish(topic, json.dumps(payload, ensure_ascii=False), qos=1, timeout=5)
    async with asyncio.timeout(5):
        async for message in app.messages:
            if str(message.topic) == f"{topic}/result":
                return dict(json.loads(bytes(message.payload)))  # type: ignore[arg-type]
    raise AssertionError("no answer")  # pragma: no cover


async def test_a_grid_worker_acknowledges_and_resolves_an_alert_over_mqtt(
    tmp_path: Path, secured_mosquitto: Broker
) -> None:
    state = tmp_path / "gw"
    state.mkdir()
    PeopleStore(state / "people.json").add("wang.fang", Role.RESPONDER, display="王芳")
    PeopleStore(state / "people.json").add("zhao.min", Role.VIEWER)
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
            },
            "local_api": {"enabled": False},
        }
    )
    # A home whose use stopped, then came back: cleared, but a person must still resolve it.
    book = AlertBook()
    raised = support.raise_alert(book, rule="use_stopped", device="flat-3", point="use", at=T0)
    cleared = support.clear_alert(book, raised, at=T0 + 3600)
    async with Store(config.database_path, gateway_id=GATEWAY) as store:
        await store.write([], [raised, *cleared])
    alert_id = raised.alert_id
    topic = f"{ROOT}/alerts/{alert_id}"

    gateway = Gateway(config)
    stop = asyncio.Event()
    running = asyncio.create_task(gateway.run(stop))
    try:
        await asyncio.wait_for(gateway.ready.wait(), 15)

        async def mqtt() -> MqttStatus:
            section = (await gateway.status()).mqtt
            assert section is not None  # the gateway publishes on MQTT
            return section

        async with asyncio.timeout(10):
            while not (await mqtt()).connected:
                await asyncio.sleep(0.05)

        async with account(secured_mosquitto, "wang.fang") as phone:
            await phone.subscribe(f"{ROOT}/alerts/+/set/wang.fang/result", qos=1, timeout=5)
            note = "已上门，老人安好"
            answer = await answer_to(
                phone, f"{topic}/set/wang.fang", {"action": "acknowledge", "note": note}
            )
            assert (answer["result"], answer["event_id"]) == ("applied", f"{alert_id}.3")

            async def shown() -> dict[str, Any] | None:
                seen = await retained(secured_mosquitto, topic, 0.3, user="siren-1")
                return json.loads(seen[topic]) if seen.get(topic) else None

            async with asyncio.timeout(10):
                while (now := await shown()) is None or now["state"] != "acknowledged":
                    pass
            assert (now["condition"], now["acknowledged_by"]) == ("cleared", "王芳")
            assert now["event"]["note"] == note

            answer = await answer_to(
                phone, f"{topic}/set/wang.fang", {"action": "resolve", "outcome": "resident_ok"}
            )
            assert (answer["result"], answer["event_id"]) == ("applied", f"{alert_id}.4")
            async with asyncio.timeout(10):
                while await shown() is not None:
                    pass  # emptied: cleared and resolved

        async with account(secured_mosquitto, "zhao.min") as viewer:
            await viewer.subscribe(f"{ROOT}/alerts/+/set/zhao.min/result", qos=1, timeout=5)
            answer = await answer_to(viewer, f"{topic}/set/zhao.min", {"action": "acknowledge"})
            assert (answer["result"], answer["reason"]) == ("refused", "role")
        commands = (await mqtt()).commands
        assert commands.applied == 2
        assert commands.refused["role"] == 1
        await wait_until(lambda: gateway.active_alerts() == [])
    finally:
        stop.set()
        await asyncio.wait_for(running, 20)

    async with Store(config.database_path, gateway_id=GATEWAY) as store:
        history = await store.alert_history(alert_id)
        assert await store.open_alerts() == []
    steps = [(e["event"], e["via"], e["by"], e["note"], e["outcome"]) for e in history]
    assert steps == [
        ("raised", "rule", None, None, None),
        ("cleared", "rule", None, None, None),
        ("acknowledged", "mqtt", "王芳", "已上门，老人安好", None),
        ("resolved", "mqtt", "王芳", None, "resident_ok"),
    ]
