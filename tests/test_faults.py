"""Store and forward that loses nothing: a real gateway killed with SIGKILL at random moments, and a
central API that fails for a while (500s, timeouts, garbage). Whatever the faults, every record the
gateway committed to its outbox reaches the central API exactly once.

Record ids are ``<gateway>:<store id>:<seq>``, the sequence running 1..N with N kept in the store's
``meta.outbox_seq``; at the end the platform's feeds (every page of summaries and alerts) must hold
exactly the ids 1..N, with no gap and no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.daemon import Gateway
from edge.schemas import GatewayConfig
from firmware_bridge.modbus.profiles import load_profile
from sim.load_profile import ResidentialLoadProfile
from sim.meter import SimulatedMeter, VoltageEvent
from sim.modbus_server import SWELL_V, SimulatedBuilding
from tests.cloud_sync import conftest as central_fixtures
from tests.cloud_sync.conftest import Central
from tests.conftest import wait_until

# The real central API (uvicorn in a thread, on SQLite), and the fixtures it is built from.
central = central_fixtures.central
database_url = central_fixtures.database_url
database_kind = central_fixtures.database_kind  # "sqlite"

SEED = 20_240_301
SUMMARY_INTERVAL_S = 10
READY_TIMEOUT_S = 20.0
DRAIN_TIMEOUT_S = 45.0


def building_meters(count: int = 3) -> dict[int, SimulatedMeter]:
    """SDM630 meters whose L1 swells above 253 V for a second every few seconds: alerts raised
    and cleared all the time, besides a summary of every point every 10 s."""
    start = datetime.now(tz=UTC)
    return {
        unit: SimulatedMeter(
            load_profile("eastron_sdm630"),
            ResidentialLoadProfile(seed=unit),
            start=start,
            seed=unit,
            voltage_events=[
                VoltageEvent(start_s=unit, duration_s=1.0, voltage_v=SWELL_V, period_s=3.0 + unit)
            ],
        )
        for unit in range(1, count + 1)
    }


def gateway_config(tmp_path: Path, central: Central, modbus_port: int) -> dict[str, Any]:
    return {
        "gateway": {
            "id": central.gateway_id,
            "site": central.site_id,
            "state_dir": str(tmp_path / "state"),
        },
        "mqtt": {"enabled": False},
        "local_api": {"enabled": False},
        "store": {"summary_interval_s": SUMMARY_INTERVAL_S, "batch_max_delay_s": 0.05},
        "uplink": {
            "url": central.base_url,
            "token": central.gateway_token,
            "batch_max_records": 20,  # many small batches: many moments to be killed in
            "interval_s": 0.2,
            "timeout_s": 1.0,
            "backoff_max_s": 1.0,
            "drain_jitter_s": 0.0,
        },
        "modbus": {
            "devices": [
                {
                    "name": f"meter-{unit}",
                    "profile": "eastron_sdm630",
                    "host": "127.0.0.1",
                    "port": modbus_port,
                    "unit_id": unit,
                    "poll_interval_s": 0.2,
                }
                for unit in (1, 2, 3)
            ]
        },
    }


def toml(config: dict[str, Any]) -> str:
    """Just enough TOML for ``gateway_config``: tables of scalars, one array of tables."""
    lines: list[str] = []
    for section, table in config.items():
        if section == "modbus":
            for device in table["devices"]:
                lines.append("[[modbus.devices]]")
                lines += [f"{key} = {json.dumps(value)}" for key, value in device.items()]
            continue
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


@dataclass
class StoreFacts:
    store_id: str
    outbox_seq: int
    outbox_rows: int
    unsummarised: int
    """Readings not yet summarised: summaries (outbox records) still to come from them."""
    integrity: str


def store_facts(path: Path) -> StoreFacts:
    """What the gateway's SQLite file holds, read as a second connection."""
    db = sqlite3.connect(path, timeout=5)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if "summary_last_id" in meta:  # schema 2 on: readings up to this id are summarised
            where, since = "id > ?", int(meta["summary_last_id"])
        else:  # schema 1: readings before this wall time are summarised
            where, since = "wall_time >= ?", float(meta.get("summary_until") or 0.0)
        return StoreFacts(
            store_id=meta["store_id"],
            outbox_seq=int(meta["outbox_seq"]),
            outbox_rows=db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0],
            unsummarised=db.execute(
                f"SELECT COUNT(*) FROM readings WHERE {where}", (since,)
            ).fetchone()[0],
            integrity=db.execute("PRAGMA integrity_check").fetchone()[0],
        )
    finally:
        db.close()


