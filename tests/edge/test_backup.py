"""nbedge backup and restore: an SD-card swap with real files, a new card, and the old one's
archive."""

from __future__ import annotations

import io
import json
import os
import pwd
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from edge.backup import MANIFEST
from edge.cli import main
from edge.layout import CREDENTIAL_KEY_FILE
from edge.people.store import PEOPLE_FILE
from tests.conftest import ROOT

PROFILE = ROOT / "firmware_bridge" / "profiles" / "eastron_sdm120.toml"


def gateway(folder: Path) -> dict[str, Path]:
    """A provisioned gateway's files under ``folder``, with the modes the package gives them."""
    etc, state = folder / "etc", folder / "state"
    etc.mkdir(parents=True)
    state.mkdir(mode=0o750)
    files = {
        "config": etc / "gateway.toml",
        "credential": state / "credential",
        "ca": etc / "central-ca.pem",
        "key": state / CREDENTIAL_KEY_FILE,
        "people": state / PEOPLE_FILE,
        "profile": etc / "flat-meter.toml",
        "store": state / "gateway.db",
    }
    config = (ROOT / "examples" / "gateway.toml").read_text()
    config = config.replace('state_dir = "/var/lib/nbedge"', f'state_dir = "{state}"')
    config = config.replace(
        'token_file = "/var/lib/nbedge/credential"',
        f'token_file = "{files["credential"]}"\nca_file = "{files["ca"]}"',
    )
    config += (
        f'\n[[modbus.devices]]\nname = "flat"\nprofile = "{files["profile"]}"\n'
        'host = "192.0.2.11"\nunit_id = 2\n'
    )
    files["config"].write_text(config)
    files["credential"].write_text("the-gateway-credential\n")
    files["ca"].write_text("-----BEGIN CERTIFICATE-----\n...\n")
    files["key"].write_bytes(os.urandom(32))
    files["people"].write_text('{"people": []}\n')
    shutil.copyfile(PROFILE, files["profile"])
    files["store"].write_bytes(b"SQLite format 3\x00" + bytes(100))
    for name, mode in {"config": 0o640, "credential": 0o600, "key": 0o600, "people": 0o600}.items():
        files[name].chmod(mode)
    return files


