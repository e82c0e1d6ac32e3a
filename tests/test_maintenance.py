"""``nbedge maintenance on``: while an installer tests a sensor, the alerts raised are tests:
said so on MQTT and in their texts, and never escalated; after ``off`` alerts page as before.
A running gateway, a simulated building behind Modbus TCP and a real Mosquitto."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from edge.alerts import Alert
from edge.maintenance import parse_duration
from tests.conftest import Broker, wait_until
from tests.support.cli import nbedge
from tests.support.console import config_text, console_building, retained_when

POLICY = """
[[alerts.escalation]]
severity = "warning"
after_s = 1.0
every_s = 60.0
levels = ["grid_worker"]
"""


async def maintenance(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await nbedge("maintenance", *args, "--config", str(config))


def voltage_alert(alerts: list[Alert], point: str) -> Alert | None:
    return next((a for a in alerts if a.rule == "voltage" and a.point == point), None)


@pytest.mark.slow
async def test_alerts_raised_in_maintenance_are_tests_and_page_nobody(
    tmp_path: Path, mosquitto: Broker
) -> None:
    async with console_building(tmp_path, mosquitto, extra=POLICY) as building:
        gateway = building.gateway
        config = tmp_path / "gateway.toml"
        config.write_text(
            config_text(
                tmp_path,
                modbus_port=gateway.config.modbus.devices[0].port,
                broker=mosquitto,
                local_port=gateway.config.local_api.port,
                extra=POLICY,
            )
        )
        started = await maintenance(config, "on", "--for", "2h", "--reason", "testing L1")
        assert started.returncode == 0, started.stderr
        assert "nobody is paged" in started.stdout
        assert "testing L1" in (await maintenance(config, "status")).stdout
        assert (await gateway.status()).maintenance_until is not None

        building.main.override("voltage_l1", 262.0)
        await wait_until(
            lambda: voltage_alert(gateway.active_alerts(), "voltage_l1") is not None, 10
        )
        test = voltage_alert(gateway.active_alerts(), "voltage_l1")
        assert test is not None
        assert test.test
        assert test.text("en").startswith("Test: overvoltage on voltage_l1")
        assert test.text("zh-Hans").startswith("测试：")
        message = await retained_when(
            mosquitto, building.topic(test.alert_id), lambda m: m["params"].get("test") is True
        )
        assert message["texts"]["en"].startswith("Test: ")

        assert (await maintenance(config, "off")).stdout.strip() == "maintenance ended"
        assert (await maintenance(config, "status")).returncode == 1
        building.main.override("voltage_l2", 262.0)
        await wait_until(
            lambda: voltage_alert(gateway.active_alerts(), "voltage_l2") is not None, 10
        )

        def escalated() -> bool:
            real = voltage_alert(gateway.active_alerts(), "voltage_l2")
            return real is not None and real.level == 1

        await wait_until(escalated, 10)  # after_s = 1: the real alert pages the grid worker
        real = voltage_alert(gateway.active_alerts(), "voltage_l2")
        assert real is not None
        assert not real.test
        assert not real.text("en").startswith("Test:")
        still = voltage_alert(gateway.active_alerts(), "voltage_l1")
        assert still is not None
        assert still.level == 0  # the test, older than the real one, was never escalated
        assert time.time() - still.raised_at > 1.0


def test_durations_an_installer_types() -> None:
    assert parse_duration("2h") == 7200
    assert parse_duration("90m") == 5400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("45s") == 45
    assert parse_duration("1d") == 86400
    assert parse_duration("1h 30m") == 5400
    assert parse_duration("９０ｍ") == 5400  # typed on a Chinese keyboard
    for wrong in ("", "2", "two hours", "8d", "0m", "-1h", "1x", "9" * 400 + "h", "٣h"):
        with pytest.raises(ValueError, match=r"duration|at most 7 days"):
            parse_duration(wrong)
