"""The whole path with real components: a pymodbus SDM630 simulator over TCP, the gateway, a real
Mosquitto, a real uvicorn central API on SQLite. What the platform pulls is checked against what
the simulated meter served.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import inspect
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from edge.daemon import Gateway
from edge.schemas import GatewayConfig
from firmware_bridge.modbus.profiles import load_profile
from sim.load_profile import ResidentialLoadProfile
from sim.meter import SimulatedMeter
from sim.modbus_server import SimulatedBuilding
from tests.conftest import Broker, free_port
from tests.support.central import serve_central

SITE, GATEWAY = "site-e2e", "gw-e2e"
INTERVAL_S = 10  # summary period of this test


class LoseFirstAcks(httpx.AsyncBaseTransport):
    """A real transport whose first ``lose`` ingest responses vanish after the server stored the
    batch (an ack lost on a flaky uplink), so the gateway must send those records again.
    Every ingest body is kept, to replay later."""

    def __init__(self, lose: int) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.lose = lose
        self.bodies: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if request.url.path == "/v1/ingest":
            self.bodies.append(request.content)
            if self.lose > 0 and response.status_code == 200:
                await response.aread()
                self.lose -= 1
                raise httpx.ReadTimeout("injected fault: response lost", request=request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@contextlib.asynccontextmanager
async def central_api(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    async with serve_central(f"sqlite:///{tmp_path / 'central.db'}", SITE, GATEWAY) as api:
        yield api


async def pull(central: dict[str, Any], feed: str) -> list[dict[str, Any]]:
    """Everything in a feed, page by page, as the platform pulls it."""
    items: list[dict[str, Any]] = []
    cursor = 0
    headers = {"Authorization": f"Bearer {central['platform']}"}
    async with httpx.AsyncClient(base_url=central["url"], headers=headers, timeout=5) as client:
        while True:
            response = await client.get(
                f"/v1/sites/{SITE}/{feed}", params={"after": cursor, "limit": 50}
            )
            response.raise_for_status()
            page = response.json()
            items.extend(page["items"])
            if not page["items"]:
                return items
            cursor = page["next_cursor"]


async def eventually(check: Any, timeout_s: float, what: str) -> Any:
    async with asyncio.timeout(timeout_s):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(0.25)
    raise AssertionError(what)  # pragma: no cover - the timeout raises first


async def test_a_reading_travels_from_the_meter_to_the_platform(
    tmp_path: Path, mosquitto: Broker
) -> None:
    meter = SimulatedMeter(
        load_profile("eastron_sdm630"), ResidentialLoadProfile(), start=datetime.now(tz=UTC)
    )
    # Pin what the meter serves so that the platform's figures can be checked exactly.
    for point, value in {
        "voltage_l1": 230.0,
        "voltage_l2": 231.0,
        "voltage_l3": 229.0,
        "total_power": 1500.0,
    }.items():
        meter.override(point, value)
    transport = LoseFirstAcks(lose=2)
    mqtt_seen: list[tuple[str, bytes]] = []

    async with (
        SimulatedBuilding({1: meter}, port=0, update_interval_s=0.1) as building,
        central_api(tmp_path) as central,
        aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="grid-worker") as worker,
    ):
        await worker.subscribe(f"nbedge/{SITE}/{GATEWAY}/#", qos=1)
        config = GatewayConfig.model_validate(
            {
                "gateway": {"id": GATEWAY, "site": SITE, "state_dir": str(tmp_path / "gw")},
                "store": {"summary_interval_s": INTERVAL_S, "batch_max_delay_s": 0.05},
                "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
                "uplink": {
                    "url": central["url"],
                    "token": central["token"],
                    "interval_s": 0.2,
                    "timeout_s": 2,
                },
                "modbus": {
                    "devices": [
                        {
                            "name": "meter-1",
                            "profile": "eastron_sdm630",
                            "host": "127.0.0.1",
                            "port": building.port,
                            "poll_interval_s": 0.2,
                        }
                    ]
                },
                "local_api": {"port": free_port()},
            }
        )
        gateway = Gateway(config, uplink_transport=transport)
        stop = asyncio.Event()

        async def listen() -> None:
            async for message in worker.messages:
                mqtt_seen.append((str(message.topic), bytes(message.payload)))  # type: ignore[arg-type]

        async with asyncio.TaskGroup() as tasks:
            running = tasks.create_task(gateway.run(stop))
            listener = tasks.create_task(listen())
            await asyncio.wait_for(gateway.ready.wait(), 10)

            # A voltage swell on L1: the alert is raised on MQTT within seconds ...
            await asyncio.sleep(1.0)
            meter.override("voltage_l1", 262.0)
            building.refresh()
            alert_topic = await eventually(
                lambda: _alert_topic(mqtt_seen), 10, "no retained alert on MQTT"
            )
            payload = json.loads(dict(mqtt_seen)[alert_topic])
            assert (payload["condition"], payload["state"]) == ("active", "new")
            assert payload["texts"]["zh-Hans"].startswith("voltage_l1 过电压")
            assert payload["value"] == 262.0
            await asyncio.sleep(1.0)
            # ... and cleared, with an empty retained message, when the voltage is back.
            meter.override("voltage_l1", 230.0)
            building.refresh()
            await eventually(
                lambda: _cleared(mqtt_seen, alert_topic), 10, "alert never cleared on MQTT"
            )

            # Two whole summary periods after the swell reach the central API.
            async def enough_summaries() -> list[dict[str, Any]]:
                items = await pull(central, "summaries")
                power = [i for i in items if i["point"] == "total_power"]
                return items if len(power) >= 2 else []

            await eventually(enough_summaries, 4 * INTERVAL_S, "summaries never arrived")
            await eventually(
                lambda: _alert_states(central), 10, "alert changes never reached the platform"
            )
            stop.set()
            await running
            listener.cancel()

        assert (tmp_path / "gw" / "gateway.db").exists()
        summaries = await pull(central, "summaries")
        alerts = await pull(central, "alerts")

        # The platform's figures are what the meter served.
        power = [s for s in summaries if s["point"] == "total_power"]
        assert all(s["min"] == s["max"] == s["mean"] == s["last"] == 1500.0 for s in power)
        assert all(s["count"] >= 1 for s in power)
        assert {s["delta"] >= 0 for s in summaries if s["point"] == "import_energy"} == {True}
        volts = [s for s in summaries if s["point"] == "voltage_l1"]
        assert max(s["max"] for s in volts) == 262.0
        assert min(s["min"] for s in volts) == 230.0
        for s in volts:  # every mean is a mix of 230 V and 262 V readings, nothing else
            swell_readings = (s["mean"] - 230.0) * s["count"] / 32.0
            assert swell_readings == pytest.approx(round(swell_readings), abs=1e-6)
        l2 = [s for s in summaries if s["point"] == "voltage_l2"]
        assert {(s["min"], s["max"]) for s in l2} == {(231.0, 231.0)}

        # The alert: raised, cleared, then resolved by the policy (a warning needs nobody), one
        # occurrence, each event once.
        assert [a["event"] for a in alerts] == ["raised", "cleared", "resolved"]
        assert [a["state"] for a in alerts] == ["raised", "cleared", "cleared"]  # as before
        assert alerts[2]["outcome"] == "auto"
        assert len({a["alert_id"] for a in alerts}) == 1
        assert alerts[0]["value"] == 262.0

        # Forced re-sends: two acks were lost, so records went twice; none is duplicated.
        assert transport.lose == 0
        sent = Counter(
            record["record_id"]
            for body in transport.bodies
            for record in json.loads(gzip.decompress(body))["records"]
        )
        assert max(sent.values()) >= 2
        ids = [i["record_id"] for i in summaries + alerts]
        assert len(ids) == len(set(ids))
        assert set(ids) == set(sent)

        # Replaying every batch the gateway ever sent changes nothing at the platform.
        async with httpx.AsyncClient(base_url=central["url"], timeout=5) as client:
            for body in transport.bodies:
                response = await client.post(
                    "/v1/ingest",
                    content=body,
                    headers={
                        "Authorization": f"Bearer {central['token']}",
                        "Content-Encoding": "gzip",
                        "Content-Type": "application/json",
                    },
                )
                assert response.status_code == 200
                assert response.json()["accepted"] == 0
        assert await pull(central, "summaries") == summaries
        assert await pull(central, "alerts") == alerts


def _alert_topic(seen: list[tuple[str, bytes]]) -> str | None:
    for topic, payload in seen:
        if "/alerts/" in topic and payload:
            return topic
    return None


async def _cleared(seen: list[tuple[str, bytes]], topic: str) -> bool:
    return any(t == topic and p == b"" for t, p in seen)


async def _alert_states(central: dict[str, Any]) -> bool:
    events = [a["event"] for a in await pull(central, "alerts")]
    return events == ["raised", "cleared", "resolved"]
