"""An installer's path: the operator makes a claim code, the gateway claims its credential."""

from __future__ import annotations

import difflib
import os
import pwd
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import httpx
import pytest

from cloud_sync.central import admin
from edge.cli import DEFAULT_CONFIG
from tests.conftest import ROOT, free_port, wait_for_port
from tests.support.central import serve_central
from tests.support.cli import NBEDGE, nbedge
from tests.support.tls import TestCA

EXAMPLE = ROOT / "examples" / "gateway.toml"
SITE = "maple-12"


@pytest.mark.slow
def test_claim_code_then_provision_then_the_code_is_spent(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "NBEDGE_CENTRAL_DATABASE_URL": f"sqlite:///{tmp_path / 'central.db'}",
        "NBEDGE_CENTRAL_PLATFORM_TOKEN": "platform-token-for-tests-0123456789",
    }
    made = subprocess.run(
        [
            *NBEDGE,
            "central",
            "claim-code",
            "--site",
            "maple-12",
            "--gateway",
            "gw-7",
            "--site-name",
            "Maple Court 12",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    code = made.stdout.strip()
    assert len(code.replace("-", "")) >= 12

    added = subprocess.run(
        [*NBEDGE, "central", "add-gateway", "--site", "maple-12", "--gateway", "gw-8"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    direct_token = added.stdout.strip()

    port = free_port()
    central = subprocess.Popen(
        [*NBEDGE, "central", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout_s=30)
        url = f"http://127.0.0.1:{port}"
        token_file = tmp_path / "state" / "credential"
        config = tmp_path / "gateway.toml"
        shutil.copyfile(EXAMPLE, config)
        claimed = subprocess.run(
            [
                *NBEDGE,
                "provision",
                "--central",
                url,
                "--code",
                code,
                "--token-file",
                str(token_file),
                "--config",
                str(config),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert claimed.returncode == 0, claimed.stderr
        assert "claimed gateway gw-7 of site maple-12" in claimed.stdout
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert f"{config}: set gateway.id, gateway.site, uplink.url, uplink.token_file" in (
            claimed.stdout
        )
        filled = tomllib.loads(config.read_text())
        assert filled["gateway"]["id"] == "gw-7"
        assert filled["uplink"] | {"url": url, "token_file": str(token_file)} == filled["uplink"]
        token = token_file.read_text().strip()

        # The credential works for this gateway's own site ...
        batch = {"gateway_id": "gw-7", "site_id": "maple-12", "records": []}
        response = httpx.post(
            f"{url}/v1/ingest", json=batch, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert response.status_code == 422  # authenticated; an empty batch is not valid
        response = httpx.post(
            f"{url}/v1/ingest",
            json=batch,
            headers={"Authorization": "Bearer not-the-token"},
            timeout=10,
        )
        assert response.status_code == 401
        # A credential made directly with add-gateway authenticates too.
        direct = {"Authorization": f"Bearer {direct_token}"}
        response = httpx.post(
            f"{url}/v1/ingest", json={**batch, "gateway_id": "gw-8"}, headers=direct, timeout=10
        )
        assert response.status_code == 422  # authenticated (writes to other sites: 403, see
        # tests/cloud_sync/central/test_security.py)

        # ... and the code cannot be used a second time.
        again = subprocess.run(
            [
                *NBEDGE,
                "provision",
                "--central",
                url,
                "--code",
                code,
                "--token-file",
                str(tmp_path / "other"),
                "--config",
                str(config),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert again.returncode == 1
        assert "did not give a credential" in again.stderr
        assert not (tmp_path / "other").exists()
    finally:
        central.terminate()
        central.wait(10)


async def provision(url: str, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return await nbedge("provision", "--central", url, "--code", code, *args)


def claim_code(database: str, gateway: str) -> str:
    engine = admin.make_engine(database)
    try:
        return admin.create_claim_code(engine, SITE, gateway)
    finally:
        engine.dispose()


async def test_provision_fills_in_the_config_and_keeps_every_other_line(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    database = f"sqlite:///{tmp_path / 'central.db'}"
    config = tmp_path / "gateway.toml"
    shutil.copyfile(EXAMPLE, config)
    config.chmod(0o640)
    token_file = tmp_path / "credential"
    async with serve_central(database, SITE, "gw-other", tls=ca.issue("central")) as api:
        claimed = await provision(
            api["url"] + "/",
            claim_code(database, "gw-9"),
            *["--config", str(config), "--token-file", str(token_file), "--ca-file", str(ca.cert)],
        )
    assert claimed.returncode == 0, claimed.stderr
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert f"(mode 0600, owner {me})" in claimed.stdout
    if me != "nbedge":  # the credential is not the service's: said, with the way out
        assert f"the credential is {me}'s; a gateway running as nbedge cannot" in claimed.stderr
    assert "uplink.ca_file; checked: ok" in claimed.stdout

    before, after = EXAMPLE.read_text().splitlines(), config.read_text().splitlines()
    changed = [line for line in difflib.ndiff(before, after) if line[:1] in "+-"]
    comment = '   # the gateway\'s credential (mode 0600); or token = "..."'
    assert sorted(changed) == sorted(
        [
            '- id = "gw-0001"                 # this gateway\'s id, unique in the fleet',
            '+ id = "gw-9"                 # this gateway\'s id, unique in the fleet',
            '- site = "maple-court-12"         # the building it serves',
            '+ site = "maple-12"         # the building it serves',
            '- url = "https://central.example.org"',
            f'+ url = "{api["url"]}"',
            f'- token_file = "/var/lib/nbedge/credential"{comment}',
            f'+ token_file = "{token_file}"{comment}',
            f'+ ca_file = "{ca.cert}"',
        ]
    )
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    checked = await nbedge("config", "check", str(config))
    assert checked.returncode == 0, checked.stderr
    assert "gateway gw-9, site maple-12" in checked.stdout


async def test_a_config_that_would_be_invalid_is_not_written(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'central.db'}"
    config = tmp_path / "gateway.toml"
    broken = EXAMPLE.read_text().replace("queue_size = 10000", "queue_size = 1")
    config.write_text(broken)
    token_file = tmp_path / "credential"
    async with serve_central(database, SITE, "gw-other") as api:
        refused = await provision(
            api["url"],
            claim_code(database, "gw-10"),
            *["--config", str(config), "--token-file", str(token_file)],
        )
    assert refused.returncode == 78
    assert f"{config} not changed" in refused.stderr
    assert "store.queue_size" in refused.stderr
    assert 'id = "gw-10"' in refused.stderr  # the lines to put in by hand
    assert config.read_text() == broken
    assert token_file.read_text().strip()  # the code is spent: its credential is kept


async def test_a_file_that_is_not_toml_is_refused_before_the_code_is_spent(
    tmp_path: Path,
) -> None:
    database = f"sqlite:///{tmp_path / 'central.db'}"
    config = tmp_path / "gateway.toml"
    config.write_text(EXAMPLE.read_text().replace("[uplink]", "[uplink"))
    token_file = tmp_path / "credential"
    async with serve_central(database, SITE, "gw-other") as api:
        code = claim_code(database, "gw-11")
        args = ["--config", str(config), "--token-file", str(token_file)]
        refused = await provision(api["url"], code, *args)
        assert refused.returncode == 78
        assert "(syntax)" in refused.stderr
        assert not token_file.exists()

        shutil.copyfile(EXAMPLE, config)
        claimed = await provision(api["url"], code, *args)
    assert claimed.returncode == 0, claimed.stderr
    assert tomllib.loads(config.read_text())["gateway"]["id"] == "gw-11"


async def test_a_config_given_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    refused = await provision("http://127.0.0.1:9", "AAAA-BBBB-CCCC", "--config", str(missing))
    assert refused.returncode == 78
    assert f"{missing}: no such configuration file" in refused.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="only root gives a file to another user")
async def test_run_as_root_the_credential_belongs_to_the_service_user(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'central.db'}"
    service = pwd.getpwnam("nobody")  # the test gives it to a user every Debian has
    token_file = tmp_path / "state" / "credential"
    async with serve_central(database, SITE, "gw-other") as api:
        claimed = await provision(
            api["url"],
            claim_code(database, "gw-12"),
            *["--token-file", str(token_file), "--user", "nobody"],
        )
    assert claimed.returncode == 0, claimed.stderr
    assert "(mode 0600, owner nobody)" in claimed.stdout
    assert "warning" not in claimed.stderr
    for path, mode in ((token_file, 0o600), (token_file.parent, 0o750)):
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (service.pw_uid, service.pw_gid)
        assert stat.S_IMODE(info.st_mode) == mode
    if not DEFAULT_CONFIG.exists():
        assert f"In {DEFAULT_CONFIG} (not written" in claimed.stdout
        assert 'id = "gw-12"' in claimed.stdout
