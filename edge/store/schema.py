"""The store's schema and its migrations.

``PRAGMA user_version`` holds the schema version. Each migration is a list of statements applied in
one transaction, so a power cut in the middle of an upgrade leaves the old schema intact.
Migration 1 is the walking skeleton and is never edited; later ones rebuild what they change.

Space is reclaimed with ``auto_vacuum = INCREMENTAL``: a new file gets it before its first table; an
older file gets it with one ``VACUUM`` after migrating (``ensure_incremental_vacuum``), which is
retried at every start until it succeeds (it needs free disk about the size of the database).

Before a file of an older schema is migrated, ``copy_before_migrating`` copies it beside itself
(``gateway.db.schema-8.bak`` for schema 8), when the disk has room for it: the way back to the
previous version of nbedge, which refuses a schema newer than its own (``SchemaTooNew``).
docs/upgrades.md tells an installer how to go back.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

_READING_COLUMNS = "id, device, point, value, unit, wall_time, boot_id, monotonic_ns, clock_synced"

MIGRATIONS: list[list[str]] = [
    # 1: the walking skeleton
    [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE readings (
            id INTEGER PRIMARY KEY,
            device TEXT NOT NULL,
            point TEXT NOT NULL,
            value REAL NOT NULL,
            unit TEXT NOT NULL,
            wall_time REAL NOT NULL,
            boot_id TEXT NOT NULL,
            monotonic_ns INTEGER NOT NULL,
            clock_synced INTEGER NOT NULL
        )""",
        "CREATE INDEX readings_by_time ON readings (wall_time)",
        """CREATE TABLE alerts (
            alert_id TEXT PRIMARY KEY,
            key TEXT NOT NULL,
            rule TEXT NOT NULL,
            device TEXT NOT NULL,
            point TEXT NOT NULL,
            severity TEXT NOT NULL,
            message TEXT NOT NULL,
            value REAL NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('raised', 'cleared')),
            raised_at REAL NOT NULL,
            cleared_at REAL
        )""",
        "CREATE UNIQUE INDEX alerts_one_active_per_key ON alerts (key) WHERE state = 'raised'",
        """CREATE TABLE summaries (
            id INTEGER PRIMARY KEY,
            device TEXT NOT NULL,
            point TEXT NOT NULL,
            unit TEXT NOT NULL,
            period_start REAL NOT NULL,
            period_end REAL NOT NULL,
            count INTEGER NOT NULL,
            min REAL NOT NULL,
            max REAL NOT NULL,
            mean REAL NOT NULL,
            last REAL NOT NULL,
            UNIQUE (device, point, period_start)
        )""",
        """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY,
            record_id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            priority INTEGER NOT NULL,
            payload TEXT NOT NULL,
            created_at REAL NOT NULL,
            lease_until REAL NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX outbox_by_priority ON outbox (priority, seq)",
    ],
    # 2: store and forward that loses nothing. Readings get AUTOINCREMENT ids (an id is never
    # reused, even after every reading was evicted: summaries follow id ranges) and a flag for
    # wall times corrected after the clock synchronised; ``summary_last_id`` replaces
    # ``summary_until``; a period may have several summaries (one per summarising run that saw
    # readings of it); evictions get the outbox priority right after alerts.
    [
        """CREATE TABLE readings_v2 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            device TEXT NOT NULL,
            point TEXT NOT NULL,
            value REAL NOT NULL,
            unit TEXT NOT NULL,
            wall_time REAL NOT NULL,
            boot_id TEXT NOT NULL,
            monotonic_ns INTEGER NOT NULL,
            clock_synced INTEGER NOT NULL,
            wall_time_corrected INTEGER NOT NULL DEFAULT 0
        )""",
        f"INSERT INTO readings_v2 ({_READING_COLUMNS}) SELECT {_READING_COLUMNS} FROM readings",  # noqa: S608 (constant)
        # Schema 1 summarised every reading whose wall time was before summary_until.
        """INSERT INTO meta (key, value) SELECT 'summary_last_id', CAST(COALESCE(
            CASE WHEN (SELECT value FROM meta WHERE key = 'summary_until') IS NULL THEN 0
                 ELSE (SELECT MIN(id) - 1 FROM readings WHERE wall_time >= CAST(
                     (SELECT value FROM meta WHERE key = 'summary_until') AS REAL))
            END, (SELECT MAX(id) FROM readings), 0) AS TEXT)""",
        "DELETE FROM meta WHERE key = 'summary_until'",
        "DROP TABLE readings",
        "ALTER TABLE readings_v2 RENAME TO readings",
        "CREATE INDEX readings_by_time ON readings (wall_time)",
        """CREATE TABLE summaries_v2 (
            id INTEGER PRIMARY KEY,
            device TEXT NOT NULL,
            point TEXT NOT NULL,
            unit TEXT NOT NULL,
            period_start REAL NOT NULL,
            period_end REAL NOT NULL,
            count INTEGER NOT NULL,
            min REAL NOT NULL,
            max REAL NOT NULL,
            mean REAL NOT NULL,
            last REAL NOT NULL,
            clock_synced INTEGER NOT NULL DEFAULT 1,
            readings_after INTEGER NOT NULL DEFAULT 0,
            readings_upto INTEGER NOT NULL DEFAULT 0
        )""",
        "INSERT INTO summaries_v2 (id, device, point, unit, period_start, period_end, count, min,"
        " max, mean, last) SELECT id, device, point, unit, period_start, period_end, count, min,"
        " max, mean, last FROM summaries",
        "DROP TABLE summaries",
        "ALTER TABLE summaries_v2 RENAME TO summaries",
        "CREATE INDEX summaries_by_period ON summaries (device, point, period_start)",
        "CREATE INDEX alerts_by_clearing ON alerts (cleared_at) WHERE state = 'cleared'",
        """UPDATE outbox SET priority = CASE kind WHEN 'alert' THEN 0 WHEN 'eviction' THEN 1
            WHEN 'access' THEN 2 WHEN 'summary' THEN 3 ELSE 4 END""",
    ],
    # 3: the consumption of counters. Summaries get ``delta`` (NULL for gauges); ``point_last``
    # keeps the last summarised reading of every point, the one a period's first reading is
    # compared with (it survives retention and eviction of the reading itself). Seeded from the
    # readings already summarised (SQLite takes ``value`` from the row of ``MAX(id)``).
    [
        "ALTER TABLE summaries ADD COLUMN delta REAL",
        """CREATE TABLE point_last (
            device TEXT NOT NULL,
            point TEXT NOT NULL,
            reading_id INTEGER NOT NULL,
            value REAL NOT NULL,
            PRIMARY KEY (device, point)
        ) WITHOUT ROWID""",
        """INSERT INTO point_last (device, point, reading_id, value)
            SELECT device, point, MAX(id), value FROM readings
            WHERE id <= CAST(COALESCE(
                (SELECT value FROM meta WHERE key = 'summary_last_id'), '0') AS INTEGER)
            GROUP BY device, point""",
    ],
    # 4: access events of doors and gates. Ids are AUTOINCREMENT (never reused: their count
    # summaries follow id ranges, ``meta.access_summary_last_id``, as readings' do). Summaries get
    # the access-event id range they counted (NULL for summaries of readings, whose
    # ``readings_after``/``readings_upto`` stay 0 for summaries of access events).
    [
        """CREATE TABLE access_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            device TEXT NOT NULL,
            event TEXT NOT NULL,
            credential_ref TEXT,
            wall_time REAL NOT NULL,
            boot_id TEXT NOT NULL,
            monotonic_ns INTEGER NOT NULL,
            clock_synced INTEGER NOT NULL,
            wall_time_corrected INTEGER NOT NULL DEFAULT 0,
            detail TEXT
        )""",
        "CREATE INDEX access_events_by_time ON access_events (wall_time)",
        "ALTER TABLE summaries ADD COLUMN access_after INTEGER",
        "ALTER TABLE summaries ADD COLUMN access_upto INTEGER",
    ],
    # 5: demand forecasts (``edge.store.forecasts``): one row per series and first hour, the
    # 24 hourly values as JSON text; a forecast issued later for the same start replaces the row
    # in place (its id stays: eviction goes by id, oldest first). Outbox rows of kind
    # 'forecast' take priority 3 with summaries (``records.PRIORITY``): nothing stored is
    # renumbered.
    [
        """CREATE TABLE forecasts (
            id INTEGER PRIMARY KEY,
            series TEXT NOT NULL,
            issued_at REAL NOT NULL,
            start REAL NOT NULL,
            hours TEXT NOT NULL,
            model TEXT NOT NULL,
            capacity_kwh REAL,
            UNIQUE (series, start)
        )""",
        "CREATE INDEX forecasts_by_start ON forecasts (start)",
    ],
    # 6: records the central API refused are set aside (``refused_at``), with its reason and
    # the wire terms they were refused under (``cloud_sync.outbox``): never claimed again under
    # the same terms, sent again once either side is upgraded.
    [
        "ALTER TABLE outbox ADD COLUMN refused_at REAL",
        "ALTER TABLE outbox ADD COLUMN refusal TEXT",
        "ALTER TABLE outbox ADD COLUMN refused_terms TEXT",
        "CREATE INDEX outbox_set_aside ON outbox (seq) WHERE refused_at IS NOT NULL",
    ],
    # 7: alerts people act on (``edge.alerts``). An alert keeps its condition (active, cleared)
    # and its human state (new, acknowledged, resolved), who and when, its code's parameters and
    # its latest event; ``alert_history`` holds every event, append-only, each written with its
    # outbox record (kind ``alert_event``). Alerts of schema 6 come along: raised ones open and
    # new, cleared ones closed (resolved, outcome ``auto``).
    [
        """CREATE TABLE alerts_v7 (
            alert_id TEXT PRIMARY KEY,
            key TEXT NOT NULL,
            rule TEXT NOT NULL,
            device TEXT NOT NULL,
            point TEXT NOT NULL,
            severity TEXT NOT NULL,
            value REAL NOT NULL,
            condition TEXT NOT NULL CHECK (condition IN ('active', 'cleared')),
            human_state TEXT NOT NULL CHECK (human_state IN ('new', 'acknowledged', 'resolved')),
            raised_at REAL NOT NULL,
            cleared_at REAL,
            acknowledged_at REAL,
            acknowledged_by TEXT,
            resolved_at REAL,
            resolved_by TEXT,
            outcome TEXT,
            level INTEGER NOT NULL DEFAULT 0,
            needs_person INTEGER NOT NULL DEFAULT 0,
            params TEXT NOT NULL DEFAULT '{}',
            raised_params TEXT NOT NULL DEFAULT '{}',
            event TEXT NOT NULL DEFAULT 'raised',
            event_n INTEGER NOT NULL DEFAULT 1,
            event_at REAL NOT NULL DEFAULT 0,
            via TEXT NOT NULL DEFAULT 'rule',
            event_by TEXT,
            note TEXT,
            audience TEXT,
            command_id TEXT,
            message TEXT NOT NULL DEFAULT ''
        )""",
        """INSERT INTO alerts_v7 (alert_id, key, rule, device, point, severity, value, condition,
            human_state, raised_at, cleared_at, resolved_at, outcome, event, event_n, event_at,
            via, message)
            SELECT alert_id, key, rule, device, point, severity, value,
                CASE state WHEN 'raised' THEN 'active' ELSE 'cleared' END,
                CASE state WHEN 'raised' THEN 'new' ELSE 'resolved' END,
                raised_at, cleared_at, cleared_at,
                CASE state WHEN 'raised' THEN NULL ELSE 'auto' END,
                CASE state WHEN 'raised' THEN 'raised' ELSE 'resolved' END,
                CASE state WHEN 'raised' THEN 1 ELSE 3 END,
                COALESCE(cleared_at, raised_at),
                CASE state WHEN 'raised' THEN 'rule' ELSE 'policy' END,
                message
            FROM alerts""",
        "DROP TABLE alerts",
        "ALTER TABLE alerts_v7 RENAME TO alerts",
        "CREATE UNIQUE INDEX alerts_one_open_per_key ON alerts (key)"
        " WHERE NOT (condition = 'cleared' AND human_state = 'resolved')",
        "CREATE INDEX alerts_open ON alerts (raised_at)"
        " WHERE NOT (condition = 'cleared' AND human_state = 'resolved')",
        "CREATE INDEX alerts_by_closing ON alerts (resolved_at)"
        " WHERE condition = 'cleared' AND human_state = 'resolved'",
        """CREATE TABLE alert_history (
            event_id TEXT PRIMARY KEY,
            alert_id TEXT NOT NULL,
            event_n INTEGER NOT NULL,
            event TEXT NOT NULL,
            at REAL NOT NULL,
            via TEXT NOT NULL,
            by TEXT,
            note TEXT,
            outcome TEXT,
            level INTEGER NOT NULL,
            audience TEXT,
            command_id TEXT,
            condition TEXT NOT NULL,
            human_state TEXT NOT NULL,
            message TEXT NOT NULL
        )""",
        "CREATE INDEX alert_history_by_alert ON alert_history (alert_id, event_n)",
        "CREATE INDEX alert_history_by_command ON alert_history (command_id)"
        " WHERE command_id IS NOT NULL",
    ],
    # 8: escalation timers (``edge.alerts.escalation``): how long an alert has been waiting
    # for an acknowledgement, ``unacked_s``, and when that was measured (a record stamp: wall
    # time, boot, monotonic time, whether the clock was synchronised). Written with an alert's
    # first event and then by the escalator; NULL for alerts of schema 7 (they count from the
    # first start under schema 8).
    [
        "ALTER TABLE alerts ADD COLUMN unacked_s REAL",
        "ALTER TABLE alerts ADD COLUMN unacked_wall REAL",
        "ALTER TABLE alerts ADD COLUMN unacked_boot TEXT",
        "ALTER TABLE alerts ADD COLUMN unacked_mono_ns INTEGER",
        "ALTER TABLE alerts ADD COLUMN unacked_synced INTEGER",
    ],
    # 9: the newest reading of every point (``edge.store.latest``), written with each batch, so
    # a point that reports once a day shows on the latest-readings page however busy the
    # building, and after retention or the quota took its raw readings. ``point_last`` stays
    # what it is, the last reading *summarised* (the baseline of counters' deltas). Seeded from
    # the readings not summarised yet, else from ``point_last`` with its reading's unit and time,
    # else (that reading gone) with the unit and period start of the point's newest summary; a
    # point with none of these has no time to show and is left out.
    [
        """CREATE TABLE point_latest (
            device TEXT NOT NULL,
            point TEXT NOT NULL,
            reading_id INTEGER NOT NULL,
            value REAL NOT NULL,
            unit TEXT NOT NULL,
            wall_time REAL NOT NULL,
            PRIMARY KEY (device, point)
        ) WITHOUT ROWID""",
        """INSERT INTO point_latest (device, point, reading_id, value, unit, wall_time)
            SELECT device, point, MAX(id), value, unit, wall_time FROM readings
            WHERE id > CAST(COALESCE(
                (SELECT value FROM meta WHERE key = 'summary_last_id'), '0') AS INTEGER)
            GROUP BY device, point""",
        """INSERT OR IGNORE INTO point_latest (device, point, reading_id, value, unit, wall_time)
            SELECT p.device, p.point, p.reading_id, p.value, r.unit, r.wall_time
            FROM point_last AS p JOIN readings AS r ON r.id = p.reading_id""",
        """INSERT OR IGNORE INTO point_latest (device, point, reading_id, value, unit, wall_time)
            SELECT p.device, p.point, p.reading_id, p.value, s.unit, s.period_start
            FROM point_last AS p JOIN summaries AS s ON s.id = (
                SELECT id FROM summaries WHERE device = p.device AND point = p.point
                ORDER BY period_start DESC, id DESC LIMIT 1)""",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)
COPY_MARGIN_BYTES = 64 * 1024 * 1024
"""Free disk left over after the copy before a migration; with less, no copy is made."""


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer nbedge than this one: this one cannot read it."""

    def __init__(self, path: Path | None, found: int) -> None:
        self.found = found
        copies = sorted(path.parent.glob(f"{path.name}.schema-*.bak")) if path else []
        back = (
            f"; or stop the gateway and put back the copy made before the upgrade, {copies[-1]}"
            f" (it lacks what was stored since)"
            if copies
            else ""
        )
        super().__init__(
            f"the store {path or ''} has schema {found}, newer than this nbedge's "
            f"({SCHEMA_VERSION}): install the newer nbedge again{back}; see docs/upgrades.md"
        )


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def copy_before_migrating(conn: sqlite3.Connection, path: Path, free_bytes: int) -> Path | None:
    """Copy a database of an older schema beside itself before it is migrated (SQLite's online
    backup, so the WAL's pages are in it), if the disk keeps ``COPY_MARGIN_BYTES`` free after
    it; the copy of each older schema is kept until the installer removes it. None: nothing to
    copy (a new file, or the current schema), or no room (logged)."""
    before = schema_version(conn)
    if before == 0 or before >= SCHEMA_VERSION:
        return None
    copy = path.with_name(f"{path.name}.schema-{before}.bak")
    if copy.exists():
        return copy  # a migration that failed before: the copy is of the same schema
    size = (
        conn.execute("PRAGMA page_count").fetchone()[0]
        * conn.execute("PRAGMA page_size").fetchone()[0]
    )
    if free_bytes - size < COPY_MARGIN_BYTES:
        log.warning(
            "store not copied before its migration: no room on the disk",
            extra={"schema": before, "bytes": size, "free_bytes": free_bytes},
        )
        return None
    partial = copy.with_name(copy.name + ".partial")
    target = sqlite3.connect(partial)
    try:
        conn.backup(target)
    finally:
        target.close()
    partial.replace(copy)
    log.info(
        "store copied before its migration",
        extra={"schema": before, "to_schema": SCHEMA_VERSION, "copy": str(copy), "bytes": size},
    )
    return copy


