"""The store's housekeeping service: the quota every few seconds, and once a summary period has
closed (or the wall clock jumped) wall-time correction, summaries and retention.

Usage: ``await Housekeeper(store, summary_interval_s=3600, interval_s=5.0).run()`` in the
gateway's task group; it waits on the store's clock (the gateway's), so that a test can run it
in virtual time.
"""

from __future__ import annotations

import logging

from edge.store.quota import QuotaReport
from edge.store.store import Store

log = logging.getLogger(__name__)

SUMMARY_GRACE_S = 5.0
"""Seconds after a period's end before it is summarised: readings of its last moment arrive."""


class Housekeeper:
    """Runs ``Store.housekeep`` after each summary period and ``Store.enforce_quota`` between."""

    def __init__(self, store: Store, *, summary_interval_s: int, interval_s: float) -> None:
        self._store = store
        self._summary_interval_s = summary_interval_s
        self._interval_s = interval_s
        self.passes = 0
        """Whole passes done (wall times, summaries, retention and the quota)."""
        self.checks = 0
        """Quota checks done between whole passes."""
        self.summaries = 0
        """Summaries written since start."""
        self.last_quota: QuotaReport | None = None
        """The last quota check's report."""

    async def run(self) -> None:
        """Housekeep until cancelled; a failure is logged and tried again next time."""
        store, clock, period = self._store, self._store.clock, self._summary_interval_s
        next_summary = 0.0
        while True:
            now = clock.wall_time()
            try:
                if not next_summary - period - SUMMARY_GRACE_S <= now < next_summary:
                    done = await store.housekeep(
                        now=now, interval_s=period, grace_s=SUMMARY_GRACE_S
                    )
                    next_summary = (now // period + 1) * period + SUMMARY_GRACE_S
                    self.passes += 1
                    self.summaries += done.summaries
                    self.last_quota = done.quota
                else:
                    self.last_quota = await store.enforce_quota()
                    self.checks += 1
            except Exception:
                log.exception("store housekeeping failed; will try again")
            await clock.sleep(self._interval_s)
