"""People act on alerts through the local API of a running gateway: a responder acknowledges and
resolves with an outcome; the retained MQTT message shows who, and goes once the alert is both
cleared and resolved; every step is in the alert's history. Bad requests are refused, counted,
and change nothing. In-process gateway, its local API on a loopback port, a real Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from edge.alerts import Alert, AlertBook
from edge.clock import Clock
from edge.config import parse_config
from edge.daemon import Gateway
from edge.store import Store
from tests.conftest import Broker, free_port
from tests.support import alerts as support
from tests.test_people_gateway import bearer, new_token, users

SITE, GATEWAY = "site-act", "gw-act"
T0 = 1_800_000_000.0


@contextlib.asynccontextmanager
async def gateway_with_alerts(
    tmp_path: Path, broker: Broker, alerts: list[Alert]
) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    port = free_port()
    config = parse_config(
        f"""
[gateway]
id = "{GATEWAY}"
site = "{SITE}"
state_dir = "{tmp_path / "state"}"

[mqtt]
host = "{broker.host}"
port = {broker.port}

[store]
batch_max_delay_s = 0.05

[local_api]
host = "127.0.0.1"
port = {port}
"""
    )
    async with Store(
        config.database_path, gateway_id=GATEWAY, clock=Clock(synchronised=lambda: True)
    ) as store:
        await store.write([], alerts)
    gateway = Gateway(config)
    stop = asyncio.Event()
    running = asyncio.create_task(gateway.run(stop))
    try:
        await asyncio.wait_for(gateway.ready.wait(), 10)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield gateway, client
    finally:
        stop.set()
        await asyncio.wait_for(running, 20)


async def retained(broker: Broker, topic: str) -> dict[str, Any] | None:
    """The retained message on ``topic`` now (None if there is none)."""
    async with aiomqtt.Client(broker.host, broker.port, identifier="grid-worker-phone") as client:
        await client.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(0.5):
                async for message in client.messages:
                    payload = bytes(message.payload)  # type: ignore[arg-type]
                    return json.loads(payload) if payload else None
        except TimeoutError:
            return None
    return None


async def test_a_responder_acknowledges_then_resolves_and_mqtt_shows_who(
    tmp_path: Path, mosquitto: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    book = AlertBook()
    stopped = support.raise_alert(
        book,
        rule="use_stopped",
        device="flat-1",
        point="use",
        at=T0,
        params={"meters": "electricity+water", "hours_quiet": 4.0, "usual_uses": 3.6},
    )
    [cleared] = support.clear_alert(book, stopped, at=T0 + 60)  # in use again; nobody resolved
    state = tmp_path / "state"
    _, out, _ = users(capsys, state, "add", "wang.fang", "--role", "responder",
                      "--display", "王芳", "--no-password")  # fmt: skip
    responder = bearer(new_token(out))
    _, out, _ = users(capsys, state, "add", "li.wei", "--role", "viewer", "--no-password")
    viewer = bearer(new_token(out))
    topic = f"nbedge/{SITE}/{GATEWAY}/alerts/{stopped.alert_id}"
    url = f"/api/alerts/{stopped.alert_id}"

    async with gateway_with_alerts(tmp_path, mosquitto, [stopped, cleared]) as (gateway, client):
        before = await retained(mosquitto, topic)
        assert before is not None
        assert (before["condition"], before["state"]) == ("cleared", "new")  # still open work

        # Refused, counted, nothing changed.
        assert (await client.post(f"{url}/acknowledge", json={})).status_code == 401
        assert (await client.post(f"{url}/acknowledge", json={}, headers=viewer)).status_code == 403
        unknown = await client.post("/api/alerts/nope/acknowledge", json={}, headers=responder)
        assert unknown.status_code == 404
        no_outcome = await client.post(f"{url}/resolve", json={"note": "ok"}, headers=responder)
        assert no_outcome.status_code == 422
        auto = await client.post(f"{url}/resolve", json={"outcome": "auto"}, headers=responder)
        assert auto.status_code == 409
        for bad in ({"outcome": "fine"}, {"note": "x" * 501}, {"colour": "red"}, [1], "\x00"):
            answer = await client.post(f"{url}/acknowledge", json=bad, headers=responder)
            assert answer.status_code == 422, bad
        garbled = await client.post(
            f"{url}/acknowledge",
            content=b"\xff\xfe{",
            headers=responder | {"Content-Type": "application/json"},
        )
        assert garbled.status_code == 400  # not JSON at all
        assert (await client.post(f"{url}/escalate", json={}, headers=responder)).status_code == 422
        status = (await client.get("/api/status")).json()
        assert (status["local_api"]["auth_failures"], status["local_api"]["forbidden"]) == (1, 1)
        assert [a.state for a in gateway.active_alerts()] == ["new"]

        # Acknowledged: the retained message says by whom.
        ack = await client.post(
            f"{url}/acknowledge", json={"note": "我马上过去"}, headers=responder
        )
        assert ack.status_code == 200, ack.text
        assert ack.json()["alert"]["acknowledged_by"] == "王芳"

        async def acknowledged() -> bool:
            message = await retained(mosquitto, topic)
            return message is not None and message["state"] == "acknowledged"

        await wait_until_async(acknowledged)
        message = await retained(mosquitto, topic)
        assert message is not None
        assert message["acknowledged_by"] == "王芳"
        assert message["texts"]["zh-Hans"].endswith("已由王芳确认")

        # Resolved with an outcome: cleared and resolved, the retained message goes.
        done = await client.post(
            f"{url}/resolve",
            json={"outcome": "resident_ok", "note": "已上门，老人安好"},
            headers=responder,
        )
        assert done.status_code == 200, done.text

        async def gone() -> bool:
            return await retained(mosquitto, topic) is None

        await wait_until_async(gone)
        assert gateway.active_alerts() == []
        again = await client.post(f"{url}/acknowledge", json={}, headers=responder)
        assert again.status_code == 404  # closed: no longer open work

    async with Store(tmp_path / "state" / "gateway.db", gateway_id=GATEWAY) as store:
        history = await store.alert_history(stopped.alert_id)
    assert [(e["event"], e["by"], e["via"]) for e in history] == [
        ("raised", None, "rule"),
        ("cleared", None, "rule"),
        ("acknowledged", "王芳", "local_api"),
        ("resolved", "王芳", "local_api"),
    ]
    assert history[-1]["outcome"] == "resident_ok"
    assert history[-1]["note"] == "已上门，老人安好"


async def wait_until_async(check: Any, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await check():
            await asyncio.sleep(0.05)
