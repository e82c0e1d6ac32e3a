"""Access events of doors and gates in the store, on real SQLite files: written with their outbox
rows, sent after alerts and before summaries, counted per door, event and period whatever the
clock does, kept through quota pressure until the very last resort, upgraded from schema 3."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from edge.alerts import AlertBook
from edge.store import Quota, Retention, Store
from edge.store.schema import MIGRATIONS, SCHEMA_VERSION
from firmware_bridge import AccessEvent, AccessEventKind
from tests.edge.test_clock import NS, FakeTime
from tests.edge.test_store_quota import batch, outbox, raise_one
from tests.support import alerts as support

T0 = 1_800_000_000.0 // 60 * 60  # a period boundary
INTERVAL = 60
EVENTS: tuple[AccessEventKind, ...] = ("granted", "denied", "opened", "closed")


def access(
    device: str, event: AccessEventKind, fake: FakeTime, credential_ref: str | None = None
) -> AccessEvent:
    return AccessEvent(device, event, credential_ref, fake.now, fake.mono_ns, None)


def events_for(fake: FakeTime, n: int, seconds: float = 1.0) -> list[AccessEvent]:
    """``n`` events over the next ``seconds``, cycling through two doors and four kinds."""
    out = []
    for i in range(n):
        out.append(access(f"door-{i % 2}", EVENTS[i % len(EVENTS)], fake, f"hmac:{i:04x}"))
        fake.advance(seconds / n)
    return out


def event_counts(path: Path) -> Counter[tuple[str, str, float]]:
    """(device, point, period start) -> count, summed over the count summaries in the outbox."""
    counts: Counter[tuple[str, str, float]] = Counter()
    for record in outbox(path, "summary"):
        body = record["body"]
        if body["point"].startswith("events."):
            start = datetime.fromisoformat(body["period_start"]).timestamp()
            counts[body["device"], body["point"], start] += body["count"]
    return counts


def truth(path: Path) -> Counter[tuple[str, str, float]]:
    """The same, from the events in the local history."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT device, 'events.' || event, CAST(wall_time / ? AS INTEGER) * ?, COUNT(*)"
            " FROM access_events GROUP BY 1, 2, 3",
            (INTERVAL, INTERVAL),
        ).fetchall()
    finally:
        conn.close()
    return Counter({(d, p, float(s)): c for d, p, s, c in rows})


