"""The building in Home Assistant: what the local publisher sends for it, and its button presses.

``HomeAssistantBridge`` (no I/O) keeps the messages to send, the latest one per topic: at each
connection every discovery config and every cause's state (all retained); then each alert change
(``alert``) as its cause's state, a cause first seen announced before it; and each reading of a
main point (``reading``, or the sink ``tee`` makes) at most once per ``state_interval_s`` per
point. A reload (``reconfigure``) deletes the entities of what left the configuration (an empty
retained config, as Home Assistant's discovery asks) and announces what came. ``AlertPublisher``
(``edge.mqtt``) sends them after escalations and alerts, and hands it
the presses on ``<root>/causes/<cause_id>/acknowledge/<account>`` (``alert_of``).

Overflow policy: one message waits per topic (a newer one replaces it), so what waits is bounded
by the entities: ``MAX_CAUSES`` causes at most; a cause beyond is not announced, counted and
logged.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from edge.alerts import Alert
from edge.home_assistant.causes import Cause, known_causes
from edge.home_assistant.discovery import Discovery, Sensor, main_sensors
from edge.schemas import GatewayConfig
from firmware_bridge.readings import Reading

log = logging.getLogger(__name__)

MAX_CAUSES: Final = 5000


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool = True


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


class HomeAssistantBridge:
    """One gateway's entities in Home Assistant (see the module doc)."""

    def __init__(self, config: GatewayConfig) -> None:
        self.discovery = Discovery(config)
        self._interval_ns = int(config.mqtt.home_assistant.state_interval_s * 1e9)
        self._causes: dict[str, Cause] = {}  # by cause id
        self._by_key: dict[str, Cause] = {}
        for cause in known_causes(config):
            self._add(cause)
        self._sensors: dict[tuple[str, str], Sensor] = {
            (s.device, s.point): s for s in main_sensors(config)
        }
        self._latest: dict[str, Alert] = {}  # the open alert of each cause, by key
        self._pending: OrderedDict[str, Message] = OrderedDict()  # configs and cause states
        self._points: OrderedDict[str, Message] = OrderedDict()
        self._last_ns: dict[tuple[str, str], int] = {}
        self.wake: Callable[[], None] = lambda: None
        """Called when a message is queued (the publisher sets it)."""
        self.announced = 0
        self.states = 0
        self.points = 0
        self.causes_refused = 0
        self.removed = 0
        """Entities deleted from Home Assistant: their devices left the configuration."""
        self._leaving: set[str] = set()
        """Causes of devices no longer configured whose open alert waits for a person."""

    @property
    def press_filter(self) -> str:
        return self.discovery.press_filter

    def causes(self) -> list[Cause]:
        return list(self._causes.values())

    def sensors(self) -> list[Sensor]:
        return list(self._sensors.values())

    def connected(self, open_alerts: Iterable[Alert]) -> None:
        """A new connection: queue every config and every cause's state, from the open
        alerts (the broker keeps them all retained, so this repeats what it holds)."""
        self._latest = {alert.key: alert for alert in open_alerts if alert.open}
        for alert in self._latest.values():
            self._cause_of(alert, announce=False)
        for sensor in self._sensors.values():
            self._queue_config(*self.discovery.sensor(sensor))
        for cause in self._causes.values():
            self._announce(cause)
        self.wake()

    def reconfigure(self, config: GatewayConfig, removed: Iterable[str]) -> None:
        """A reloaded configuration: the entities of the ``removed`` devices, gates and sensors
        deleted from Home Assistant (an empty retained config), the new ones announced, and
        every config sent again (a label may have changed)."""
        gone = set(removed)
        self.discovery = Discovery(config)
        for cause in [c for c in self._causes.values() if c.device in gone]:
            if cause.key in self._latest:  # its open alert waits for a person: until closed
                self._leaving.add(cause.key)
            else:
                self._delete(cause)
        for cause in known_causes(config):
            self._add(cause)
        sensors = {(s.device, s.point): s for s in main_sensors(config)}
        for point, sensor in self._sensors.items():
            if point not in sensors:
                self._queue(Message(self.discovery.sensor(sensor)[0], b"", qos=1))
                self._points.pop(self.discovery.point_topic(*point), None)
                self._queue(Message(self.discovery.point_topic(*point), b"", qos=1))
                self._last_ns.pop(point, None)
                self.removed += 1
        self._sensors = sensors
        for sensor in sensors.values():
            self._queue_config(*self.discovery.sensor(sensor))
        for cause in self._causes.values():
            self._announce(cause)
        self.wake()

    def alert(self, alert: Alert) -> None:
        """An alert changed: its cause's state (the cause announced first if it is new; none
        for the alert of a device removed from the configuration, its last word)."""
        if alert.params.get("removed") is True and alert.key not in self._by_key:
            self._latest.pop(alert.key, None)
            return
        cause = self._cause_of(alert, announce=True)
        if alert.open:
            self._latest[alert.key] = alert
        elif (current := self._latest.get(alert.key)) is None or (
            current.alert_id == alert.alert_id
        ):
            self._latest.pop(alert.key, None)
        if cause is not None and cause.key in self._leaving and cause.key not in self._latest:
            self._leaving.discard(cause.key)
            self._delete(cause)  # its device left the configuration; its last alert is closed
            self.wake()
        elif cause is not None:
            self._queue_state(cause)
            self.wake()

    def reading(self, reading: Reading) -> None:
        """A reading: queued for its main point's sensor, at most once per interval."""
        point = (reading.device, reading.point)
        if point not in self._sensors:
            return
        last = self._last_ns.get(point)
        if last is not None and reading.monotonic_ns - last < self._interval_ns:
            return
        payload = self.discovery.point_value(reading.value)
        if payload is None:
            return
        self._last_ns[point] = reading.monotonic_ns
        topic = self.discovery.point_topic(*point)
        self._points.pop(topic, None)
        self._points[topic] = Message(topic, payload, qos=0)
        self.wake()

    def tee(self, sink: Callable[[Reading], None]) -> Callable[[Reading], None]:
        """``sink``, then this bridge, for each reading (a bus owner's sink)."""

        def both(reading: Reading) -> None:
            sink(reading)
            self.reading(reading)

        return both

    def alert_of(self, cause_id: str, open_alerts: Iterable[Alert]) -> tuple[bool, str | None]:
        """Whether ``cause_id`` is a cause of this gateway, and the id of its open alert."""
        cause = self._causes.get(cause_id)
        if cause is None:
            return False, None
        found = next((a for a in open_alerts if a.key == cause.key and a.open), None)
        return True, None if found is None else found.alert_id

    # --- the queue -------------------------------------------------------------------------

    def next(self) -> Message | None:
        """The next message to send (configs and states before readings), or None."""
        for queue in (self._pending, self._points):
            if queue:
                return next(iter(queue.values()))
        return None

    def sent(self, message: Message) -> None:
        """``message`` reached the broker: forget it, unless a newer one replaced it."""
        for queue in (self._pending, self._points):
            if queue.get(message.topic) is message:
                del queue[message.topic]
                if queue is self._points:
                    self.points += 1
                return

    @property
    def waiting(self) -> int:
        return len(self._pending) + len(self._points)

    # --- internals -------------------------------------------------------------------------

    def _add(self, cause: Cause) -> bool:
        if cause.key in self._by_key:
            return False
        if len(self._causes) >= MAX_CAUSES:
            self.causes_refused += 1
            if self.causes_refused == 1 or self.causes_refused % 100 == 0:
                log.error(
                    "home assistant: too many alert causes, this one is not announced",
                    extra={"cause": cause.key, "refused": self.causes_refused},
                )
            return False
        self._causes[cause.cause_id] = cause
        self._by_key[cause.key] = cause
        return True

    def _delete(self, cause: Cause) -> None:
        """Forget ``cause`` and delete its entities (an empty retained config) and state."""
        del self._causes[cause.cause_id], self._by_key[cause.key]
        self._latest.pop(cause.key, None)
        for topic, _ in (self.discovery.problem(cause), self.discovery.button(cause)):
            self._queue(Message(topic, b"", qos=1))
        self._queue(Message(self.discovery.cause_topic(cause), b"", qos=1))
        self.removed += 1

    def _cause_of(self, alert: Alert, *, announce: bool) -> Cause | None:
        cause = self._by_key.get(alert.key)
        if cause is not None:
            return cause
        cause = Cause(alert.rule, alert.device, alert.point)
        if not self._add(cause):
            return None
        log.info("home assistant: a new alert cause announced", extra={"cause": cause.key})
        if announce:
            self._announce(cause, state=False)
        return cause

    def _announce(self, cause: Cause, *, state: bool = True) -> None:
        self._queue_config(*self.discovery.problem(cause))
        self._queue_config(*self.discovery.button(cause))
        if state:
            self._queue_state(cause)

    def _queue_config(self, topic: str, payload: dict[str, Any]) -> None:
        self._queue(Message(topic, _json(payload), qos=1))
        self.announced += 1

    def _queue_state(self, cause: Cause) -> None:
        state = self.discovery.cause_state(cause, self._latest.get(cause.key))
        self._queue(Message(self.discovery.cause_topic(cause), _json(state), qos=1))
        self.states += 1

    def _queue(self, message: Message) -> None:
        self._pending.pop(message.topic, None)  # the newer one goes to the back
        self._pending[message.topic] = message
