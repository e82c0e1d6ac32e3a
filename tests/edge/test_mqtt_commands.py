"""Commands on MQTT, without a broker: payload bytes and a broker user in, an answer and the
book's events out. Golden tables of refusals, hypothesis for any bytes at all."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.alerts import ActResult, Alert, AlertBook
from edge.mqtt_commands import MAX_PAYLOAD_BYTES, REASONS, Commands
from edge.people import PeopleStore, Role
from tests.support import alerts as support

NOW = 1_800_000_100.0


def people_of(folder: Path) -> PeopleStore:
    store = PeopleStore(folder / "people.json")
    store.add("wang.fang", Role.RESPONDER, display="王芳")
    store.add("zhao.min", Role.VIEWER)
    store.add("chen.jie", Role.INSTALLER)
    return store


class Book:
    """An alert book with one open critical alert, and a record of every ``act`` call."""

    def __init__(self) -> None:
        self.book = AlertBook()
        self.alert = support.raise_alert(
            self.book, rule="use_stopped", device="flat-3", point="use", severity="critical"
        )
        self.calls: list[dict[str, Any]] = []

    def act(self, alert_id: str, action: Any, **kwargs: Any) -> ActResult:
        self.calls.append({"alert_id": alert_id, "action": action, **kwargs})
        return self.book.act(alert_id, action, **kwargs)

    def current(self) -> Alert | None:
        return self.book.get(self.alert.alert_id)


@pytest.fixture
def book() -> Book:
    return Book()


@pytest.fixture
def commands(tmp_path: Path, book: Book) -> Commands:
    return Commands(people_of(tmp_path), act=book.act, alert=book.book.get, now=lambda: NOW)


def body(**fields: Any) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode()


def test_an_acknowledgement_is_recorded_by_display_name_with_its_note(
    commands: Commands, book: Book
) -> None:
    note = "已上门，老人安好"
    answer = commands.handle(
        book.alert.alert_id, "wang.fang", body(action="acknowledge", note=note), retained=False
    )
    assert answer is not None
    after = book.current()
    assert after is not None
    assert (after.event, after.state, after.via) == ("acknowledged", "acknowledged", "mqtt")
    assert (after.acknowledged_by, after.by, after.note, after.at) == (
        "王芳",
        "王芳",
        note,
        NOW,
    )
    assert json.loads(answer.payload()) == {
        "result": "applied",
        "reason": None,
        "detail": None,
        "event_id": after.event_id,
        "command_id": None,
        "repeat": False,
    }
    assert commands.counts()["applied"] == 1


def test_the_broker_user_is_the_persons_name_in_any_case(commands: Commands, book: Book) -> None:
    """Mosquitto user names are case-sensitive, people's names are not: ``Wang.Fang``'s
    account is wang.fang, and the event names her as people call her, her display name."""
    answer = commands.handle(
        book.alert.alert_id,
        "Wang.Fang",
        body(action="resolve", outcome="help_given"),
        retained=False,
    )
    assert answer is not None
    assert answer.result == "applied"
    assert book.calls[0]["by"] == "王芳"
    assert book.book.get(book.alert.alert_id) is not None  # still active: open until cleared


NOTE_501 = "好" * 501
REFUSALS: list[tuple[str, str, bytes, bool, str]] = [
    # (what, user, payload, retained, reason)
    ("retained", "wang.fang", body(action="acknowledge"), True, "retained"),
    (
        "too large",
        "wang.fang",
        b'{"action": "acknowledge", "note": "' + b"x" * 5000 + b'"}',
        False,
        "too_large",
    ),
    (
        "invalid UTF-8",
        "wang.fang",
        b'{"action": "acknowledge", "note": "\xff\xfe"}',
        False,
        "not_utf8",
    ),
    (
        "GBK, not UTF-8",
        "wang.fang",
        '{"action": "acknowledge", "note": "已上门"}'.encode("gbk"),
        False,
        "not_utf8",
    ),
    ("not JSON", "wang.fang", b"acknowledge", False, "malformed"),
    ("a JSON list", "wang.fang", b'["acknowledge"]', False, "malformed"),
    ("deep nesting", "wang.fang", b"[" * 4000, False, "malformed"),
    ("no action", "wang.fang", body(note="hi"), False, "malformed"),
    ("an extra field", "wang.fang", body(action="acknowledge", by="li.lei"), False, "malformed"),
    ("a note too long", "wang.fang", body(action="acknowledge", note=NOTE_501), False, "malformed"),
    (
        "a control character",
        "wang.fang",
        body(action="acknowledge", note="a\x1b[2J"),
        False,
        "malformed",
    ),
    ("a number for a note", "wang.fang", body(action="acknowledge", note=5), False, "malformed"),
    ("an unknown outcome", "wang.fang", body(action="resolve", outcome="fine"), False, "malformed"),
    ("unknown action", "wang.fang", body(action="delete"), False, "unknown_action"),
    ("resolve, no outcome", "wang.fang", body(action="resolve"), False, "no_outcome"),
    ("outcome auto", "wang.fang", body(action="resolve", outcome="auto"), False, "auto_outcome"),
    ("a viewer", "zhao.min", body(action="acknowledge"), False, "role"),
    ("nobody", "siren-1", body(action="acknowledge"), False, "not_a_person"),
]


@pytest.mark.parametrize(
    ("user", "payload", "retained", "reason"),
    [row[1:] for row in REFUSALS],
    ids=[row[0] for row in REFUSALS],
)
def test_bad_commands_are_refused_counted_and_change_nothing(
    commands: Commands,
    book: Book,
    caplog: pytest.LogCaptureFixture,
    user: str,
    payload: bytes,
    retained: bool,
    reason: str,
) -> None:
    before = book.current()
    with caplog.at_level(logging.WARNING, logger="edge.mqtt_commands"):
        answer = commands.handle(book.alert.alert_id, user, payload, retained=retained)
    assert answer is not None
    assert (answer.result, answer.reason, answer.event_id) == ("refused", reason, None)
    assert answer.detail
    assert book.calls == []
    assert book.current() is before
    counts = commands.counts()
    assert counts["refused"][reason] == 1
    assert sum(counts["refused"].values()) == 1
    assert counts["applied"] == 0
    [record] = caplog.records
    assert record.getMessage() == f"mqtt command refused: {reason}"
    assert len(record.__dict__["excerpt"]) <= 50  # an excerpt of the payload, never all of it
    assert "x" * 100 not in caplog.text


def test_an_unknown_alert_is_refused(commands: Commands, book: Book) -> None:
    answer = commands.handle(
        "voltage.m9.voltage_l1.1", "wang.fang", body(action="acknowledge"), retained=False
    )
    assert answer is not None
    assert (answer.result, answer.reason) == ("refused", "unknown_alert")
    assert book.calls == []


def test_a_command_id_seen_again_is_answered_applied_and_not_applied_twice(
    commands: Commands, book: Book
) -> None:
    command = body(action="acknowledge", note="路上", command_id="phone-7f3a")
    first = commands.handle(book.alert.alert_id, "wang.fang", command, retained=False)
    again = commands.handle(book.alert.alert_id, "wang.fang", command, retained=False)
    assert first is not None
    assert again is not None
    assert (again.result, again.event_id, again.repeat) == ("applied", first.event_id, True)
    assert json.loads(again.payload())["command_id"] == "phone-7f3a"
    assert len(book.calls) == 1
    current = book.current()
    assert current is not None
    assert current.event_n == 2
    assert current.command_id == "phone-7f3a"
    assert commands.counts()["repeats"] == 1
    # Without a command id, a second acknowledgement is a second event (the book's rule).
    for _ in range(2):
        commands.handle(
            book.alert.alert_id, "wang.fang", body(action="acknowledge"), retained=False
        )
    current = book.current()
    assert current is not None
    assert current.event_n == 4
    assert current.acknowledged_by == "王芳"


def test_a_retry_of_the_resolve_that_closed_the_alert_is_still_applied(
    commands: Commands, book: Book
) -> None:
    support.clear_alert(book.book, book.alert, at=NOW - 10)  # cleared, waiting for a person
    resolve = body(action="resolve", outcome="resident_ok", command_id="r-1")
    first = commands.handle(book.alert.alert_id, "wang.fang", resolve, retained=False)
    assert book.current() is None  # closed
    again = commands.handle(book.alert.alert_id, "wang.fang", resolve, retained=False)
    assert first is not None
    assert again is not None
    assert (again.result, again.repeat, again.event_id) == ("applied", True, first.event_id)


def test_acting_on_an_alert_already_resolved_is_applied_with_no_event(
    commands: Commands, book: Book
) -> None:
    resolve = body(action="resolve", outcome="false_alarm")
    commands.handle(book.alert.alert_id, "chen.jie", resolve, retained=False)
    answer = commands.handle(book.alert.alert_id, "wang.fang", resolve, retained=False)
    assert answer is not None
    assert (answer.result, answer.event_id) == ("applied", None)
    assert answer.detail == "already in that state: nothing to record"
    current = book.current()
    assert current is not None
    assert current.resolved_by == "chen.jie"


def test_an_empty_message_is_ignored_unanswered(commands: Commands, book: Book) -> None:
    """What the gateway's own removal of a retained command looks like when it comes back."""
    assert commands.handle(book.alert.alert_id, "wang.fang", b"", retained=False) is None
    assert commands.counts()["ignored_empty"] == 1
    assert book.calls == []


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=st.one_of(
        st.binary(max_size=200),
        st.dictionaries(
            st.sampled_from(["action", "note", "outcome", "command_id", "by"]),
            st.one_of(
                st.none(),
                st.integers(),
                st.text(max_size=80),
                st.sampled_from(["acknowledge", "resolve", "auto", "resident_ok"]),
            ),
        ).map(lambda d: json.dumps(d).encode()),
    ),
    retained=st.booleans(),
)
def test_any_bytes_get_an_answer_and_only_a_valid_command_acts(
    tmp_path: Path, payload: bytes, retained: bool
) -> None:
    book = Book()
    commands = Commands(
        people_of_cached(tmp_path), act=book.act, alert=book.book.get, now=lambda: NOW
    )
    answer = commands.handle(book.alert.alert_id, "wang.fang", payload, retained=retained)
    if answer is None:
        assert payload == b""
        assert not retained
        return
    assert answer.result in ("applied", "refused")
    if answer.result == "refused":
        assert answer.reason in REASONS
        assert book.calls == []
    else:
        assert not retained
        assert len(payload) <= MAX_PAYLOAD_BYTES
        data = json.loads(payload)
        assert data["action"] in ("acknowledge", "resolve")
        assert len(book.calls) == 1


_PEOPLE: dict[Path, PeopleStore] = {}


def people_of_cached(folder: Path) -> PeopleStore:
    if folder not in _PEOPLE:
        _PEOPLE[folder] = people_of(folder)
    return _PEOPLE[folder]
