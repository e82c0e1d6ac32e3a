"""Alerts and their lifecycle: the one place that decides what a finding or a person changes.

An alert has a *condition*, set by its rule (``active``, then ``cleared``), and a *human state*
(``new``, ``acknowledged``, ``resolved``). Every source emits ``Finding`` values (active or not,
on every evaluation); :class:`AlertBook` alone decides whether one is a change. People act
through :meth:`AlertBook.act`. Each change is an ``Alert``: a snapshot of the alert after one
event of its append-only history (``event``, ``event_id``, who, when, note).

An alert's *key* names its cause (code, device, point); its *id* names one occurrence. A cause
that comes back while its alert is still open (not both cleared and resolved) activates that
alert again; once resolved, it raises a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from edge.alerts.catalogue import CATALOGUE, Params, render
from edge.i18n import Language

Severity = Literal["info", "warning", "critical"]
Condition = Literal["active", "cleared"]
HumanState = Literal["new", "acknowledged", "resolved"]
Outcome = Literal["resident_ok", "help_given", "false_alarm", "device_fault", "other", "auto"]
OUTCOMES: tuple[Outcome, ...] = (
    "resident_ok",
    "help_given",
    "false_alarm",
    "device_fault",
    "other",
    "auto",
)
EventKind = Literal["raised", "cleared", "acknowledged", "resolved", "escalated"]
Via = Literal["rule", "policy", "local_api", "mqtt", "platform"]
Action = Literal["acknowledge", "resolve"]


def alert_key(rule: str, device: str, point: str) -> str:
    return f"{rule}.{device}.{point}"


def new_alert_id(key: str, raised_at: float) -> str:
    """An occurrence id safe in MQTT topics: the key and the raise time in milliseconds."""
    return f"{key}.{int(raised_at * 1000)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """What a source found about one alert cause: ``active`` or not, at ``at``, with the
    parameters of its code (``edge.alerts.catalogue``). Plain data, built by keyword."""

    code: str
    device: str
    point: str
    active: bool
    value: float
    at: float
    params: Params = field(default_factory=dict)
    severity: Severity | None = None
    """None: the catalogue's default for the code."""

    @property
    def key(self) -> str:
        return alert_key(self.code, self.device, self.point)


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One occurrence of an alert, as it is after its latest event."""

    alert_id: str
    key: str
    rule: str
    """The alert's code in the catalogue."""
    device: str
    point: str
    severity: Severity
    value: float
    condition: Condition
    state: HumanState
    raised_at: float
    params: Params = field(default_factory=dict)
    cleared_at: float | None = None
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    outcome: Outcome | None = None
    level: int = 0
    """Escalation level: 0 until the first escalation."""
    needs_person: bool = False
    # The event this snapshot is the result of:
    event: EventKind = "raised"
    event_n: int = 1
    """Which event of this alert it is (1 for the first): ``event_id`` is ``<alert_id>.<n>``."""
    at: float = 0.0
    via: Via = "rule"
    by: str | None = None
    note: str | None = None
    audience: str | None = None
    command_id: str | None = None
    raised_params: Params = field(default_factory=dict, compare=False)
    """The parameters it was raised with (``params`` may be those it cleared with)."""

    @property
    def event_id(self) -> str:
        return f"{self.alert_id}.{self.event_n}"

    @property
    def open(self) -> bool:
        """True until the alert is both cleared and resolved."""
        return not (self.condition == "cleared" and self.state == "resolved")

    def text(
        self, language: Language = "en", *, event: str | None = None, device: str | None = None
    ) -> str:
        """This event in words (``edge.alerts.catalogue``); or, with ``event``, what that event
        said (the ``raised`` text of an alert acknowledged since). ``device``: what people read
        for the device (a home's label), in place of its id."""
        shown = self.event if event is None else event
        params = self.params if shown in ("raised", "cleared") else self.raised_params
        if shown == "raised" and self.event != "raised":
            params = self.raised_params or self.params
        return render(
            self.rule,
            shown,
            params,
            language,
            device=self.device if device is None else device,
            point=self.point,
            by=self.by,
            outcome=self.outcome,
            audience=self.audience,
            level=self.level,
            test=self.test,
        )

    @property
    def test(self) -> bool:
        """Raised in a maintenance window (``edge.maintenance``): nobody is paged for it."""
        return self.raised_params.get("test") is True

    @property
    def message(self) -> str:
        """This event in English."""
        return self.text("en")


@dataclass(frozen=True, slots=True)
class ActResult:
    """What a person's action did: the events it made (none when the alert was already in that
    state: recorded and reported as applied), or why it was refused."""

    changes: tuple[Alert, ...] = ()
    refused: str | None = None


def _latched(code: str) -> bool:
    entry = CATALOGUE.get(code)
    return entry is not None and entry.latched


