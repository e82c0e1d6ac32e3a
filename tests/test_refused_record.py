"""A record the central API refuses does not stall the gateway: it is set aside, the records
behind it (a critical alert among them) reach the platform, and people are told.

A real store holds, first in its outbox, an alert record with a field this central API does not
know (as a newer gateway's would be; injected into the store's file), then a critical alert. A
real gateway then runs against a real central API (uvicorn, SQLite).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from edge.alerts import Alert, AlertBook, Severity
from edge.clock import Clock
from edge.daemon import REFUSED_RULE, Gateway
from edge.schemas import GatewayConfig
from edge.store import Store
from tests.conftest import free_port, wait_until
from tests.support import alerts as support
from tests.test_end_to_end import GATEWAY, SITE, central_api, eventually, pull

T0 = 1_733_000_000.0


def _alert(book: AlertBook, n: int, severity: Severity) -> Alert:
    return support.raise_alert(
        book, device="meter-1", point=f"voltage_l{n}", at=T0 + n, severity=severity
    )


async def test_a_refused_record_is_set_aside_and_the_critical_alert_behind_it_arrives(
    tmp_path: Path,
) -> None:
    async with central_api(tmp_path) as central:
        config = GatewayConfig.model_validate(
            {
                "gateway": {"id": GATEWAY, "site": SITE, "state_dir": str(tmp_path / "gw")},
                "mqtt": {"enabled": False},
                "uplink": {"url": central["url"], "token": central["token"], "interval_s": 0.2},
                "local_api": {"port": free_port()},
            }
        )
        # The store, as a gateway left it: a record the central API will refuse, then an alert.
        async with Store(
            config.database_path, gateway_id=GATEWAY, clock=Clock(synchronised=lambda: True)
        ) as store:
            book = AlertBook()
            warning, critical = _alert(book, 1, "warning"), _alert(book, 2, "critical")
            await store.write([], [warning])
            await store.write([], [critical])
        with sqlite3.connect(config.database_path) as db:
            (seq, payload) = db.execute("SELECT seq, payload FROM outbox ORDER BY seq").fetchone()
            record = json.loads(payload)
            record["body"]["escalation_level"] = 1  # a field from a newer wire schema
            db.execute("UPDATE outbox SET payload = ? WHERE seq = ?", (json.dumps(record), seq))
        db.close()

        gateway = Gateway(config)
        stop = asyncio.Event()
        running = asyncio.create_task(gateway.run(stop))
        try:
            await asyncio.wait_for(gateway.ready.wait(), 10)

            async def arrived() -> list[str]:
                return [a["alert_id"] for a in await pull(central, "alerts")]

            ids = await eventually(
                lambda: _with(arrived, REFUSED_RULE), 15, "the refusal was not reported"
            )
            assert critical.alert_id in ids  # behind the refused record
            assert warning.alert_id not in ids  # refused, kept on the gateway
            await wait_until(lambda: _refused_alert(gateway) is not None, timeout_s=5)
            local = _refused_alert(gateway)
            assert local is not None
            assert local.severity == "warning"
            assert "refused 1 records" in local.message
            assert "escalation_level" in local.message
            status = await gateway.status()
            assert status.store.set_aside == {"alert_event": 1}
            assert status.uplink.records_refused == 1
            assert status.uplink.wire.schema_version == 2
        finally:
            stop.set()
            await asyncio.wait_for(running, 20)
        # Still there after the gateway stopped: kept, re-sendable after an upgrade.
        with sqlite3.connect(config.database_path) as db:
            kept = db.execute(
                "SELECT record_id, refusal FROM outbox WHERE refused_at IS NOT NULL"
            ).fetchall()
        db.close()
        assert len(kept) == 1
        assert kept[0][1].startswith("invalid: ")


async def _with(arrived: object, rule: str) -> list[str]:
    ids: list[str] = await arrived()  # type: ignore[operator]
    return ids if any(i.startswith(f"{rule}.") for i in ids) else []


def _refused_alert(gateway: Gateway) -> Alert | None:
    return next((a for a in gateway.active_alerts() if a.rule == REFUSED_RULE), None)
