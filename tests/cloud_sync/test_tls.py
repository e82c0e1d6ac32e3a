"""The gateway talks to the central API only over TLS it trusts: the system's CAs or the CA of
``uplink.ca_file``. A real central API over HTTPS on loopback, certificates made in the test."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cloud_sync.central import admin
from cloud_sync.client import SyncClient, UplinkState, trust
from edge.alerts import AlertBook
from edge.cli import main
from edge.store import Store
from nbedge.errors import UplinkUnavailable
from tests.support import alerts as support
from tests.support.central import serve_central
from tests.support.cli import nbedge
from tests.support.tls import TestCA

SITE, GATEWAY = "site-tls", "gw-tls"


@contextlib.asynccontextmanager
async def central_over_tls(
    tmp_path: Path, cert: tuple[Path, Path]
) -> AsyncIterator[dict[str, Any]]:
    database = f"sqlite:///{tmp_path / 'central.db'}"
    async with serve_central(database, SITE, GATEWAY, tls=cert) as api:
        api["database"] = database
        yield api


@contextlib.asynccontextmanager
async def store_with_an_alert(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store(tmp_path / "gateway.db", gateway_id=GATEWAY) as store:
        await store.write([], [support.raise_alert(AlertBook(), severity="critical")])
        yield store


def client(store: Store, api: dict[str, Any], ca: Path | None) -> SyncClient:
    return SyncClient(
        store,
        base_url=api["url"],
        token=api["token"],
        gateway_id=GATEWAY,
        site_id=SITE,
        verify=trust(ca),
        drain_jitter_s=0.0,
        timeout_s=5.0,
    )


async def test_a_central_api_signed_by_the_configured_ca_is_trusted(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    async with (
        central_over_tls(tmp_path, ca.issue("central")) as api,
        store_with_an_alert(tmp_path) as store,
    ):
        assert api["url"].startswith("https://127.0.0.1:")
        async with client(store, api, ca.cert) as sync:
            await sync.sync_once()
        assert sync.status().state is UplinkState.UP
        assert sync.status().records_sent == 1
        assert (await store.stats()).outbox == {}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("another CA", "unable to get local issuer certificate"),
        ("the system's CAs", "unable to get local issuer certificate"),
        ("expired", "certificate has expired"),
        ("another host name", "IP address mismatch"),
    ],
)
async def test_a_certificate_not_to_trust_is_refused_and_records_stay_buffered(
    tmp_path: Path, case: str, reason: str
) -> None:
    ours = TestCA(tmp_path / "ca")
    trusted: Path | None = ours.cert
    if case == "another CA":
        served = TestCA(tmp_path / "other", name="someone else").issue("central")
    elif case == "the system's CAs":
        served, trusted = ours.issue("central"), None
    elif case == "expired":
        served = ours.issue("central", expired=True)
    else:
        served = ours.issue("central", ("central.example.org",))
    async with (
        central_over_tls(tmp_path, served) as api,
        store_with_an_alert(tmp_path) as store,
    ):
        async with client(store, api, trusted) as sync:
            with pytest.raises(UplinkUnavailable) as refused:
                await sync.sync_once()
            status = sync.status()
        message = str(refused.value)
        assert "the central API's certificate is not trusted" in message
        assert reason in message
        assert "uplink.ca_file" in message  # what to do about it
        assert status.state is UplinkState.DOWN
        assert status.last_error == message
        assert status.records_sent == 0
        assert (await store.stats()).outbox == {"alert_event": 1}  # buffered, not lost

        if case == "the system's CAs":  # the fix the message gives: uplink.ca_file
            async with client(store, api, ours.cert) as sync:
                await sync.sync_once()
            assert sync.status().records_sent == 1
            assert (await store.stats()).outbox == {}


async def test_a_running_client_keeps_retrying_and_says_why(tmp_path: Path) -> None:
    """The daemon's loop: while the certificate is refused the alert waits and the status says
    why; nothing is given up."""
    served = TestCA(tmp_path / "other", name="someone else").issue("central")
    ours = TestCA(tmp_path / "ca")
    async with (
        central_over_tls(tmp_path, served) as api,
        store_with_an_alert(tmp_path) as store,
        client(store, api, ours.cert) as sync,
    ):
        running = asyncio.create_task(sync.run())
        try:
            async with asyncio.timeout(20):
                while sync.status().failures < 2:
                    assert not running.done(), running
                    await asyncio.sleep(0.05)
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        assert "certificate is not trusted" in (sync.status().last_error or "")
        assert (await store.stats()).outbox == {"alert_event": 1}


def test_an_unreadable_ca_file_is_an_error_not_the_system_cas(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        trust(tmp_path / "missing.pem")
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate\n")
    with pytest.raises(ssl.SSLError, match="no certificate"):
        trust(not_pem)


async def test_provision_trusts_the_ca_it_is_given(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    async with central_over_tls(tmp_path, ca.issue("central")) as api:
        engine = admin.make_engine(api["database"])
        try:
            first = admin.create_claim_code(engine, SITE, "gw-new")
        finally:
            engine.dispose()

        config = tmp_path / "gateway.toml"  # never the machine's own /etc/nbedge/gateway.toml
        config.write_bytes((Path(__file__).parents[2] / "examples" / "gateway.toml").read_bytes())

        async def provision(code: str, *ca_file: str) -> subprocess.CompletedProcess[str]:
            return await nbedge(
                *["provision", "--central", api["url"], "--code", code],
                *["--token-file", str(tmp_path / "credential"), *ca_file, "--config", str(config)],
            )

        refused = await provision(first)  # the system's CAs do not know ours
        assert refused.returncode == 1
        assert "certificate is not trusted" in refused.stderr
        assert "--ca-file" in refused.stderr or "ca_file" in refused.stderr
        assert not (tmp_path / "credential").exists()

        claimed = await provision(first, "--ca-file", str(ca.cert))  # the code was not spent
        assert claimed.returncode == 0, claimed.stderr
        assert "claimed gateway gw-new" in claimed.stdout

        missing = await provision(first, "--ca-file", str(tmp_path / "nope.pem"))
        assert missing.returncode == 78
        assert "cannot read the CA file" in missing.stderr


def test_nbedge_run_stops_with_status_78_on_an_unreadable_ca_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nid = "gw-1"\nsite = "site-1"\nstate_dir = "{tmp_path}"\n\n'
        "[mqtt]\nenabled = false\n\n[local_api]\nenabled = false\n\n"
        f'[uplink]\nurl = "https://127.0.0.1:9"\ntoken = "t"\nca_file = "{tmp_path}/ca.pem"\n',
        encoding="utf-8",
    )
    assert main(["run", "--config", str(config)]) == 78
    err = capsys.readouterr().err
    assert "uplink.ca_file: cannot read" in err
