"""``nbedge doctor`` against the real components: a simulated building behind Modbus TCP, a real
Mosquitto, a real central API (over TLS where the certificate is the question), a running
gateway or none. Each failure is provoked once, and each says what to do."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from edge.analytics import SHIPPED_DIR
from edge.doctor import Check, Level, diagnose, exit_status, print_checks
from edge.doctor.local import unit_from_show
from edge.runlock import run_lock
from firmware_bridge.modbus.profiles import load_profile
from sim.load_profile import ResidentialLoadProfile
from sim.meter import SimulatedMeter
from sim.modbus_server import SimulatedBuilding
from tests.conftest import BROKER_ACCOUNTS, Broker, free_port
from tests.edge.test_console import login
from tests.support.central import serve_central
from tests.support.cli import nbedge
from tests.support.console import GATEWAY, SITE, config_text, console_building
from tests.support.tls import TestCA

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[1]


def found(checks: Sequence[Check], name: str, subject: str = "") -> Check:
    matching = [c for c in checks if c.check == name and (not subject or c.subject == subject)]
    assert len(matching) == 1, (name, subject, [c.text() for c in checks])
    return matching[0]


def failed(checks: Sequence[Check], name: str, subject: str = "") -> Check:
    check = found(checks, name, subject)
    assert check.level is Level.FAIL, check.text()
    assert check.fix_text(), f"a failure without a fix: {check.text()}"
    return check


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def uplink(url: str, token: str, extra: str = "") -> str:
    return f'\n[uplink]\nurl = "{url}"\ntoken = "{token}"\ndrain_jitter_s = 0\n{extra}'


async def test_while_the_gateway_runs_doctor_asks_it(tmp_path: Path, mosquitto: Broker) -> None:
    database = f"sqlite:///{tmp_path / 'central.db'}"
    async with serve_central(database, SITE, GATEWAY) as central:
        extra = uplink(central["url"], central["token"])
        async with console_building(tmp_path, mosquitto, extra=extra) as building:
            config = building.gateway.config
            path = write_config(
                tmp_path / "gateway.toml",
                config_text(
                    tmp_path,
                    modbus_port=config.modbus.devices[0].port,
                    broker=mosquitto,
                    local_port=config.local_api.port,
                    extra=extra,
                ),
            )
            async with httpx.AsyncClient(base_url=building.url, timeout=30) as client:
                served = (await client.get("/api/health")).json()  # no login
                assert (await client.get("/health")).status_code == 303  # the page needs one
                await login(client, "li.wei")  # a viewer
                client.headers["Accept-Language"] = "zh-CN,zh;q=0.9"
                page = (await client.get("/health")).text
                devices = (await client.get("/devices")).text
            checks = await diagnose(path)

    print_checks(checks)
    assert found(checks, "config").level is Level.OK
    daemon = found(checks, "daemon")
    assert daemon.level is Level.OK
    assert "asked it at http://127.0.0.1:" in daemon.text()
    for device in ("main", "flat-1", "flat-1-water"):
        meter = found(checks, "modbus", device)
        assert meter.level is Level.OK, meter.text()
        assert "plausible values" in meter.text()
    gate = found(checks, "modbus", "entrance")  # only the running gateway polls the gate
    assert gate.level is Level.OK
    assert "answers" in gate.text()
    assert found(checks, "mqtt").level is Level.OK
    central_check = found(checks, "central")
    assert central_check.level is Level.OK, central_check.text()
    assert f"gateway {GATEWAY} of site {SITE}" in central_check.text()
    assert found(checks, "ble").level is Level.SKIP
    assert served["worst"] in ("ok", "warn", "fail")
    assert {c["check"] for c in served["checks"]} >= {"daemon", "modbus", "mqtt", "central"}
    assert "李奶奶" not in json.dumps(served, ensure_ascii=False)  # nothing of residents
    assert 'href="/health"' in devices
    assert "<h1>运行检查</h1>" in page
    assert "1号楼总电表" in page  # the device's label, as on the other pages
    assert "有应答" in page  # the check in Chinese
    assert "Modbus 设备" in page


@pytest.fixture
async def building() -> object:
    now = datetime.now(tz=UTC)
    main = SimulatedMeter(load_profile("eastron_sdm630"), ResidentialLoadProfile(), start=now)
    flat = SimulatedMeter(load_profile("eastron_sdm120"), ResidentialLoadProfile(), start=now)
    async with SimulatedBuilding({1: main, 3: flat}, port=0) as sim:
        yield sim


def stopped_config(
    tmp_path: Path, port: int, broker: Broker, *, devices: str = "", extra: str = ""
) -> str:
    devices = (
        devices
        or f"""
