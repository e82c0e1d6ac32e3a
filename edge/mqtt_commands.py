"""People acting on an alert over MQTT: a command in, an answer out (no I/O, no asyncio here).

A responder's broker account publishes ``{"action": "acknowledge" | "resolve", "note": ...,
"outcome": ..., "command_id": ...}`` on ``<root>/alerts/<alert_id>/set/<user>``; the broker's
ACL lets an account write only under its own name, so ``<user>`` is who acts, and must be a
person of the gateway (``PeopleStore``) with at least the responder role. ``Commands.handle``
checks one message, applies it through ``act`` (``Pipeline.act``, ``via="mqtt"``, ``by`` the
person's name) and returns the ``Answer`` for ``<root>/alerts/<alert_id>/set/<user>/result``.
A refusal changes nothing, is counted by reason (``REASONS``) and logged with a short excerpt.
A ``command_id`` seen again from the same person for the same alert is answered as the first
time and not applied again. ``Commands.press`` does the same for a Home Assistant button on
``<root>/causes/<cause_id>/acknowledge/<user>``: ``PRESS`` acknowledges the cause's open alert.
docs/mqtt.md has the topics, the payloads and why.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge.alerts import Action, ActResult, Alert, Outcome, Via
from edge.people import Person, Role

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 4096
PRESS = b"PRESS"
"""A button press (``press``): Home Assistant's ``payload_press``, nothing else."""
MAX_NOTE = 500
REPEATS_KEPT = 1024
"""Answers remembered per (person, alert, command_id); the oldest is forgotten beyond it."""

Reason = Literal[
    "retained",
    "too_large",
    "not_utf8",
    "malformed",
    "unknown_action",
    "no_outcome",
    "auto_outcome",
    "not_a_person",
    "role",
    "unknown_alert",
    "unknown_cause",
    "refused",
]
REASONS: tuple[Reason, ...] = (
    "retained",
    "too_large",
    "not_utf8",
    "malformed",
    "unknown_action",
    "no_outcome",
    "auto_outcome",
    "not_a_person",
    "role",
    "unknown_alert",
    "unknown_cause",
    "refused",
)
ACTIONS: tuple[Action, ...] = ("acknowledge", "resolve")


class CommandBody(BaseModel):
    """The payload of a command (JSON, UTF-8); nothing else is allowed in it."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    action: Action
    note: Annotated[str, Field(max_length=MAX_NOTE)] | None = None
    outcome: Outcome | None = None
    """Required to resolve; ``auto`` is the gateway's own (a person never gives it)."""
    command_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[!-~]+$")] | None = (
        None
    )
    """Chosen by the sender (a phone app that retries): a repeat is not applied again."""

    @field_validator("note")
    @classmethod
    def _plain_text(cls, note: str | None) -> str | None:
        if note is None:
            return None
        note = unicodedata.normalize("NFC", note.strip())
        if any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in note):
            raise ValueError("the note holds control characters")
        return note or None


@dataclass(frozen=True, slots=True)
class Answer:
    """What the gateway says on the command's ``result`` topic."""

    result: Literal["applied", "refused"]
    reason: Reason | None = None
    detail: str | None = None
    event_id: str | None = None
    """The event the command made; ``None`` when refused, or when the alert was already in
    that state (applied, nothing to record)."""
    command_id: str | None = None
    repeat: bool = False
    """True when this answers a ``command_id`` already applied."""

    def payload(self) -> bytes:
        body: dict[str, Any] = {
            "result": self.result,
            "reason": self.reason,
            "detail": self.detail,
            "event_id": self.event_id,
            "command_id": self.command_id,
            "repeat": self.repeat,
        }
        return json.dumps(body, ensure_ascii=False).encode()


class People(Protocol):
    def find(self, name: str) -> Person | None: ...


class Act(Protocol):
    def __call__(
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
    ) -> ActResult: ...


