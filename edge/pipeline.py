"""From the field bus to the store: a bounded queue, rules, batched writes, then local alerts.

Bus owners call ``Pipeline.submit`` (never blocks). The pipeline takes readings off the queue
in batches (``batch_max_items`` or ``batch_max_delay_s``, whichever comes first), evaluates the
rules, writes readings and alert changes in one store transaction, and only then hands the alert
changes to the local publisher: an alert is on disk and in the outbox before anyone is told.

Overflow policy: when the queue is full, the oldest reading is dropped and counted. Acquisition
never waits on the disk or the network. A write that fails (``StoreFull``: the disk is full) is
kept and tried again with a growing pause, logged at its first failure and once written.

Access events of doors and gates (``Pipeline.submit_access``, never blocks) are rare and must not
be lost: they wait in a deque of their own, never displaced by readings, and every batch write
takes all that are pending, in the same transaction as the readings (an access event alone wakes
the writer). The deque is bounded only by ``ACCESS_HARD_CAP``, far above any real rate (a busy
gate sees a few thousand events a day), reached only when the store has failed for a long time:
beyond it a new event is refused, counted (``access_overflow``) and logged as an error; no event
already accepted is ever dropped. An event that cannot go on the wire (e.g. a device name that is
not an identifier) is refused at once with ``DecodeError`` and counted (``access_rejected``), so
that it can never block the writer.

An access event read from a device's own event log (a gate controller's ring buffer) comes with
the source's *cursor* (a key and a value, e.g. ``gate.north`` and ``7:1234``): it is stored in
the same transaction as the event, so after a restart the source resumes exactly after the last
event stored (``Store.cursor``): nothing lost, nothing stored twice.

Alerts have one path. The rules' findings on each batch, and the findings every other source
hands to ``Pipeline.submit_finding`` (never blocks: device state changes, door sensors, the
models, the store's disk, the sync client), go to the one ``AlertBook``, which alone decides
what changed; so do people's actions (``Pipeline.act``). Changes wait in a deque of their own
and are written with the next batch, in its transaction, and only then published. A finding
that changes nothing costs nothing; beyond ``STATE_HARD_CAP`` changes pending (the store has
failed for a long time) the oldest is dropped and counted (``states_dropped``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from types import EllipsisType

from edge.alerts import Action, ActResult, Alert, AlertBook, Finding, Outcome, Via
from edge.rules import Rule, device_silent
from edge.status import PipelineStatus
from edge.store import Store
from edge.store.records import access_body
from firmware_bridge.events import AccessEvent
from firmware_bridge.modbus.bus import DeviceStateChange
from firmware_bridge.readings import Reading
from nbedge.errors import DecodeError, StoreFull

log = logging.getLogger(__name__)

_CLOSE = None  # put on the queue to tell the consumer that acquisition has stopped
_WAKE = ...  # put on an empty queue to wake the consumer for an access event

ACCESS_HARD_CAP = 100_000
"""Access events pending in memory at most (see the module docstring)."""

STATE_HARD_CAP = 10_000
"""Alert changes pending in memory at most (see the module docstring)."""


class Pipeline:
    def __init__(
        self,
        store: Store,
        *,
        rules: Sequence[Rule],
        book: AlertBook,
        on_alert: Callable[[Alert], None],
        queue_size: int = 10_000,
        batch_max_items: int = 500,
        batch_max_delay_s: float = 0.2,
    ) -> None:
        self._store = store
        self._rules = rules
        self._book = book
        self._on_alert = on_alert
        # One slot more than the capacity, for _CLOSE or _WAKE (each only ever put on a queue
        # that has room: submit keeps at most ``queue_size`` items in it).
        self._queue: asyncio.Queue[Reading | EllipsisType | None] = asyncio.Queue(
            maxsize=queue_size + 1
        )
        self._capacity = queue_size
        self._batch_max_items = batch_max_items
        self._batch_max_delay_s = batch_max_delay_s
        # Resolved when a batch's worth is queued, or on close, to end the batch's wait early.
        self._batch_full: asyncio.Future[None] | None = None
        self._received = 0
        self._dropped = 0
        self._written = 0
        self._batches = 0
        self._write_failures = 0
        self._access: deque[tuple[AccessEvent, tuple[str, str] | None]] = deque()
        self._access_received = 0
        self._access_written = 0
        self._access_overflow = 0
        self._access_rejected = 0
        self._changes: deque[Alert] = deque()
        self._person_waiting = False
        self._states_received = 0
        self._states_dropped = 0

    def submit(self, reading: Reading) -> None:
        """Queue a reading for the store; drops the oldest one if the queue is full."""
        self._received += 1
        if self._queue.qsize() >= self._capacity:
            self._queue.get_nowait()
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.warning("reading queue full, oldest dropped", extra={"dropped": self._dropped})
        self._queue.put_nowait(reading)
        if self._queue.qsize() >= self._batch_max_items:
            self._wake_batch()

    def submit_access(self, event: AccessEvent, cursor: tuple[str, str] | None = None) -> bool:
        """Queue an access event (and its source's cursor) for the next batch write; never
        blocks, never drops one it accepted. False if refused at the hard cap (offer it again
        later); raises ``DecodeError`` for an event that cannot go on the wire."""
        self._access_received += 1
        try:
            access_body(event)
        except (ValueError, OverflowError, OSError) as exc:  # pydantic's ValidationError too
            self._access_rejected += 1
            raise DecodeError(f"access event of {event.device!r} is not valid: {exc}") from exc
        if len(self._access) >= ACCESS_HARD_CAP:
            self._access_overflow += 1
            if self._access_overflow == 1 or self._access_overflow % 1000 == 0:
                log.error(
                    "access events pending at the hard cap, new one refused",
                    extra={"overflow": self._access_overflow, "device": event.device},
                )
            return False
        self._access.append((event, cursor))
        if self._queue.empty():
            self._queue.put_nowait(_WAKE)
        return True

    def set_rules(self, rules: Sequence[Rule]) -> None:
        """Run ``rules`` from the next batch on (a reload). An alert of a rule no longer run
        stays as it is until its cause is cleared otherwise."""
        self._rules = list(rules)

    def submit_finding(self, finding: Finding) -> None:
        """Hand a finding to the alert book; its changes are written with the next batch. Never
        blocks; a finding that changes nothing costs nothing."""
        self._states_received += 1
        self._queue_changes(self._book.apply(finding))

    def is_active(self, key: str) -> bool:
        """Whether the alert of a cause (``alert_key``) is active in the book."""
        return self._book.is_active(key)

    def submit_state(self, change: DeviceStateChange, zone: str = "UTC") -> None:
        """A bus owner's device state change: its ``device_silent`` finding (``zone``: the
        site's time zone, for its text)."""
        self.submit_finding(device_silent(change, zone))

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
        """A person acknowledges or resolves an alert (``AlertBook.act``); the events it makes
        are written with the next batch, then published."""
        result = self._book.act(
            alert_id,
            action,
            by=by,
            via=via,
            at=at,
            note=note,
            outcome=outcome,
            command_id=command_id,
        )
        if result.changes:
            self._person_waiting = True  # a person waits for it: no batch delay
            self._wake_batch()
        self._queue_changes(list(result.changes))
        return result

    def queue_changes(self, changes: Sequence[Alert]) -> None:
        """Changes the book made elsewhere (an escalation): written with the next batch."""
        self._queue_changes(list(changes))

    def _queue_changes(self, changes: list[Alert]) -> None:
        if not changes:
            return
        for change in changes:
            if len(self._changes) >= STATE_HARD_CAP:
                self._changes.popleft()
                self._states_dropped += 1
                if self._states_dropped == 1 or self._states_dropped % 1000 == 0:
                    log.error(
                        "alert changes pending at the hard cap, oldest dropped",
                        extra={"dropped": self._states_dropped},
                    )
            self._changes.append(change)
        if self._queue.empty():
            self._queue.put_nowait(_WAKE)

    def _wake_batch(self) -> None:
        if self._batch_full is not None and not self._batch_full.done():
            self._batch_full.set_result(None)

    def close(self) -> None:
        """Tell ``run`` to write what is queued and return (acquisition must have stopped)."""
        self._queue.put_nowait(_CLOSE)
        self._wake_batch()

    def stats(self) -> PipelineStatus:
        """The queue and its counters (``/api/status`` -> ``pipeline``)."""
        return PipelineStatus(
            queued=self._queue.qsize(),
            received=self._received,
            dropped=self._dropped,
            written=self._written,
            batches=self._batches,
            write_failures=self._write_failures,
            access_queued=len(self._access),
            access_received=self._access_received,
            access_written=self._access_written,
            access_overflow=self._access_overflow,
            access_rejected=self._access_rejected,
            states_received=self._states_received,
            states_dropped=self._states_dropped,
        )

    async def run(self) -> None:
        """Write batches until ``close`` is called and everything before it is written."""
        closing = False
        while not closing:
            batch, closing = await self._next_batch()
            if batch or self._access or self._changes:
                await self._write(batch)

    async def _next_batch(self) -> tuple[list[Reading], bool]:
        """The next batch: the first item, then whatever arrives within ``batch_max_delay_s``,
        at most ``batch_max_items``. One timed wait per batch, not one per reading: ``submit``
        and ``close`` cut the wait short when a batch is full or acquisition has stopped."""
        first = await self._queue.get()
        if first is _CLOSE:
            return [], True
        if self._queue.qsize() + 1 < self._batch_max_items and not self._person_waiting:
            self._batch_full = asyncio.get_running_loop().create_future()
            await asyncio.wait((self._batch_full,), timeout=self._batch_max_delay_s)
        self._person_waiting = False
        batch = [] if first is _WAKE else [first]
        while len(batch) < self._batch_max_items:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if item is _CLOSE:
                return batch, True
            if item is not _WAKE:
                batch.append(item)
        return batch, False

    async def _write(self, batch: list[Reading]) -> None:
        # Changes made before this batch, then the batch's own; those made while this write
        # waits stay for the next one.
        changes = list(self._changes)
        self._changes.clear()
        changes += [
            change
            for rule in self._rules
            for finding in rule.evaluate(batch)
            for change in self._book.apply(finding)
        ]
        # Events submitted while this write waits stay in the deque for the next one.
        pending = list(self._access)
        access = [event for event, _ in pending]
        cursors = dict(cursor for _, cursor in pending if cursor is not None)  # the last wins
        failures = 0
        while True:
            try:
                await self._store.write(batch, changes, access=access, cursors=cursors)
                break
            except Exception as exc:
                # A full disk or an I/O error: keep the batch and retry; the queue bounds memory.
                self._write_failures += 1
                failures += 1
                if failures == 1 and isinstance(exc, StoreFull):
                    log.error(  # noqa: TRY400 (a full disk needs no traceback)
                        "store full, batch kept in memory; retrying: %s",
                        exc,
                        extra={"batch": len(batch)},
                    )
                elif failures == 1:
                    log.exception("store write failed, retrying", extra={"batch": len(batch)})
                await asyncio.sleep(min(30.0, 0.5 * failures))
        if failures:
            log.info("store write done after %d failed attempts", failures)
        for _ in access:
            self._access.popleft()
        self._access_written += len(access)
        self._written += len(batch)
        self._batches += 1
        for change in changes:
            log.info(
                "alert %s",
                change.event,
                extra={"alert_id": change.alert_id, "text": change.message, "by": change.by},
            )
            self._on_alert(change)
