"""A full disk as a building meets it: the gateway's state folder on a real 4 MiB filesystem (a
tmpfs, mounted for the test), the central API down, meters read fast enough to fill it within
seconds. The gateway keeps running and writing, evicts bulk data first, raises ``disk_full``,
keeps every unsent alert, and starts again on the full disk. Skipped where a tmpfs cannot be
mounted (not root). In-process fault injection for every store operation:
tests/edge/test_store_disk_full.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.alerts import Alert, AlertBook
from edge.store import Quota, Store
from firmware_bridge.readings import Reading
from sim.modbus_server import SimulatedBuilding
from tests.conftest import free_port
from tests.support import alerts as support
from tests.test_faults import GatewayProcess, building_meters, reaped, toml

FS_BYTES = 4 * 1024 * 1024
T0 = 1_800_000_000.0
RUN_TIMEOUT_S = 40.0


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB filesystem (tmpfs) at ``tmp_path/fs``, unmounted afterwards."""
    mountpoint = tmp_path / "fs"
    mountpoint.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a 4 MiB tmpfs needs root and mount(8)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def readings(start: float, n: int) -> list[Reading]:
    return [
        Reading(f"meter-{i % 7}", f"p{i % 13}", 230.0 + i % 5, "V", start + i / n, 0)
        for i in range(n)
    ]


def voltage_alert(book: AlertBook, n: int, at: float) -> Alert:
    return support.raise_alert(book, device="meter-1", point=f"voltage_{n}", at=at)


def outbox_kinds(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind").fetchall())
    finally:
        conn.close()


async def test_a_store_filling_a_small_disk_keeps_writing_and_keeps_its_alerts(
    small_fs: Path,
) -> None:
    db = small_fs / "gateway.db"
    book = AlertBook()
    alerts = 0
    async with Store(db, gateway_id="gw-1", quota=Quota(min_free_bytes=0)) as store:
        for n in range(150):  # 150,000 readings: several times what the disk holds
            raised = [voltage_alert(book, n, T0 + n)] if n % 5 == 0 else []
            alerts += len(raised)
            await store.write(readings(T0 + n, 1000), raised)  # never fails
        stats = await store.stats()
    assert shutil.disk_usage(small_fs).free < FS_BYTES // 4, "the disk never filled"
    assert stats.evicted.get("reading", 0) > 50_000
    assert "alert" not in stats.evicted
    assert outbox_kinds(db)["alert_event"] == alerts
    assert stats.disk.full_errors > 0
    assert stats.disk.reserve_bytes == FS_BYTES // 16  # given back, then made again


async def test_the_default_watermark_fits_a_small_disk_and_spares_unsent_alerts(
    small_fs: Path,
) -> None:
    db = small_fs / "gateway.db"
    book = AlertBook()
    alerts = 0
    async with Store(db, gateway_id="gw-1") as store:  # min_free_bytes: 64 MiB by default
        for n in range(60):
            raised = [voltage_alert(book, n, T0 + n)] if n % 3 == 0 else []
            alerts += len(raised)
            await store.write(readings(T0 + n, 1000), raised)
            if n % 10 == 9:
                await store.enforce_quota()
        report = await store.enforce_quota()
        stats = await store.stats()
    assert outbox_kinds(db)["alert_event"] == alerts  # not one unsent alert evicted
    assert "alert" not in stats.evicted
    assert stats.evicted["reading"] > 0
    assert stats.disk.watermark_bytes == FS_BYTES // 10
    assert report.after.free_disk_bytes >= stats.disk.watermark_bytes


def gateway_toml(state_dir: Path, modbus_port: int, api_port: int) -> str:
    meters = 20
    config: dict[str, Any] = {
        "gateway": {"id": "gw-full", "site": "site-full", "state_dir": str(state_dir)},
        "mqtt": {"enabled": False},
        "local_api": {"port": api_port},
        "store": {
            "min_free_bytes": 0,
            "summary_interval_s": 10,
            "batch_max_delay_s": 0.1,
            "housekeeping_interval_s": 1.0,
        },
        "uplink": {  # nothing listens there: the central API is down
            "url": f"http://127.0.0.1:{free_port()}",
            "token": "t",
            "interval_s": 0.5,
            "timeout_s": 1.0,
            "backoff_max_s": 2.0,
        },
        "modbus": {
            "devices": [
                {
                    "name": f"meter-{unit}",
                    "profile": "eastron_sdm630",
                    "host": "127.0.0.1",
                    "port": modbus_port,
                    "unit_id": unit,
                    "poll_interval_s": 0.1,
                }
                for unit in range(1, meters + 1)
            ]
        },
    }
    return toml(config)


async def status(api_port: int) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=3) as client:
        answer = await client.get(f"http://127.0.0.1:{api_port}/api/status")
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result


