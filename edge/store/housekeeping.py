"""The store's housekeeping service: the quota every few seconds, and once a summary period has
closed (or the wall clock jumped) wall-time correction, summaries and retention; after each pass,
the disk's state as a ``disk_full`` finding.

Usage: ``await Housekeeper(store, summary_interval_s=3600, interval_s=5.0,
on_finding=pipeline.submit_finding).run()`` in the gateway's task group; it waits on the store's
clock (the gateway's), so that a test can run it in virtual time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from edge.alerts import Finding
from edge.store.disk import DISK_FULL_RULE, DiskStatus
from edge.store.quota import MiB, QuotaReport
from edge.store.store import Store
from nbedge.errors import StoreFull

log = logging.getLogger(__name__)

SUMMARY_GRACE_S = 5.0
"""Seconds after a period's end before it is summarised: readings of its last moment arrive."""

DISK_FULL_POINT = "store"


class Housekeeper:
    """Runs ``Store.housekeep`` after each summary period and ``Store.enforce_quota`` between;
    after each, hands ``on_finding`` the disk's state (``disk_finding``)."""

    def __init__(
        self,
        store: Store,
        *,
        summary_interval_s: int,
        interval_s: float,
        on_finding: Callable[[Finding], None] | None = None,
    ) -> None:
        self._store = store
        self._summary_interval_s = summary_interval_s
        self._interval_s = interval_s
        self._on_finding = on_finding
        self.passes = 0
        """Whole passes done (wall times, summaries, retention and the quota)."""
        self.checks = 0
        """Quota checks done between whole passes."""
        self.summaries = 0
        """Summaries written since start."""
        self.last_quota: QuotaReport | None = None
        """The last quota check's report."""
        self.failures = 0
        """Passes or checks that failed (a full disk, say)."""

    async def run(self) -> None:
        """Housekeep until cancelled; a failure is logged and tried again next time."""
        store, clock, period = self._store, self._store.clock, self._summary_interval_s
        next_summary = 0.0
        failing = False
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
            except StoreFull as exc:
                self.failures += 1
                if not failing:
                    log.warning(
                        "store housekeeping stopped by a full disk; will try again: %s", exc
                    )
                failing = True
            except Exception:
                self.failures += 1
                log.exception("store housekeeping failed; will try again")
                failing = True
            else:
                if failing:
                    log.info("store housekeeping done again")
                failing = False
            if self._on_finding is not None:
                disk = await store.disk()
                self._on_finding(disk_finding(store.gateway_id, disk, clock.wall_time()))
            await clock.sleep(self._interval_s)


def disk_finding(gateway: str, disk: DiskStatus, at: float) -> Finding:
    """The ``disk_full`` finding of a gateway's store, active or not."""
    return Finding(
        code=DISK_FULL_RULE,
        device=gateway,
        point=DISK_FULL_POINT,
        active=disk.disk_full,
        value=float(disk.free_bytes),
        at=at,
        params={
            "free_mib": round(disk.free_bytes / MiB, 1),
            "total_mib": round(disk.total_bytes / MiB, 1),
            "watermark_mib": round(disk.watermark_bytes / MiB, 1),
            "variant": "reserve" if disk.reserve_bytes else "no_reserve",
        },
    )
