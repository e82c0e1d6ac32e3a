"""An installer's path: the operator makes a claim code, the gateway claims its credential."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import free_port, wait_for_port

NBEDGE = [sys.executable, "-m", "edge.cli"]


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
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert claimed.returncode == 0, claimed.stderr
        assert "claimed gateway gw-7 of site maple-12" in claimed.stdout
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
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
