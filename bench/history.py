"""A point's history for the console's charts, on the store of a building that has run a week.

The store is that of a gateway that polled 50 SDM630 meters (13 points, 2 of them counters)
every 5 s for 7 days within the default quota (``store.max_bytes`` = 512 MiB): summaries for
the whole week (the hours before the raw part in bulk SQL of the store's schema), then the last
``--raw-hours`` hours written through ``Store.write`` in batches of 500, summarised hour by hour
by ``Store.summarise``, the quota evicting the oldest raw readings as it does on a gateway; the
current hour is not summarised yet and 59 min 55 s old, the worst moment for a history. It is
built once and kept under the temporary folder (``--dir``; ``--rebuild`` builds it again).

Timed on the store's thread, ``--queries`` times each: ``Store.meter_history`` of 24 hours and
of 7 days of a gauge and of a counter, and ``Store.latest_readings``. Baselines in the same run,
on a plain connection to the same file: the latest-readings query this replaced (the last 5,000
rows) and a plain SELECT of the point's raw readings over the same 24 hours (the time index).
``--write-cost`` also measures what keeping the tables costs the writes (see docs).

    .venv/bin/python bench/history.py [--meters 50] [--days 7] [--raw-hours 14] [--queries 50]
        [--dir DIR] [--rebuild] [--write-cost]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from edge.clock import Clock
from edge.store import Quota, Store
from edge.store import latest as store_latest
from edge.store.history import History
from edge.store.schema import migrate
from firmware_bridge.modbus.profiles import load_profile
from firmware_bridge.readings import Reading

HOUR = 3600
POLL_S = 5
BATCH = 500  # the pipeline's store.batch_max_items
BUDGET_MS = 100.0
NOW = 1_800_000_000 // HOUR * HOUR + HOUR - POLL_S  # 59 min 55 s into an hour (2027-01-15)
OLD_LATEST_SQL = (
    "SELECT device, point, value, unit, MAX(id), wall_time FROM readings"
    " WHERE id > (SELECT COALESCE(MAX(id), 0) - 5000 FROM readings)"
    " GROUP BY device, point ORDER BY device, point"
)
RAW_SQL = (
    "SELECT wall_time, value FROM readings"
    " WHERE wall_time >= ? AND wall_time < ? AND device = ? AND point = ?"
)
BOOT_ID = "6f1c7a52-93d4-4e0b-8a1e-2c5d0f9b7e31"  # as long as a real one
PROFILE = load_profile("eastron_sdm630")
TYPICAL = {"V": 230.0, "A": 8.0, "W": 1800.0, "Hz": 50.0}


# --- the building -----------------------------------------------------------------------------


def load(meter: int, t: float) -> float:
    """A meter's load in kW at wall time ``t``: a daily shape, each meter its own phase."""
    return 1.2 + 0.8 * math.sin(2 * math.pi * (t / 86_400 + meter / 50))


def gauge(unit: str, meter: int, index: int, t: float) -> float:
    wobble = math.sin(t / 300 + meter + index)
    if unit == "V":
        return 230.0 + 4 * wobble
    if unit == "Hz":
        return 50.0 + 0.05 * wobble
    share = load(meter, t) * (1 + 0.1 * wobble)
    return TYPICAL[unit] * share / 1.2


def energy_at(meter: int, t: float, start: float) -> float:
    """The register of a meter at ``t``: 10,000 kWh at ``start``, then its load integrated (the
    daily mean, 1.2 kW, plus the sine's integral)."""
    phase = 2 * math.pi * meter / 50
    wave = 0.8 * 86_400 / (2 * math.pi) / 3600
    angle = 2 * math.pi * t / 86_400 + phase
    angle0 = 2 * math.pi * start / 86_400 + phase
    return 10_000.0 + 1.2 * (t - start) / 3600 + wave * (math.cos(angle0) - math.cos(angle))


def poll(meters: int, t: float, start: float) -> list[Reading]:
    readings = []
    for m in range(1, meters + 1):
        for i, p in enumerate(PROFILE.points):
            value = energy_at(m, t, start) if p.kind == "counter" else gauge(p.unit, m, i, t)
            readings.append(Reading(f"meter-{m}", p.name, value, p.unit, t, int(t * 1e9)))
    return readings


