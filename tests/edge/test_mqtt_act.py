"""Acting on alerts over a real Mosquitto: commands on ``.../set/<user>`` answered on
``.../result``, the shipped ACL (examples/mosquitto/) that makes the user level trustworthy,
retained commands never replayed, escalations on their audience's topic."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from edge.alerts import Action, ActResult, Alert, AlertBook, Outcome, Via
from edge.alerts.payload import alert_payload
from edge.mqtt import AlertPublisher
from edge.mqtt_commands import Commands
from edge.people import PeopleStore, Role
from edge.schemas import MqttSection
from tests.conftest import BROKER_ACCOUNTS, Broker, wait_until
from tests.edge.test_mqtt import retained as retained_on
from tests.edge.test_mqtt import running
from tests.support import alerts as support

pytestmark = pytest.mark.timeout(60)

ROOT = "nbedge/site-1/gw-1"
T0 = 1_800_000_000.0


class Rig:
    """A publisher with commands, on a book whose changes it publishes at once (the pipeline
    writes them first; here there is no store)."""

    def __init__(self, broker: Broker, folder: Path, *, user: str | None = None) -> None:
        self.book = AlertBook()
        self.people = PeopleStore(folder / "people.json")
        self.people.add("wang.fang", Role.RESPONDER, display="王芳")
        self.people.add("li.lei", Role.RESPONDER)
        self.people.add("zhao.min", Role.VIEWER)
        config = MqttSection(
            host=broker.host,
            port=broker.port,
            keepalive_s=5,
            username=user,
            password=None if user is None else BROKER_ACCOUNTS[user],
        )
        self.publisher = AlertPublisher(
            config, site="site-1", gateway="gw-1", open_alerts=self.book.open
        )
        self.publisher.commands = self.commands = Commands(
            self.people, act=self.act, alert=self.book.get, now=lambda: T0 + 60
        )
        self.alert = support.raise_alert(
            self.book, rule="use_stopped", device="flat-3", point="use", at=T0
        )

    def act(
        self,
        alert_id: str,
        action: Action,
        *,
        by: str,
        via: Via,
        at: float,
        note: str | None = None,
        outcome: Outcome | None = None,
        command_id: str | None = None,
    ) -> ActResult:
        result = self.book.act(
            alert_id,
            action,
            by=by,
            via=via,
            at=at,
            note=note,
            outcome=outcome,
            command_id=command_id,
        )
        for change in result.changes:
            self.publisher.publish(change)
        return result

    def current(self) -> Alert | None:
        return self.book.get(self.alert.alert_id)

    def refused(self) -> dict[str, int]:
        counts: dict[str, int] = self.commands.counts()["refused"]
        return {reason: n for reason, n in counts.items() if n}


def client(broker: Broker, user: str | None, name: str) -> aiomqtt.Client:
    password = None if user is None else BROKER_ACCOUNTS[user]
    return aiomqtt.Client(
        broker.host, broker.port, identifier=name, username=user, password=password, timeout=5
    )


@contextlib.asynccontextmanager
async def phone(broker: Broker, user: str) -> AsyncIterator[aiomqtt.Client]:
    """A responder's phone app, logged in as ``user``, listening to its answers."""
    async with client(broker, user, f"phone-{user}") as app:
        await app.subscribe(f"{ROOT}/alerts/+/set/{user}/result", qos=1, timeout=5)
        yield app


async def command(app: aiomqtt.Client, alert_id: str, user: str, payload: bytes) -> None:
    await app.publish(f"{ROOT}/alerts/{alert_id}/set/{user}", payload, qos=1, timeout=5)


async def next_answer(app: aiomqtt.Client) -> dict[str, Any]:
    async with asyncio.timeout(5):
        async for message in app.messages:
            return dict(json.loads(bytes(message.payload)))  # type: ignore[arg-type]
    raise AssertionError("no answer")  # pragma: no cover


def body(**fields: Any) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode()


async def settled(rig: Rig) -> None:
    """Until every change has reached the broker."""
    status = rig.publisher.status
    await wait_until(lambda: not status().pending and not status().escalations_pending)


