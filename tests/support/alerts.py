"""Alerts for tests, made the way the gateway makes them: findings applied to an alert book."""

from __future__ import annotations

from edge.alerts import Alert, AlertBook, Finding, Severity


def raise_alert(
    book: AlertBook,
    *,
    rule: str = "voltage",
    device: str = "m1",
    point: str = "voltage_l1",
    value: float = 262.0,
    at: float = 1_700_000_000.0,
    severity: Severity | None = None,
    params: dict[str, str | int | float | bool] | None = None,
) -> Alert:
    """Raise an alert of ``rule`` for this cause; fails if one is already active."""
    if params is None:
        params = {"variant": "over", "value": value, "limit": 253.0} if rule == "voltage" else {}
    changes = book.apply(
        Finding(
            code=rule,
            device=device,
            point=point,
            active=True,
            value=value,
            at=at,
            params=params,
            severity=severity,
        )
    )
    assert [c.event for c in changes] == ["raised"], changes
    return changes[0]


def clear_alert(book: AlertBook, alert: Alert, *, value: float = 230.0, at: float) -> list[Alert]:
    """Clear ``alert``'s cause: the changes (cleared, and resolved ``auto`` when no person is
    needed), all to be written."""
    changes = book.apply(
        Finding(
            code=alert.rule,
            device=alert.device,
            point=alert.point,
            active=False,
            value=value,
            at=at,
            params={"value": value},
        )
    )
    assert changes, "nothing to clear"
    assert changes[0].event == "cleared", changes
    return changes
