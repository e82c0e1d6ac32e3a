"""Escalation: an alert nobody acknowledges is escalated, level by level, to its policy's audiences.

Usage: ``await Escalator(book, pipeline, store, config.alerts.escalation, clock=clock).run()`` in
the gateway's task group. Each pass (at the next due time, at least every ``TICK_S``) escalates
every active alert still ``new`` whose unacknowledged time has reached its next level's due time
(``AlertBook.escalate``, then ``Pipeline.queue_changes``: written with the next batch, then
published), one event per level and in order, never a level already reached. ``policy_for``
picks an alert's policy: rule and severity, then rule, then severity.

Unacknowledged time runs on the monotonic clock. It is saved in the store every ``SAVE_S`` and
continued after a restart, with the time the gateway was down added only when it can be
trusted: the same boot (monotonic time), or both wall times taken with the clock synchronised
(added once this boot's clock is). Why, and what it costs: docs/alerts.md, "Escalation".
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge.alerts.book import Alert, AlertBook
from edge.clock import Clock, Stamp
from edge.schemas import EscalationSection
from edge.status import EscalationStatus, EscalationWaiting
from edge.store import Store
from edge.store.alerts import UnackedTime
from nbedge.errors import StoreFull

if TYPE_CHECKING:
    from edge.pipeline import Pipeline

log = logging.getLogger(__name__)

TICK_S = 5.0
"""Longest wait between two passes: a new alert is seen within this long."""
SAVE_S = 60.0
"""Unacknowledged times are saved this often (one transaction) while an alert waits."""
MAX_EVENTS_PER_PASS = 100
"""Escalation events made in one pass at most; the rest come at the next pass, at once."""
STATUS_MAX = 50
"""Alerts listed in ``status().waiting`` at most."""
_EPSILON_S = 1e-3  # a due time reached within this is reached (monotonic time is in ns)


def policy_for(alert: Alert, policies: Sequence[EscalationSection]) -> EscalationSection | None:
    """The most specific policy matching ``alert``: its rule and severity, then its rule, then its
    severity; None when none does."""
    best: tuple[int, EscalationSection] | None = None
    for policy in policies:
        if policy.rule is not None and policy.rule != alert.rule:
            continue
        if policy.severity is not None and policy.severity != alert.severity:
            continue
        rank = 2 * (policy.rule is not None) + (policy.severity is not None)
        if best is None or rank > best[0]:
            best = (rank, policy)
    return None if best is None else best[1]


@dataclass(slots=True)
class _Timer:
    """An alert's unacknowledged time: ``max(saved_s, floor_s)`` at monotonic ``mono_s``, then
    running; ``pending``: a stamp of an earlier boot, whose downtime is added once known."""

    saved_s: float
    floor_s: float
    mono_s: float
    pending: Stamp | None = None

    def waited(self, now: float) -> float:
        return max(self.saved_s, self.floor_s) + max(0.0, now - self.mono_s)


class Escalator:
    """Escalates the alerts of ``book`` nobody acknowledges, by ``policies`` (see the module)."""

    def __init__(
        self,
        book: AlertBook,
        pipeline: Pipeline,
        store: Store,
        policies: Sequence[EscalationSection],
        *,
        clock: Clock,
    ) -> None:
        self._book = book
        self._pipeline = pipeline
        self._store = store
        self._policies = tuple(policies)
        self._clock = clock
        self._timers: dict[str, _Timer] = {}
        self._last_pass: float | None = None
        self._last_save: float | None = None
        self._save_failing = False
        self.escalated = 0
        """Escalation events made since start."""
        self.passes = 0

    def set_policies(self, policies: Sequence[EscalationSection]) -> None:
        """Escalate by ``policies`` from the next pass on (a reload); the levels reached stay."""
        self._policies = tuple(policies)

    async def run(self) -> None:
        """Escalate until cancelled; a failed pass or save is logged and tried again."""
        loaded = False
        while True:
            wait = TICK_S
            if self._policies and not loaded:
                await self._load()
                loaded = True
            if self._policies:
                try:
                    wait = self.escalate_due()
                except Exception:
                    log.exception("escalation pass failed; will try again")
                await self._save_if_due()
            await self._clock.sleep(wait)

    def escalate_due(self) -> float:
        """One pass: escalate what is due; returns the seconds until the next due time (at most
        ``TICK_S``)."""
        now = self._clock.monotonic()
        self._resolve_downtime()
        changes: list[Alert] = []
        wait = TICK_S
        tracked: set[str] = set()
        try:
            for alert in self._book.open():
                policy = policy_for(alert, self._policies)
                if policy is None or alert.state != "new" or alert.level >= len(policy.levels):
                    continue
                if alert.test:  # raised in a maintenance window: nobody is paged
                    continue
                tracked.add(alert.alert_id)
                timer = self._timers.get(alert.alert_id) or self._first_seen(alert, policy, now)
                self._timers[alert.alert_id] = timer
                wait = min(wait, self._escalate(alert, policy, timer.waited(now), changes))
        finally:  # what the book changed is written, whatever happened after
            if changes:
                self.escalated += len(changes)
                self._pipeline.queue_changes(changes)
        for gone in self._timers.keys() - tracked:
            del self._timers[gone]
        self._last_pass = now
        self.passes += 1
        return max(wait, 0.01) if wait > 0 else 0.0

    def _escalate(
        self, alert: Alert, policy: EscalationSection, waited: float, changes: list[Alert]
    ) -> float:
        """Escalate ``alert`` to every level due (each its own event, in order), while the pass
        has room; returns the seconds until its next level (0: due, no room left)."""
        while alert.condition == "active" and alert.level < len(policy.levels):
            due = policy.due_s(alert.level + 1)
            if waited + _EPSILON_S < due:
                return due - waited
            if len(changes) >= MAX_EVENTS_PER_PASS:
                return 0.0
            escalated = self._book.escalate(
                alert.alert_id,
                level=alert.level + 1,
                audience=policy.levels[alert.level],
                at=self._clock.wall_time(),
            )
            if escalated is None:
                break
            changes.append(escalated)
            alert = escalated
        return TICK_S

    def status(self) -> EscalationStatus:
        """For ``/api/status``: the policies, the events made, and each alert waiting for its
        next level (unacknowledged seconds, the level and audience next, seconds until due)."""
        now = self._clock.monotonic()
        waiting: list[EscalationWaiting] = []
        for alert in self._book.open():
            timer = self._timers.get(alert.alert_id)
            policy = policy_for(alert, self._policies)
            if timer is None or policy is None or alert.level >= len(policy.levels):
                continue
            waited = timer.waited(now)
            waiting.append(
                EscalationWaiting(
                    alert_id=alert.alert_id,
                    rule=alert.rule,
                    level=alert.level,
                    next_level=alert.level + 1,
                    next_audience=policy.levels[alert.level],
                    unacknowledged_s=round(waited, 1),
                    next_due_in_s=round(max(0.0, policy.due_s(alert.level + 1) - waited), 1),
                    paused=alert.condition != "active",
                )
            )
        waiting.sort(key=lambda item: item.next_due_in_s)
        return EscalationStatus(
            policies=len(self._policies),
            escalated=self.escalated,
            waiting_count=len(waiting),
            waiting=tuple(waiting[:STATUS_MAX]),
        )

    # --- timers ----------------------------------------------------------------------------

    async def _load(self) -> None:
        """Continue the timers saved in the store, for the alerts the book has at start."""
        try:
            saved = await self._store.unacked_times()
        except Exception:
            log.exception("escalation timers not read; open alerts count from now")
            saved = {}
        now = self._clock.monotonic()
        for alert in self._book.open():
            policy = policy_for(alert, self._policies)
            if policy is None or alert.state != "new" or alert.level >= len(policy.levels):
                continue
            timer = self._continued(saved.get(alert.alert_id), now)
            timer.floor_s = _floor(alert, policy)
            self._timers[alert.alert_id] = timer
        self._last_pass = now

    def _continued(self, saved: UnackedTime | None, now: float) -> _Timer:
        if saved is None:  # never saved (an alert of schema 7): from now
            return _Timer(0.0, 0.0, now)
        stamp = saved.stamp
        if stamp.boot_id == self._clock.boot_id:  # the same boot: the monotonic clock ran on
            return _Timer(saved.seconds + max(0.0, now - stamp.monotonic_ns / 1e9), 0.0, now)
        if stamp.clock_synced:  # another boot: wall times, once this boot's clock is synced
            return _Timer(saved.seconds, 0.0, now, pending=stamp)
        return _Timer(saved.seconds, 0.0, now)  # nothing to trust: the downtime is not counted

    def _first_seen(self, alert: Alert, policy: EscalationSection, now: float) -> _Timer:
        """An alert raised since the last pass: waited since it was raised (by the wall clock),
        but never longer than the monotonic time since that pass."""
        since_pass = TICK_S if self._last_pass is None else max(0.0, now - self._last_pass)
        waited = min(max(0.0, self._clock.wall_time() - alert.raised_at), since_pass)
        return _Timer(waited, _floor(alert, policy), now)

    def _resolve_downtime(self) -> None:
        """Add the downtime of timers saved in an earlier boot once this boot's clock has been
        synchronised: the wall time of the load is then known from the monotonic clock."""
        pending = [t for t in self._timers.values() if t.pending is not None]
        if not pending:
            return
        offset = self._clock.sync_offset()
        if offset is None:
            return
        for timer in pending:
            assert timer.pending is not None
            timer.saved_s += max(0.0, timer.mono_s + offset - timer.pending.wall_time)
            timer.pending = None

    async def _save_if_due(self) -> None:
        """Save the running timers every ``SAVE_S`` (those still waiting for an earlier boot's
        downtime keep what is saved: it is still the right starting point)."""
        now = self._clock.monotonic()
        if self._last_save is not None and now - self._last_save < SAVE_S:
            return
        self._last_save = now
        stamp = self._clock.stamp()
        now = stamp.monotonic_ns / 1e9
        times = [
            (alert_id, UnackedTime(timer.waited(now), stamp))
            for alert_id, timer in self._timers.items()
            if timer.pending is None
        ]
        if not times:
            return
        try:
            await self._store.save_unacked(times)
        except (StoreFull, sqlite3.Error) as exc:
            if not self._save_failing:
                log.warning("escalation timers not saved; will try again: %s", exc)
            self._save_failing = True
        else:
            if self._save_failing:
                log.info("escalation timers saved again")
            self._save_failing = False


def _floor(alert: Alert, policy: EscalationSection) -> float:
    """An alert at level L has waited at least until L was due."""
    return policy.due_s(alert.level) if alert.level >= 1 else 0.0
