"""The EN 50160 voltage rule: raise outside 230 V +-10 %, clear with hysteresis, never twice."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from edge.alerts import Alert, AlertBook
from edge.rules import VoltageRule
from edge.schemas import VoltageRuleSection
from firmware_bridge.readings import Reading


def volts(value: float, at: float = 0.0, point: str = "voltage_l1", device: str = "m1") -> Reading:
    return Reading(device, point, value, "V", at, 0)


def applied(rule: VoltageRule, readings: Sequence[Reading], book: AlertBook) -> list[Alert]:
    """The raises and clears the rule's findings make in ``book`` (as the pipeline applies
    them); a warning's clearing also resolves it (``auto``), left out here."""
    changes = [change for f in rule.evaluate(readings) for change in book.apply(f)]
    return [c for c in changes if c.event in ("raised", "cleared")]


@pytest.fixture
def rule() -> VoltageRule:
    return VoltageRule(VoltageRuleSection())


def test_band_is_230_plus_minus_10_percent(rule: VoltageRule) -> None:
    assert (rule.low, rule.high) == pytest.approx((207.0, 253.0))


@pytest.mark.parametrize(
    ("value", "raised"),
    [(230.0, False), (207.0, False), (253.0, False), (206.9, True), (253.1, True), (0.0, True)],
)
def test_raises_only_outside_the_band(rule: VoltageRule, value: float, raised: bool) -> None:
    changes = applied(rule, [volts(value)], AlertBook())
    assert [c.event for c in changes] == (["raised"] if raised else [])


def test_raise_once_then_clear_only_inside_the_hysteresis_margin(rule: VoltageRule) -> None:
    book = AlertBook()
    series = [262.0, 263.0, 252.0, 251.0, 250.0, 262.0]
    changes = applied(rule, [volts(v, at=i) for i, v in enumerate(series)], book)

    assert [(c.event, c.value) for c in changes] == [
        ("raised", 262.0),
        ("cleared", 250.0),  # 252 and 251 are inside the band but not 1 % inside it
        ("raised", 262.0),
    ]
    assert changes[0].alert_id == changes[1].alert_id
    assert changes[2].alert_id != changes[0].alert_id
    assert "overvoltage on voltage_l1: 262.0 V" in changes[0].message
    assert changes[1].cleared_at == 4
    assert changes[1].message == "voltage on voltage_l1 back to 250.0 V"
    assert "过电压" in changes[0].text("zh-Hans")


def test_each_point_and_device_is_its_own_alert(rule: VoltageRule) -> None:
    book = AlertBook()
    changes = applied(
        rule,
        [
            volts(200.0, point="voltage_l1"),
            volts(200.0, point="voltage_l2"),
            volts(200.0, device="m2"),
        ],
        book,
    )
    assert len({c.key for c in changes}) == 3
    assert all("undervoltage" in c.message for c in changes)


def test_other_points_are_ignored(rule: VoltageRule) -> None:
    assert rule.evaluate([Reading("m1", "current_l1", 500.0, "A", 0, 0)]) == []


def test_active_alerts_reloaded_from_the_store_are_not_raised_again(rule: VoltageRule) -> None:
    first = AlertBook()
    [raised] = applied(rule, [volts(262.0)], first)
    restarted = AlertBook(first.open())
    assert applied(rule, [volts(262.0)], restarted) == []
    [cleared] = applied(rule, [volts(230.0)], restarted)
    assert cleared.alert_id == raised.alert_id