def drained(path: Path) -> bool:
    """Nothing left to send and nothing left to summarise: no new record can appear."""
    facts = store_facts(path)
    return facts.outbox_rows == 0 and facts.unsummarised == 0


def pull_ids(central: Central) -> list[str]:
    """The record id of every summary and alert event of the site, every page, as pulled."""
    ids: list[str] = []
    with httpx.Client(
        base_url=central.base_url, headers=central.platform_headers(), timeout=10
    ) as client:
        for feed in ("summaries", "alerts"):
            cursor = 0
            for _ in range(10_000):  # bounded: 10 million items
                page = client.get(
                    f"/v1/sites/{central.site_id}/{feed}", params={"after": cursor, "limit": 1000}
                )
                page.raise_for_status()
                items = page.json()["items"]
                if not items:
                    break
                ids += [item["record_id"] for item in items]
                cursor = page.json()["next_cursor"]
    return ids


def assert_exactly_once(central: Central, facts: StoreFacts, gateway_id: str) -> None:
    ids = pull_ids(central)
    expected = {f"{gateway_id}:{facts.store_id}:{seq}" for seq in range(1, facts.outbox_seq + 1)}
    duplicated = sorted(i for i, n in Counter(ids).items() if n > 1)
    assert duplicated == [], f"records stored twice: {duplicated[:10]}"
    missing = sorted(expected - set(ids), key=lambda i: int(i.rsplit(":", 1)[1]))
    assert missing == [], f"{len(missing)} records lost, e.g. {missing[:10]}"
    assert set(ids) == expected


