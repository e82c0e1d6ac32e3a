"""Demand forecasts in the store, on real SQLite files: written with one outbox record each that
the wire schema accepts, read back as written, replaced by a forecast of the same hour issued
later (and sent again), pruned with the summaries, evicted under the quota after the summaries,
upgraded from schema 4 without renumbering what the outbox holds."""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from cloud_sync.schemas import EvictionRecord, ForecastRecord, IngestBatch
from edge.alerts import AlertBook
from edge.store import Quota, Retention, Store
from edge.store.forecasts import Forecast
from edge.store.schema import MIGRATIONS, SCHEMA_VERSION
from tests.edge.test_clock import NS, FakeTime
from tests.edge.test_store_access import events_for
from tests.edge.test_store_quota import batch, outbox, raise_one

HOUR = 3600
T0 = 1_800_000_000.0 // HOUR * HOUR  # 2027-01-15T08:00:00Z, on the hour
MODEL = "demand 1.0.0 3f9c2a1b7d4e"
PROFILE = tuple(0.1 * h + 0.3 for h in range(24))  # 0.30000000000000004 and friends


def forecast(
    start: float, *, issued_at: float | None = None, scale: float = 1.0, series: str = "main"
) -> Forecast:
    return Forecast(
        series=series,
        issued_at=start - 55 if issued_at is None else issued_at,
        start=start,
        values=tuple(v * scale for v in PROFILE),
        model=MODEL,
        capacity_kwh=12.5,
    )


