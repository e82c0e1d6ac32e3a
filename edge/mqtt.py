"""Local alerts on the building's MQTT broker, and people acting on them, even with no internet.

Topics under ``<prefix>/<site>/<gateway>`` (docs/mqtt.md has the payloads and the ACL):

- ``status``: ``online`` (retained), ``offline`` by last will or on a clean stop;
- ``alerts/<alert_id>``: the alert as JSON (``edge.alerts.payload``), retained, QoS 1, while it is
  open; emptied once it is both cleared and resolved;
- ``alerts/<alert_id>/escalation/<audience>``: the escalated alert, retained until it is
  acknowledged or closed, for a siren or a phone app of that audience;
- ``alerts/<alert_id>/set/<user>``: commands in (``edge.mqtt_commands``), answered on
  ``.../set/<user>/result`` (not retained);
- with a ``HomeAssistantBridge`` (``edge.home_assistant``): its discovery configs, the causes'
  states and the meters' main points, after the alerts; button presses in on
  ``causes/<cause_id>/acknowledge/<user>``, answered on ``.../result``.

Only the latest state of each alert waits while the broker is away; escalations wait apart, in
order, bounded. On reconnection every open alert is published again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge.alerts import Alert
from edge.alerts.payload import alert_payload
from edge.mqtt_commands import Commands
from edge.schemas import MqttSection
from edge.status import MqttCommandsStatus, MqttStatus

if TYPE_CHECKING:
    from edge.home_assistant import HomeAssistantBridge

log = logging.getLogger(__name__)

ESCALATIONS_CAP = 1000
"""Escalation messages waiting for the broker at most; beyond it the oldest is dropped, counted
(``escalations_dropped``) and logged as an error."""
INCOMING_CAP = 256
"""Incoming messages (commands) waiting to be handled at most; beyond it aiomqtt discards new
ones (the sender gets no answer and may send again)."""


def topic_root(prefix: str, site: str, gateway: str) -> str:
    return f"{prefix}/{site}/{gateway}"


def alert_json(alert: Alert, *, site: str, gateway: str) -> bytes:
    return json.dumps(alert_payload(alert, site=site, gateway=gateway), ensure_ascii=False).encode()


def alert_message(alert: Alert, *, site: str, gateway: str) -> bytes:
    """The retained JSON of an open alert; an empty payload once it is closed."""
    return alert_json(alert, site=site, gateway=gateway) if alert.open else b""


def sounds(alert: Alert) -> bool:
    """Whether an escalation of this alert still calls for someone: open and not acknowledged."""
    return alert.open and alert.state == "new"


def topic_level(text: str) -> bool:
    """Whether ``text`` can be one level of a topic name."""
    return bool(text) and not any(c in text for c in "/+#\x00")


class AlertPublisher:
    """Publishes alert changes, escalations and the gateway's status on the local broker, and
    hands the commands it receives to ``commands`` (set it before ``run``)."""

    def __init__(
        self,
        config: MqttSection,
        *,
        site: str,
        gateway: str,
        open_alerts: Callable[[], list[Alert]],
        commands: Commands | None = None,
        home_assistant: HomeAssistantBridge | None = None,
        backoff_max_s: float = 30.0,
    ) -> None:
        self._config = config
        self._site = site
        self._gateway = gateway
        self._root = topic_root(config.topic_prefix, site, gateway)
        self._open_alerts = open_alerts
        self.commands = commands
        self._backoff_max_s = backoff_max_s
        self._pending: dict[str, Alert] = {}
        # Escalation messages to send, in order: the escalated alert, or None to empty the topic.
        self._escalations: OrderedDict[tuple[str, str], Alert | None] = OrderedDict()
        # What each escalation topic holds (or will): alert id -> audience -> alert.
        self._sounding: dict[str, dict[str, Alert]] = {}
        self._wake = asyncio.Event()
        self._connected = False
        self._published = 0
        self._failures = 0
        self._escalations_published = 0
        self._escalations_dropped = 0
        self.home_assistant = home_assistant
        if home_assistant is not None:
            home_assistant.wake = self._wake.set

    @property
    def status_topic(self) -> str:
        return f"{self._root}/status"

    @property
    def command_filter(self) -> str:
        return f"{self._root}/alerts/+/set/+"

    @property
    def escalation_filter(self) -> str:
        return f"{self._root}/alerts/+/escalation/+"

    def alert_topic(self, alert_id: str) -> str:
        return f"{self._root}/alerts/{alert_id}"

    def escalation_topic(self, alert_id: str, audience: str) -> str:
        return f"{self._root}/alerts/{alert_id}/escalation/{audience}"

    def publish(self, alert: Alert) -> None:
        """Queue an alert change (never blocks). Only the latest state of an alert is kept; an
        escalation also goes to its audience's topic, which is emptied once nobody is needed."""
        self._pending[alert.alert_id] = alert
        if alert.event == "escalated" and alert.audience is not None and sounds(alert):
            if topic_level(alert.audience):
                self._sounding.setdefault(alert.alert_id, {})[alert.audience] = alert
                self._queue_escalation((alert.alert_id, alert.audience), alert)
            else:
                log.error(
                    "escalation audience cannot be a topic level",
                    extra={"alert_id": alert.alert_id, "audience": alert.audience},
                )
        elif not sounds(alert):
            for audience in self._sounding.pop(alert.alert_id, {}):
                self._queue_escalation((alert.alert_id, audience), None)
        if self.home_assistant is not None:
            self.home_assistant.alert(alert)
        self._wake.set()

    def status(self) -> MqttStatus:
        """The connection and the counters (``/api/status`` -> ``mqtt``)."""
        return MqttStatus(
            connected=self._connected,
            published=self._published,
            pending=len(self._pending),
            connection_failures=self._failures,
            escalations_pending=len(self._escalations),
            escalations_published=self._escalations_published,
            escalations_dropped=self._escalations_dropped,
            commands=None
            if self.commands is None
            else MqttCommandsStatus.model_validate(self.commands.counts()),
        )

    async def run(self) -> None:
        """Stay connected and publish until cancelled; on cancellation, say ``offline``."""
        attempt = 0
        while True:
            try:
                async with self._client() as client:
                    attempt = 0
                    await self._session(client)
            except* aiomqtt.MqttError as group:
                self._failures += 1
                if self._connected or attempt == 0:
                    log.warning(
                        "mqtt broker unreachable", extra={"error": str(group.exceptions[0])}
                    )
                self._connected = False
            attempt += 1
            delay = min(self._backoff_max_s, 0.5 * 2**attempt)
            await asyncio.sleep(random.uniform(delay / 2, delay))

    def _client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self._config.host,
            self._config.port,
            identifier=f"nbedge-{self._site}-{self._gateway}",
            username=self._config.username,
            password=self._config.password,
            keepalive=self._config.keepalive_s,
            will=aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True),
            timeout=10,
            max_queued_incoming_messages=INCOMING_CAP,
            # An answer follows the PUBACK of its command at once: without this, Nagle's
            # algorithm holds it until the broker's delayed ACK (docs/mqtt.md).
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )

    async def _session(self, client: aiomqtt.Client) -> None:
        await client.publish(self.status_topic, b"online", qos=1, retain=True)
        for alert in self._open_alerts():
            self._pending.setdefault(alert.alert_id, alert)
            if alert.event == "escalated" and alert.audience is not None and sounds(alert):
                self._sounding.setdefault(alert.alert_id, {}).setdefault(alert.audience, alert)
        for alert_id, audiences in self._sounding.items():
            for audience, alert in audiences.items():
                if (alert_id, audience) not in self._escalations:
                    self._queue_escalation((alert_id, audience), alert)
        # The broker's retained escalations tell what a restart forgot (to empty them later).
        await self._subscribe(client, self.escalation_filter)
        if self.commands is not None:
            await self._subscribe(client, self.command_filter)
        if self.home_assistant is not None:
            self.home_assistant.connected(self._open_alerts())
            if self.commands is not None:
                await self._subscribe(client, self.home_assistant.press_filter)
        self._connected = True
        log.info("mqtt connected", extra={"broker": f"{self._config.host}:{self._config.port}"})
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._watch(client), name="mqtt-watch")
                await self._publish_pending(client)
        except asyncio.CancelledError:
            # A clean stop: the broker does not send the will, so say it ourselves, briefly.
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(self.status_topic, b"offline", qos=1, retain=True, timeout=2)
            self._connected = False
            raise

    @staticmethod
    async def _subscribe(client: aiomqtt.Client, topic: str) -> None:
        granted = await client.subscribe(topic, qos=1, timeout=10)
        if any(c.is_failure if isinstance(c, ReasonCode) else c >= 0x80 for c in granted):
            log.error("mqtt broker refused a subscription (its ACL?)", extra={"topic": topic})

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Handle incoming messages; return (raise ``MqttError``) when the connection drops, so
        the session restarts."""
        async for message in client.messages:
            payload = message.payload
            data = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
            levels = str(message.topic)[len(self._root) + 1 :].split("/")
            commands = self.commands
            if message.topic.matches(self.command_filter) and commands is not None:
                await self._command(client, commands, levels[1], levels[3], data, message.retain)
            elif message.topic.matches(self.escalation_filter) and message.retain and data:
                self._retained_escalation(levels[1], levels[3])
            elif (
                self.home_assistant is not None
                and commands is not None
                and message.topic.matches(self.home_assistant.press_filter)
            ):
                await self._press(client, commands, levels[1], levels[3], data, message.retain)

    async def _command(
        self,
        client: aiomqtt.Client,
        commands: Commands,
        alert_id: str,
        user: str,
        payload: bytes,
        retained: bool,
    ) -> None:
        topic = f"{self._root}/alerts/{alert_id}/set/{user}"
        try:
            answer = commands.handle(alert_id, user, payload, retained=retained)
        except Exception:  # a bug in one command must not stop the alerts
            log.exception("mqtt command failed", extra={"alert_id": alert_id, "user": user})
            return
        if answer is not None:
            await client.publish(f"{topic}/result", answer.payload(), qos=1, timeout=10)
        if retained:  # so that it is not refused again at every reconnection
            await client.publish(topic, b"", qos=1, retain=True, timeout=10)

    async def _press(
        self,
        client: aiomqtt.Client,
        commands: Commands,
        cause_id: str,
        user: str,
        payload: bytes,
        retained: bool,
    ) -> None:
        """A Home Assistant button pressed: acknowledge its cause's open alert."""
        assert self.home_assistant is not None  # the caller checked
        topic = f"{self._root}/causes/{cause_id}/acknowledge/{user}"
        try:
            known, alert_id = self.home_assistant.alert_of(cause_id, self._open_alerts())
            answer = commands.press(
                cause_id, alert_id, user, payload, retained=retained, known=known
            )
        except Exception:  # a bug in one press must not stop the alerts
            log.exception("mqtt press failed", extra={"cause_id": cause_id, "user": user})
            return
        if answer is not None:
            await client.publish(f"{topic}/result", answer.payload(), qos=1, timeout=10)
        if retained:
            await client.publish(topic, b"", qos=1, retain=True, timeout=10)

    def _retained_escalation(self, alert_id: str, audience: str) -> None:
        """The broker holds an escalation of ``alert_id``: keep it in mind, or empty it if its
        alert is acknowledged or closed (the gateway restarted meanwhile)."""
        key = (alert_id, audience)
        if key in self._escalations or audience in self._sounding.get(alert_id, {}):
            return
        current = next((a for a in self._open_alerts() if a.alert_id == alert_id), None)
        if current is not None and sounds(current):
            self._sounding.setdefault(alert_id, {})[audience] = current
        else:
            self._queue_escalation(key, None)
            self._wake.set()

    def _queue_escalation(self, key: tuple[str, str], alert: Alert | None) -> None:
        if key in self._escalations:
            del self._escalations[key]  # the newer message replaces it, at the back
        elif len(self._escalations) >= ESCALATIONS_CAP:
            self._escalations.popitem(last=False)
            self._escalations_dropped += 1
            if self._escalations_dropped == 1 or self._escalations_dropped % 100 == 0:
                log.error(
                    "escalations pending at the cap, oldest dropped",
                    extra={"dropped": self._escalations_dropped},
                )
        self._escalations[key] = alert

    async def _publish_pending(self, client: aiomqtt.Client) -> None:
        while True:
            while self._escalations or self._pending:
                if self._escalations:  # before the alerts: a siren waits on them
                    key, escalated = next(iter(self._escalations.items()))
                    await client.publish(
                        self.escalation_topic(*key),
                        b""
                        if escalated is None
                        else alert_json(escalated, site=self._site, gateway=self._gateway),
                        qos=1,
                        retain=True,
                        timeout=10,
                    )
                    self._escalations_published += 1
                    if key in self._escalations and self._escalations[key] is escalated:
                        del self._escalations[key]
                    continue
                alert_id, alert = next(iter(self._pending.items()))
                await client.publish(
                    self.alert_topic(alert_id),
                    alert_message(alert, site=self._site, gateway=self._gateway),
                    qos=1,
                    retain=True,
                    timeout=10,
                )
                self._published += 1
                if self._pending.get(alert_id) is alert:
                    del self._pending[alert_id]
            bridge = self.home_assistant
            if bridge is not None and (message := bridge.next()) is not None:
                # After escalations and alerts; one at a time, so that they come first again.
                await client.publish(
                    message.topic,
                    message.payload,
                    qos=message.qos,
                    retain=message.retain,
                    timeout=10,
                )
                bridge.sent(message)
                continue
            self._wake.clear()
            await self._wake.wait()
