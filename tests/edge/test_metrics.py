"""Prometheus scrapes a running gateway at ``/metrics``: a simulated building behind Modbus TCP,
a real Mosquitto and a real central API; every documented metric is there, its labels come from
closed sets, and nothing tells of residents."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.conftest import Broker, wait_until
from tests.support.central import serve_central
from tests.support.console import GATEWAY, HOME_LABEL, SITE, console_building

ROOT = Path(__file__).resolve().parents[2]
DEVICES = {"main", "flat-1", "flat-1-water", "entrance"}  # the gate polls on the bus too


async def scrape(client: httpx.AsyncClient) -> dict[str, list[Sample]]:
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert HOME_LABEL not in answer.text
    assert "李奶奶" not in answer.text
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    found = [s.value for s in samples.get(name, []) if labels.items() <= s.labels.items()]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


async def test_prometheus_scrapes_the_running_gateway(tmp_path: Path, mosquitto: Broker) -> None:
    database = f"sqlite:///{tmp_path / 'central.db'}"
    async with serve_central(database, SITE, GATEWAY) as central:
        uplink = (
            f'\n[uplink]\nurl = "{central["url"]}"\ntoken = "{central["token"]}"\n'
            "drain_jitter_s = 0\ninterval_s = 0.2\n"
        )
        async with (
            console_building(tmp_path, mosquitto, extra=uplink) as building,
            httpx.AsyncClient(base_url=building.url, timeout=10) as client,  # no login
        ):
            building.main.override("voltage_l1", 262.0)  # the simulator: an overvoltage
            await wait_until(
                lambda: any(a.rule == "voltage" for a in building.gateway.active_alerts()), 10
            )
            alert = next(a for a in building.gateway.active_alerts() if a.rule == "voltage")

            async with asyncio.timeout(15):  # the alert reached the central API
                while value(await scrape(client), "nbedge_uplink_records_sent_total") == 0:
                    await asyncio.sleep(0.1)
            samples = await scrape(client)

            info = value(samples, "nbedge_gateway_info", gateway=GATEWAY, site=SITE)
            assert info == 1
            assert value(samples, "nbedge_ready") == 1
            assert value(samples, "nbedge_modbus_reads_total", device="main", result="ok") > 0
            assert value(samples, "nbedge_modbus_device_online", device="main") == 1
            labelled = {s.labels["device"] for s in samples["nbedge_modbus_reads_total"]}
            assert labelled == DEVICES
            assert value(samples, "nbedge_store_bytes") > 0
            assert value(samples, "nbedge_queue_depth") >= 0
            assert value(samples, "nbedge_uplink_state", state="up") == 1
            assert value(samples, "nbedge_uplink_state", state="down") == 0
            assert value(samples, "nbedge_uplink_records_sent_total") > 0
            assert value(samples, "nbedge_uplink_lag_seconds") >= 0
            assert value(samples, "nbedge_mqtt_connected") == 1
            assert value(samples, "nbedge_gate_events_total", gate="entrance", result="lost") == 0
            severity = alert.severity
            assert value(samples, "nbedge_alerts_active", severity=severity) >= 1
            assert value(samples, "nbedge_alerts_unacknowledged", severity=severity) >= 1
            runs = value(samples, "nbedge_model_run_duration_seconds_count", model="cessation")
            assert runs >= 1  # the dwelling's watch ran at start
            assert value(samples, "nbedge_model_run_duration_seconds_sum", model="cessation") > 0

            # Acknowledged, the alert is no longer waiting for a person.
            unacknowledged = value(samples, "nbedge_alerts_unacknowledged", severity=severity)
            result = building.gateway.act(alert.alert_id, "acknowledge", by="wang.fang")
            assert result.changes
            samples = await scrape(client)
            after = value(samples, "nbedge_alerts_unacknowledged", severity=severity)
            assert after == unacknowledged - 1
            assert value(samples, "nbedge_alerts_active", severity=severity) >= 1


def test_every_metric_is_documented_and_every_documented_metric_exists() -> None:
    doc = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(nbedge_[a-z_]+)` \|", doc, flags=re.MULTILINE)
    # The code names a counter without its _total, and an info metric without its _info.
    documented = {name.removesuffix("_total").removesuffix("_info") for name in rows}
    source = (ROOT / "edge" / "web" / "metrics.py").read_text(encoding="utf-8")
    in_code = set(re.findall(r'"(nbedge_[a-z_]+)"', source))
    assert in_code, "no metric found in edge/web/metrics.py"
    assert in_code - documented == set(), "metrics missing from docs/metrics.md"
    assert documented - in_code == set(), "docs/metrics.md lists metrics that do not exist"
