"""Readings per second through ``edge.store.Store.write``, against raw ``executemany``.

Both write the same readings (50 SDM630 meters, 13 points each, realistic values) in batches of
500, one transaction per batch, into the store's own schema with the store's settings (WAL,
``synchronous=NORMAL``), each into a fresh file in the same folder. The baseline is the floor of
what SQLite can do from Python; the ratio says what the store's thread hop, time stamps and
transaction handling cost. Budget (docs/architecture.md): at least 20,000 readings/s.

    .venv/bin/python bench/store_writes.py [--readings 300000] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from edge.store import Store
from edge.store.schema import migrate
from firmware_bridge.modbus.profiles import load_profile
from firmware_bridge.readings import Reading

BATCH = 500
METERS = 50
BUDGET_PER_S = 20_000

_BASELINE_SQL = (
    "INSERT INTO readings (device, point, value, unit, wall_time, boot_id, monotonic_ns,"
    " clock_synced) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def make_readings(count: int, seed: int = 1) -> list[Reading]:
    """``count`` readings as 50 meters polled once a second would give them, values varying."""
    rng = random.Random(seed)
    points = [(p.name, p.unit) for p in load_profile("eastron_sdm630").points]
    typical = {"V": 230.0, "A": 8.0, "W": 1800.0, "Hz": 50.0, "kWh": 12_345.0}
    start = time.time() - 86_400
    readings: list[Reading] = []
    poll = 0
    while len(readings) < count:
        wall = start + poll
        for meter in range(1, METERS + 1):
            for name, unit in points:
                value = typical.get(unit, 1.0) * rng.uniform(0.95, 1.05)
                readings.append(
                    Reading(f"meter-{meter}", name, value, unit, wall, int(wall * 1e9) + meter)
                )
        poll += 1
    return readings[:count]


def batches(readings: Sequence[Reading]) -> list[Sequence[Reading]]:
    return [readings[i : i + BATCH] for i in range(0, len(readings), BATCH)]


async def through_the_store(path: Path, readings: Sequence[Reading]) -> float:
    async with Store(path, gateway_id="bench") as store:
        started = time.perf_counter()
        for batch in batches(readings):
            await store.write(batch)
        return time.perf_counter() - started


def raw_executemany(path: Path, readings: Sequence[Reading]) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        migrate(conn)
        boot_id = "00000000-0000-0000-0000-000000000000"
        started = time.perf_counter()
        for batch in batches(readings):
            rows = [
                (r.device, r.point, r.value, r.unit, r.wall_time, boot_id, r.monotonic_ns, 1)
                for r in batch
            ]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_BASELINE_SQL, rows)
            conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=300_000)
    parser.add_argument("--dir", type=Path, default=None, help="folder for the SQLite files")
    args = parser.parse_args()
    readings = make_readings(args.readings)
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        baseline_s = raw_executemany(Path(folder) / "baseline.db", readings)
        store_s = asyncio.run(through_the_store(Path(folder) / "store.db", readings))
    n = len(readings)
    store_rate, baseline_rate = n / store_s, n / baseline_s
    print(f"readings            {n:>12,}  (batches of {BATCH}, {METERS} meters x 13 points)")
    print(f"raw executemany     {baseline_rate:>12,.0f} readings/s  ({baseline_s:.2f} s)")
    print(f"Store.write         {store_rate:>12,.0f} readings/s  ({store_s:.2f} s)")
    print(f"store / raw         {store_rate / baseline_rate:>12.2f}")
    print(f"store / budget      {store_rate / BUDGET_PER_S:>12.2f}  (budget {BUDGET_PER_S:,}/s)")


if __name__ == "__main__":
    main()