class AlertBook:
    """The open alerts (not both cleared and resolved), by id and by cause."""

    def __init__(
        self,
        open_alerts: list[Alert] | None = None,
        *,
        testing: Callable[[], bool] | None = None,
    ) -> None:
        """``testing`` says whether a maintenance window is in force: alerts raised then carry
        ``test: true`` in their parameters."""
        self._testing = testing
        self._by_id: dict[str, Alert] = {}
        self._by_key: dict[str, Alert] = {}
        for alert in open_alerts or []:
            self._keep(alert)

    def active(self) -> list[Alert]:
        """Alerts whose condition is active."""
        return [a for a in self._by_key.values() if a.condition == "active"]

    def open(self) -> list[Alert]:
        """Alerts not both cleared and resolved: the open work."""
        return list(self._by_id.values())

    def get(self, alert_id: str) -> Alert | None:
        return self._by_id.get(alert_id)

    def is_active(self, key: str) -> bool:
        alert = self._by_key.get(key)
        return alert is not None and alert.condition == "active"

    def apply(self, finding: Finding) -> list[Alert]:
        """The changes ``finding`` makes: a raise (or the open alert of its cause activated
        again), a clear (and, when no person is needed, its resolution ``auto``), or none."""
        current = self._by_key.get(finding.key)
        latched = _latched(finding.code)
        if finding.active:
            if self._testing is not None and self._testing():
                finding = replace(finding, params={**finding.params, "test": True})
            if current is not None and current.condition == "active":
                if latched:  # a leak, smoke or SOS again while the alert is open: one more event
                    return [
                        self._next(
                            current,
                            "raised",
                            finding.at,
                            value=finding.value,
                            params=finding.params,
                            raised_params=finding.params,
                        )
                    ]
                return []
            if current is not None:  # cleared, not yet resolved: the same alert again
                alert = self._next(
                    current,
                    "raised",
                    finding.at,
                    condition="active",
                    cleared_at=None,
                    value=finding.value,
                    params=finding.params,
                    raised_params=finding.params,
                )
                return [alert]
            return [self._raise(finding)]
        if current is None or current.condition == "cleared" or latched:
            return []  # a latched alert is cleared by the person who resolves it
        cleared = self._next(
            current,
            "cleared",
            finding.at,
            condition="cleared",
            cleared_at=finding.at,
            value=finding.value,
            params=finding.params,
        )
        changes = [cleared]
        if not cleared.needs_person and cleared.state != "resolved":
            changes.append(
                self._next(
                    cleared,
                    "resolved",
                    finding.at,
                    via="policy",
                    state="resolved",
                    resolved_at=finding.at,
                    outcome="auto",
                )
            )
        return changes

    def act(
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
    ) -> ActResult:
        """A person acknowledges or resolves an open alert. A second acknowledgement is recorded
        but does not change who acknowledged first; acting on an alert already resolved (or
        resolved and closed since) makes nothing and is not refused."""
        alert = self._by_id.get(alert_id)
        if alert is None:
            return ActResult(refused=f"no open alert {alert_id!r}")
        if action == "resolve" and outcome is None:
            return ActResult(refused="a resolve needs an outcome")
        if action == "resolve" and outcome == "auto":
            return ActResult(refused="outcome auto is the policy's, not a person's")
        person = {"by": by, "via": via, "note": note, "command_id": command_id}
        if action == "acknowledge":
            if alert.state == "resolved":
                return ActResult()
            first = alert.acknowledged_by is None
            change = self._next(
                alert,
                "acknowledged",
                at,
                **person,
                state="acknowledged",
                acknowledged_by=alert.acknowledged_by if not first else by,
                acknowledged_at=alert.acknowledged_at if not first else at,
            )
            return ActResult((change,))
        if alert.state == "resolved":
            return ActResult()
        ends: dict[str, object] = {}
        if _latched(alert.rule) and alert.condition == "active":
            ends = {"condition": "cleared", "cleared_at": at}  # resolving it ends a latched alert
        change = self._next(
            alert,
            "resolved",
            at,
            **person,
            **ends,
            state="resolved",
            resolved_by=by,
            resolved_at=at,
            outcome=outcome,
            acknowledged_by=alert.acknowledged_by or by,
            acknowledged_at=alert.acknowledged_at if alert.acknowledged_at is not None else at,
        )
        return ActResult((change,))

    def escalate(self, alert_id: str, *, level: int, audience: str, at: float) -> Alert | None:
        """Escalate an alert nobody acknowledged to ``level`` (for ``audience``)."""
        alert = self._by_id.get(alert_id)
        if alert is None or alert.state != "new" or level <= alert.level:
            return None
        return self._next(alert, "escalated", at, via="policy", level=level, audience=audience)

    # --- internals -----------------------------------------------------------------------------

    def _raise(self, finding: Finding) -> Alert:
        entry = CATALOGUE[finding.code]
        severity: Severity = finding.severity or entry.severity  # type: ignore[assignment]
        alert = Alert(
            alert_id=new_alert_id(finding.key, finding.at),
            key=finding.key,
            rule=finding.code,
            device=finding.device,
            point=finding.point,
            severity=severity,
            value=finding.value,
            condition="active",
            state="new",
            raised_at=finding.at,
            params=finding.params,
            raised_params=finding.params,
            needs_person=(
                entry.needs_person if entry.needs_person is not None else severity == "critical"
            ),
            event="raised",
            event_n=1,
            at=finding.at,
        )
        self._keep(alert)
        return alert

    def _next(self, alert: Alert, event: EventKind, at: float, **changes: object) -> Alert:
        """The alert after one more event (who and what: ``changes``), kept or let go."""
        defaults: dict[str, object] = {
            "via": "rule",
            "by": None,
            "note": None,
            "audience": None,
            "command_id": None,
        }
        after = replace(
            alert,
            event=event,
            event_n=alert.event_n + 1,
            at=at,
            **(defaults | changes),  # type: ignore[arg-type]
        )
        self._keep(after)
        return after

    def _keep(self, alert: Alert) -> None:
        if alert.open:
            self._by_id[alert.alert_id] = alert
            self._by_key[alert.key] = alert
            return
        self._by_id.pop(alert.alert_id, None)
        if self._by_key.get(alert.key, alert).alert_id == alert.alert_id:
            self._by_key.pop(alert.key, None)