def test_an_sd_card_swap_keeps_config_credential_keys_and_people(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = gateway(tmp_path / "card")
    before = {
        name: (path.read_bytes(), stat.S_IMODE(path.stat().st_mode)) for name, path in files.items()
    }
    archive = tmp_path / "backup" / "gateway.tar.gz"

    assert main(["backup", "--config", str(files["config"]), str(archive)]) == 0
    out = capsys.readouterr().out
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    for name in ("config", "credential", "ca", "key", "people", "profile"):
        assert str(files[name]) in out
    assert "Not in it: the store" in out
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert f"files{files['store']}" not in names  # the store stays behind

    shutil.rmtree(tmp_path / "card")  # the old card is gone
    assert main(["restore", str(archive)]) == 0
    out = capsys.readouterr().out
    assert "gateway gw-0001 of site maple-court-12" in out
    for name, (data, mode) in before.items():
        path = files[name]
        if name == "store":
            assert not path.exists()
            continue
        assert path.read_bytes() == data, name
        assert stat.S_IMODE(path.stat().st_mode) == mode, name
    assert stat.S_IMODE(files["credential"].parent.stat().st_mode) == 0o750
    assert main(["config", "check", str(files["config"])]) == 0


def test_restore_replaces_a_file_that_differs_only_when_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = gateway(tmp_path / "card")
    archive = tmp_path / "gateway.tar.gz"
    assert main(["backup", "--config", str(files["config"]), str(archive)]) == 0
    assert main(["restore", str(archive)]) == 0  # everything as in the backup: nothing to do
    assert f"credential: {files['credential']} (already as in the backup)" in (
        capsys.readouterr().out
    )

    files["credential"].write_text("a newer credential\n")
    files["people"].unlink()
    assert main(["restore", str(archive)]) == 1
    err = capsys.readouterr().err
    assert "nothing restored" in err
    assert f"{files['credential']} (credential)" in err
    assert "--force" in err
    assert not files["people"].exists()  # nothing written when a check fails

    assert main(["restore", "--force", str(archive)]) == 0
    assert files["credential"].read_text() == "the-gateway-credential\n"
    assert files["people"].exists()


def rewrite(archive: Path, out: Path, change: dict[str, bytes]) -> None:
    """A copy of ``archive`` with the members named in ``change`` holding other bytes."""
    with tarfile.open(archive) as source, tarfile.open(out, "w:gz") as target:
        for info in source.getmembers():
            data = source.extractfile(info).read() if info.isreg() else None
            if info.name in change:
                data = change[info.name]
                info.size = len(data)
            target.addfile(info, None if data is None else io.BytesIO(data))


def test_an_archive_with_an_invalid_configuration_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = gateway(tmp_path / "card")
    archive, broken = tmp_path / "gateway.tar.gz", tmp_path / "broken.tar.gz"
    assert main(["backup", "--config", str(files["config"]), str(archive)]) == 0
    bad = files["config"].read_text().replace("queue_size = 10000", "queue_size = 1")
    rewrite(archive, broken, {f"files{files['config']}": bad.encode()})
    shutil.rmtree(tmp_path / "card")
    capsys.readouterr()

    assert main(["restore", str(broken)]) == 78
    assert "store.queue_size" in capsys.readouterr().err
    assert not files["config"].exists()
    assert not files["credential"].exists()


def test_an_archive_that_names_a_relative_path_or_is_not_ours_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = gateway(tmp_path / "card")
    archive, crafted = tmp_path / "gateway.tar.gz", tmp_path / "crafted.tar.gz"
    assert main(["backup", "--config", str(files["config"]), str(archive)]) == 0
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile(MANIFEST).read())
    manifest["files"].append({"path": "../../etc/passwd", "what": "credential"})
    rewrite(archive, crafted, {MANIFEST: json.dumps(manifest).encode()})
    assert main(["restore", str(crafted)]) == 1
    assert "not an absolute path: refused" in capsys.readouterr().err

    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        tar.add(files["people"], arcname="people.json")
    assert main(["restore", str(other)]) == 1
    assert "is not a backup made by nbedge backup" in capsys.readouterr().err


def test_backup_of_an_invalid_configuration_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = gateway(tmp_path / "card")
    files["config"].write_text(files["config"].read_text().replace("[uplink]", "[uplink"))
    archive = tmp_path / "gateway.tar.gz"
    assert main(["backup", "--config", str(files["config"]), str(archive)]) == 78
    assert "(syntax)" in capsys.readouterr().err
    assert not archive.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root restores files to other owners")
def test_restore_gives_each_file_back_to_its_owner_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = gateway(tmp_path / "card")
    service = pwd.getpwnam("nobody")  # a user every Debian has, in place of nbedge
    for path in (files["credential"], files["key"], files["people"], files["credential"].parent):
        os.chown(path, service.pw_uid, service.pw_gid)
    archive = tmp_path / "gateway.tar.gz"
    assert main(["backup", "--config", str(files["config"]), str(archive)]) == 0
    shutil.rmtree(tmp_path / "card")

    assert main(["restore", str(archive)]) == 0
    for path in (files["credential"], files["key"], files["people"], files["credential"].parent):
        assert (path.stat().st_uid, path.stat().st_gid) == (service.pw_uid, service.pw_gid)
    assert files["config"].stat().st_uid == 0

    # On a machine without the owner (no package installed yet), nothing is written.
    unknown = tmp_path / "unknown.tar.gz"
    with tarfile.open(archive) as source, tarfile.open(unknown, "w:gz") as target:
        for info in source.getmembers():
            if info.uname == "nobody":
                info.uname = "nbedge-no-such-user"
            target.addfile(info, source.extractfile(info) if info.isreg() else None)
    shutil.rmtree(tmp_path / "card")
    capsys.readouterr()
    assert main(["restore", str(unknown)]) == 1
    assert "whom this machine does not know" in capsys.readouterr().err
    assert not files["config"].exists()
