"""The latest-readings page on real SQLite files: every point with its true newest value, however
rarely it reports and however busy the building, after retention and upgrades too."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge.store import Store
from edge.store.schema import MIGRATIONS
from firmware_bridge.readings import Reading
from tests.edge.test_clock import NS, FakeTime

T0 = 1_800_000_000.0 // 3600 * 3600  # an hour boundary


def busy_building(start: float, count: int) -> list[Reading]:
    """``count`` readings of 10 meters x 13 points, one poll every 5 s."""
    readings = []
    for k in range(count):
        at = start + (k // 130) * 5
        readings.append(Reading(f"meter-{k % 10}", f"p{k % 13}", float(k), "W", at, int(at * NS)))
    return readings


def battery(value: float, at: float) -> Reading:
    return Reading("door-7", "battery", value, "%", at, int(at * NS))


async def test_a_rare_point_stays_on_the_page_behind_thousands_of_busy_readings(
    tmp_path: Path,
) -> None:
    async with Store(tmp_path / "gw.db", gateway_id="gw") as store:
        await store.write([battery(81.0, T0)])
        busy = busy_building(T0 + 1, 6_000)  # more than the 5,000 rows the page once looked at
        for k in range(0, len(busy), 500):
            await store.write(busy[k : k + 500])

        rows = {(r["device"], r["point"]): r for r in await store.latest_readings()}

    assert rows[("door-7", "battery")] == {
        "device": "door-7",
        "point": "battery",
        "value": 81.0,
        "unit": "%",
        "wall_time": T0,
    }
    assert len(rows) == 1 + 130
    newest = {(r.device, r.point): r for r in busy}  # the last of each point, in written order
    assert all(rows[key]["value"] == r.value for key, r in newest.items())
    assert all(rows[key]["wall_time"] == r.wall_time for key, r in newest.items())


async def test_the_newest_value_survives_summaries_and_retention_of_its_reading(
    tmp_path: Path,
) -> None:
    fake = FakeTime(T0, synced=True)
    async with Store(tmp_path / "gw.db", gateway_id="gw", clock=fake.clock()) as store:
        await store.write([battery(81.0, T0), battery(80.0, T0 + 60)])
        await store.write(busy_building(T0 + 120, 260))
        await store.summarise(now=T0 + 3 * 3600, interval_s=3600, grace_s=5)
        pruned = await store.prune(now=T0 + 3 * 3600, retention_s=60)
        await store.write([battery(79.5, T0 + 3 * 3600)])
        rows = {(r["device"], r["point"]): r for r in await store.latest_readings()}
        older = {(r["device"], r["point"]): r for r in rows.values() if r["device"] != "door-7"}

    assert pruned == 262  # every raw reading so far is gone
    assert (rows[("door-7", "battery")]["value"], rows[("door-7", "battery")]["wall_time"]) == (
        79.5,
        T0 + 3 * 3600,
    )
    assert len(older) == 130
    assert rows[("meter-9", "p12")]["value"] == 259.0


async def test_a_point_newest_reading_taken_before_the_clock_synchronised_gets_its_time_corrected(
    tmp_path: Path,
) -> None:
    fake = FakeTime(1_600_000_000.0, monotonic_s=20.0)  # a stale time, no NTP yet
    async with Store(tmp_path / "gw.db", gateway_id="gw", clock=fake.clock()) as store:
        await store.write([Reading("m1", "voltage_l1", 231.0, "V", fake.now, fake.mono_ns)])
        fake.advance(1.0)
        fake.step(1_800_000_000.0 + 21.0 - fake.now)  # NTP steps the clock
        fake.ntp = True
        await store.write([Reading("m1", "voltage_l2", 229.0, "V", fake.now, fake.mono_ns)])
        assert await store.correct_wall_times() == 1
        rows = {r["point"]: r["wall_time"] for r in await store.latest_readings()}

    assert rows == {"voltage_l1": 1_800_000_020.0, "voltage_l2": 1_800_000_021.0}


async def test_a_schema_8_store_upgrades_with_every_point_newest_reading(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:8]:
        for statement in migration:
            conn.execute(statement)
    conn.execute("INSERT INTO meta VALUES ('store_id', 'abcd1234'), ('outbox_seq', '0')")
    rows = [
        ("m1", "voltage_l1", 230.0, "V", T0),  # 1: summarised, still there
        ("m1", "voltage_l1", 231.0, "V", T0 + 5),  # 2: summarised, still there (its newest)
        ("m1", "import_energy", 10.0, "kWh", T0 + 5),  # 3: summarised, evicted since
        ("door-7", "battery", 81.0, "%", T0 + 6),  # 4: summarised, still there
        ("m1", "voltage_l1", 232.0, "V", T0 + 3600),  # 5: not summarised yet
        ("m2", "voltage_l1", 228.0, "V", T0 + 3601),  # 6: not summarised, never before
    ]
    conn.executemany(
        "INSERT INTO readings (device, point, value, unit, wall_time, boot_id, monotonic_ns,"
        " clock_synced) VALUES (?, ?, ?, ?, ?, 'boot', 0, 1)",
        rows,
    )
    conn.execute("UPDATE meta SET value = '4' WHERE key = 'summary_last_id'")
    conn.executemany(
        "INSERT INTO point_last (device, point, reading_id, value) VALUES (?, ?, ?, ?)",
        [
            ("m1", "voltage_l1", 2, 231.0),
            ("m1", "import_energy", 3, 10.0),
            ("door-7", "battery", 4, 81.0),
        ],
    )
    conn.execute(
        "INSERT INTO summaries (device, point, unit, period_start, period_end, count, min, max,"
        " mean, last, delta) VALUES ('m1', 'import_energy', 'kWh', ?, ?, 1, 10, 10, 10, 10, 0)",
        (T0, T0 + 3600),
    )
    conn.execute("DELETE FROM readings WHERE id = 3")
    conn.execute("PRAGMA user_version = 8")
    conn.close()

    async with Store(path, gateway_id="gw") as store:
        latest = [
            (r["device"], r["point"], r["value"], r["unit"], r["wall_time"])
            for r in await store.latest_readings()
        ]

    assert latest == [
        ("door-7", "battery", 81.0, "%", T0 + 6),
        ("m1", "import_energy", 10.0, "kWh", T0),  # its summary's start: the reading is gone
        ("m1", "voltage_l1", 232.0, "V", T0 + 3600),
        ("m2", "voltage_l1", 228.0, "V", T0 + 3601),
    ]


async def test_the_page_is_exact_between_the_table_updates_and_across_a_restart(
    tmp_path: Path,
) -> None:
    fake = FakeTime(T0, synced=True)
    seen = []
    for _boot in range(2):  # the second time after a restart
        async with Store(tmp_path / "gw.db", gateway_id="gw", clock=fake.clock()) as store:
            for _ in range(10):  # 25 s apart: the table is brought up to date every 60 s
                value = float(len(seen))
                await store.write([Reading("m1", "voltage_l1", value, "V", fake.now, 0)])
                [row] = await store.latest_readings()
                seen.append(row["value"] == value and row["wall_time"] == fake.now)
                fake.advance(25.0)
        fake.advance(3600.0)
    assert seen == [True] * 20