async def test_a_responder_acknowledges_and_resolves_on_her_own_topic(
    secured_mosquitto: Broker, tmp_path: Path
) -> None:
    rig = Rig(secured_mosquitto, tmp_path, user="nbedge-gateway")
    alert_id = rig.alert.alert_id
    topic = f"{ROOT}/alerts/{alert_id}"
    async with running(rig.publisher), phone(secured_mosquitto, "wang.fang") as app:
        note = "已上门，老人安好"
        await command(app, alert_id, "wang.fang", body(action="acknowledge", note=note))
        answer = await next_answer(app)
        acknowledged = rig.current()
        assert acknowledged is not None
        assert answer["result"] == "applied"
        assert answer["event_id"] == acknowledged.event_id == f"{alert_id}.2"
        await settled(rig)
        shown = json.loads((await retained_on(secured_mosquitto, topic, user="siren-1"))[topic])
        assert (shown["state"], shown["acknowledged_by"]) == ("acknowledged", "王芳")
        assert (shown["event"]["via"], shown["event"]["note"]) == ("mqtt", note)
        assert shown["texts"]["zh-Hans"].endswith("已由王芳确认")

        [cleared] = support.clear_alert(rig.book, rig.alert, at=T0 + 30)  # needs a person
        rig.publisher.publish(cleared)
        resolve = body(action="resolve", outcome="resident_ok", note="老人安好")
        await command(app, alert_id, "wang.fang", resolve)
        answer = await next_answer(app)
        assert (answer["result"], answer["event_id"]) == ("applied", f"{alert_id}.4")
        await settled(rig)
        assert await retained_on(secured_mosquitto, f"{ROOT}/alerts/#", user="siren-1") == {}
    assert rig.refused() == {}
    assert rig.book.open() == []


async def test_the_acl_keeps_each_account_to_its_own_name_and_strangers_out(
    secured_mosquitto: Broker, tmp_path: Path
) -> None:
    rig = Rig(secured_mosquitto, tmp_path, user="nbedge-gateway")
    alert_id = rig.alert.alert_id
    async with running(rig.publisher):
        rig.publisher.publish(rig.alert)
        await settled(rig)
        async with phone(secured_mosquitto, "li.lei") as app:
            # li.lei writes on wang.fang's topic: the broker drops it, the gateway sees nothing.
            await command(app, alert_id, "wang.fang", body(action="acknowledge"))
            # li.lei forges the alert itself: dropped too.
            await app.publish(f"{ROOT}/alerts/{alert_id}", b"{}", qos=1, retain=True, timeout=5)
            # Then her own command, which arrives after both: they were not merely late.
            await command(app, alert_id, "li.lei", body(action="acknowledge"))
            assert (await next_answer(app))["result"] == "applied"
        current = rig.current()
        assert current is not None
        assert [current.event_n, current.acknowledged_by] == [2, "li.lei"]
        assert rig.commands.applied == 1
        assert rig.refused() == {}
        await settled(rig)
        seen = await retained_on(secured_mosquitto, f"{ROOT}/#", user="siren-1")
        assert json.loads(seen[f"{ROOT}/alerts/{alert_id}"])["acknowledged_by"] == "li.lei"
        assert seen[f"{ROOT}/status"] == b"online"
        # Nobody reads another account's answers.
        assert f"{ROOT}/alerts/{alert_id}/set/li.lei/result" not in seen
        # No account, no alerts: an anonymous client is refused.
        with pytest.raises(aiomqtt.MqttError):
            async with client(secured_mosquitto, None, "stranger") as stranger:
                await stranger.subscribe(f"{ROOT}/#", timeout=5)


async def test_bad_commands_are_refused_answered_and_counted_and_the_gateway_carries_on(
    secured_mosquitto: Broker, tmp_path: Path
) -> None:
    rig = Rig(secured_mosquitto, tmp_path, user="nbedge-gateway")
    alert_id = rig.alert.alert_id
    cases = [
        ("wang.fang", alert_id, body(action="acknowledge", note="好" * 2000), "too_large"),
        ("wang.fang", alert_id, b'{"action": "acknowledge", "note": "\xe5\xb7"}', "not_utf8"),
        ("wang.fang", alert_id, b'{"action": "acknowledge"', "malformed"),
        ("wang.fang", alert_id, body(action="acknowledge", by="王芳"), "malformed"),
        ("wang.fang", alert_id, body(action="close"), "unknown_action"),
        ("wang.fang", alert_id, body(action="resolve", note="已上门"), "no_outcome"),
        ("wang.fang", alert_id, body(action="resolve", outcome="auto"), "auto_outcome"),
        ("wang.fang", "use_stopped.flat-9.use.1", body(action="acknowledge"), "unknown_alert"),
        ("zhao.min", alert_id, body(action="acknowledge"), "role"),
        ("siren-1", alert_id, body(action="acknowledge"), "not_a_person"),
    ]
    async with running(rig.publisher):
        for user, target, payload, reason in cases:
            async with phone(secured_mosquitto, user) as app:
                await command(app, target, user, payload)
                answer = await next_answer(app)
            assert (answer["result"], answer["reason"], answer["event_id"]) == (
                "refused",
                reason,
                None,
            ), user
        assert rig.current() is rig.alert  # nothing changed
        assert rig.refused() == Counter(reason for *_, reason in cases)
        status = rig.publisher.status()
        assert status.connected
        assert status.commands is not None
        assert status.commands.refused["role"] == 1
        # And it still acts on a good one.
        async with phone(secured_mosquitto, "wang.fang") as app:
            await command(app, alert_id, "wang.fang", body(action="acknowledge", note="已上门"))
            assert (await next_answer(app))["result"] == "applied"
    current = rig.current()
    assert current is not None
    assert current.acknowledged_by == "王芳"


