"""Rules evaluated on every batch of readings, before it is stored: each returns findings, and the
alert book decides what changed (``edge.alerts``).

The voltage rule follows EN 50160: the supply voltage should stay within the nominal voltage
+-10 %. A reading outside the band is an active finding; one back inside the band by the
hysteresis margin an inactive one; one in between says nothing, so a voltage hovering at the
limit does not flap.

The gate-fault rule finds ``gate_fault`` active while a gate controller reports the state
``fault`` (readings ``gate_state`` and ``gate_fault_code`` of firmware_bridge.modbus.gate), and
inactive in any other state.

A ``[[rules.threshold]]`` of the configuration (``ThresholdRule``) finds ``threshold`` active
once a point has stayed above its upper limit or below its lower one for ``for_s`` seconds, and
inactive once a reading is back inside by the hysteresis; a reading back inside the limit but not
yet by the hysteresis ends a wait for ``for_s`` and changes nothing else. 220 V +7 % / -10 %
(GB/T 12325, Chinese supplies) is ``nominal = 220``, ``above_pct = 7``, ``below_pct = 10``.

A ``[[rules.window]]`` (``WindowRule``) finds ``window`` active while a condition holds within
local hours (water flowing at night: ``rate = true`` judges a counter's rate per hour), and a
``[[rules.every_interval]]`` (``EveryIntervalRule``) finds ``every_interval`` active once a
counter has moved in each of N consecutive intervals (water used in every half hour of a whole
day: the suspected-leak rule cities deploy).

A bus's device state changes become ``device_silent`` findings (:func:`device_silent`, point
``link``): active when the device goes offline, inactive when it answers again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

from edge.alerts import Finding
from edge.schemas import (
    EveryIntervalRuleSection,
    ThresholdRuleSection,
    VoltageRuleSection,
    WindowRuleSection,
)
from firmware_bridge.modbus.bus import DeviceStateChange
from firmware_bridge.modbus.gate import FAULT_POINT, FAULTS, STATE_POINT, GateState
from firmware_bridge.readings import Reading

VOLTAGE_RULE = "voltage"
THRESHOLD_RULE = "threshold"
WINDOW_RULE = "window"
EVERY_INTERVAL_RULE = "every_interval"
RATE_SPAN_S = 3600.0
"""The longest time between two readings of a counter that a window rule takes a rate over."""
GATE_FAULT_RULE = "gate_fault"
DEVICE_SILENT_RULE = "device_silent"
LINK_POINT = "link"


def device_silent(change: DeviceStateChange, zone: str = "UTC") -> Finding:
    """The ``device_silent`` finding of a device state change. Its value is the number of failed
    polls in a row (0 once it answers). ``zone``: the site's time zone, the one its text tells
    the time of the last answer in."""
    params: dict[str, str | int | float | bool] = {
        "failures": change.consecutive_failures,
        "reason": change.reason,
    }
    if change.last_ok_wall_time is None:
        params["variant"] = "never"
    else:
        params["since"] = change.last_ok_wall_time
        params["zone"] = zone
    return Finding(
        code=DEVICE_SILENT_RULE,
        device=change.device,
        point=LINK_POINT,
        active=not change.online,
        value=0.0 if change.online else float(change.consecutive_failures),
        at=change.wall_time,
        params=params,
    )


class Rule(Protocol):
    def evaluate(self, readings: Iterable[Reading]) -> list[Finding]:
        """The findings of ``readings``, in order."""
        ...


class GateFaultRule:
    """``gate_fault`` while a gate controller is in fault (see the module doc)."""

    def __init__(self) -> None:
        self._fault_code: dict[str, int] = {}

    def evaluate(self, readings: Iterable[Reading]) -> list[Finding]:
        findings: list[Finding] = []
        for reading in readings:
            if reading.point == FAULT_POINT:
                self._fault_code[reading.device] = int(reading.value)
            elif reading.point == STATE_POINT:
                faulty = reading.value == GateState.FAULT
                code = self._fault_code.get(reading.device, 0) if faulty else 0
                findings.append(
                    Finding(
                        code=GATE_FAULT_RULE,
                        device=reading.device,
                        point=STATE_POINT,
                        active=faulty,
                        value=float(code),
                        at=reading.wall_time,
                        params={"fault": FAULTS.get(code, "other"), "fault_code": code},
                    )
                )
        return findings


class VoltageRule:
    def __init__(self, config: VoltageRuleSection) -> None:
        band = config.nominal_v * config.tolerance_pct / 100
        margin = config.nominal_v * config.hysteresis_pct / 100
        self.low = config.nominal_v - band
        self.high = config.nominal_v + band
        self._clear_low = self.low + margin
        self._clear_high = self.high - margin
        self._points = frozenset(config.points)

    def evaluate(self, readings: Iterable[Reading]) -> list[Finding]:
        """Active outside the band, inactive inside it by the margin, nothing in between."""
        findings: list[Finding] = []
        for reading in readings:
            if reading.point not in self._points:
                continue
            value = reading.value
            params: dict[str, str | int | float | bool] = {"value": value}
            if value < self.low or value > self.high:
                params |= {
                    "variant": "under" if value < self.low else "over",
                    "limit": self.low if value < self.low else self.high,
                }
                active = True
            elif self._clear_low <= value <= self._clear_high:
                active = False
            else:
                continue
            findings.append(
                Finding(
                    code=VOLTAGE_RULE,
                    device=reading.device,
                    point=reading.point,
                    active=active,
                    value=value,
                    at=reading.wall_time,
                    params=params,
                )
            )
        return findings


S = TypeVar("S", ThresholdRuleSection, WindowRuleSection, EveryIntervalRuleSection)


class _OnPoints(Generic[S]):
    """Rules of one kind from the configuration, each on a point (of one device, or of every
    device that has it), judged one reading at a time by ``_judge``. The configuration allows
    one rule of a kind per point and device, so a reading meets at most one."""

    def __init__(self, rules: Iterable[S]) -> None:
        self._rules: dict[str, list[S]] = {}
        for rule in rules:
            self._rules.setdefault(rule.point, []).append(rule)

    def evaluate(self, readings: Iterable[Reading]) -> list[Finding]:
        findings: list[Finding] = []
        for reading in readings:
            for rule in self._rules.get(reading.point, ()):
                if rule.device is None or rule.device == reading.device:
                    finding = self._judge(rule, reading)
                    if finding is not None:
                        findings.append(finding)
        return findings

    def _judge(self, rule: S, reading: Reading) -> Finding | None:
        raise NotImplementedError

    @staticmethod
    def _found(
        code: str,
        rule: S,
        reading: Reading,
        *,
        active: bool,
        value: float,
        params: dict[str, str | int | float | bool],
    ) -> Finding:
        """The finding of ``rule`` at ``reading``: its name, label and severity with it."""
        return Finding(
            code=code,
            device=reading.device,
            point=reading.point,
            active=active,
            value=value,
            at=reading.wall_time,
            params={"rule": rule.name, "label": rule.label or rule.name} | params,
            severity=rule.severity,
        )


class ThresholdRule(_OnPoints[ThresholdRuleSection]):
    """The ``[[rules.threshold]]`` of the configuration (see the module doc)."""

    def __init__(self, rules: Iterable[ThresholdRuleSection]) -> None:
        super().__init__(rules)
        self._beyond_since: dict[tuple[str, str, str], float] = {}
        """(rule, device, point) -> when the point went beyond the limit, while it waits."""

    def _judge(self, rule: ThresholdRuleSection, reading: Reading) -> Finding | None:
        value, high, low = reading.value, rule.high, rule.low
        key = (rule.name, reading.device, reading.point)
        params: dict[str, str | int | float | bool] = {"value": value, "unit": reading.unit}
        if (high is not None and value > high) or (low is not None and value < low):
            since = self._beyond_since.setdefault(key, reading.wall_time)
            if reading.wall_time - since < rule.for_s:
                return None
            over = high is not None and value > high
            limit = high if over else low
            assert limit is not None
            params |= {"variant": "above" if over else "below", "limit": limit}
            params |= {"for_s": rule.for_s} if rule.for_s else {}
            active = True
        else:
            self._beyond_since.pop(key, None)
            inside_high = high is None or value <= high - rule.hysteresis
            inside_low = low is None or value >= low + rule.hysteresis
            if not (inside_high and inside_low):
                return None
            active = False
        return self._found(THRESHOLD_RULE, rule, reading, active=active, value=value, params=params)


class WindowRule(_OnPoints[WindowRuleSection]):
    """The ``[[rules.window]]`` of the configuration: a condition on a point (or, with ``rate``,
    on a counter's rate per hour) within local hours. Active once it has held ``for_s`` within
    the window; inactive at a reading inside the window that does not meet it, or at the first
    reading after the window."""

    def __init__(self, rules: Iterable[WindowRuleSection], timezone: ZoneInfo) -> None:
        super().__init__(rules)
        self._zone = timezone
        self._since: dict[tuple[str, str, str], float] = {}
        self._last: dict[tuple[str, str], tuple[float, float]] = {}
        """(device, point) -> the previous reading's value and time, for rates."""

    def _rate(self, reading: Reading) -> float | None:
        """Units per hour since the previous reading of the point; None without one, after a
        reset of the counter, within the same second, or over more than ``RATE_SPAN_S``
        (a rate over a long silence says nothing of the hours it is judged in)."""
        key = (reading.device, reading.point)
        before = self._last.get(key)
        self._last[key] = (reading.value, reading.wall_time)
        if before is None or reading.value < before[0]:
            return None
        if not 1 <= reading.wall_time - before[1] <= RATE_SPAN_S:
            return None
        return (reading.value - before[0]) * 3600 / (reading.wall_time - before[1])

    def _judge(self, rule: WindowRuleSection, reading: Reading) -> Finding | None:
        value = self._rate(reading) if rule.rate else reading.value
        within = self._within(rule, reading.wall_time)
        if value is None:  # no rate: nothing to judge, but a window that ended ends the alert
            if within:
                return None
            value = 0.0
        key = (rule.name, reading.device, reading.point)
        unit = f"{reading.unit}/h" if rule.rate else reading.unit
        met = (rule.above is not None and value > rule.above) or (
            rule.below is not None and value < rule.below
        )
        if met and within:
            since = self._since.setdefault(key, reading.wall_time)
            if reading.wall_time - since < rule.for_s:
                return None
            active = True
        else:
            self._since.pop(key, None)
            active = False
        params: dict[str, str | int | float | bool] = {
            "value": value,
            "unit": unit,
            "start": rule.start,
            "end": rule.end,
        }
        return self._found(WINDOW_RULE, rule, reading, active=active, value=value, params=params)

    def _within(self, rule: WindowRuleSection, wall_time: float) -> bool:
        local = datetime.fromtimestamp(wall_time, self._zone).strftime("%H:%M")
        if rule.start < rule.end:
            return rule.start <= local < rule.end
        return local >= rule.start or local < rule.end  # past midnight


class EveryIntervalRule(_OnPoints[EveryIntervalRuleSection]):
    """The ``[[rules.every_interval]]`` of the configuration: a counter that rose in each of
    ``intervals`` intervals in a row (intervals are multiples of ``interval_s`` on the clock, so
    half hours are the clock's half hours). Judged as each interval ends, at the first reading
    after it: active at the ``intervals``-th interval in a row that moved, inactive at one that
    did not. An interval without a reading breaks the run: nothing is known of it."""

    def __init__(self, rules: Iterable[EveryIntervalRuleSection]) -> None:
        super().__init__(rules)
        self._runs: dict[tuple[str, str], _Run] = {}

    def _judge(self, rule: EveryIntervalRuleSection, reading: Reading) -> Finding | None:
        index = int(reading.wall_time // rule.interval_s)
        run = self._runs.get((rule.name, reading.device))
        if run is None or index < run.index:  # the first reading, or the clock set back
            self._runs[(rule.name, reading.device)] = _Run(index, reading.value, reading.value)
            return None
        if index == run.index:
            run.last = reading.value
            return None
        moved = run.last - run.first > rule.min_delta
        streak = run.streak + 1 if moved and index == run.index + 1 else int(moved)
        if index > run.index + 1:  # intervals with no reading: the run is broken
            streak = 0
        total = run.total + (run.last - run.first) if streak else 0.0
        self._runs[(rule.name, reading.device)] = _Run(
            index, run.last, reading.value, streak=streak, total=total
        )
        if streak >= rule.intervals:
            active = True
        elif not moved or streak == 0:
            active = False
        else:
            return None
        params: dict[str, str | int | float | bool] = {
            "intervals": rule.intervals,
            "interval_s": rule.interval_s,
            "used": round(total, 6),
            "unit": reading.unit,
        }
        return self._found(
            EVERY_INTERVAL_RULE, rule, reading, active=active, value=float(streak), params=params
        )


@dataclass
class _Run:
    index: int
    """The interval (``wall_time // interval_s``) being watched."""
    first: float
    """The counter when the interval began: the last reading before it, or its first."""
    last: float
    streak: int = 0
    """Intervals in a row, before this one, in which the counter moved."""
    total: float = 0.0
    """What the counter rose by in those intervals."""
