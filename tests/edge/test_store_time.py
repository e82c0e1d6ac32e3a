"""Time on a gateway without a real-time clock, on real SQLite files: clock jumps lose no reading,
wall times taken before the first synchronisation are corrected, schema 1 databases upgrade."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections import Counter
from pathlib import Path

from edge.store import Store
from edge.store.schema import MIGRATIONS, SCHEMA_VERSION
from firmware_bridge.readings import Reading
from tests.edge.test_clock import NS, FakeTime

T0 = 1_800_000_000.0 // 60 * 60  # a period boundary
INTERVAL = 60


def tick(fake: FakeTime, points: tuple[str, ...] = ("voltage_l1", "total_power")) -> list[Reading]:
    """One second passes and every point is read once."""
    fake.advance(1.0)
    return [Reading("m1", p, 230.0 + fake.now % 7, "V", fake.now, fake.mono_ns) for p in points]


async def write_seconds(store: Store, fake: FakeTime, seconds: int) -> int:
    written = 0
    for _ in range(seconds // 10):
        batch = [r for _ in range(10) for r in tick(fake)]
        await store.write(batch)
        written += len(batch)
    return written


def summaries_in_outbox(path: Path) -> list[dict[str, object]]:
    conn = sqlite3.connect(path)
    try:
        payloads = conn.execute("SELECT payload FROM outbox WHERE kind = 'summary' ORDER BY seq")
        return [json.loads(p) for (p,) in payloads]
    finally:
        conn.close()


async def test_every_reading_is_in_exactly_one_summary_whatever_the_clock_does(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.db"
    fake = FakeTime(T0, synced=True)
    written = 0
    async with Store(path, gateway_id="gw-1", clock=fake.clock()) as store:
        # Steady, then the clock is set back 5 minutes (into periods already summarised), then
        # forward 10 days, then back 3 days, then a little forward.
        for jump in (0.0, -300.0, 10 * 86_400.0, -3 * 86_400.0, 30.0):
            fake.step(jump)
            for _ in range(4):
                written += await write_seconds(store, fake, 100)
                await store.summarise(now=fake.now, interval_s=INTERVAL, grace_s=5)
        fake.advance(2 * INTERVAL)
        await store.summarise(now=fake.now, interval_s=INTERVAL, grace_s=5)

    conn = sqlite3.connect(path)
    try:
        summarised = conn.execute("SELECT SUM(count) FROM summaries").fetchone()[0]
        ranges = conn.execute(
            "SELECT DISTINCT readings_after, readings_upto FROM summaries ORDER BY readings_after"
        ).fetchall()
        per_period = Counter(
            {
                (p, s): c
                for p, s, c in conn.execute(
                    "SELECT point, period_start, SUM(count) FROM summaries"
                    " GROUP BY point, period_start"
                )
            }
        )
        truth = Counter(
            {
                (p, float(b * INTERVAL)): c
                for p, b, c in conn.execute(
                    "SELECT point, CAST(wall_time / ? AS INTEGER) AS b, COUNT(*) FROM readings"
                    " GROUP BY point, b",
                    (INTERVAL,),
                )
            }
        )
        max_id = conn.execute("SELECT MAX(id) FROM readings").fetchone()[0]
        twice = conn.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM summaries GROUP BY point, period_start"
            " HAVING COUNT(*) > 1)"
        ).fetchone()[0]
    finally:
        conn.close()

    assert summarised == written == sum(s["body"]["count"] for s in summaries_in_outbox(path))
    # The runs' id ranges follow each other with no gap and no overlap, up to the last reading.
    assert ranges[0][0] == 0
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert ranges[-1][1] == max_id
    # Each period's summaries add up to the readings stamped in it; the jump back gave some
    # periods a second summary, the jumps forward no empty ones.
    assert per_period == truth
    assert twice > 0
    assert len(per_period) == len(truth)


async def test_an_open_period_waits_but_readings_stamped_far_ahead_do_not_block(
    tmp_path: Path,
) -> None:
    fake = FakeTime(T0 + 30 * 86_400, synced=False)  # the clock is a month ahead
    async with Store(tmp_path / "gw.db", gateway_id="gw-1", clock=fake.clock()) as store:
        ahead = await write_seconds(store, fake, 20)
        fake.step(-30 * 86_400)  # set right
        fake.ntp = True
        await write_seconds(store, fake, 20)  # in the open period
        assert await store.summarise(now=fake.now, interval_s=INTERVAL, grace_s=5) == 2
        [*summaries] = summaries_in_outbox(tmp_path / "gw.db")
        assert sum(s["body"]["count"] for s in summaries) == ahead
        assert all(s["time"]["clock_synced"] is False for s in summaries)


async def test_readings_before_the_first_sync_get_their_wall_time_corrected(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.db"
    fake = FakeTime(1_600_000_000.0, monotonic_s=20.0)  # fake-hwclock: a stale time, no NTP yet
    async with Store(path, gateway_id="gw-1", clock=fake.clock()) as store:
        early = await write_seconds(store, fake, 30)  # monotonic 21..50 s
        fake.advance(1.0)
        fake.step(1_800_000_051.0 - fake.now)  # NTP steps the clock: offset = 1_800_000_000
        fake.ntp = True
        late = await write_seconds(store, fake, 30)
        fake.advance(2 * INTERVAL)
        done = await store.housekeep(now=fake.now, interval_s=INTERVAL, grace_s=5)
        assert done.corrected == early

    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT wall_time, monotonic_ns, clock_synced FROM readings"
            " WHERE wall_time_corrected = 1"
        ).fetchall()
    finally:
        conn.close()
    assert len(rows) == early
    assert all(wall == 1_800_000_000.0 + mono / NS for wall, mono, _ in rows)
    assert {synced for _, _, synced in rows} == {0}  # still known to have been taken unsynced
    summaries = summaries_in_outbox(path)
    assert sum(s["body"]["count"] for s in summaries) == early + late
    assert all(s["body"]["period_start"].startswith("2027-01-15") for s in summaries)
    assert all(s["time"]["clock_synced"] is True for s in summaries)


async def test_what_cannot_be_corrected_stays_flagged_and_apart(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    # Boot a: the clock happens to be right but is never synchronised; the power goes.
    boot_a = FakeTime(T0, monotonic_s=5.0)
    async with Store(path, gateway_id="gw-1", clock=boot_a.clock(boot_id="boot-a")) as store:
        lost_boot = await write_seconds(store, boot_a, 10)
    # Boot b, same period: summarised before NTP answers, then synchronised.
    boot_b = FakeTime(T0 + 15, monotonic_s=5.0)
    async with Store(path, gateway_id="gw-1", clock=boot_b.clock(boot_id="boot-b")) as store:
        before_sync = await write_seconds(store, boot_b, 10)
        boot_b.advance(2 * INTERVAL)
        await store.housekeep(now=boot_b.now, interval_s=INTERVAL, grace_s=5)
        boot_b.ntp = True
        boot_b.step(-2 * INTERVAL)  # back into the first period
        synced = await write_seconds(store, boot_b, 10)
        boot_b.advance(2 * INTERVAL)
        done = await store.housekeep(now=boot_b.now, interval_s=INTERVAL, grace_s=5)
        assert done.corrected == 0  # boot a's readings have no offset; boot b's were summarised

    flagged = Counter[bool]()
    for summary in summaries_in_outbox(path):
        assert summary["body"]["period_start"].startswith("2027-01-15T08:00")  # type: ignore[index]
        flagged[summary["time"]["clock_synced"]] += summary["body"]["count"]  # type: ignore[index]
    assert flagged == {False: lost_boot + before_sync, True: synced}


async def test_a_schema_1_database_upgrades_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in MIGRATIONS[0]:  # schema 1 exactly as the walking skeleton created it
        conn.execute(statement)
    conn.execute("INSERT INTO meta VALUES ('store_id', 'abcd1234'), ('outbox_seq', '1')")
    conn.executemany(
        "INSERT INTO readings (device, point, value, unit, wall_time, boot_id, monotonic_ns,"
        " clock_synced) VALUES ('m1', 'voltage_l1', ?, 'V', ?, 'boot-1', ?, 1)",
        [(230.0 + i, T0 + i * 10, i * NS) for i in range(12)],  # two minutes
    )
    conn.execute("INSERT INTO meta VALUES ('summary_until', ?)", (repr(T0 + 60),))
    conn.execute(
        "INSERT INTO summaries (device, point, unit, period_start, period_end, count, min, max,"
        " mean, last) VALUES ('m1', 'voltage_l1', 'V', ?, ?, 6, 230, 235, 232.5, 235)",
        (T0, T0 + 60),
    )
    conn.execute(
        "INSERT INTO outbox (seq, record_id, kind, priority, payload, created_at)"
        " VALUES (1, 'gw-1:abcd1234:1', 'summary', 2, '{}', 0)"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.close()

    fake = FakeTime(T0 + 200, synced=True)
    async with Store(path, gateway_id="gw-1", clock=fake.clock()) as store:
        assert store.store_id == "abcd1234"
        stats = await store.stats()
        assert (stats.readings, stats.summaries, stats.outbox) == (12, 1, {"summary": 1})
        # Only the second minute was not summarised under schema 1; it is summarised now.
        assert await store.summarise(now=T0 + 200, interval_s=INTERVAL, grace_s=5) == 1
        records = await store.claim(10, lease_s=30)
        assert [r.record_id for r in records] == ["gw-1:abcd1234:1", "gw-1:abcd1234:2"]
        assert json.loads(records[1].payload)["body"]["count"] == 6

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        assert conn.execute("SELECT priority FROM outbox WHERE seq = 1").fetchone()[0] == 3
        assert conn.execute("SELECT MIN(id), MAX(id) FROM readings").fetchone() == (1, 12)
    finally:
        conn.close()