class _Refused(Exception):
    """Why a command is refused (raised and caught inside this module only)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Commands:
    """Checks and applies the commands of one gateway; counts what it did."""

    def __init__(
        self,
        people: People,
        *,
        act: Act,
        alert: Callable[[str], Alert | None],
        now: Callable[[], float],
    ) -> None:
        """``alert`` finds an open alert by id (``AlertBook.get``); ``now`` is wall time."""
        self._people = people
        self._act = act
        self._alert = alert
        self._now = now
        self._answered: OrderedDict[tuple[str, str, str], Answer] = OrderedDict()
        self.applied = 0
        self.repeats = 0
        self.ignored_empty = 0
        self.refused: dict[Reason, int] = dict.fromkeys(REASONS, 0)

    def handle(self, alert_id: str, user: str, payload: bytes, *, retained: bool) -> Answer | None:
        """The answer to one message on ``.../alerts/<alert_id>/set/<user>``; ``None`` for an
        empty message (what removing a retained command looks like), which is ignored."""
        if not payload and not retained:
            self.ignored_empty += 1
            return None
        try:
            answer = self._apply(alert_id, user, payload, retained=retained)
        except _Refused as refusal:
            self._count(refusal, user, payload, alert_id=alert_id[:200])
            return Answer("refused", refusal.reason, refusal.detail, command_id=_id_of(payload))
        return answer

    def press(
        self,
        cause_id: str,
        alert_id: str | None,
        user: str,
        payload: bytes,
        *,
        retained: bool,
        known: bool = True,
    ) -> Answer | None:
        """The answer to one message on ``.../causes/<cause_id>/acknowledge/<user>`` (Home
        Assistant's button): ``PRESS`` acknowledges ``alert_id``, the cause's open alert
        (``None``: it has none; ``known`` false: the gateway has no such cause). Empty messages
        are ignored as in ``handle``; anything else is refused, counted and logged."""
        if not payload and not retained:
            self.ignored_empty += 1
            return None
        try:
            answer = self._press(alert_id, user, payload, retained=retained, known=known)
        except _Refused as refusal:
            self._count(refusal, user, payload, cause_id=cause_id[:200])
            return Answer("refused", refusal.reason, refusal.detail)
        return answer

    def _count(self, refusal: _Refused, user: str, payload: bytes, **where: str) -> None:
        self.refused[refusal.reason] += 1
        log.warning(
            "mqtt command refused: %s",
            refusal.reason,
            extra={
                **where,
                "user": user[:64],
                "detail": refusal.detail,
                "excerpt": repr(payload[:40].decode("utf-8", "replace")),
            },
        )

    def counts(self) -> dict[str, Any]:
        """For ``/api/status``: applied, repeats, empty messages ignored, refusals by reason."""
        return {
            "applied": self.applied,
            "repeats": self.repeats,
            "ignored_empty": self.ignored_empty,
            "refused": dict(self.refused),
        }

    def _apply(self, alert_id: str, user: str, payload: bytes, *, retained: bool) -> Answer:
        if retained:
            raise _Refused(
                "retained", "a retained command is never applied: publish with retain false"
            )
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise _Refused("too_large", f"{len(payload)} bytes, at most {MAX_PAYLOAD_BYTES}")
        person = self._person(user)
        body = _parse(payload)
        key = (person.key, alert_id, body.command_id or "")
        if body.command_id is not None and key in self._answered:
            # Before the alert is looked up: a retry of the resolve that closed it is applied.
            self.repeats += 1
            self._answered.move_to_end(key)
            first = self._answered[key]
            return Answer("applied", None, first.detail, first.event_id, body.command_id, True)
        if body.action == "resolve" and body.outcome is None:
            raise _Refused("no_outcome", "a resolve needs an outcome")
        if body.outcome == "auto":
            raise _Refused("auto_outcome", "outcome auto is the gateway's, not a person's")
        if self._alert(alert_id) is None:
            raise _Refused("unknown_alert", "no open alert of that id")
        result = self._act(
            alert_id,
            body.action,
            by=person.display or person.name,
            via="mqtt",
            at=self._now(),
            note=body.note,
            outcome=body.outcome,
            command_id=body.command_id,
        )
        if result.refused is not None:
            raise _Refused("refused", result.refused)
        self.applied += 1
        detail = None if result.changes else "already in that state: nothing to record"
        event_id = result.changes[-1].event_id if result.changes else None
        answer = Answer("applied", None, detail, event_id, body.command_id)
        if body.command_id is not None:
            self._answered[key] = answer
            while len(self._answered) > REPEATS_KEPT:
                self._answered.popitem(last=False)
        return answer

    def _press(
        self, alert_id: str | None, user: str, payload: bytes, *, retained: bool, known: bool
    ) -> Answer:
        if retained:
            raise _Refused("retained", "a retained press is never applied: publish it not retained")
        if len(payload) > len(PRESS) * 4:
            raise _Refused("too_large", f"{len(payload)} bytes; a press is {PRESS.decode()}")
        person = self._person(user)
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Refused("not_utf8", f"not UTF-8 at byte {exc.start}") from None
        if payload != PRESS:
            raise _Refused("malformed", f"a press is the payload {PRESS.decode()}, nothing else")
        if not known:
            raise _Refused("unknown_cause", "no alert cause of that id on this gateway")
        if alert_id is None or self._alert(alert_id) is None:
            raise _Refused("unknown_alert", "that cause has no open alert")
        result = self._act(
            alert_id, "acknowledge", by=person.display or person.name, via="mqtt", at=self._now()
        )
        if result.refused is not None:
            raise _Refused("refused", result.refused)
        self.applied += 1
        detail = None if result.changes else "already in that state: nothing to record"
        event_id = result.changes[-1].event_id if result.changes else None
        return Answer("applied", None, detail, event_id)

    def _person(self, user: str) -> Person:
        person = self._people.find(user)
        if person is None:
            raise _Refused("not_a_person", "this broker account is nobody of this gateway")
        if person.role < Role.RESPONDER:
            raise _Refused(
                "role", f"acting needs the responder role; {person.name} is {person.role.a()}"
            )
        return person


def _parse(payload: bytes) -> CommandBody:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Refused("not_utf8", f"not UTF-8 at byte {exc.start}") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _Refused("malformed", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _Refused("malformed", "not a JSON object")
    if "action" in data and data["action"] not in ACTIONS:
        raise _Refused("unknown_action", f"action must be one of {', '.join(ACTIONS)}")
    try:
        return CommandBody.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        raise _Refused("malformed", f"{where}: {first['msg']}") from None


def _id_of(payload: bytes) -> str | None:
    """The ``command_id`` of a refused payload, if it has a usable one (to echo it back)."""
    try:
        data = json.loads(payload.decode("utf-8")) if len(payload) <= MAX_PAYLOAD_BYTES else None
    except (ValueError, RecursionError):
        return None
    found = data.get("command_id") if isinstance(data, dict) else None
    return (
        found if isinstance(found, str) and 0 < len(found) <= 64 and found.isprintable() else None
    )
