"""``nbedge run`` as a user starts it: a real process, real signals, JSON logs on stdout."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from firmware_bridge.modbus.profiles import load_profile
from sim.load_profile import ResidentialLoadProfile
from sim.meter import SimulatedMeter
from sim.modbus_server import SimulatedBuilding
from tests.conftest import free_port


def write_config(tmp_path: Path, modbus_port: int, api_port: int) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[gateway]
id = "gw-run"
site = "site-run"
state_dir = "{tmp_path / "state"}"

[mqtt]
enabled = false

[store]
batch_max_delay_s = 0.5

[[modbus.devices]]
name = "meter-1"
profile = "eastron_sdm630"
host = "127.0.0.1"
port = {modbus_port}
poll_interval_s = 0.1

[local_api]
port = {api_port}
"""
    )
    return path


def status(api_port: int) -> dict:
    return httpx.get(f"http://127.0.0.1:{api_port}/api/status", timeout=2).json()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_stops_the_gateway_promptly_and_flushes_what_it_holds(
    tmp_path: Path, signum: signal.Signals
) -> None:
    meter = SimulatedMeter(
        load_profile("eastron_sdm630"), ResidentialLoadProfile(), start=datetime.now(tz=UTC)
    )
    async with SimulatedBuilding({1: meter}, port=0, update_interval_s=0.1) as building:
        api_port = free_port()
        config = write_config(tmp_path, building.port, api_port)
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 20
            received = 0
            while time.monotonic() < deadline and received < 50:
                await asyncio.sleep(0.2)
                try:
                    received = (await asyncio.to_thread(status, api_port))["pipeline"]["received"]
                except httpx.HTTPError:
                    continue
            assert received >= 50, "the gateway never read the meter"
            proc.send_signal(signum)
            stopped_at = time.monotonic()
            out, err = await _communicate(proc, timeout_s=20)
            stop_took = time.monotonic() - stopped_at
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    assert proc.returncode == 0, err
    logs = [json.loads(line) for line in out.splitlines() if line.strip()]
    stopped = [entry for entry in logs if entry["msg"] == "gateway stopped"]
    assert stopped, out
    assert stopped[0]["dropped"] == 0
    db = sqlite3.connect(tmp_path / "state" / "gateway.db")
    try:
        stored = db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    # Everything received before the signal, and during the stop, is on disk.
    assert stored == stopped[0]["written"] >= received
    assert stop_took < 15  # "within a few seconds"; generous for a loaded CI machine


async def _communicate(proc: subprocess.Popen[str], timeout_s: float) -> tuple[str, str]:
    return await asyncio.to_thread(proc.communicate, timeout=timeout_s)


def test_run_with_a_broken_config_exits_78(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[gateway]\nid = "gw"\nsite = "s"\nspeed = 3\n')
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 78
    assert "gateway.speed: unknown key" in result.stderr