async def test_access_events_are_written_with_one_outbox_record_each(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    fake = FakeTime(T0, monotonic_s=42.0, synced=True)
    forced = AccessEvent("gate-1", "forced_open", None, T0 + 3, 45 * NS, "contact open, no grant")
    granted = AccessEvent("gate-1", "granted", "hmac:9f2c", T0 + 1, 43 * NS, None)
    async with Store(path, gateway_id="gw-1", clock=fake.clock()) as store:
        await store.write(batch(fake, 10), access=[granted, forced])
        await store.write(batch(fake, 10))  # the old call, readings only, still works
        stats = await store.stats()
        records = await store.claim(10, lease_s=30)

    assert (stats.readings, stats.access_events, stats.outbox) == (20, 2, {"access": 2})
    assert [r.kind for r in records] == ["access", "access"]
    first, second = (json.loads(r.payload) for r in records)
    assert first["record_id"] == records[0].record_id
    assert first["body"] == {
        "device": "gate-1",
        "event": "granted",
        "credential_ref": "hmac:9f2c",
        "occurred_at": "2027-01-15T08:00:01Z",
        "detail": None,
    }
    assert first["time"]["monotonic_ns"] == 43 * NS  # the event's own time, not the write's
    assert first["time"]["boot_id"] == "boot-a"
    assert first["time"]["clock_synced"] is True
    assert (second["body"]["event"], second["body"]["detail"]) == (
        "forced_open",
        "contact open, no grant",
    )


async def test_access_events_are_claimed_after_alerts_and_before_summaries(tmp_path: Path) -> None:
    fake = FakeTime(T0, synced=True)
    async with Store(tmp_path / "gw.db", gateway_id="gw-1", clock=fake.clock()) as store:
        await store.write(batch(fake, 10), access=events_for(fake, 2))
        fake.advance(2 * INTERVAL)
        await store.summarise(now=fake.now, interval_s=INTERVAL, grace_s=5)
        await store.write([], [raise_one(AlertBook(), "voltage_l1", fake.now)])
        await store.write([], access=events_for(fake, 1))
        kinds = [r.kind for r in await store.claim(100, lease_s=30)]

    assert kinds[:4] == ["alert_event", "access", "access", "access"]
    assert set(kinds[4:]) == {"summary"}


async def test_event_counts_per_door_event_and_period(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    fake = FakeTime(T0, synced=True)
    async with Store(path, gateway_id="gw-1", clock=fake.clock()) as store:
        for _ in range(3):  # three periods; 12 events in each, 3 of each (door, kind) pair
            await store.write(batch(fake, 20, seconds=1.0), access=events_for(fake, 12, 50.0))
            fake.advance(INTERVAL - 51.0)
        open_period = events_for(fake, 4, 10.0)  # the period is still open: not counted yet
        await store.write([], access=open_period)
        written = await store.summarise(now=fake.now, interval_s=INTERVAL, grace_s=5)
        assert written == 3 * (20 + 4)  # 20 points, 4 (door, kind) pairs, per period

    counts = event_counts(path)
    assert sum(counts.values()) == 36
    assert counts[("door-0", "events.granted", T0)] == 3
    assert counts[("door-1", "events.denied", T0 + INTERVAL)] == 3
    assert set(counts) == {
        (f"door-{d}", f"events.{EVENTS[k]}", T0 + p * INTERVAL)
        for p in range(3)
        for d, k in ((0, 0), (1, 1), (0, 2), (1, 3))
    }
    bodies = [
        r["body"] for r in outbox(path, "summary") if r["body"]["point"].startswith("events.")
    ]
    assert {(b["unit"], b["min"], b["max"], b["mean"], b["last"], b["delta"]) for b in bodies} == {
        ("events", 1.0, 1.0, 1.0, 1.0, None)
    }


async def test_every_access_event_is_counted_once_whatever_the_clock_does(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.db"
    fake = FakeTime(T0, synced=True)
    written = 0
    async with Store(path, gateway_id="gw-1", clock=fake.clock()) as store:
        # Steady, then the clock is set back 5 minutes into periods already counted, then
        # forward a day, then back an hour.
        for jump in (0.0, -300.0, 86_400.0, -3600.0):
            fake.step(jump)
            for _ in range(6):
                events = events_for(fake, 8, 30.0)
                await store.write(batch(fake, 10), access=events)
                written += len(events)
                await store.summarise(now=fake.now, interval_s=INTERVAL, grace_s=5)
        fake.advance(2 * INTERVAL)
        await store.summarise(now=fake.now, interval_s=INTERVAL, grace_s=5)

    counts = event_counts(path)
    assert sum(counts.values()) == written
    assert counts == truth(path)  # every (door, kind, period) adds up to its events
    conn = sqlite3.connect(path)
    try:
        ranges = conn.execute(
            "SELECT DISTINCT access_after, access_upto FROM summaries"
            " WHERE access_upto IS NOT NULL ORDER BY access_after"
        ).fetchall()
        twice = conn.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM summaries WHERE point LIKE 'events.%'"
            " GROUP BY device, point, period_start HAVING COUNT(*) > 1)"
        ).fetchone()[0]
    finally:
        conn.close()
    assert ranges[0][0] == 0
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert ranges[-1][1] == written
    assert twice > 0  # the jump back gave periods a second count summary


async def test_access_events_survive_quota_pressure_that_evicts_readings_and_summaries(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.db"
    fake = FakeTime(T0, synced=True)
    async with Store(path, gateway_id="gw-1", clock=fake.clock()) as store:
        events = 0
        for _ in range(60):  # an hour of minutes: 20 points, 2 doors with 4 kinds each
            chunk = events_for(fake, 8, 1.0)
            await store.write(batch(fake, 1000, seconds=INTERVAL - 1.0), access=chunk)
            events += len(chunk)
        fake.advance(INTERVAL)
        await store.summarise(now=fake.now, interval_s=INTERVAL, grace_s=5)
        await store.write([], access=events_for(fake, 8))  # not counted yet
        events += 8
        store.quota = Quota(max_bytes=400_000, min_free_bytes=0)
        report = await store.enforce_quota()
        stats = await store.stats()

    assert report.after.used_bytes <= 400_000
    assert report.evicted["reading"] == 60_000
    assert report.evicted["summary"] > 0
    assert "access" not in report.evicted
    assert stats.outbox["access"] == events  # every access event still goes to the central API
    assert stats.access_events >= 8  # those not yet counted are never evicted
    reported = {r["body"]["evicted"] for r in outbox(path, "eviction")}
    assert reported == {"reading", "summary"}


async def test_unsent_access_events_are_the_very_last_resort_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gw.db"
    fake = FakeTime(T0, synced=True)
    async with Store(path, gateway_id="gw-1", clock=fake.clock()) as store:
        await store.write(batch(fake, 1000), access=events_for(fake, 5))
        book = AlertBook()
        raised = raise_one(book, "voltage_l1", fake.now)
        cleared = support.clear_alert(book, raised, at=fake.now)  # critical: stays unresolved
        await store.write([], [raised, *cleared])
        store.quota = Quota(max_bytes=1, min_free_bytes=0)  # impossible: evict all there is
        report = await store.enforce_quota()
        stats = await store.stats()

    assert list(report.evicted)[-2:] == ["alert", "access"]  # access records went last
    assert report.evicted["access"] == 5
    assert set(stats.outbox) == {"eviction"}
    reported: Counter[str] = Counter()
    for record in outbox(path, "eviction"):
        reported[record["body"]["evicted"]] += record["body"]["count"]
    assert reported == {"reading": 1000, "alert": 2, "access": 5}
    assert stats.access_events == 5  # the local copies, not counted yet, stay
    assert any(r.levelname == "ERROR" and "evicted" in r.getMessage() for r in caplog.records)


async def test_access_history_follows_retention_once_counted(tmp_path: Path) -> None:
    path, day = tmp_path / "gw.db", 86_400.0
    fake = FakeTime(T0, synced=True)
    keep = Retention(access_s=day)
    async with Store(path, gateway_id="gw-1", clock=fake.clock(), retention=keep) as store:
        await store.write([], access=events_for(fake, 4))
        first = await store.housekeep(now=T0 + 2 * day, interval_s=INTERVAL)
        await store.write([], access=events_for(fake, 3))  # stamped long ago, not counted yet
        second = await store.housekeep(now=T0 + 2 * day + 1, interval_s=INTERVAL)
        stats = await store.stats()
    # Each housekeeping counted the events, then retention took them from the local history;
    # the outbox still holds every one of them.
    assert (first.pruned.access_events, second.pruned.access_events) == (4, 3)
    assert stats.access_events == 0
    assert stats.outbox["access"] == 7


async def test_a_schema_3_database_upgrades_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:3]:
        for statement in migration:
            conn.execute(statement)
    conn.execute("INSERT INTO meta VALUES ('store_id', 'abcd1234'), ('outbox_seq', '1')")
    conn.executemany(
        "INSERT INTO readings (device, point, value, unit, wall_time, boot_id, monotonic_ns,"
        " clock_synced) VALUES ('m1', 'voltage_l1', ?, 'V', ?, 'boot-1', ?, 1)",
        [(230.0 + i, T0 + i * 10, i * NS) for i in range(6)],
    )
    conn.execute(
        "INSERT INTO outbox (seq, record_id, kind, priority, payload, created_at)"
        " VALUES (1, 'gw-1:abcd1234:1', 'alert', 0, '{}', 0)"
    )
    conn.execute("PRAGMA user_version = 3")
    conn.close()

    fake = FakeTime(T0 + 60, synced=True)
    async with Store(path, gateway_id="gw-1", clock=fake.clock()) as store:
        assert store.store_id == "abcd1234"
        await store.write([], access=events_for(fake, 4))
        stats = await store.stats()
        assert (stats.readings, stats.access_events) == (6, 4)
        assert stats.outbox == {"alert": 1, "access": 4}  # a record of schema 3, kept
        fake.advance(2 * INTERVAL)
        # One summary of the old readings, four count summaries of the new events.
        assert await store.summarise(now=fake.now, interval_s=INTERVAL, grace_s=5) == 5
        records = await store.claim(3, lease_s=30)
        assert [r.record_id for r in records] == [f"gw-1:abcd1234:{i}" for i in (1, 2, 3)]

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        counted = conn.execute(
            "SELECT SUM(count) FROM summaries WHERE access_upto IS NOT NULL"
        ).fetchone()
        assert counted == (4,)
    finally:
        conn.close()
