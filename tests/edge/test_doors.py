"""Door sensor findings with a fake monotonic clock, applied to a real alert book: raised once,
cleared with hysteresis."""

from __future__ import annotations

from edge.alerts import Alert, AlertBook, Finding
from edge.doors import DoorAlerts
from edge.schemas import BleSensorSection


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sensor(**overrides: object) -> BleSensorSection:
    values: dict[str, object] = {
        "name": "entrance",
        "mac": "aa:bb:cc:dd:ee:01",
        "held_open_s": 600,
        "silent_s": 3600,
    }
    values.update(overrides)
    return BleSensorSection.model_validate(values)


def changes(findings: list[Finding], book: AlertBook) -> list[Alert]:
    """The raises and clears the findings make (a warning's clearing also resolves it)."""
    made = [change for finding in findings for change in book.apply(finding)]
    return [c for c in made if c.event in ("raised", "cleared")]


def apply(findings: list[Finding], book: AlertBook) -> list[tuple[str, str]]:
    return [(c.rule, c.event) for c in changes(findings, book)]


def test_a_door_held_open_raises_once_and_clears_when_it_closes() -> None:
    clock, book = Clock(), AlertBook()
    alerts = DoorAlerts([sensor()], monotonic=clock, wall_clock=lambda: 1.7e9)
    assert apply(alerts.frame("entrance", door_open=True, battery=90), book) == []
    clock.now += 599
    assert apply(alerts.tick(), book) == []
    clock.now += 2
    [raised] = changes(alerts.tick(), book)
    assert (raised.rule, raised.event) == ("door_held_open", "raised")
    assert raised.message == "entrance open for 10 min (limit 10 min)"
    assert raised.text("zh-Hans") == "entrance 已打开 10 分钟（上限 10 分钟）"
    clock.now += 600
    assert apply(alerts.tick(), book) == []  # raised once, not again while it stays open
    assert apply(alerts.frame("entrance", door_open=True, battery=90), book) == []
    [closed] = changes(alerts.frame("entrance", door_open=False, battery=90), book)
    assert (closed.event, closed.alert_id) == ("cleared", raised.alert_id)
    assert closed.message == "entrance closed after 20 min open"
    # Opened again: the clock starts again from the new opening.
    alerts.frame("entrance", door_open=True, battery=90)
    clock.now += 300
    assert apply(alerts.tick(), book) == []


def test_a_silent_sensor_raises_and_needs_two_frames_to_clear() -> None:
    """``online`` (the status) follows the alert: unknown, offline, then online again."""
    clock, book = Clock(), AlertBook()
    alerts = DoorAlerts([sensor()], monotonic=clock, wall_clock=lambda: 1.7e9)
    clock.now += 3599
    assert apply(alerts.tick(), book) == []
    assert alerts.online("entrance") is None  # not heard yet, not yet silent for long
    clock.now += 1
    [raised] = changes(alerts.tick(), book)
    assert (raised.rule, raised.event) == ("sensor_silent", "raised")
    assert "never heard for 60 min" in raised.message
    assert alerts.online("entrance") is False
    assert apply(alerts.frame("entrance", door_open=None, battery=None), book) == []
    assert alerts.online("entrance") is False  # one stray frame does not bring it back
    assert apply(alerts.frame("entrance", door_open=None, battery=None), book) == [
        ("sensor_silent", "cleared")
    ]
    assert alerts.online("entrance") is True
    clock.now += 3600
    assert apply(alerts.tick(), book) == [("sensor_silent", "raised")]
    assert alerts.online("entrance") is False


def test_low_battery_clears_only_ten_points_above_its_threshold() -> None:
    clock, book = Clock(), AlertBook()
    alerts = DoorAlerts([sensor(low_battery_pct=20)], monotonic=clock)
    seen = []
    for battery in (25, 21, 20, 22, 19, 24, 29, 30, 21):
        seen += apply(alerts.frame("entrance", door_open=None, battery=battery), book)
    assert seen == [("low_battery", "raised"), ("low_battery", "cleared")]


def test_alerts_active_before_a_restart_are_cleared_not_raised_twice() -> None:
    clock, book = Clock(), AlertBook()
    first = DoorAlerts([sensor()], monotonic=clock)
    apply(first.frame("entrance", door_open=True, battery=10), book)
    clock.now += 700
    apply(first.tick(), book)
    assert {a.rule for a in book.active()} == {"door_held_open", "low_battery"}
    # A new gateway process: the book comes back from the store, the sensor knows nothing.
    restarted = AlertBook(book.open())
    second = DoorAlerts([sensor()], monotonic=clock)
    assert apply(second.frame("entrance", door_open=True, battery=10), restarted) == []
    assert apply(second.frame("entrance", door_open=False, battery=50), restarted) == [
        ("door_held_open", "cleared"),
        ("low_battery", "cleared"),
    ]


def test_the_adapter_alert_follows_the_scanner_health() -> None:
    clock, book = Clock(), AlertBook()
    alerts = DoorAlerts([], monotonic=clock)
    assert apply(alerts.tick(adapter_healthy=True), book) == []
    [down] = changes(
        alerts.tick(adapter_healthy=False, adapter_reason="adapter 'hci0' not found"), book
    )
    assert (down.rule, down.event, down.severity) == ("ble_adapter", "raised", "critical")
    assert "hci0" in down.message
    assert apply(alerts.tick(adapter_healthy=False), book) == []
    assert apply(alerts.tick(adapter_healthy=True), book) == [("ble_adapter", "cleared")]