class GatewayProcess:
    """``python -m edge.cli run`` as systemd would start it; its logs go to a file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        self._file = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    async def ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while '"gateway running"' not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the gateway did not start:\n{self.log.read_text()[-3000:]}")
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._file.close()

    async def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        returncode = await asyncio.to_thread(self.proc.wait, 20)
        self._file.close()
        return returncode


@contextlib.contextmanager
def reaped(processes: list[GatewayProcess]) -> Iterator[None]:
    """Whatever happens in the test, no gateway process outlives it."""
    try:
        yield
    finally:
        for gateway in processes:
            if gateway.proc.poll() is None:
                gateway.kill()


async def wait_until_drained(path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(drained, path):
        if time.monotonic() > deadline:
            pytest.fail(f"the outbox did not drain in {timeout_s} s: {store_facts(path)}")
        await asyncio.sleep(0.25)


async def kill_nine_rounds(tmp_path: Path, central: Central, rounds: int) -> None:
    rng = random.Random(SEED)
    db_path = tmp_path / "state" / "gateway.db"
    processes: list[GatewayProcess] = []
    with reaped(processes):
        async with SimulatedBuilding(building_meters(), port=0, update_interval_s=0.1) as building:
            config = tmp_path / "gateway.toml"
            config.write_text(toml(gateway_config(tmp_path, central, building.port)))
            for n in range(rounds):
                gateway = GatewayProcess(config, tmp_path / f"gateway-{n}.log")
                processes.append(gateway)
                await gateway.ready()
                await asyncio.sleep(rng.uniform(0.3, 3.0))
                gateway.kill()
                facts = await asyncio.to_thread(store_facts, db_path)
                assert facts.integrity == "ok", f"round {n}: {facts.integrity}"
        # The meters are gone: the last run drains the outbox and summarises what is left.
        gateway = GatewayProcess(config, tmp_path / "gateway-final.log")
        processes.append(gateway)
        await gateway.ready()
        await wait_until_drained(db_path, DRAIN_TIMEOUT_S)
        assert await gateway.stop() == 0, gateway.log.read_text()[-3000:]

    facts = store_facts(db_path)
    assert facts.integrity == "ok"
    assert facts.outbox_rows == 0
    assert facts.outbox_seq >= 10, "too few records to prove anything"
    assert_exactly_once(central, facts, central.gateway_id)


async def test_kill_9_at_random_moments_loses_and_repeats_nothing(
    tmp_path: Path, central: Central
) -> None:
    await kill_nine_rounds(tmp_path, central, rounds=3)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_kill_9_fifty_times_loses_and_repeats_nothing(
    tmp_path: Path, central: Central
) -> None:
    await kill_nine_rounds(tmp_path, central, rounds=50)


class CentralOutage(httpx.AsyncBaseTransport):
    """The real transport to the real central API, failing its first ``outage_requests``
    requests: each ingest request then gets one of 500, 503 with ``Retry-After``, a timeout, a
    200 with a garbage body, a truncated JSON answer, or an answer lost after the central API
    stored the batch. Afterwards, healthy. The outage is counted in requests, not seconds, so
    that a stall of the machine does not leave a kind of fault untried."""

    FAULTS = ("500", "503", "timeout", "garbage", "truncated", "lost")

    def __init__(self, outage_requests: int, seed: int) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._rng = random.Random(seed)
        self._outage_requests = outage_requests
        self.faults: Counter[str] = Counter()

    @property
    def over(self) -> bool:
        return self.faults.total() >= self._outage_requests

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.over:
            return await self._inner.handle_async_request(request)
        fault = self._rng.choice(self.FAULTS)
        self.faults[fault] += 1
        match fault:
            case "500":
                return httpx.Response(500, text="Internal Server Error", request=request)
            case "503":
                return httpx.Response(503, headers={"Retry-After": "0.3"}, request=request)
            case "timeout":
                await asyncio.sleep(0.3)
                raise httpx.ReadTimeout("injected: no answer", request=request)
            case "garbage":
                return httpx.Response(200, content=b"\x00\xffnot json", request=request)
            case "truncated":
                return httpx.Response(200, text='{"accepted": 2', request=request)
            case _:  # "lost": stored by the central API, the answer never arrives
                response = await self._inner.handle_async_request(request)
                await response.aread()
                raise httpx.RemoteProtocolError("injected: connection dropped", request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_a_failing_central_api_loses_and_repeats_nothing(
    tmp_path: Path, central: Central
) -> None:
    # Ten failed requests: about 8 s of the uplink's backoff (at most 1 s here).
    transport = CentralOutage(outage_requests=10, seed=SEED)
    db_path = tmp_path / "state" / "gateway.db"
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        async with SimulatedBuilding(building_meters(), port=0, update_interval_s=0.1) as building:
            config = GatewayConfig.model_validate(gateway_config(tmp_path, central, building.port))
            gateway = Gateway(config, uplink_transport=transport)
            running = tasks.create_task(gateway.run(stop))
            await asyncio.wait_for(gateway.ready.wait(), READY_TIMEOUT_S)
            await wait_until(lambda: transport.over, timeout_s=60)  # the outage
            await asyncio.sleep(2.0)  # then healthy again, the meters still read
        await wait_until_drained(db_path, DRAIN_TIMEOUT_S)
        stop.set()
        await asyncio.wait_for(running, 20)

    assert set(transport.faults) == set(CentralOutage.FAULTS), transport.faults
    facts = store_facts(db_path)
    assert facts.integrity == "ok"
    assert facts.outbox_rows == 0
    assert facts.outbox_seq >= 10
    assert_exactly_once(central, facts, central.gateway_id)
