"""A gate controller's event ring across gateway restarts: a real gateway process, stopped with
SIGTERM or killed with SIGKILL at random moments while the simulated controller keeps recording
events, also while no gateway runs. At the end the central API's access-event feed must hold every
event the controller recorded, once, in order, with keyed-hash credential references; the
gateway's store must hold each once too.

Also, in process: gate commands through the local API (operators only, confirmed by reading the
state back, logged) and the ``gate_fault`` alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.config import parse_config
from edge.daemon import Gateway
from edge.layout import CREDENTIAL_KEY_FILE
from firmware_bridge.modbus.gate import Pseudonymizer
from sim.gate import SimulatedGate
from sim.modbus_server import SimulatedBuilding, meters_for
from tests.cloud_sync import conftest as central_fixtures
from tests.cloud_sync.conftest import Central
from tests.conftest import free_port, wait_until
from tests.firmware_bridge.test_gate_controller import expected
from tests.test_faults import GatewayProcess, reaped

central = central_fixtures.central
database_url = central_fixtures.database_url
database_kind = central_fixtures.database_kind

SEED = 20_261_123
GATE_UNIT = 9


def config_toml(tmp_path: Path, port: int, uplink: dict[str, Any] | None, **extra: str) -> str:
    gateway = {"id": "gw-gate", "site": "site-gate", "state_dir": str(tmp_path / "state")}
    if uplink is not None:
        gateway = {**gateway, "id": uplink.pop("gateway_id"), "site": uplink.pop("site_id")}
    lines = ["[gateway]", *(f"{k} = {json.dumps(v)}" for k, v in gateway.items())]
    lines += ["[mqtt]", "enabled = false", "[store]", "batch_max_delay_s = 0.05"]
    lines += ["[local_api]", extra.get("local_api", "enabled = false")]
    if uplink is not None:
        lines += ["[uplink]", *(f"{k} = {json.dumps(v)}" for k, v in uplink.items())]
    lines += [
        "[[modbus.devices]]",
        'name = "flat-1"',
        'profile = "eastron_sdm120"',
        'host = "127.0.0.1"',
        f"port = {port}",
        "unit_id = 1",
        "poll_interval_s = 0.5",
        "[[modbus.gates]]",
        'name = "entrance"',
        'host = "127.0.0.1"',
        f"port = {port}",
        f"unit_id = {GATE_UNIT}",
        "poll_interval_s = 0.2",
        extra.get("gate", ""),
    ]
    return "\n".join(lines) + "\n"


def stored_events(db: Path) -> list[tuple[str, str | None, str | None]]:
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
        rows = conn.execute(
            "SELECT event, credential_ref, detail FROM access_events ORDER BY id"
        ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


def pull_access(central: Central) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    with httpx.Client(
        base_url=central.base_url, headers=central.platform_headers(), timeout=10
    ) as client:
        cursor = 0
        for _ in range(1000):
            page = client.get(
                f"/v1/sites/{central.site_id}/access-events",
                params={"after": cursor, "limit": 500},
            )
            page.raise_for_status()
            if not page.json()["items"]:
                break
            items += page.json()["items"]
            cursor = page.json()["next_cursor"]
    return items


async def traffic(building: SimulatedBuilding, gate: SimulatedGate, rng: random.Random) -> None:
    """Badges at the gate every 30-80 ms: grants (the gate opens and closes), denials with
    every reason, now and then someone pushing the exit button."""
    credential = 0
    while True:
        credential += 1
        roll = rng.random()
        now = building.now()
        if roll < 0.3:
            gate.present(credential, granted=True, now=now)
        elif roll < 0.9:
            unknown = rng.random() < 0.3
            gate.present(
                None if unknown else credential,
                granted=False,
                reason=1 if unknown else rng.choice((2, 3, 4)),
                now=now,
            )
        else:
            gate.exit_button(now=now)
        await asyncio.sleep(rng.uniform(0.03, 0.08))


@contextlib.asynccontextmanager
async def gate_building() -> AsyncIterator[tuple[SimulatedBuilding, SimulatedGate]]:
    gate = SimulatedGate(capacity=1000, epoch=3, travel_s=0.2, auto_close_s=0.3)
    meters = meters_for({1: "eastron_sdm120"}, start=datetime(2024, 5, 6, 19, 0))
    async with SimulatedBuilding(
        meters, gates={GATE_UNIT: gate}, port=0, update_interval_s=0.2
    ) as building:
        yield building, gate


async def test_kill_9_and_restarts_lose_and_repeat_no_gate_event(
    tmp_path: Path, central: Central
) -> None:
    rng = random.Random(SEED)
    db = tmp_path / "state" / "gateway.db"
    processes: list[GatewayProcess] = []
    with reaped(processes):
        async with gate_building() as (building, gate):
            uplink = {
                "gateway_id": central.gateway_id,
                "site_id": central.site_id,
                "url": central.base_url,
                "token": central.gateway_token,
                "interval_s": 0.2,
                "backoff_max_s": 1.0,
                "drain_jitter_s": 0.0,
            }
            config = tmp_path / "gateway.toml"
            config.write_text(config_toml(tmp_path, building.port, uplink))
            producer = asyncio.create_task(traffic(building, gate, rng))
            try:
                for n in range(4):
                    gateway = GatewayProcess(config, tmp_path / f"gateway-{n}.log")
                    processes.append(gateway)
                    await gateway.ready()
                    await asyncio.sleep(rng.uniform(0.5, 2.0))
                    if n == 1:
                        assert await gateway.stop() == 0
                    else:
                        gateway.kill()
                    await asyncio.sleep(rng.uniform(0.2, 1.0))  # events while it is down
            finally:
                producer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await producer
            recorded = gate.last_seq
            gateway = GatewayProcess(config, tmp_path / "gateway-final.log")
            processes.append(gateway)
            await gateway.ready()
            await wait_until(lambda: len(pull_access(central)) >= recorded, 30.0)
            await asyncio.sleep(1.0)  # anything more would be a repeat
            assert await gateway.stop() == 0, gateway.log.read_text()[-3000:]

    assert recorded >= 40, "too few events to prove anything"
    pseudonym = Pseudonymizer.from_file(tmp_path / "state" / CREDENTIAL_KEY_FILE)
    want = [expected(event, "entrance", pseudonym) for event in gate.events]
    assert stored_events(db) == want
    at_central = [
        (item["event"], item["credential_ref"], item["detail"]) for item in pull_access(central)
    ]
    assert at_central == want
    assert {item["device"] for item in pull_access(central)} == {"entrance"}


async def test_gate_commands_through_the_local_api_are_for_operators_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = "field-crew-token-0123456789"
    digest = hashlib.sha256(token.encode()).hexdigest()
    port = free_port()
    local_api = (
        f'host = "127.0.0.1"\nport = {port}\n'
        f'[[local_api.operators]]\nname = "field-crew"\ntoken_sha256 = "{digest}"'
    )
    caplog.set_level(logging.INFO)
    async with gate_building() as (building, gate):
        gate_extra = "confirm_timeout_s = 2.0"
        text = config_toml(tmp_path, building.port, None, local_api=local_api, gate=gate_extra)
        gateway = Gateway(parse_config(text))
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(gateway.run(stop))
            await asyncio.wait_for(gateway.ready.wait(), 10)
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                await wait_until(lambda: gateway.gates()[0].state == "closed", 5.0)
                nobody = await client.post("/api/gates/entrance/open")
                wrong = await client.post(
                    "/api/gates/entrance/open", headers={"Authorization": "Bearer guess"}
                )
                crew = {"Authorization": f"Bearer {token}"}
                unknown = await client.post("/api/gates/back-door/open", headers=crew)
                opened = await client.post("/api/gates/entrance/open", headers=crew)
                gates = (await client.get("/api/gates")).json()

                gate.fault(2, now=building.now())
                await wait_until(lambda: bool(gateway.active_alerts()), 5.0)
                alert = gateway.active_alerts()[0]
                refused = await client.post("/api/gates/entrance/close", headers=crew)
                gate.clear_fault(now=building.now())
                await wait_until(lambda: not gateway.active_alerts(), 5.0)
                status = (await client.get("/api/status")).json()
            stop.set()

    assert (nobody.status_code, wrong.status_code, unknown.status_code) == (401, 401, 404)
    assert nobody.headers["www-authenticate"] == "Bearer"
    assert opened.status_code == 200, opened.text
    body = opened.json()
    assert (body["result"], body["operator"], body["state_before"]) == (
        "confirmed",
        "field-crew",
        "closed",
    )
    assert body["state_after"] in ("opening", "open")
    assert gates[0]["name"] == "entrance"
    assert (refused.status_code, refused.json()["result"]) == (409, "refused")
    assert (alert.rule, alert.device) == ("gate_fault", "entrance")
    assert "obstacle" in alert.message
    assert status["local_api"]["auth_failures"] == 2
    assert [gate["name"] for gate in gates] == ["entrance"]
    commands = [r for r in caplog.records if r.getMessage() == "gate command"]
    assert [(r.operator, r.result) for r in commands] == [  # type: ignore[attr-defined]
        ("field-crew", "confirmed"),
        ("field-crew", "refused"),
    ]
    assert token not in caplog.text
    assert [e.detail for e in gate.events if e.event == "opened"] == [1]


def test_the_gate_keys_are_checked_like_a_meters(tmp_path: Path) -> None:
    from nbedge.errors import ConfigError

    text = config_toml(tmp_path, 502, None, gate='serial_port = "/dev/ttyUSB0"')
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert "modbus.gates.0" in str(caught.value)
    assert "rtu" in str(caught.value)
