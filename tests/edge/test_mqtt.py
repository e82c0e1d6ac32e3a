"""Local alerts on a real Mosquitto: retained while active, emptied when cleared; status, will."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator

import aiomqtt

from edge.alerts import Alert, AlertBook, Severity
from edge.mqtt import AlertPublisher
from edge.schemas import MqttSection
from tests.conftest import BROKER_ACCOUNTS, Broker, wait_until
from tests.support import alerts as support

ROOT = "nbedge/site-1/gw-1"


async def retained(
    broker: Broker, topic: str, wait_s: float = 1.0, *, user: str | None = None
) -> dict[str, bytes]:
    """Every retained message under ``topic`` (a filter), as a fresh subscriber sees them
    (logged in as ``user``, one of ``BROKER_ACCOUNTS``, if given)."""
    found: dict[str, bytes] = {}
    password = None if user is None else BROKER_ACCOUNTS[user]
    async with aiomqtt.Client(
        broker.host, broker.port, identifier="probe", username=user, password=password
    ) as client:
        await client.subscribe(topic, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                async for message in client.messages:
                    found[str(message.topic)] = bytes(message.payload)  # type: ignore[arg-type]
    return found


@contextlib.asynccontextmanager
async def running(publisher: AlertPublisher) -> AsyncIterator[None]:
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(publisher.run())
        try:
            async with asyncio.timeout(10):
                while not publisher.status().connected:
                    await asyncio.sleep(0.02)
            yield
        finally:
            task.cancel()


def publisher_for(broker: Broker, book: AlertBook) -> AlertPublisher:
    config = MqttSection(host=broker.host, port=broker.port, keepalive_s=5)
    return AlertPublisher(config, site="site-1", gateway="gw-1", open_alerts=book.open)


async def wait_published(publisher: AlertPublisher, count: int) -> None:
    async with asyncio.timeout(5):
        while publisher.status().published < count or publisher.status().pending:
            await asyncio.sleep(0.02)


def raise_alert(book: AlertBook, value: float = 262.0, severity: Severity = "warning") -> Alert:
    return support.raise_alert(book, value=value, at=1_800_000_000.0, severity=severity)


async def test_active_alert_is_retained_json_and_cleared_alert_is_removed(
    mosquitto: Broker,
) -> None:
    book = AlertBook()
    publisher = publisher_for(mosquitto, book)
    async with running(publisher):
        alert = raise_alert(book)
        publisher.publish(alert)
        await wait_published(publisher, 1)

        seen = await retained(mosquitto, f"{ROOT}/#")
        assert seen[f"{ROOT}/status"] == b"online"
        payload = json.loads(seen[f"{ROOT}/alerts/{alert.alert_id}"])
        assert (payload["condition"], payload["state"]) == ("active", "new")
        assert payload["value"] == 262.0
        assert payload["site"] == "site-1"
        assert payload["texts"]["zh-Hans"].startswith("voltage_l1 过电压")

        changes = support.clear_alert(book, alert, at=1_800_000_060.0)  # a warning: closed
        for change in changes:
            publisher.publish(change)
        await wait_published(publisher, 2)
        seen = await retained(mosquitto, f"{ROOT}/alerts/#")
        assert seen == {}

    seen = await retained(mosquitto, f"{ROOT}/status")
    assert seen[f"{ROOT}/status"] == b"offline"  # said on a clean stop


async def test_alerts_raised_while_the_broker_is_down_arrive_when_it_is_back(
    mosquitto: Broker,
) -> None:
    book = AlertBook()
    config = MqttSection(host=mosquitto.host, port=1, keepalive_s=5)  # nothing listens on port 1
    publisher = AlertPublisher(config, site="site-1", gateway="gw-1", open_alerts=book.open)
    alert = raise_alert(book)
    publisher.publish(alert)
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(publisher.run())
        await wait_until(lambda: publisher.status().connection_failures >= 1)
        assert publisher.status().pending == 1
        task.cancel()
    # The same pending alert reaches a broker that is reachable.
    publisher._config = MqttSection(host=mosquitto.host, port=mosquitto.port, keepalive_s=5)
    async with running(publisher):
        await wait_published(publisher, 1)
    seen = await retained(mosquitto, f"{ROOT}/alerts/#")
    assert list(seen) == [f"{ROOT}/alerts/{alert.alert_id}"]


CHILD = """
import asyncio, sys
from edge.alerts import AlertBook
from edge.mqtt import AlertPublisher
from edge.schemas import MqttSection

async def main():
    book = AlertBook()
    config = MqttSection(host="127.0.0.1", port=int(sys.argv[1]), keepalive_s=5)
    publisher = AlertPublisher(config, site="site-1", gateway="gw-1", open_alerts=book.open)
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(publisher.run())
        while not publisher.status().connected:
            await asyncio.sleep(0.02)
        print("connected", flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_last_will_says_offline_when_the_gateway_dies(mosquitto: Broker) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(mosquitto.port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 15)
        assert line.strip() == "connected"
        assert (await retained(mosquitto, f"{ROOT}/status"))[f"{ROOT}/status"] == b"online"
        child.kill()  # no clean stop: the broker must publish the will
        child.wait(5)
        async with asyncio.timeout(5):
            while (await retained(mosquitto, f"{ROOT}/status", 0.3)).get(
                f"{ROOT}/status"
            ) != b"offline":
                pass
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
        if child.stdout is not None:
            child.stdout.close()


def test_the_retained_message_stays_until_the_alert_is_both_cleared_and_resolved() -> None:
    from edge.mqtt import alert_message

    book = AlertBook()
    alert = raise_alert(book, severity="critical")  # needs a person
    acknowledged = book.act(alert.alert_id, "acknowledge", by="王芳", via="mqtt", at=2.0).changes
    [cleared] = support.clear_alert(book, alert, at=3.0)  # not resolved by the clearing
    payload = json.loads(alert_message(cleared, site="s", gateway="g"))
    assert (payload["condition"], payload["state"]) == ("cleared", "acknowledged")
    assert payload["acknowledged_by"] == "王芳"
    assert acknowledged[0].text("zh-Hans").endswith("已由王芳确认")
    [resolved] = book.act(
        alert.alert_id, "resolve", by="王芳", via="local_api", at=4.0, outcome="resident_ok"
    ).changes
    assert alert_message(resolved, site="s", gateway="g") == b""
    assert book.open() == []
