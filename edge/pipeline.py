"""From the field bus to the store: a bounded queue, rules, batched writes, then local alerts.

Bus owners call ``Pipeline.submit`` (never blocks). The pipeline takes readings off the queue
in batches (``batch_max_items`` or ``batch_max_delay_s``, whichever comes first), evaluates the
rules, writes readings and alert changes in one store transaction, and only then hands the alert
changes to the local publisher: an alert is on disk and in the outbox before anyone is told.

Overflow policy: when the queue is full, the oldest reading is dropped and counted. Acquisition
never waits on the disk or the network.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge.alerts import Alert, AlertBook
from edge.rules import VoltageRule
from edge.store import Store
from firmware_bridge.readings import Reading

log = logging.getLogger(__name__)

_CLOSE = None  # put on the queue to tell the consumer that acquisition has stopped


@dataclass(frozen=True, slots=True)
class PipelineStats:
    queued: int
    received: int
    dropped: int
    written: int
    batches: int
    write_failures: int


class Pipeline:
    def __init__(
        self,
        store: Store,
        *,
        rules: Sequence[VoltageRule],
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
        self._queue: asyncio.Queue[Reading | None] = asyncio.Queue(maxsize=queue_size + 1)
        self._capacity = queue_size
        self._batch_max_items = batch_max_items
        self._batch_max_delay_s = batch_max_delay_s
        self._received = 0
        self._dropped = 0
        self._written = 0
        self._batches = 0
        self._write_failures = 0

    def submit(self, reading: Reading) -> None:
        """Queue a reading for the store; drops the oldest one if the queue is full."""
        self._received += 1
        if self._queue.qsize() >= self._capacity:
            self._queue.get_nowait()
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.warning("reading queue full, oldest dropped", extra={"dropped": self._dropped})
        self._queue.put_nowait(reading)

    def close(self) -> None:
        """Tell ``run`` to write what is queued and return (acquisition must have stopped)."""
        self._queue.put_nowait(_CLOSE)

    def stats(self) -> PipelineStats:
        return PipelineStats(
            queued=self._queue.qsize(),
            received=self._received,
            dropped=self._dropped,
            written=self._written,
            batches=self._batches,
            write_failures=self._write_failures,
        )

    async def run(self) -> None:
        """Write batches until ``close`` is called and everything before it is written."""
        closing = False
        while not closing:
            batch, closing = await self._next_batch()
            if batch:
                await self._write(batch)

    async def _next_batch(self) -> tuple[list[Reading], bool]:
        first = await self._queue.get()
        if first is _CLOSE:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self._batch_max_delay_s
        while len(batch) < self._batch_max_items:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if item is _CLOSE:
                return batch, True
            batch.append(item)
        return batch, False

    async def _write(self, batch: list[Reading]) -> None:
        changes = [change for rule in self._rules for change in rule.evaluate(batch, self._book)]
        while True:
            try:
                await self._store.write(batch, changes)
                break
            except Exception:
                # A full disk or an I/O error: keep the batch and retry; the queue bounds memory.
                self._write_failures += 1
                log.exception("store write failed, retrying", extra={"batch": len(batch)})
                await asyncio.sleep(min(30.0, 0.5 * self._write_failures))
        self._written += len(batch)
        self._batches += 1
        for change in changes:
            log.info(
                "alert %s",
                change.state,
                extra={"alert_id": change.alert_id, "message": change.message},
            )
            self._on_alert(change)
