"""Threshold rules evaluated on every reading, before it is stored.

The voltage rule follows EN 50160: the supply voltage should stay within the nominal voltage
+-10 %. An alert is raised on the first reading outside the band and cleared only once a reading
is back inside the band by the hysteresis margin, so a voltage hovering at the limit does not flap.
"""

from __future__ import annotations

from collections.abc import Iterable

from edge.alerts import Alert, AlertBook, alert_key
from edge.schemas import VoltageRuleSection
from firmware_bridge.readings import Reading

VOLTAGE_RULE = "voltage"


class VoltageRule:
    def __init__(self, config: VoltageRuleSection) -> None:
        band = config.nominal_v * config.tolerance_pct / 100
        margin = config.nominal_v * config.hysteresis_pct / 100
        self.low = config.nominal_v - band
        self.high = config.nominal_v + band
        self._clear_low = self.low + margin
        self._clear_high = self.high - margin
        self._points = frozenset(config.points)

    def evaluate(self, readings: Iterable[Reading], book: AlertBook) -> list[Alert]:
        """The alerts raised or cleared by ``readings``, in order; ``book`` is updated."""
        changes: list[Alert] = []
        for reading in readings:
            if reading.point not in self._points:
                continue
            change = self._check(reading, book)
            if change is not None:
                changes.append(change)
        return changes

    def _check(self, reading: Reading, book: AlertBook) -> Alert | None:
        value = reading.value
        if value < self.low or value > self.high:
            side = "under" if value < self.low else "over"
            limit = self.low if value < self.low else self.high
            return book.raise_(
                rule=VOLTAGE_RULE,
                device=reading.device,
                point=reading.point,
                severity="warning",
                message=f"{side}voltage on {reading.point}: {value:.1f} {reading.unit}"
                f" (limit {limit:.1f} V, EN 50160)",
                value=value,
                at=reading.wall_time,
            )
        key = alert_key(VOLTAGE_RULE, reading.device, reading.point)
        if book.is_active(key) and self._clear_low <= value <= self._clear_high:
            return book.clear(
                key,
                message=f"voltage on {reading.point} back to {value:.1f} {reading.unit}",
                value=value,
                at=reading.wall_time,
            )
        return None