def local_rows(path: Path) -> list[tuple[str, float, float, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT series, start, issued_at, hours FROM forecasts ORDER BY series, start"
        ).fetchall()
    finally:
        conn.close()


async def test_forecasts_are_read_back_as_written_with_one_valid_record_each(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.db"
    fake = FakeTime(T0, monotonic_s=42.0, synced=True)
    written = [forecast(T0 + h * HOUR, scale=1 + h) for h in range(3)]
    other = forecast(T0, series="annex", scale=0.5)
    async with Store(path, gateway_id="gw-1", clock=fake.clock()) as store:
        for f in [*written, other]:
            await store.write_forecast(f)
        everything = await store.forecasts("main", 0.0)
        later = await store.forecasts("main", T0 + HOUR)
        annex = await store.forecasts("annex", T0)
        stats = await store.stats()
        claimed = await store.claim(10, lease_s=30)

    assert everything == written  # exact floats, by start
    assert later == written[1:]
    assert annex == [other]
    assert (stats.forecasts, stats.outbox) == (4, {"forecast": 4})
    records = [ForecastRecord.model_validate_json(r.payload) for r in claimed]
    IngestBatch(gateway_id="gw-1", site_id="site-1", records=list(records))  # as the client sends
    first = json.loads(claimed[0].payload)
    assert first["record_id"] == claimed[0].record_id
    assert first["body"] == {
        "series": "main",
        "issued_at": "2027-01-15T07:59:05Z",
        "start": "2027-01-15T08:00:00Z",
        "hours": list(PROFILE),
        "model": MODEL,
        "capacity_kwh": 12.5,
    }
    assert first["time"]["boot_id"] == "boot-a"
    assert first["time"]["monotonic_ns"] == 42 * NS
    assert first["time"]["clock_synced"] is True
    assert [r.body.series for r in records] == ["main", "main", "main", "annex"]


async def test_a_forecast_of_the_same_hour_issued_later_replaces_it_and_is_sent_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.db"
    fake = FakeTime(T0, synced=True)
    first = forecast(T0, issued_at=T0 - 55)
    restarted = forecast(T0, issued_at=T0 + 600, scale=2.0)  # a restart within the hour
    async with Store(path, gateway_id="gw-1", clock=fake.clock()) as store:
        await store.write_forecast(first)
        await store.write_forecast(restarted)
        await store.write_forecast(restarted)  # written twice: nothing new
        await store.write_forecast(first)  # issued earlier (the clock went back): ignored
        held = await store.forecasts("main", T0)
        claimed = await store.claim(10, lease_s=30)

    assert held == [restarted]
    assert len(local_rows(path)) == 1
    bodies = [ForecastRecord.model_validate_json(r.payload).body for r in claimed]
    assert [b.hours for b in bodies] == [list(first.values), list(restarted.values)]
    assert bodies[0].start == bodies[1].start
    assert len({r.record_id for r in claimed}) == 2


async def test_forecasts_go_out_after_alerts_and_access_events_in_order_with_summaries(
    tmp_path: Path,
) -> None:
    fake = FakeTime(T0, synced=True)
    async with Store(tmp_path / "gw.db", gateway_id="gw-1", clock=fake.clock()) as store:
        await store.write(batch(fake, 20))
        fake.advance(2 * 60)
        await store.summarise(now=fake.now, interval_s=60, grace_s=5)  # 20 summaries
        await store.write_forecast(forecast(T0 + HOUR))
        await store.write([], [raise_one(AlertBook(), "p1", fake.now)], access=events_for(fake, 2))
        kinds = [r.kind for r in await store.claim(100, lease_s=30)]

    assert kinds == ["alert_event", "access", "access", *["summary"] * 20, "forecast"]


@pytest.mark.parametrize(
    ("values", "start", "problem"),
    [
        (PROFILE[:23], T0, "23 values"),
        ((math.nan, *PROFILE[1:]), T0, "finite"),
        ((-0.1, *PROFILE[1:]), T0, ">= 0"),
        ((math.inf, *PROFILE[1:]), T0, "finite"),
        (PROFILE, T0 + 60, "hour boundary"),
    ],
    ids=["23-hours", "nan", "negative", "infinite", "not-on-the-hour"],
)
def test_a_forecast_that_is_not_24_finite_hours_from_an_hour_is_refused(
    values: tuple[float, ...], start: float, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        Forecast("main", T0, start, values, MODEL)


async def test_model_output_is_kept_as_plain_floats_and_bad_names_store_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.db"
    fake = FakeTime(T0, synced=True)
    output = np.asarray(PROFILE, dtype=np.float32)
    made = Forecast("main", T0, T0, tuple(output), MODEL)  # what the demand model returns
    assert all(type(v) is float for v in made.values)
    async with Store(path, gateway_id="gw-1", clock=fake.clock()) as store:
        await store.write_forecast(made)
        with pytest.raises(ValidationError):
            await store.write_forecast(forecast(T0, series="main meter"))  # not an identifier
        stats = await store.stats()
        held = await store.forecasts("main", T0)

    assert held == [made]
    assert (stats.forecasts, stats.outbox) == (1, {"forecast": 1})


async def test_forecasts_are_pruned_with_the_summaries_and_their_records_stay(
    tmp_path: Path,
) -> None:
    path, day = tmp_path / "gw.db", 86_400.0
    fake = FakeTime(T0, synced=True)
    keep = Retention(summary_s=2 * day)
    async with Store(path, gateway_id="gw-1", clock=fake.clock(), retention=keep) as store:
        for h in range(48):  # two days of hourly forecasts
            await store.write_forecast(forecast(T0 + h * HOUR))
        # The forecast made at T0 + h covers up to T0 + (h + 24) h; it goes 2 days after that.
        early = await store.housekeep(now=T0 + 3 * day, interval_s=60)
        late = await store.housekeep(now=T0 + 3 * day + 10 * HOUR, interval_s=60)
        left = await store.forecasts("main", 0.0)
        stats = await store.stats()

    assert (early.pruned.forecasts, late.pruned.forecasts) == (0, 10)
    assert [f.start for f in left] == [T0 + h * HOUR for h in range(10, 48)]
    assert stats.outbox["forecast"] == 48  # every one still goes to the central API


async def test_unsent_forecasts_are_evicted_after_the_summaries_and_reported(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.db"
    fake = FakeTime(T0, synced=True)
    async with Store(path, gateway_id="gw-1", clock=fake.clock()) as store:
        await store.write(batch(fake, 200))
        fake.advance(2 * 60)
        await store.summarise(now=fake.now, interval_s=60, grace_s=5)
        for h in range(6):
            await store.write_forecast(forecast(T0 + h * HOUR))
        await store.write([], [raise_one(AlertBook(), "p1", fake.now)], access=events_for(fake, 3))
        store.quota = Quota(max_bytes=1, min_free_bytes=0)  # impossible: evict all there is
        report = await store.enforce_quota()
        stats = await store.stats()

    assert list(report.evicted) == [
        "reading",
        "summary_copy",
        "forecast_copy",
        "summary",
        "forecast",
        "alert",
        "access",
    ]
    assert (report.evicted["forecast_copy"], report.evicted["forecast"]) == (6, 6)
    assert stats.evicted["forecast"] == 6
    assert (stats.forecasts, set(stats.outbox)) == (0, {"eviction"})
    reports = [EvictionRecord.model_validate(r) for r in outbox(path, "eviction")]
    reported: Counter[str] = Counter()
    for record in reports:
        reported[record.body.evicted] += record.body.count
    assert reported == {"reading": 200, "summary": 20, "forecast": 6, "alert": 1, "access": 3}
    (about,) = [r.body for r in reports if r.body.evicted == "forecast"]
    assert (about.oldest.timestamp(), about.newest.timestamp()) == (T0, T0 + 5 * HOUR)


async def test_forecasts_outlive_quota_pressure_that_summaries_relieve(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    fake = FakeTime(T0, synced=True)
    async with Store(path, gateway_id="gw-1", clock=fake.clock()) as store:
        for h in range(24):
            await store.write_forecast(forecast(T0 + h * HOUR))
        for _ in range(30):  # half an hour of minutes: 20 points
            await store.write(batch(fake, 1000, seconds=59.0))
            fake.advance(1.0)
        fake.advance(60)
        await store.summarise(now=fake.now, interval_s=60, grace_s=5)
        store.quota = Quota(max_bytes=300_000, min_free_bytes=0)
        report = await store.enforce_quota()
        stats = await store.stats()

    assert report.after.used_bytes <= 300_000
    assert report.evicted["summary"] > 0
    assert "forecast" not in report.evicted
    assert stats.outbox["forecast"] == 24


async def test_a_schema_4_database_upgrades_without_renumbering_its_outbox(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:4]:
        for statement in migration:
            conn.execute(statement)
    conn.execute("INSERT INTO meta VALUES ('store_id', 'abcd1234'), ('outbox_seq', '2')")
    conn.executemany(
        "INSERT INTO outbox (seq, record_id, kind, priority, payload, created_at)"
        " VALUES (?, ?, ?, ?, '{}', 0)",
        [(1, "gw-1:abcd1234:1", "summary", 3), (2, "gw-1:abcd1234:2", "access", 2)],
    )
    conn.execute("PRAGMA user_version = 4")
    conn.close()

    fake = FakeTime(T0, synced=True)
    async with Store(path, gateway_id="gw-1", clock=fake.clock()) as store:
        await store.write_forecast(forecast(T0))
        claimed = await store.claim(10, lease_s=30)
        assert [r.record_id for r in claimed] == [f"gw-1:abcd1234:{i}" for i in (2, 1, 3)]
        assert [r.kind for r in claimed] == ["access", "summary", "forecast"]

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 5
        priorities = conn.execute("SELECT kind, priority FROM outbox ORDER BY seq").fetchall()
        assert priorities == [("summary", 3), ("access", 2), ("forecast", 3)]
    finally:
        conn.close()
