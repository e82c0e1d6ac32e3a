"""A meter that goes silent raises a ``device_silent`` alert, retained on a real Mosquitto, for
that meter only, while the other meter's readings keep arriving; it clears when the meter answers
again. Real gateway in-process, real pymodbus simulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from edge.alerts import AlertBook
from edge.daemon import Gateway
from edge.rules import device_silent
from edge.schemas import GatewayConfig
from firmware_bridge.modbus.bus import DeviceStateChange
from sim.modbus_server import SimulatedBuilding, meters_for
from tests.conftest import Broker
from tests.test_end_to_end import eventually

SITE, GATEWAY = "site-silent", "gw-silent"

pytestmark = pytest.mark.timeout(40)


def test_the_alert_names_the_device_and_when_it_last_answered() -> None:
    book = AlertBook()
    at = datetime(2026, 3, 2, 12, 3, 10, tzinfo=UTC).timestamp()
    down = DeviceStateChange("meter-3", 3, False, at + 2, "no answer within 1.0 s", at, 3)
    [raised] = book.apply(device_silent(down))
    assert (raised.rule, raised.device, raised.point, raised.severity) == (
        "device_silent",
        "meter-3",
        "link",
        "warning",
    )
    assert raised.message == (
        "meter-3 silent: no answer since 2026-03-02 12:03:10 UTC"
        " (3 failed polls; last: no answer within 1.0 s)"
    )
    assert raised.text("zh-Hans") == (
        "meter-3 无应答：自 2026-03-02 12:03:10 UTC 起无应答"
        "（连续 3 次轮询失败；最近：no answer within 1.0 s）"
    )
    assert book.apply(device_silent(down)) == []  # one alert per cause
    up = DeviceStateChange("meter-3", 3, True, at + 9, "answered", at + 9, 0)
    cleared, resolved = book.apply(device_silent(up))
    assert (cleared.event, cleared.condition) == ("cleared", "cleared")
    assert (resolved.event, resolved.outcome, resolved.open) == ("resolved", "auto", False)
    assert cleared.alert_id == raised.alert_id
    assert book.apply(device_silent(up)) == []


@pytest.mark.parametrize(
    ("zone", "since"),
    [
        ("Asia/Shanghai", "2026-03-02 20:03:10 UTC+8"),  # what a grid worker's watch says
        ("Asia/Kolkata", "2026-03-02 17:33:10 UTC+5:30"),
        ("America/St_Johns", "2026-03-02 08:33:10 UTC-3:30"),
        ("Europe/London", "2026-03-02 12:03:10 UTC"),
        ("Nowhere/Atlantis", "2026-03-02 12:03:10 UTC"),  # a zone this machine does not know
        ("", "2026-03-02 12:03:10 UTC"),
    ],
)
def test_the_last_answer_is_told_in_the_site_time_zone(zone: str, since: str) -> None:
    at = datetime(2026, 3, 2, 12, 3, 10, tzinfo=UTC).timestamp()
    down = DeviceStateChange("meter-3", 3, False, at + 2, "timeout", at, 3)
    [raised] = AlertBook().apply(device_silent(down, zone))
    assert raised.params["zone"] == zone
    assert raised.message.startswith(f"meter-3 silent: no answer since {since} (")
    assert raised.text("zh-Hans").startswith(f"meter-3 无应答：自 {since} 起无应答")


def test_a_time_beyond_the_calendar_is_shown_as_a_number() -> None:
    down = DeviceStateChange("meter-3", 3, False, 0.0, "timeout", 1e300, 3)
    [raised] = AlertBook().apply(device_silent(down, "Asia/Shanghai"))
    assert "no answer since 1000000" in raised.message


async def test_a_silent_meter_raises_a_retained_alert_that_clears_when_it_answers(
    tmp_path: Path, mosquitto: Broker
) -> None:
    meters = meters_for({1: "eastron_sdm630", 2: "eastron_sdm120"}, start=datetime.now())
    seen: list[tuple[str, bytes]] = []
    async with (
        SimulatedBuilding(meters, port=0, update_interval_s=0.1) as building,
        aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="grid-worker") as worker,
    ):
        await worker.subscribe(f"nbedge/{SITE}/{GATEWAY}/alerts/#", qos=1)
        # One bus for both meters; it waits 0.3 s for an answer (1 retry, offline after 3 polls).
        device = {
            "host": "127.0.0.1",
            "port": building.port,
            "poll_interval_s": 0.2,
            "timeout_s": 0.3,
        }
        config = GatewayConfig.model_validate(
            {
                "gateway": {"id": GATEWAY, "site": SITE, "state_dir": str(tmp_path / "gw")},
                "store": {"batch_max_delay_s": 0.05},
                "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
                "modbus": {
                    "devices": [
                        {"name": "meter-1", "profile": "eastron_sdm630", "unit_id": 1, **device},
                        {"name": "meter-2", "profile": "eastron_sdm120", "unit_id": 2, **device},
                    ]
                },
                "local_api": {"enabled": False},
            }
        )
        gateway = Gateway(config)
        stop = asyncio.Event()

        async def listen() -> None:
            async for message in worker.messages:
                seen.append((str(message.topic), bytes(message.payload)))  # type: ignore[arg-type]

        async def meter_1_last_read() -> float:
            rows = await gateway.latest_readings()
            return max(r["wall_time"] for r in rows if r["device"] == "meter-1")

        async with asyncio.TaskGroup() as tasks:
            running = tasks.create_task(gateway.run(stop))
            listener = tasks.create_task(listen())
            await asyncio.wait_for(gateway.ready.wait(), 10)
            await eventually(lambda: gateway.latest_readings(), 5, "no readings")

            building.silence(2)
            raised = await eventually(lambda: _payloads(seen, "raised"), 10, "no alert on MQTT")
            assert [p["device"] for p in raised] == ["meter-2"]
            alert = raised[0]
            assert (alert["rule"], alert["point"], alert["severity"]) == (
                "device_silent",
                "link",
                "warning",
            )
            assert alert["message"].startswith("meter-2 silent: no answer since ")
            topic = f"nbedge/{SITE}/{GATEWAY}/alerts/{alert['alert_id']}"
            assert json.loads(await _retained(mosquitto, topic)) == alert
            # meter-1 is still read while meter-2 stays silent.
            before = await meter_1_last_read()

            async def meter_1_read_again() -> bool:
                return await meter_1_last_read() > before

            await eventually(meter_1_read_again, 5, "meter-1 not read while meter-2 is silent")
            assert [a.device for a in gateway.active_alerts()] == ["meter-2"]

            building.resume(2)
            await eventually(lambda: (topic, b"") in seen, 10, "alert never cleared on MQTT")
            assert gateway.active_alerts() == []
            stop.set()
            await running
            listener.cancel()
    alert_topics = {t for t, _ in seen}
    assert alert_topics == {topic}  # nothing ever raised for meter-1


def _payloads(seen: list[tuple[str, bytes]], event: str) -> list[dict[str, Any]]:
    return [a for a in (json.loads(p) for _, p in seen if p) if a["event"]["event"] == event]


async def _retained(broker: Broker, topic: str) -> bytes:
    """What a client that subscribes now gets for ``topic``: the broker's retained message."""
    async with aiomqtt.Client(broker.host, broker.port, identifier="late-comer") as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                assert message.retain
                return bytes(message.payload)  # type: ignore[arg-type]
    raise AssertionError("no retained message")  # pragma: no cover
