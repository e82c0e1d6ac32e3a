"""A real central API for the cloud_sync tests: uvicorn on a free loopback port, SQLite in tmp_path.

Also builders of wire records, so that every test posts what a gateway would post.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy import Engine, func, select

from cloud_sync.central import CentralSettings, create_app
from cloud_sync.central.admin import init_db, make_engine, register_gateway, register_site
from cloud_sync.central.db import alert_events, summaries
from cloud_sync.schemas import (
    AlertBody,
    AlertRecord,
    IngestBatch,
    RecordTime,
    SummaryBody,
    SummaryRecord,
)

SITE = "site-1"
GATEWAY = "gw-1"
T0 = datetime(2024, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Central:
    """A running central API and what a test needs to talk to it."""

    base_url: str
    engine: Engine
    settings: CentralSettings
    site_id: str
    gateway_id: str
    gateway_token: str
    platform_token: str

    def gateway_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.gateway_token}"}

    def platform_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.platform_token}"}


@pytest.fixture
def central(tmp_path: Path, port: int) -> Iterator[Central]:
    """The central API served by a real uvicorn in a thread, with one site and one gateway."""
    platform_token = secrets.token_urlsafe(24)
    settings = CentralSettings(
        database_url=f"sqlite:///{tmp_path / 'central.db'}",
        platform_token=SecretStr(platform_token),
    )
    engine = make_engine(settings.database_url)
    init_db(engine)
    register_site(engine, SITE, "Test building")
    gateway_token = register_gateway(engine, SITE, GATEWAY)
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="central-uvicorn")
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("the central API did not start")
            time.sleep(0.02)
        yield Central(
            base_url=f"http://127.0.0.1:{port}",
            engine=engine,
            settings=settings,
            site_id=SITE,
            gateway_id=GATEWAY,
            gateway_token=gateway_token,
            platform_token=platform_token,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()


def record_time(n: int) -> RecordTime:
    return RecordTime(
        wall_time=T0 + timedelta(minutes=n),
        boot_id="boot-a",
        monotonic_ns=n * 10**9,
        clock_synced=True,
    )


def summary_record(n: int, gateway_id: str = GATEWAY) -> SummaryRecord:
    """The ``n``-th hourly summary of a meter, with a record id unique per gateway and ``n``."""
    return SummaryRecord(
        record_id=f"{gateway_id}:s:{n}",
        time=record_time(n),
        body=SummaryBody(
            device="meter-1",
            point="energy",
            unit="kWh",
            period_start=T0 + timedelta(hours=n),
            period_end=T0 + timedelta(hours=n + 1),
            count=60,
            min=float(n),
            max=float(n) + 2,
            mean=float(n) + 1,
            last=float(n) + 2,
        ),
    )


def alert_record(
    n: int, alert_id: str, state: str = "raised", gateway_id: str = GATEWAY
) -> AlertRecord:
    """A change of state of alert ``alert_id``; record id unique per gateway and ``n``."""
    return AlertRecord(
        record_id=f"{gateway_id}:a:{n}",
        time=record_time(n),
        body=AlertBody.model_validate(
            {
                "alert_id": alert_id,
                "rule": "over-current",
                "device": "meter-1",
                "point": "current",
                "state": state,
                "severity": "warning",
                "message": f"alert {alert_id} {state}",
                "value": 42.5,
                "raised_at": T0,
                "cleared_at": T0 + timedelta(minutes=n) if state == "cleared" else None,
            }
        ),
    )


def batch_json(
    records: Sequence[SummaryRecord | AlertRecord], gateway_id: str = GATEWAY, site_id: str = SITE
) -> bytes:
    """An ``IngestBatch`` body as a gateway sends it (before compression)."""
    batch = IngestBatch(gateway_id=gateway_id, site_id=site_id, records=list(records))
    return batch.model_dump_json().encode()


def stored_count(engine: Engine) -> int:
    """How many records the central database holds, summaries and alert events together."""
    with engine.connect() as conn:
        n_summaries = conn.execute(select(func.count()).select_from(summaries)).scalar_one()
        n_alerts = conn.execute(select(func.count()).select_from(alert_events)).scalar_one()
    return int(n_summaries) + int(n_alerts)
