"""What the store evicts when over its quota or short of disk, in which order, and the report.

The store may use at most ``max_bytes`` on disk (database file plus its WAL, measured on the files,
less the free pages inside them), and the filesystem holding it must keep its watermark free
(``edge.store.quota``). When either limit is crossed, or SQLite reports the disk full, the store
evicts, in this order, oldest first by insertion order (row id or outbox sequence, never by wall
time):

1. raw readings already summarised;
2. local copies of summaries (the outbox still holds every summary not yet synced), then local
   copies of demand forecasts (likewise);
3. cleared alerts in the local history (likewise, their outbox records are kept);
4. local copies of access events already counted in a summary (their outbox records are kept);
5. raw readings not yet summarised (they will be missing from every summary);
6. summaries not yet synced (outbox records), then demand forecasts not yet synced (outbox
   records: one an hour per series, a few hundred bytes each, they would free next to nothing
   ahead of the summaries, and a week of them tells how the model did);
7. last resort: alert records not yet synced (outbox records);
8. the very last resort: access event records not yet synced (outbox records).

Steps 7 and 8 (``last_resort``) are taken only for the byte quota, or when a write failed on a full
disk and no bulk data (steps 1-6) is left; never for the free-disk watermark. Never evicted:
active alerts, eviction records, access events not yet counted in a summary (rare and small:
their counts must not go missing), the store's own bookkeeping; records leased by the sync client
at that moment (being sent, ``leased``) are skipped. Outbox rows are picked by kind as well as
priority (forecasts share theirs with summaries, ``records.PRIORITY``). Every eviction is counted
per kind (``StoreStats.evicted``, kept across restarts). Steps 1, 5, 6, 7 and 8 lose something the
central API will never see, so each is also reported as an ``EvictionRecord`` (one per kind per
pass: ``evicted`` is ``reading``, ``summary``, ``forecast``, ``alert`` or ``access``; count,
oldest and newest time, reason ``quota`` or ``disk_full``), queued with the priority right after
alerts, in the same transaction as the deletion; steps 7 and 8 are logged as errors. Steps 2, 3
and 4 only drop local copies and are counted, not reported; they go before step 5 because they
lose nothing the central API will not get, while readings not yet summarised would be missing
from every summary. Space is then given back to the filesystem for real: ``PRAGMA
incremental_vacuum`` and a ``wal_checkpoint(TRUNCATE)``, and the files are measured again.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.clock import Stamp
from edge.store import records
from edge.store.outbox import meta, set_meta
from edge.store.records import PRIORITY, EvictedKind, EvictionReason

_MAX_ROWS_PER_CHUNK = 1_000_000


@dataclass(frozen=True, slots=True)
class Evicted:
    kind: str
    """``reading``, ``summary_copy``, ``forecast_copy``, ``cleared_alert``, ``access_copy``,
    ``summary``, ``forecast``, ``alert`` or ``access``."""
    count: int
    oldest: float
    newest: float


@dataclass(frozen=True, slots=True)
class _Step:
    kind: str
    reported: EvictedKind | None
    select: str
    """Returns count, oldest, newest, last key of the next (at most :n) rows to evict."""
    delete: str
    """Deletes those rows (up to :upto)."""
    bytes_per_row: float
    """A first guess, refined as rows are deleted."""
    iso_times: bool = False
    last_resort: bool = False
    """Unsent alerts and access events: not for the watermark (see the module docstring)."""


def _outbox_step(
    kind: EvictedKind,
    time_path: str,
    bytes_per_row: float,
    *,
    last_resort: bool = False,
    outbox_kind: str | None = None,
) -> _Step:
    """Outbox records of ``outbox_kind`` (default ``kind``), counted and reported as ``kind``
    (an ``alert_event`` record evicted is an alert lost)."""
    stored = outbox_kind or kind
    # Built from constants of this module only, never from input.
    where = (
        f"priority = {PRIORITY[stored]} AND kind = '{stored}'"  # noqa: S608
        " AND seq NOT IN (SELECT value FROM json_each(:leased))"
    )
    return _Step(
        kind=kind,
        reported=kind,
        select=(
            "SELECT COUNT(*), MIN(t), MAX(t), MAX(seq) FROM (SELECT seq,"  # noqa: S608
            f" json_extract(payload, '{time_path}') AS t FROM outbox WHERE {where}"
            " ORDER BY seq LIMIT :n)"
        ),
        delete=f"DELETE FROM outbox WHERE {where} AND seq <= :upto",  # noqa: S608
        bytes_per_row=bytes_per_row,
        iso_times=True,
        last_resort=last_resort,
    )


STEPS: tuple[_Step, ...] = (
    _Step(
        "reading",
        "reading",
        "SELECT COUNT(*), MIN(wall_time), MAX(wall_time), MAX(id) FROM (SELECT id, wall_time"
        " FROM readings WHERE id <= :last ORDER BY id LIMIT :n)",
        "DELETE FROM readings WHERE id <= :upto",
        120,
    ),
    _Step(
        "summary_copy",
        None,
        "SELECT COUNT(*), MIN(period_start), MAX(period_start), MAX(id) FROM (SELECT id,"
        " period_start FROM summaries ORDER BY id LIMIT :n)",
        "DELETE FROM summaries WHERE id <= :upto",
        120,
    ),
    _Step(
        "forecast_copy",
        None,
        "SELECT COUNT(*), MIN(start), MAX(start), MAX(id) FROM (SELECT id, start FROM forecasts"
        " ORDER BY id LIMIT :n)",
        "DELETE FROM forecasts WHERE id <= :upto",
        500,
    ),
    _Step(
        "cleared_alert",
        None,
        "SELECT COUNT(*), MIN(cleared_at), MAX(cleared_at), MAX(rowid) FROM (SELECT rowid,"
        " cleared_at FROM alerts WHERE condition = 'cleared' AND human_state = 'resolved'"
        " ORDER BY rowid LIMIT :n)",
        "DELETE FROM alerts WHERE condition = 'cleared' AND human_state = 'resolved'"
        " AND rowid <= :upto",
        250,
    ),
    _Step(
        "access_copy",
        None,
        "SELECT COUNT(*), MIN(wall_time), MAX(wall_time), MAX(id) FROM (SELECT id, wall_time"
        " FROM access_events WHERE id <= :last_access ORDER BY id LIMIT :n)",
        "DELETE FROM access_events WHERE id <= :upto",
        150,
    ),
    _Step(
        "reading",
        "reading",
        "SELECT COUNT(*), MIN(wall_time), MAX(wall_time), MAX(id) FROM (SELECT id, wall_time"
        " FROM readings WHERE id > :last ORDER BY id LIMIT :n)",
        "DELETE FROM readings WHERE id > :last AND id <= :upto",
        120,
    ),
    _outbox_step("summary", "$.body.period_start", 600),
    _outbox_step("forecast", "$.body.start", 1000),
    _outbox_step("alert", "$.time.wall_time", 700, last_resort=True),
    _outbox_step("alert", "$.body.at", 1200, last_resort=True, outbox_kind="alert_event"),
    _outbox_step("alert", "$.body.at", 400, last_resort=True, outbox_kind="command_result"),
    _outbox_step("access", "$.body.occurred_at", 600, last_resort=True),
)


def evict(
    conn: sqlite3.Connection,
    need_bytes: int,
    *,
    last_summarised: int,
    leased: Collection[int] = (),
    last_access_counted: int = 0,
    last_resort: bool = True,
) -> list[Evicted]:
    """Delete, in ``STEPS`` order, until ``need_bytes`` of pages are free (inside the caller's
    transaction); returns what went, one entry per step that deleted anything.
    ``last_summarised`` and ``last_access_counted`` are the last reading and access event ids
    summarised; ``leased`` the outbox sequences being sent; ``last_resort=False`` stops before
    unsent alerts and access events."""
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])

    def free_pages() -> int:
        return int(conn.execute("PRAGMA freelist_count").fetchone()[0]) * page_size

    base = free_pages()
    params: dict[str, Any] = {
        "last": last_summarised,
        "last_access": last_access_counted,
        "leased": json.dumps(sorted(leased)),
    }
    evicted: list[Evicted] = []
    for step in STEPS:
        if step.last_resort and not last_resort:
            break
        per_row = step.bytes_per_row
        count, oldest, newest = 0, math.inf, -math.inf
        while (freed := free_pages() - base) < need_bytes:
            n = min(_MAX_ROWS_PER_CHUNK, max(64, math.ceil((need_bytes - freed) / per_row)))
            found, lo, hi, upto = conn.execute(step.select, params | {"n": n}).fetchone()
            if not found:
                break
            conn.execute(step.delete, params | {"upto": upto})
            count += found
            oldest = min(oldest, _seconds(lo, step.iso_times))
            newest = max(newest, _seconds(hi, step.iso_times))
            gained = free_pages() - base - freed
            per_row = max(gained / found, per_row / 4) if gained > 0 else per_row / 2
        if count:
            evicted.append(Evicted(step.kind, count, oldest, newest))
    return evicted


def _seconds(value: Any, iso: bool) -> float:
    if iso:
        return datetime.fromisoformat(str(value)).timestamp()
    return float(value)


def report(
    conn: sqlite3.Connection,
    enqueue: Callable[[str, Sequence[Callable[[str], str]]], None],
    evicted: Sequence[Evicted],
    reason: EvictionReason,
    stamp: Stamp,
) -> None:
    """Count evictions (``meta``) and queue one eviction record per reported kind, inside the
    transaction that deleted them."""
    merged: dict[EvictedKind, tuple[int, float, float]] = {}
    for item in evicted:
        key = f"evicted.{item.kind}"
        set_meta(conn, key, str(int(meta(conn, key) or 0) + item.count))
        reported = next(step.reported for step in STEPS if step.kind == item.kind)
        if reported is None:
            continue
        n, lo, hi = merged.get(reported, (0, item.oldest, item.newest))
        merged[reported] = (n + item.count, min(lo, item.oldest), max(hi, item.newest))
    enqueue(
        "eviction",
        [
            functools.partial(
                records.eviction_record,
                stamp=stamp,
                evicted=kind,
                count=n,
                oldest=lo,
                newest=hi,
                reason=reason,
            )
            for kind, (n, lo, hi) in merged.items()
        ],
    )
