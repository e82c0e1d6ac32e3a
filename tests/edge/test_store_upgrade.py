"""An upgrade copies the store before migrating it, and an older nbedge refuses a newer store
with the way back; ``nbedge run`` then stops with status 78 (no restart loop) and says so."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import NamedTuple

import pytest

from edge.cli import main
from edge.clock import Clock
from edge.store import Store
from edge.store.schema import MIGRATIONS, SCHEMA_VERSION, SchemaTooNew

GiB = 1024**3


class Disk(NamedTuple):
    total: int
    free: int


def old_store(path: Path, version: int, readings: int = 50) -> None:
    """A store as nbedge left it at schema ``version``, with a few readings."""
    conn = sqlite3.connect(path, isolation_level=None)
    for number, statements in enumerate(MIGRATIONS[:version]):
        for statement in statements:
            conn.execute(statement)
        if number == 0:
            conn.execute("INSERT INTO meta (key, value) VALUES ('store_id', 'ab12cd34')")
            conn.execute("INSERT INTO meta (key, value) VALUES ('outbox_seq', '0')")
    conn.executemany(
        "INSERT INTO readings (device, point, value, unit, wall_time, boot_id, monotonic_ns,"
        " clock_synced) VALUES ('main', 'voltage_l1', ?, 'V', ?, 'boot', 0, 1)",
        [(230.0 + i, 1_700_000_000.0 + i) for i in range(readings)],
    )
    conn.execute(f"PRAGMA user_version = {version}")
    conn.close()


def version_and_rows(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        return version, conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
    finally:
        conn.close()


async def test_an_upgrade_copies_the_store_before_migrating_it(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    old_store(path, SCHEMA_VERSION - 1)
    async with Store(path, gateway_id="gw-1", clock=Clock(synchronised=lambda: True)):
        pass
    copy = tmp_path / f"gateway.db.schema-{SCHEMA_VERSION - 1}.bak"
    assert version_and_rows(copy) == (SCHEMA_VERSION - 1, 50)  # the old store, as it was
    assert version_and_rows(path) == (SCHEMA_VERSION, 50)
    assert not list(tmp_path.glob("*.partial"))
    # Opening again copies nothing more: the store is of this schema now.
    async with Store(path, gateway_id="gw-1", clock=Clock(synchronised=lambda: True)):
        pass
    assert sorted(p.name for p in tmp_path.glob("*.bak")) == [copy.name]


async def test_no_copy_without_room_and_the_migration_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gateway.db"
    old_store(path, SCHEMA_VERSION - 1)
    caplog.set_level(logging.WARNING, logger="edge.store.schema")
    async with Store(
        path,
        gateway_id="gw-1",
        clock=Clock(synchronised=lambda: True),
        disk_usage=lambda _: Disk(GiB, 1024 * 1024),  # 1 MiB free: not enough for a copy
    ):
        pass
    assert not list(tmp_path.glob("*.bak"))
    assert version_and_rows(path) == (SCHEMA_VERSION, 50)
    assert any("not copied" in r.getMessage() for r in caplog.records)


async def test_an_older_nbedge_refuses_a_newer_store_and_names_the_way_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gateway.db"
    old_store(path, SCHEMA_VERSION - 1)
    async with Store(path, gateway_id="gw-1", clock=Clock(synchronised=lambda: True)):
        pass  # upgraded, with its copy
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")  # as a newer nbedge left it
    conn.close()
    with pytest.raises(SchemaTooNew) as refused:
        async with Store(path, gateway_id="gw-1", clock=Clock(synchronised=lambda: True)):
            pass
    message = str(refused.value)
    assert f"schema {SCHEMA_VERSION + 1}, newer than this nbedge's ({SCHEMA_VERSION})" in message
    assert f"gateway.db.schema-{SCHEMA_VERSION - 1}.bak" in message
    assert "docs/upgrades.md" in message
    assert version_and_rows(path)[1] == 50  # nothing touched


def test_nbedge_run_stops_with_status_78_on_a_newer_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.db"
    old_store(path, SCHEMA_VERSION + 1)
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nid = "gw-1"\nsite = "site-1"\nstate_dir = "{tmp_path}"\n\n'
        "[mqtt]\nenabled = false\n\n[local_api]\nenabled = false\n",
        encoding="utf-8",
    )
    assert main(["run", "--config", str(config)]) == 78
    err = capsys.readouterr().err
    assert "newer than this nbedge" in err
    assert "install the newer nbedge again" in err