[[modbus.devices]]
name = "main"
profile = "eastron_sdm630"
host = "127.0.0.1"
port = {port}
unit_id = 1
"""
    )
    return f"""
[gateway]
id = "{GATEWAY}"
site = "{SITE}"
state_dir = "{tmp_path / "state"}"

[mqtt]
host = "{broker.host}"
port = {broker.port}
username = "nbedge-gateway"
password = "{BROKER_ACCOUNTS["nbedge-gateway"]}"

[local_api]
port = {free_port()}
{devices}
{extra}
"""


async def test_while_the_gateway_is_stopped_doctor_probes_directly(
    tmp_path: Path, building: SimulatedBuilding, secured_mosquitto: Broker
) -> None:
    database = f"sqlite:///{tmp_path / 'central.db'}"
    async with serve_central(database, SITE, GATEWAY) as central:
        text = stopped_config(
            tmp_path,
            building.port,
            secured_mosquitto,
            extra=uplink(central["url"], central["token"]),
        )
        checks = await diagnose(write_config(tmp_path / "gateway.toml", text))
    daemon = found(checks, "daemon")
    assert daemon.level is Level.WARN
    assert "probed directly" in daemon.text()
    main = found(checks, "modbus", "main")
    assert main.level is Level.OK, main.text()
    assert "plausible values" in main.text()
    assert found(checks, "mqtt").level is Level.OK
    assert found(checks, "central").level is Level.OK
    assert found(checks, "files", str(tmp_path / "gateway.toml")).level is Level.OK


@pytest.mark.slow
async def test_each_failure_is_found_with_its_fix(
    tmp_path: Path, building: SimulatedBuilding, secured_mosquitto: Broker
) -> None:
    ca = TestCA(tmp_path / "ca")
    database = f"sqlite:///{tmp_path / 'central.db'}"
    swapped = tmp_path / "sdm630-swapped.toml"  # a profile with the words of each value swapped
    shipped = (ROOT / "firmware_bridge" / "profiles" / "eastron_sdm630.toml").read_text()
    swapped.write_text(shipped.replace('word_order = "big"', 'word_order = "little"'))
    devices = f"""
[[modbus.devices]]
name = "absent"
profile = "eastron_sdm630"
host = "127.0.0.1"
port = {building.port}
unit_id = 9
timeout_s = 0.5

[[modbus.devices]]
name = "misread"
profile = "{swapped}"
host = "127.0.0.1"
port = {building.port}
unit_id = 1