def bulk_summaries(path: Path, meters: int, start: int, end: int) -> int:
    """Hourly summaries of every point from ``start`` to ``end`` as the summariser writes them,
    without their readings (long evicted) and with their records synced (no outbox row)."""
    rows = []
    for hour in range(start, end, HOUR):
        for m in range(1, meters + 1):
            for i, p in enumerate(PROFILE.points):
                if p.kind == "counter":
                    lo, hi = energy_at(m, hour, start), energy_at(m, hour + HOUR, start)
                    mean, delta = (lo + hi) / 2, hi - lo
                else:
                    mean, delta = gauge(p.unit, m, i, hour + HOUR / 2), None
                    lo, hi = mean * 0.97, mean * 1.03
                last = hi if p.kind == "counter" else mean
                key = (f"meter-{m}", p.name, p.unit, hour, hour + HOUR, HOUR // POLL_S)
                rows.append((*key, lo, hi, mean, last, delta))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO summaries (device, point, unit, period_start, period_end, count, min,"
            " max, mean, last, delta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        # the last reading summarised: where the counters' next deltas start from
        conn.executemany(
            "INSERT INTO point_last (device, point, reading_id, value) VALUES (?, ?, 0, ?)",
            [
                (f"meter-{m}", p.name, energy_at(m, end - POLL_S, start))
                for m in range(1, meters + 1)
                for p in PROFILE.points
                if p.kind == "counter"
            ],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return len(rows)


class BenchTime:
    """The building's wall clock, set by the builder; monotonic time follows it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def clock(self) -> Clock:
        return Clock(
            wall=lambda: self.now,
            monotonic_ns=lambda: int(self.now * 1e9),
            synchronised=lambda: True,
            boot_id=BOOT_ID,
        )


def counters(meters: int) -> frozenset[tuple[str, str]]:
    return frozenset(
        (f"meter-{m}", name) for m in range(1, meters + 1) for name in PROFILE.counter_names
    )


async def build(path: Path, meters: int, days: int, raw_hours: int) -> dict[str, Any]:
    started = time.perf_counter()
    start = NOW + POLL_S - days * 86_400  # an hour boundary
    raw_start = NOW + POLL_S - HOUR * raw_hours
    fake = BenchTime(start)
    async with Store(path, gateway_id="bench", clock=fake.clock()):
        pass  # the schema
    summaries = bulk_summaries(path, meters, start, raw_start)
    print(f"  {summaries:,} summaries in bulk for {(raw_start - start) // HOUR} hours")
    written = 0
    quota = Quota(max_bytes=512 << 20)
    async with Store(
        path, gateway_id="bench", clock=fake.clock(), quota=quota, counters=counters(meters)
    ) as store:
        for hour in range(raw_start, NOW + POLL_S, HOUR):
            pending: list[Reading] = []
            for t in range(hour, min(hour + HOUR, NOW + 1), POLL_S):
                fake.now = t
                pending += poll(meters, t, start)
                while len(pending) >= BATCH:
                    await store.write(pending[:BATCH])
                    written += BATCH
                    pending = pending[BATCH:]
            await store.write(pending)
            written += len(pending)
            if hour + HOUR <= NOW:
                fake.now = hour + HOUR + POLL_S
                await store.summarise(now=fake.now, interval_s=HOUR)
            stats = await store.stats()
            print(
                f"  {written:,} readings written, {stats.readings:,} kept,"
                f" {stats.bytes / 2**20:.0f} MiB, {time.perf_counter() - started:.0f} s"
            )
        fake.now = NOW
        await store.enforce_quota()
        stats = await store.stats()
    return {
        "meters": meters,
        "days": days,
        "raw_hours": raw_hours,
        "now": NOW,
        "written": written,
        "readings": stats.readings,
        "summaries": stats.summaries,
        "bytes": stats.bytes,
        "evicted": stats.evicted,
        "build_s": round(time.perf_counter() - started, 1),
    }


# --- the measurements -------------------------------------------------------------------------


def figures(name: str, seconds: list[float], baseline_ms: float | None = None) -> float:
    ms = sorted(s * 1000 for s in seconds)
    median = statistics.median(ms)
    p95 = ms[max(0, math.ceil(len(ms) * 0.95) - 1)]
    ratio = "" if baseline_ms is None else f"  {median / baseline_ms:6.2f} x baseline"
    print(f"  {name:<44} median {median:8.2f} ms  p95 {p95:8.2f} ms{ratio}")
    return median


async def timed(fn: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    seconds = []
    for _ in range(n):
        started = time.perf_counter()
        await fn()
        seconds.append(time.perf_counter() - started)
    return seconds


def timed_sql(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...], n: int) -> list[float]:
    seconds = []
    for _ in range(n):
        started = time.perf_counter()
        conn.execute(sql, params).fetchall()
        seconds.append(time.perf_counter() - started)
    return seconds


def plans(path: Path, statements: list[str]) -> Iterator[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for sql in statements:
            if sql.lstrip().upper().startswith("SELECT"):
                steps = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
                yield f"{' '.join(sql.split())[:90]}\n      -> {'; '.join(steps)}"
    finally:
        conn.close()


async def measure(path: Path, info: dict[str, Any], n: int) -> None:
    statements: list[str] = []

    class Traced(sqlite3.Connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.set_trace_callback(statements.append)

    now = float(info["now"])
    device = f"meter-{(info['meters'] + 1) // 2}"
    fake = BenchTime(now)
    day_since = now // HOUR * HOUR - 23 * HOUR
    week_since = now // HOUR * HOUR - 167 * HOUR
    async with Store(
        path,
        gateway_id="bench",
        clock=fake.clock(),
        counters=counters(info["meters"]),
        connection_factory=Traced,
    ) as store:
        stats = await store.stats()
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            oldest = conn.execute("SELECT MIN(wall_time) FROM readings").fetchone()[0]
            print(
                f"store: {stats.bytes / 2**20:.0f} MiB, {stats.summaries:,} summaries,"
                f" {stats.readings:,} raw readings kept (the last {(now - oldest) / HOUR:.1f} h;"
                f" {info['written']:,} written, evicted {stats.evicted}),"
                f" {info['meters'] * len(PROFILE.points)} points"
            )

            def history(point: str, since: float) -> Callable[[], Awaitable[History]]:
                return lambda: store.meter_history(device, point, since=since, until=now)

            print(f"\n{n} queries each ({device}; budget {BUDGET_MS:.0f} ms):")
            old = figures(
                "baseline: old latest readings (last 5,000)",
                timed_sql(conn, OLD_LATEST_SQL, (), n),
            )
            raw_n = max(3, n // 10)
            raw = figures(
                f"baseline: raw rows of voltage_l1, 24 h (n={raw_n})",
                timed_sql(conn, RAW_SQL, (day_since, now, device, "voltage_l1"), raw_n),
            )
            figures("Store.latest_readings", await timed(store.latest_readings, n), old)
            results: dict[str, History] = {}
            for point in ("voltage_l1", "import_energy"):
                for label, since in (("24 h", day_since), ("7 days", week_since)):
                    fn = history(point, since)
                    results[f"{point} {label}"] = await fn()
                    figures(f"Store.meter_history {point}, {label}", await timed(fn, n), raw)
        finally:
            conn.close()
        statements.clear()
        await history("import_energy", day_since)()
        await store.latest_readings()
        read = list(statements)

    print("\nwhat a phone gets:")
    for name, result in results.items():
        body = result.model_dump_json()
        print(
            f"  {name:<22} {len(result.hours)} hours, {len(result.recent)} recent buckets"
            f" of {(result.recent[0].end - result.recent[0].start) if result.recent else 0:.0f} s,"
            f" {len(body):,} bytes of JSON"
        )
    print("\nquery plans on this store (history of a counter, 24 h; latest readings):")
    for line in plans(path, read):
        print(f"  {line}")


# --- what the tables cost the writes ----------------------------------------------------------


def wchar() -> int:
    with open("/proc/self/io") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("wchar:"))


def write_cost(folder: Path, meters: int, polls: int = 240) -> None:
    """Readings/s and bytes written per reading (WAL and checkpoints: ``wchar``) of one poll
    of the building per transaction, in four ways."""
    batches = [
        [
            (r.device, r.point, r.value, r.unit, r.wall_time, BOOT_ID, r.monotonic_ns, 1)
            for r in poll(meters, NOW + k * POLL_S, NOW)
        ]
        for k in range(polls)
    ]
    n = sum(len(b) for b in batches)
    variants: dict[str, tuple[str | None, int]] = {
        "readings only (schema 8)": (None, 0),
        "+ point_latest every batch": (None, 1),
        f"+ point_latest every {store_latest.FLUSH_S:.0f} s (the store)": (
            None,
            int(store_latest.FLUSH_S // POLL_S),
        ),
        "+ index readings (device, point)": (
            "CREATE INDEX by_point ON readings (device, point)",
            0,
        ),
    }
    print(f"\nwrites: {n:,} readings, one poll of {meters} meters ({n // polls}) a transaction:")
    base: float | None = None
    for name, (index, every) in variants.items():
        path = folder / "write-cost.db"
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            migrate(conn)
            if index:
                conn.execute(index)
            before, started = wchar(), time.perf_counter()
            for k, batch in enumerate(batches):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT INTO readings (device, point, value, unit, wall_time, boot_id,"
                    " monotonic_ns, clock_synced) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    batch,
                )
                if every and k % every == 0:
                    store_latest.flush(conn)
                conn.execute("COMMIT")
            elapsed, written = time.perf_counter() - started, wchar() - before
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            size = path.stat().st_size
        finally:
            conn.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        per_reading = written / n
        base = base or per_reading
        print(
            f"  {name:<40} {n / elapsed:>9,.0f} readings/s  {per_reading:6.0f} B written"
            f" a reading ({per_reading / base:5.2f} x), file {size / n:4.0f} B a reading"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meters", type=int, default=50)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--raw-hours", type=int, default=14)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "nbedge-bench")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--write-cost", action="store_true")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    name = f"history-{args.meters}m-{args.days}d-{args.raw_hours}h"
    path, info_path = args.dir / f"{name}.db", args.dir / f"{name}.json"
    if args.rebuild or not info_path.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        print(f"building {path} ...")
        info = asyncio.run(build(path, args.meters, args.days, args.raw_hours))
        info_path.write_text(json.dumps(info, indent=1))
        print(f"  built in {info['build_s']} s")
    info = json.loads(info_path.read_text())
    os.sync()
    asyncio.run(measure(path, info, args.queries))
    if args.write_cost:
        write_cost(args.dir, args.meters)


if __name__ == "__main__":
    main()
