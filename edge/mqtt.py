"""Local alerts on the building's MQTT broker, so that people on site know within seconds.

Topics (``<prefix>`` is ``nbedge`` unless configured):

- ``<prefix>/<site>/<gateway>/status``: ``online`` (retained) while the gateway runs; ``offline``
  by last will when it dies, or on a clean stop.
- ``<prefix>/<site>/<gateway>/alerts/<alert_id>``: the alert as JSON (``edge.alerts.payload``:
  condition, human state, who, texts in English and Chinese), retained and QoS 1, while it is
  open; an empty retained message once it is both cleared and resolved (which deletes it).

The publisher keeps the latest state of every alert not yet confirmed by the broker, so a broker
that is down loses nothing: on reconnection it sends those and republishes every active alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt

from edge.alerts import Alert
from edge.alerts.payload import alert_payload
from edge.schemas import MqttSection

log = logging.getLogger(__name__)


def topic_root(prefix: str, site: str, gateway: str) -> str:
    return f"{prefix}/{site}/{gateway}"


def alert_message(alert: Alert, *, site: str, gateway: str) -> bytes:
    """The retained JSON of an open alert; an empty payload once it is closed."""
    if not alert.open:
        return b""
    return json.dumps(alert_payload(alert, site=site, gateway=gateway), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class MqttStatus:
    connected: bool
    published: int
    pending: int
    connection_failures: int


class AlertPublisher:
    """Publishes alert changes and the gateway's status on the local broker."""

    def __init__(
        self,
        config: MqttSection,
        *,
        site: str,
        gateway: str,
        open_alerts: Callable[[], list[Alert]],
        backoff_max_s: float = 30.0,
    ) -> None:
        self._config = config
        self._site = site
        self._gateway = gateway
        self._root = topic_root(config.topic_prefix, site, gateway)
        self._open_alerts = open_alerts
        self._backoff_max_s = backoff_max_s
        self._pending: dict[str, Alert] = {}
        self._wake = asyncio.Event()
        self._connected = False
        self._published = 0
        self._failures = 0

    @property
    def status_topic(self) -> str:
        return f"{self._root}/status"

    def alert_topic(self, alert_id: str) -> str:
        return f"{self._root}/alerts/{alert_id}"

    def publish(self, alert: Alert) -> None:
        """Queue an alert change (never blocks). Only the latest state of an alert is kept."""
        self._pending[alert.alert_id] = alert
        self._wake.set()

    def status(self) -> MqttStatus:
        return MqttStatus(self._connected, self._published, len(self._pending), self._failures)

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
        )

    async def _session(self, client: aiomqtt.Client) -> None:
        await client.publish(self.status_topic, b"online", qos=1, retain=True)
        self._connected = True
        log.info("mqtt connected", extra={"broker": f"{self._config.host}:{self._config.port}"})
        for alert in self._open_alerts():
            self._pending.setdefault(alert.alert_id, alert)
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
    async def _watch(client: aiomqtt.Client) -> None:
        """Return (raise ``MqttError``) when the connection drops, so the session restarts."""
        async for _ in client.messages:
            pass

    async def _publish_pending(self, client: aiomqtt.Client) -> None:
        while True:
            while self._pending:
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
            self._wake.clear()
            await self._wake.wait()
