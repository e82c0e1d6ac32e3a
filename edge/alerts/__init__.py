"""Alerts: findings in, one book that decides, a lifecycle people act on, texts from a catalogue.

- :mod:`edge.alerts.book`: ``Finding``, ``Alert`` (a snapshot after one event), ``AlertBook``;
- :mod:`edge.alerts.catalogue`: every alert code with its severity, policy and texts.
"""

from edge.alerts.book import (
    OUTCOMES,
    Action,
    ActResult,
    Alert,
    AlertBook,
    Condition,
    EventKind,
    Finding,
    HumanState,
    Outcome,
    Severity,
    Via,
    alert_key,
    new_alert_id,
)
from edge.alerts.catalogue import CATALOGUE, AlertKind, render

__all__ = [
    "CATALOGUE",
    "OUTCOMES",
    "ActResult",
    "Action",
    "Alert",
    "AlertBook",
    "AlertKind",
    "Condition",
    "EventKind",
    "Finding",
    "HumanState",
    "Outcome",
    "Severity",
    "Via",
    "alert_key",
    "new_alert_id",
    "render",
]