async def active_rules(api_port: int) -> set[str]:
    async with httpx.AsyncClient(timeout=3) as client:
        answer = await client.get(f"http://127.0.0.1:{api_port}/api/alerts")
        return {alert["rule"] for alert in answer.json()}


async def until(
    gateway: GatewayProcess, api_port: int, condition: Any, timeout_s: float = RUN_TIMEOUT_S
) -> dict[str, Any]:
    """The gateway's status once ``condition`` holds; fails if the gateway exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if gateway.proc.poll() is not None:
            pytest.fail(
                f"the gateway exited with status {gateway.proc.returncode}:\n"
                f"{gateway.log.read_text()[-3000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            state = await status(api_port)
            if condition(state):
                return state
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s} s: {gateway.log.read_text()[-3000:]}")
        await asyncio.sleep(0.25)


def full_errors(state: dict[str, Any]) -> int:
    return int(state["store"].get("disk", {}).get("full_errors", 0))


@pytest.mark.timeout(180)
async def test_nbedge_run_on_a_full_small_disk_keeps_running_and_starts_again(
    tmp_path: Path, small_fs: Path
) -> None:
    state_dir = small_fs / "state"
    db = state_dir / "gateway.db"
    config = tmp_path / "gateway.toml"
    api_port = free_port()
    processes: list[GatewayProcess] = []
    with reaped(processes):
        async with SimulatedBuilding(
            building_meters(20), port=0, update_interval_s=0.1
        ) as building:
            config.write_text(gateway_toml(state_dir, building.port, api_port))
            first = GatewayProcess(config, tmp_path / "first.log")
            processes.append(first)
            await first.ready()
            full = await until(
                first,
                api_port,
                lambda s: full_errors(s) > 0 or shutil.disk_usage(small_fs).free < 64 * 1024,
            )
            later = await until(  # it keeps writing: about 2 s of readings
                first,
                api_port,
                lambda s: s["pipeline"]["written"] > full["pipeline"]["written"] + 5000,
                timeout_s=20,
            )
            assert later["store"]["disk"]["disk_full"]
            assert "disk_full" in await active_rules(api_port)
            assert first.proc.poll() is None, first.log.read_text()[-3000:]
            assert await first.stop() == 0, first.log.read_text()[-3000:]

            # The disk is still full: the gateway starts, answers and writes again.
            assert shutil.disk_usage(small_fs).free < FS_BYTES // 8
            second = GatewayProcess(config, tmp_path / "second.log")
            processes.append(second)
            await second.ready()
            again = await until(second, api_port, lambda s: s["pipeline"]["written"] > 5000)
            assert again["ready"]
            assert "disk_full" in await active_rules(api_port)
            assert await second.stop() == 0, second.log.read_text()[-3000:]

    conn = sqlite3.connect(db)
    try:
        evicted = {
            key.removeprefix("evicted."): int(value)
            for key, value in conn.execute("SELECT key, value FROM meta WHERE key LIKE 'evicted.%'")
        }
        disk_full_records = conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'alert_event'"
            " AND payload LIKE '%\"disk_full\"%'"
        ).fetchone()[0]
        alert_records = conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'alert_event'"
        ).fetchone()[0]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    assert evicted["reading"] > 10_000  # bulk first
    assert "alert" not in evicted
    assert "access" not in evicted
    assert disk_full_records >= 1
    assert alert_records > disk_full_records  # the voltage alerts are all still there
