"""The alert book: findings in, changes out; the lifecycle people act on (new, acknowledged,
resolved), with who and when; the policy of kinds that need no person."""

from __future__ import annotations

from edge.alerts import Alert, AlertBook, Finding

T0 = 1_800_000_000.0


def stopped(active: bool, at: float) -> Finding:
    params = {"meters": "electricity+water", "hours_quiet": 4.0, "usual_uses": 3.6}
    return Finding(
        code="use_stopped",
        device="flat-1",
        point="use",
        active=active,
        value=9.0,
        at=at,
        params=params if active else {},
    )


def swell(active: bool, at: float) -> Finding:
    return Finding(
        code="voltage",
        device="m1",
        point="voltage_l1",
        active=active,
        value=262.0 if active else 230.0,
        at=at,
        params={"variant": "over", "value": 262.0, "limit": 253.0},
    )


def events(changes: list[Alert]) -> list[tuple[str, str, str]]:
    return [(c.event, c.condition, c.state) for c in changes]


def test_a_finding_is_a_change_only_when_the_book_says_so() -> None:
    book = AlertBook()
    assert book.apply(stopped(False, T0)) == []  # nothing to clear
    [raised] = book.apply(stopped(True, T0))
    assert events([raised]) == [("raised", "active", "new")]
    assert (raised.event_id, raised.needs_person) == (f"{raised.alert_id}.1", True)
    assert book.apply(stopped(True, T0 + 60)) == []  # de-duplicated
    assert [a.alert_id for a in book.active()] == [raised.alert_id]


def test_a_kind_that_needs_a_person_stays_open_after_it_clears_until_resolved() -> None:
    book = AlertBook()
    [raised] = book.apply(stopped(True, T0))
    [acked] = book.act(raised.alert_id, "acknowledge", by="王芳", via="mqtt", at=T0 + 300).changes
    assert (acked.acknowledged_by, acked.acknowledged_at, acked.state) == (
        "王芳",
        T0 + 300,
        "acknowledged",
    )
    # A second acknowledgement is recorded, but the first stays the one who has it.
    [again] = book.act(
        raised.alert_id, "acknowledge", by="Li Wei", via="platform", at=T0 + 400, note="on my way"
    ).changes
    assert (again.event, again.by, again.note) == ("acknowledged", "Li Wei", "on my way")
    assert (again.acknowledged_by, again.acknowledged_at) == ("王芳", T0 + 300)
    [cleared] = book.apply(stopped(False, T0 + 900))
    assert events([cleared]) == [("cleared", "cleared", "acknowledged")]
    assert book.open() == [cleared]  # still the open work: nobody resolved it
    refused = book.act(raised.alert_id, "resolve", by="王芳", via="local_api", at=T0 + 1000)
    assert refused.refused == "a resolve needs an outcome"
    [resolved] = book.act(
        raised.alert_id,
        "resolve",
        by="王芳",
        via="local_api",
        at=T0 + 1000,
        outcome="resident_ok",
        note="she was asleep",
    ).changes
    assert (resolved.outcome, resolved.resolved_by, resolved.open) == ("resident_ok", "王芳", False)
    assert [c.event_n for c in (raised, acked, again, cleared, resolved)] == [1, 2, 3, 4, 5]
    assert book.open() == []
    # Acting on it again changes nothing; an alert the book never had is refused.
    assert book.act(raised.alert_id, "acknowledge", by="x", via="mqtt", at=T0).refused
    assert book.act("no-such", "resolve", by="x", via="mqtt", at=T0, outcome="other").refused


def test_a_kind_that_needs_nobody_is_resolved_auto_when_it_clears() -> None:
    book = AlertBook()
    [raised] = book.apply(swell(True, T0))
    assert not raised.needs_person
    cleared, resolved = book.apply(swell(False, T0 + 5))
    assert events([cleared, resolved]) == [
        ("cleared", "cleared", "new"),
        ("resolved", "cleared", "resolved"),
    ]
    assert (resolved.outcome, resolved.via, resolved.by) == ("auto", "policy", None)
    assert book.open() == []
    assert book.act(raised.alert_id, "resolve", by="x", via="mqtt", at=T0, outcome="auto").refused


def test_a_cause_that_returns_reopens_the_open_alert_or_raises_a_new_one_once_resolved() -> None:
    book = AlertBook()
    [first] = book.apply(stopped(True, T0))
    book.apply(stopped(False, T0 + 60))
    [back] = book.apply(stopped(True, T0 + 120))  # not resolved yet: the same alert, again
    assert (back.alert_id, back.event, back.condition, back.cleared_at) == (
        first.alert_id,
        "raised",
        "active",
        None,
    )
    book.apply(stopped(False, T0 + 180))
    book.act(first.alert_id, "resolve", by="王芳", via="mqtt", at=T0 + 200, outcome="help_given")
    [new] = book.apply(stopped(True, T0 + 240))
    assert new.alert_id != first.alert_id
    assert new.event_n == 1


def test_resolving_an_active_alert_keeps_it_open_until_its_cause_ends() -> None:
    book = AlertBook()
    [raised] = book.apply(stopped(True, T0))
    [resolved] = book.act(
        raised.alert_id, "resolve", by="王芳", via="mqtt", at=T0 + 60, outcome="false_alarm"
    ).changes
    assert (resolved.condition, resolved.state, resolved.open) == ("active", "resolved", True)
    assert resolved.acknowledged_by == "王芳"  # resolving is accepting it too
    assert book.apply(stopped(True, T0 + 120)) == []
    [cleared] = book.apply(stopped(False, T0 + 180))
    assert not cleared.open


def test_an_escalation_only_of_an_alert_nobody_acknowledged_and_only_upwards() -> None:
    book = AlertBook()
    [raised] = book.apply(stopped(True, T0))
    up = book.escalate(raised.alert_id, level=1, audience="grid_worker", at=T0 + 600)
    assert up is not None
    assert (up.event, up.level, up.audience, up.via) == ("escalated", 1, "grid_worker", "policy")
    assert "escalated to the grid worker (level 1)" in up.message
    assert "升级通知网格员" in up.text("zh-Hans")
    assert book.escalate(raised.alert_id, level=1, audience="grid_worker", at=T0 + 900) is None
    book.act(raised.alert_id, "acknowledge", by="王芳", via="mqtt", at=T0 + 1000)
    assert book.escalate(raised.alert_id, level=2, audience="family", at=T0 + 1200) is None


def test_a_book_reloaded_from_its_open_alerts_clears_them_when_their_cause_ends() -> None:
    first = AlertBook()
    first.apply(stopped(True, T0))
    first.apply(swell(True, T0))
    restarted = AlertBook(first.open())
    assert restarted.apply(stopped(True, T0 + 60)) == []  # not raised twice
    assert [c.event for c in restarted.apply(swell(False, T0 + 60))] == ["cleared", "resolved"]
    assert [c.event for c in restarted.apply(stopped(False, T0 + 60))] == ["cleared"]
