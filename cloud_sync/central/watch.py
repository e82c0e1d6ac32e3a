"""The central API's periodic work, run by each process in its lifespan: every ``interval``,
mark expired commands and raise ``gateway_silent`` for gateways silent too long.

``Watch.tick()`` does one round (blocking: the loop runs it in a worker thread); ``run()`` is
the loop. Several processes may run it on one database: each change is made once (``commands``,
``silence``). A process raises nothing until it has watched, with its database answering, for
``silent_after``: after the API or its database was down, gateways get that long to report.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from cloud_sync.central import commands, silence
from cloud_sync.central.metrics import CentralMetrics

log = logging.getLogger(__name__)


class Watch:
    """One process's periodic work on ``engine``, at the times ``now`` says."""

    def __init__(
        self,
        engine: Engine,
        metrics: CentralMetrics,
        now: Callable[[], datetime],
        *,
        interval_s: float,
        silent_after: timedelta | None,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.now = now
        self.interval_s = interval_s
        self.silent_after = silent_after
        self._watching_since: datetime | None = None
        self._failing = False

    def tick(self) -> None:
        """One round: expire commands, then raise gateway_silent where due."""
        now = self.now()
        try:
            for action, count in commands.expire(self.engine, now).items():
                self.metrics.commands.labels(action, "expired").inc(count)
            if self.silent_after is not None:
                if self._watching_since is None or now < self._watching_since:
                    self._watching_since = now
                elif now - self._watching_since >= self.silent_after:
                    raised = silence.raise_silent(self.engine, now, self.silent_after)
                    self.metrics.gateway_silent.labels("raised").inc(raised)
        except SQLAlchemyError as exc:
            self._watching_since = None  # the gateways could not report either
            if not self._failing:
                log.warning("periodic work failed, the database does not answer: %s", exc)
            self._failing = True
            return
        if self._failing:
            log.info("periodic work resumed")
        self._failing = False

    async def run(self) -> None:
        """Tick every ``interval_s`` until cancelled. A round that fails for another reason than
        the database is logged and the next one runs: the API keeps serving."""
        while True:
            try:
                await run_in_threadpool(self.tick)
            except Exception:  # a bug here must not stop ingest; logged with its traceback
                log.exception("a round of periodic work failed")
            await asyncio.sleep(self.interval_s)
