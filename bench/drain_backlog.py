"""Seven days of backlog of a 50-meter building, drained by the real sync client to a real central
API on loopback, with the default batch size and the rate limit off (``--limit 2000``: on).

The backlog is built through the real store: 15-minute readings of the 13 points of 50 SDM630
meters over 7 days, summarised hourly by ``Store.summarise`` (50 x 13 x 24 x 7 = 109,200 summary
records), plus one alert raised and cleared per meter per day (50 x 7 x 2 = 700 alert records):
109,900 records in all. The central API is ``nbedge central serve`` (uvicorn, SQLite) in its own
process. The budget (docs/architecture.md) is a minute on loopback.

    .venv/bin/python bench/drain_backlog.py [--days 7] [--meters 50] [--dir /tmp] [--limit N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cloud_sync.client import SyncClient
from edge.alerts import Alert, AlertBook, Finding
from edge.store import Store
from firmware_bridge.modbus.profiles import load_profile
from firmware_bridge.readings import Reading

SITE, GATEWAY = "bench-site", "bench-gw"
BUDGET_S = 60.0
HOUR = 3600
READINGS_PER_HOUR = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nbedge(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge.cli", *args]


async def build_backlog(store: Store, *, days: int, meters: int) -> int:
    """Readings, hourly summaries and alerts of ``days`` days ending at the last whole hour."""
    points = [(p.name, p.unit) for p in load_profile("eastron_sdm630").points]
    end = time.time() // HOUR * HOUR
    start = end - days * 24 * HOUR
    for hour in range(days * 24):
        t0 = start + hour * HOUR
        readings = [
            Reading(f"meter-{m}", name, 230.0 + (m + k) % 7, unit, t0 + k * HOUR / 4, k)
            for m in range(1, meters + 1)
            for name, unit in points
            for k in range(READINGS_PER_HOUR)
        ]
        book = AlertBook()
        alerts: list[Alert] = []
        if hour % 24 == 12:  # one swell a day per meter, raised then cleared (and resolved)
            for m in range(1, meters + 1):
                alerts += book.apply(swell(m, True, t0))
        for i in range(0, len(readings), 500):
            await store.write(readings[i : i + 500], alerts if i == 0 else ())
        if alerts:
            cleared = [
                c for m in range(1, meters + 1) for c in book.apply(swell(m, False, t0 + 60))
            ]
            await store.write([], cleared)
    await store.summarise(now=end + HOUR, interval_s=HOUR, grace_s=5.0)
    stats = await store.stats()
    return sum(stats.outbox.values())


def swell(meter: int, active: bool, at: float) -> Finding:
    """The voltage rule's finding for a swell on L1 of ``meter-<meter>``."""
    value = 262.0 if active else 230.0
    return Finding(
        code="voltage",
        device=f"meter-{meter}",
        point="voltage_l1",
        active=active,
        value=value,
        at=at,
        params={"variant": "over", "value": value, "limit": 253.0},
    )


def start_central(folder: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    env = os.environ | {
        "NBEDGE_CENTRAL_DATABASE_URL": f"sqlite:///{folder / 'central.db'}",
        "NBEDGE_CENTRAL_PLATFORM_TOKEN": secrets.token_urlsafe(24),
    }
    token = subprocess.run(
        nbedge("central", "add-gateway", "--site", SITE, "--gateway", GATEWAY),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    port = free_port()
    proc = subprocess.Popen(
        nbedge("central", "serve", "--port", str(port)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("the central API did not start") from None
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}", token


async def drain(store: Store, url: str, token: str, total: int, limit: float | None) -> float:
    client = SyncClient(
        store,
        base_url=url,
        token=token,
        gateway_id=GATEWAY,
        site_id=SITE,
        drain_max_records_per_s=limit,
        drain_jitter_s=0.0,
    )
    started = time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(client.run())
        deadline = started + 600
        while client.status().records_sent < total:
            if time.perf_counter() > deadline or task.done():
                break
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        task.cancel()
    if client.status().records_sent != total:
        raise SystemExit(f"drained {client.status().records_sent} of {total}: {client.status()}")
    return elapsed


async def main_async(days: int, meters: int, folder: Path, limit: float | None) -> None:
    async with Store(folder / "gateway.db", gateway_id=GATEWAY) as store:
        built = time.perf_counter()
        total = await build_backlog(store, days=days, meters=meters)
        built = time.perf_counter() - built
        stats = await store.stats()
        print(f"backlog             {total:>10,} records {dict(sorted(stats.outbox.items()))}")
        print(f"                    ({days} days x {meters} meters, built in {built:.1f} s)")
        proc, url, token = start_central(folder)
        try:
            elapsed = await drain(store, url, token, total, limit)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        left = sum((await store.stats()).outbox.values())
    rate = total / elapsed
    print(f"drained             {total - left:>10,} records in {elapsed:.1f} s (batches of 500)")
    limited = "off" if limit is None else f"{limit:g} records/s"
    print(f"rate                {rate:>10,.0f} records/s (rate limit {limited})")
    print(f"time / budget       {elapsed / BUDGET_S:>10.2f}  (budget {BUDGET_S:.0f} s)")
    print(f"at the default limit (2000 records/s) this backlog takes >= {total / 2000:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--meters", type=int, default=50)
    parser.add_argument("--dir", type=Path, default=None, help="folder for the SQLite files")
    parser.add_argument(
        "--limit", type=float, default=None, help="drain_max_records_per_s (default: off)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        asyncio.run(main_async(args.days, args.meters, Path(folder), args.limit))


if __name__ == "__main__":
    main()
