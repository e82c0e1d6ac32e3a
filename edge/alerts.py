"""Alerts and their lifecycle: raised, then cleared, never raised twice for the same cause.

An alert's *key* names its cause (rule, device, point); its *id* names one occurrence. While an
alert is active, further readings that break the rule change nothing (de-duplication); it clears
only when the rule's clear condition holds (hysteresis, decided by the rule).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

AlertState = Literal["raised", "cleared"]
Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True, slots=True)
class Alert:
    """One occurrence of an alert, in its latest state."""

    alert_id: str
    key: str
    rule: str
    device: str
    point: str
    severity: Severity
    message: str
    value: float
    state: AlertState
    raised_at: float
    cleared_at: float | None = None


def alert_key(rule: str, device: str, point: str) -> str:
    return f"{rule}.{device}.{point}"


def new_alert_id(key: str, raised_at: float) -> str:
    """An occurrence id safe in MQTT topics: the key and the raise time in milliseconds."""
    return f"{key}.{int(raised_at * 1000)}"


class AlertBook:
    """The active alerts, by key. Decides whether a rule's verdict is a change of state."""

    def __init__(self, active: list[Alert] | None = None) -> None:
        self._active = {alert.key: alert for alert in active or []}

    def active(self) -> list[Alert]:
        return list(self._active.values())

    def is_active(self, key: str) -> bool:
        return key in self._active

    def raise_(
        self,
        *,
        rule: str,
        device: str,
        point: str,
        severity: Severity,
        message: str,
        value: float,
        at: float,
    ) -> Alert | None:
        """Raise an alert for this cause, or return None if one is already active."""
        key = alert_key(rule, device, point)
        if key in self._active:
            return None
        alert = Alert(
            alert_id=new_alert_id(key, at),
            key=key,
            rule=rule,
            device=device,
            point=point,
            severity=severity,
            message=message,
            value=value,
            state="raised",
            raised_at=at,
        )
        self._active[key] = alert
        return alert

    def clear(self, key: str, *, message: str, value: float, at: float) -> Alert | None:
        """Clear the active alert of this cause, or return None if there is none."""
        alert = self._active.pop(key, None)
        if alert is None:
            return None
        return replace(alert, state="cleared", message=message, value=value, cleared_at=at)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A service's finding about one alert cause (a model's, say): active or not, and why.

    ``apply`` turns it into an alert change through the book: an active verdict raises the alert
    unless it is already raised; an inactive one clears it if it is raised. The service decides
    the hysteresis (when a cause stops being active).
    """

    rule: str
    device: str
    point: str
    active: bool
    severity: Severity
    message: str
    value: float
    at: float

    def apply(self, book: AlertBook) -> Alert | None:
        if self.active:
            return book.raise_(
                rule=self.rule,
                device=self.device,
                point=self.point,
                severity=self.severity,
                message=self.message,
                value=self.value,
                at=self.at,
            )
        return book.clear(
            alert_key(self.rule, self.device, self.point),
            message=self.message,
            value=self.value,
            at=self.at,
        )