async def test_a_command_left_retained_on_the_broker_is_never_applied(
    mosquitto: Broker, tmp_path: Path
) -> None:
    rig = Rig(mosquitto, tmp_path)
    alert_id = rig.alert.alert_id
    topic = f"{ROOT}/alerts/{alert_id}/set/wang.fang"
    async with client(mosquitto, None, "old-phone") as old:
        await old.publish(topic, body(action="acknowledge"), qos=1, retain=True, timeout=5)
    async with phone(mosquitto, "wang.fang") as app, running(rig.publisher):
        answer = await next_answer(app)
        assert (answer["result"], answer["reason"]) == ("refused", "retained")
        await wait_until(lambda: rig.commands.ignored_empty == 1)  # its removal, come back
        assert rig.current() is rig.alert
        assert rig.refused() == {"retained": 1}
    assert topic not in await retained_on(mosquitto, f"{ROOT}/alerts/#")


async def test_an_escalation_is_retained_on_its_audience_topic_until_acknowledged(
    mosquitto: Broker, tmp_path: Path
) -> None:
    rig = Rig(mosquitto, tmp_path)
    alert_id = rig.alert.alert_id
    escalation = f"{ROOT}/alerts/{alert_id}/escalation/grid_worker"
    async with running(rig.publisher):
        rig.publisher.publish(rig.alert)
        escalated = rig.book.escalate(alert_id, level=1, audience="grid_worker", at=T0 + 900)
        assert escalated is not None
        rig.publisher.publish(escalated)
        await settled(rig)
        seen = await retained_on(mosquitto, f"{ROOT}/alerts/#")
        payload = json.loads(seen[escalation])
        assert payload == alert_payload(escalated, site="site-1", gateway="gw-1")
        assert (payload["event"]["event"], payload["event"]["audience"]) == (
            "escalated",
            "grid_worker",
        )
        assert payload["texts"]["zh-Hans"].endswith("无人确认，已升级通知网格员（第 1 级）")
        assert json.loads(seen[f"{ROOT}/alerts/{alert_id}"])["level"] == 1
        async with phone(mosquitto, "wang.fang") as app:
            await command(app, alert_id, "wang.fang", body(action="acknowledge"))
            assert (await next_answer(app))["result"] == "applied"
        await settled(rig)
        seen = await retained_on(mosquitto, f"{ROOT}/alerts/#")
    assert escalation not in seen  # emptied: somebody has it
    assert json.loads(seen[f"{ROOT}/alerts/{alert_id}"])["state"] == "acknowledged"
    assert rig.publisher.status().escalations_published == 2


async def test_an_escalation_made_while_the_broker_is_down_is_not_lost(
    mosquitto: Broker, tmp_path: Path
) -> None:
    rig = Rig(mosquitto, tmp_path)
    alert_id = rig.alert.alert_id
    escalated = rig.book.escalate(alert_id, level=1, audience="family", at=T0 + 900)
    assert escalated is not None
    rig.publisher.publish(escalated)
    [cleared] = support.clear_alert(rig.book, rig.alert, at=T0 + 950)  # still nobody has it
    rig.publisher.publish(cleared)
    status = rig.publisher.status()
    assert (status.pending, status.escalations_pending) == (1, 1)  # the alert's latest, apart
    async with running(rig.publisher):
        await settled(rig)
        seen = await retained_on(mosquitto, f"{ROOT}/alerts/#")
    assert json.loads(seen[f"{ROOT}/alerts/{alert_id}"])["event"]["event"] == "cleared"
    family = json.loads(seen[f"{ROOT}/alerts/{alert_id}/escalation/family"])
    assert family["event"]["event"] == "escalated"


async def test_a_restarted_gateway_empties_the_escalation_of_an_alert_acknowledged_meanwhile(
    mosquitto: Broker, tmp_path: Path
) -> None:
    rig = Rig(mosquitto, tmp_path)
    alert_id = rig.alert.alert_id
    escalated = rig.book.escalate(alert_id, level=1, audience="community_office", at=T0 + 900)
    assert escalated is not None
    async with running(rig.publisher):
        rig.publisher.publish(escalated)
        await settled(rig)
    topic = f"{ROOT}/alerts/{alert_id}/escalation/community_office"
    assert topic in await retained_on(mosquitto, f"{ROOT}/alerts/#")
    # Acknowledged on the local page while MQTT was off; the new publisher never saw the
    # escalation, only the book's latest state.
    rig.book.act(alert_id, "acknowledge", by="li.lei", via="local_api", at=T0 + 1000)
    fresh = AlertPublisher(
        MqttSection(host=mosquitto.host, port=mosquitto.port, keepalive_s=5),
        site="site-1",
        gateway="gw-1",
        open_alerts=rig.book.open,
    )
    async with running(fresh):
        await wait_until(lambda: fresh.status().escalations_published == 1)
    assert topic not in await retained_on(mosquitto, f"{ROOT}/alerts/#")