def migrate(conn: sqlite3.Connection, path: Path | None = None) -> int:
    """Bring the database to ``SCHEMA_VERSION``; returns the version it was at before.
    ``SchemaTooNew`` if a newer nbedge migrated it (``path`` names it in the message)."""
    before = schema_version(conn)
    if before > SCHEMA_VERSION:
        raise SchemaTooNew(path, before)
    for version in range(before, SCHEMA_VERSION):
        with transaction(conn):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            if version == 0:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('store_id', ?), ('outbox_seq', '0')",
                    (secrets.token_hex(4),),
                )
            conn.execute(f"PRAGMA user_version = {version + 1}")
    return before


def prepare_new_file(conn: sqlite3.Connection) -> None:
    """Ask for incremental auto-vacuum on a file with no page yet; writes nothing to one that has
    pages (a full disk must not stop the store opening)."""
    if int(conn.execute("PRAGMA page_count").fetchone()[0]) == 0:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")


def ensure_incremental_vacuum(conn: sqlite3.Connection) -> bool:
    """Switch an older file to incremental auto-vacuum (one VACUUM); True when it is on."""
    if int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2:
        return True
    try:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("VACUUM")
    except sqlite3.OperationalError as exc:  # e.g. not enough free disk for the copy
        log.warning("could not switch the store to incremental vacuum", extra={"error": str(exc)})
        return False
    log.info("store switched to incremental vacuum")
    return int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction on a connection opened with ``isolation_level=None``. A failed
    statement or ``COMMIT`` leaves nothing written (SQLite may have rolled back already, as it
    does on a full disk)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