[[modbus.devices]]
name = "unplugged"
profile = "eastron_sdm120"
host = "127.0.0.1"
port = {free_port()}
unit_id = 1
"""
    token_file = tmp_path / "credential"
    token_file.write_text("not-our-credential\n")
    token_file.chmod(0o644)
    async with serve_central(database, SITE, GATEWAY, tls=ca.issue("central")) as central:
        text = stopped_config(
            tmp_path,
            building.port,
            secured_mosquitto,
            devices=devices,
            extra=f"[store]\nmin_free_bytes = {1 << 50}\n"
            + f'\n[uplink]\nurl = "{central["url"]}"\ntoken_file = "{token_file}"\n',
        ).replace(BROKER_ACCOUNTS["nbedge-gateway"], "a-wrong-password")
        path = write_config(tmp_path / "gateway.toml", text)
        checks = await diagnose(path)
        # The right CA, and then the certificate is not the problem: the credential is.
        trusted = text.replace("[uplink]\n", f'[uplink]\nca_file = "{ca.cert}"\n')
        with_ca = await diagnose(write_config(tmp_path / "with-ca.toml", trusted))

    print_checks(checks)  # what the installer reads (pytest -s)
    assert "never answered" in failed(checks, "modbus", "absent").text()
    assert "refuses the requests" in (failed(checks, "modbus", "absent").fix_text() or "")
    misread = found(checks, "modbus", "misread")
    assert misread.level is Level.WARN, misread.text()
    assert "implausible" in misread.text()
    assert "frequency" in misread.text()
    assert "sdm630-swapped.toml" in (misread.fix_text() or "")
    assert "cannot connect" in failed(checks, "modbus", "unplugged").text()
    assert "refuses the account nbedge-gateway" in failed(checks, "mqtt").text()
    assert "certificate is not trusted" in failed(checks, "central").text()
    assert "uplink.ca_file" in (failed(checks, "central").fix_text() or "")
    assert "refuses our credential" in failed(with_ca, "central").text()
    assert "nbedge provision" in (failed(with_ca, "central").fix_text() or "")
    credential = failed(checks, "files", str(token_file))
    assert "every user of the machine" in credential.text()
    assert credential.fix_text() == f"chmod o-rwx {token_file}"
    assert "watermark" in failed(checks, "disk").text()
    assert exit_status(checks) == 2


async def test_a_bundle_that_does_not_verify_is_named(
    tmp_path: Path, building: SimulatedBuilding, mosquitto: Broker
) -> None:
    tampered = tmp_path / "state" / "models" / "demand"
    shutil.copytree(SHIPPED_DIR / "demand", tampered)
    card = json.loads((tampered / "card.json").read_text())
    card["trained_on"] = "something else"
    (tampered / "card.json").write_text(json.dumps(card))
    extra = '[[models.demand]]\nname = "building"\nmeters = ["main:import_energy"]\n'
    text = stopped_config(tmp_path, building.port, mosquitto, extra=extra)
    text = text.replace('username = "nbedge-gateway"\n', "").replace(
        f'password = "{BROKER_ACCOUNTS["nbedge-gateway"]}"\n', ""
    )
    checks = await diagnose(write_config(tmp_path / "gateway.toml", text))
    models = [c for c in checks if c.check == "models"]
    assert [c.level for c in models] == [Level.OK, Level.FAIL], [c.text() for c in models]
    assert "the signature does not verify" in models[1].text()


async def test_an_invalid_config_is_the_one_failure_and_the_command_says_so(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path / "gateway.toml", '[gateway]\nid = "has space"\n')
    checks = await diagnose(path)
    assert [c.check for c in checks] == ["config"]
    assert "gateway.site" in failed(checks, "config").text()
    shown = await nbedge("doctor", "--config", str(path), "--json")
    assert shown.returncode == 2
    document = json.loads(shown.stdout)
    assert document["worst"] == "fail"
    assert document["checks"][0]["fix"].startswith("nbedge config check")


async def test_a_gateway_that_runs_without_answering_is_not_probed(
    tmp_path: Path, building: SimulatedBuilding, mosquitto: Broker
) -> None:
    text = stopped_config(tmp_path, building.port, mosquitto)
    path = write_config(tmp_path / "gateway.toml", text)
    with run_lock(tmp_path / "state"):  # a gateway holds the state folder, its API is not up
        checks = await diagnose(path)
    daemon = found(checks, "daemon")
    assert daemon.level is Level.WARN
    assert "does not answer" in daemon.text()
    modbus = found(checks, "modbus")
    assert modbus.level is Level.SKIP
    assert "doctor does not open them" in modbus.text()


def test_the_unit_s_state_from_systemctl_show() -> None:
    failed_unit = unit_from_show(
        "LoadState=loaded\nActiveState=failed\nSubState=failed\nUnitFileState=enabled\n"
        "WatchdogUSec=30s\nNRestarts=5\n"
    )
    assert failed_unit.level is Level.FAIL
    assert "after 5 restart(s)" in failed_unit.text()
    assert "journalctl -u nbedge-gateway.service" in (failed_unit.fix_text() or "")
    running = unit_from_show(
        "LoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\n"
        "WatchdogUSec=30s\nNRestarts=0\n"
    )
    assert running.level is Level.OK
    assert "watchdog 30s" in running.text()
    missing = unit_from_show("LoadState=not-found\nActiveState=inactive\n")
    assert missing.level is Level.FAIL
    assert "not installed" in missing.text()


def test_the_texts_read_in_chinese() -> None:
    check = unit_from_show("LoadState=not-found\nActiveState=inactive\n")
    assert check.title("zh-Hans") != check.title("en")
    assert check.text("zh-Hans") != check.text("en")
    assert "nbedge-gateway.service" in check.text("zh-Hans")


def test_doctor_s_help_names_its_options() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "edge.cli", "doctor", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "--json" in shown.stdout
    assert "--config" in shown.stdout
