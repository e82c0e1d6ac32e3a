"""A real central API for the cloud_sync tests: uvicorn on a free loopback port, on a real database.

The database is a SQLite file in tmp_path unless a module overrides ``database_kind`` (the
central API's own suites run on ``sqlite`` and ``postgresql``). PostgreSQL is one throw-away
cluster per session (``servers.postgres_cluster``); each test module gets a database of its own,
copied from a migrated template, and each test starts with its tables emptied (a few ms, where
``CREATE DATABASE`` per test costs 0.1-0.3 s on a busy machine).

Also builders of wire records, so that every test posts what a gateway would post.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import SecretStr
from sqlalchemy import Engine, func, select

from cloud_sync.central import CentralSettings, create_app
from cloud_sync.central.admin import init_db, make_engine, register_gateway, register_site
from cloud_sync.central.app import CURRENT_TERMS
from cloud_sync.central.db import access_events, alert_events, evictions, metadata, summaries
from cloud_sync.schemas import (
    SCHEMA_VERSION,
    AccessBody,
    AccessRecord,
    AlertBody,
    AlertEventBody,
    AlertEventRecord,
    AlertRecord,
    CommandResultBody,
    CommandResultRecord,
    EvictionBody,
    EvictionRecord,
    IngestBatch,
    Record,
    RecordTime,
    SchemaVersion,
    SummaryBody,
    SummaryRecord,
    WireTerms,
)
from tests.cloud_sync.servers import PostgresCluster, PostgresUnavailable, postgres_cluster
from tests.conftest import free_port

SITE = "site-1"
GATEWAY = "gw-1"
T0 = datetime(2024, 3, 1, tzinfo=UTC)
DATABASES = ["sqlite", "postgresql"]
TEMPLATE_DATABASE = "nbedge_template"
_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A throw-away PostgreSQL cluster for the whole session, stopped and deleted at the end."""
    try:
        with postgres_cluster() as cluster:
            yield cluster
    except PostgresUnavailable as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def postgres_template(postgres: PostgresCluster) -> str:
    """A database at the latest schema, the template of every test's database."""
    engine = make_engine(postgres.create_database(TEMPLATE_DATABASE))
    try:
        init_db(engine)
    finally:
        engine.dispose()  # a template must have no connections
    return TEMPLATE_DATABASE


@pytest.fixture(scope="module")
def postgres_module_database(postgres: PostgresCluster, postgres_template: str) -> str:
    """A database of this test module's own, at the latest schema."""
    return postgres.create_database(f"test_{next(_database_numbers)}", template=postgres_template)


def empty_tables(url: str) -> None:
    """Delete every row, children before parents (sequences go on: no test relies on them)."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
    finally:
        engine.dispose()


@pytest.fixture
def database_kind() -> str:
    """Which database the central API runs on; modules parametrise it over ``DATABASES``."""
    return "sqlite"


@pytest.fixture
def database_url(database_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh, migrated database of ``database_kind`` for this test."""
    if database_kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'central.db'}"
        engine = make_engine(url)
        try:
            init_db(engine)
        finally:
            engine.dispose()
        return url
    url: str = request.getfixturevalue("postgres_module_database")
    empty_tables(url)
    return url


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


Clock = Callable[[], datetime]


def _real_now() -> datetime:
    return datetime.now(UTC)


@contextlib.contextmanager
def serving(
    settings: CentralSettings,
    *,
    daemon: bool = False,
    wire: WireTerms | None = CURRENT_TERMS,
    now: Clock = _real_now,
) -> Iterator[str]:
    """Serve ``create_app(settings, wire=wire, now=now)`` with a real uvicorn in a thread; yield
    its base URL. ``wire`` other than the default answers as an earlier release would."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, wire=wire, now=now),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    # A daemon server thread makes its worker threads daemons too: a server that outlives one
    # test (module scope) does not count as a thread that test leaked.
    thread = threading.Thread(target=server.run, name="central-uvicorn", daemon=daemon)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("the central API did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _with_site_and_gateway(
    base_url: str, settings: CentralSettings, engine: Engine, platform_token: str
) -> Central:
    register_site(engine, SITE, "Test building")
    return Central(
        base_url=base_url,
        engine=engine,
        settings=settings,
        site_id=SITE,
        gateway_id=GATEWAY,
        gateway_token=register_gateway(engine, SITE, GATEWAY),
        platform_token=platform_token,
    )


@contextlib.contextmanager
def central_api(
    database_url: str,
    *,
    wire: WireTerms | None = CURRENT_TERMS,
    now: Clock = _real_now,
    platform_token: str | None = None,
    **options: Any,
) -> Iterator[Central]:
    """The central API served by a real uvicorn in a thread, with one site and one gateway;
    ``wire`` and ``now`` as for ``serving``, ``options`` more settings."""
    platform_token = platform_token or secrets.token_urlsafe(24)
    settings = CentralSettings(
        database_url=database_url, platform_token=SecretStr(platform_token), **options
    )
    engine = make_engine(settings.database_url)
    try:
        with serving(settings, wire=wire, now=now) as base_url:
            yield _with_site_and_gateway(base_url, settings, engine, platform_token)
    finally:
        engine.dispose()


@pytest.fixture
def central(database_url: str) -> Iterator[Central]:
    """The central API served by a real uvicorn in a thread, with one site and one gateway."""
    with central_api(database_url) as api:
        yield api


@dataclass(frozen=True)
class _SharedServer:
    base_url: str
    settings: CentralSettings
    engine: Engine
    platform_token: str


@pytest.fixture(scope="module")
def central_clock() -> Clock:
    """The clock of a module's central API: real time, unless the module overrides it."""
    return _real_now


@pytest.fixture(scope="module")
def central_options() -> dict[str, Any]:
    """More settings of a module's central API (a module overrides it)."""
    return {}


@pytest.fixture(scope="module")
def shared_server(
    database_kind: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
    central_clock: Clock,
    central_options: dict[str, Any],
) -> Iterator[_SharedServer]:
    """One central API per test module and database kind (``database_kind`` module-scoped)."""
    if database_kind == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('central') / 'central.db'}"
    else:
        url = request.getfixturevalue("postgres_module_database")
    platform_token = secrets.token_urlsafe(24)
    settings = CentralSettings(
        database_url=url, platform_token=SecretStr(platform_token), **central_options
    )
    engine = make_engine(url)
    try:
        with serving(settings, daemon=True, now=central_clock) as base_url:
            yield _SharedServer(base_url, settings, engine, platform_token)
    finally:
        engine.dispose()


@pytest.fixture
def fresh_central(shared_server: _SharedServer) -> Central:
    """The module's central API with its database emptied: one site, one gateway, no record.

    Starting uvicorn takes about 0.3 s; emptying the tables a few ms. Only the metrics (per
    process) carry over from one test to the next: compare them before and after.
    """
    empty_tables(shared_server.settings.database_url)
    return _with_site_and_gateway(
        shared_server.base_url,
        shared_server.settings,
        shared_server.engine,
        shared_server.platform_token,
    )


def record_time(n: int) -> RecordTime:
    return RecordTime(
        wall_time=T0 + timedelta(minutes=n),
        boot_id="boot-a",
        monotonic_ns=n * 10**9,
        clock_synced=True,
    )


def summary_record(n: int, gateway_id: str = GATEWAY, delta: float | None = None) -> SummaryRecord:
    """The ``n``-th hourly summary of a meter, with a record id unique per gateway and ``n``
    (``delta`` as a counter's summary carries it)."""
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
            delta=delta,
        ),
    )


def alert_record(
    n: int,
    alert_id: str,
    state: str = "raised",
    gateway_id: str = GATEWAY,
    severity: str = "warning",
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
                "severity": severity,
                "message": f"alert {alert_id} {state}",
                "value": 42.5,
                "raised_at": T0,
                "cleared_at": T0 + timedelta(minutes=n) if state == "cleared" else None,
            }
        ),
    )


def eviction_record(n: int, count: int = 500, gateway_id: str = GATEWAY) -> EvictionRecord:
    """A report that a gateway dropped ``count`` readings to stay within its disk quota."""
    return EvictionRecord(
        record_id=f"{gateway_id}:e:{n}",
        time=record_time(n),
        body=EvictionBody(
            evicted="reading",
            count=count,
            oldest=T0 + timedelta(days=n),
            newest=T0 + timedelta(days=n, hours=6),
            reason="quota",
        ),
    )


def access_record(
    n: int,
    event: str = "granted",
    credential_ref: str | None = "hmac-3f9c2a1b7d4e",
    gateway_id: str = GATEWAY,
) -> AccessRecord:
    """An event of the main door; record id unique per gateway and ``n``."""
    return AccessRecord(
        record_id=f"{gateway_id}:x:{n}",
        time=record_time(n),
        body=AccessBody.model_validate(
            {
                "device": "door-main",
                "event": event,
                "credential_ref": credential_ref,
                "occurred_at": T0 + timedelta(minutes=n),
                "detail": f"event {n}",
            }
        ),
    )


ALERT = "use_stopped.flat-3-201.water_electricity.1709251200000"
"""An alert id as a gateway makes it: code, device, point, raise time in ms."""
_VIA = {"raised": "rule", "cleared": "rule", "escalated": "policy"}


def alert_event_record(
    n: int,
    event: str = "raised",
    *,
    alert_id: str = ALERT,
    condition: str = "active",
    state: str = "new",
    severity: str = "critical",
    code: str = "use_stopped",
    device: str = "flat-3-201",
    raised_at: datetime = T0,
    gateway_id: str = GATEWAY,
    record_id: str | None = None,
    **fields: Any,
) -> AlertEventRecord:
    """The ``n``-th event of an alert (``event_id = <alert_id>.<n>``, at ``T0 + n`` minutes), as
    the gateway's history holds it; ``fields`` sets the rest of the body (by, note, outcome...)."""
    body: dict[str, Any] = {
        "event_id": f"{alert_id}.{n}",
        "alert_id": alert_id,
        "event": event,
        "code": code,
        "device": device,
        "point": "water_electricity",
        "severity": severity,
        "condition": condition,
        "state": state,
        "at": T0 + timedelta(minutes=n),
        "raised_at": raised_at,
        "via": _VIA.get(event, "local_api"),
        "value": 6.5,
        "params": {"hours_quiet": 6.5, "usual_uses": 14, "lives_alone": True},
        "text": {"en": f"{code} {event} {n}", "zh-Hans": f"{code} {event} {n} 事件"},
    }
    return AlertEventRecord(
        record_id=record_id or f"{gateway_id}:ae:{alert_id}.{n}",
        time=record_time(n),
        body=AlertEventBody.model_validate(body | fields),
    )


def alert_story(alert_id: str = ALERT, **common: Any) -> list[AlertEventRecord]:
    """A whole alert, in its order: raised, escalated, acknowledged, cleared, resolved."""
    return [
        alert_event_record(1, "raised", alert_id=alert_id, **common),
        alert_event_record(
            2, "escalated", alert_id=alert_id, level=1, audience="grid_worker", **common
        ),
        alert_event_record(
            3,
            "acknowledged",
            alert_id=alert_id,
            state="acknowledged",
            level=1,
            by="王芳",
            note="on my way",
            **common,
        ),
        alert_event_record(
            4,
            "cleared",
            alert_id=alert_id,
            condition="cleared",
            state="acknowledged",
            level=1,
            **common,
        ),
        alert_event_record(
            5,
            "resolved",
            alert_id=alert_id,
            condition="cleared",
            state="resolved",
            level=1,
            by="王芳",
            note="she was asleep",
            outcome="resident_ok",
            **common,
        ),
    ]


def command_result_record(
    n: int,
    command_id: str,
    result: str = "applied",
    *,
    event_id: str | None = None,
    reason: str | None = None,
    gateway_id: str = GATEWAY,
) -> CommandResultRecord:
    """A gateway's answer to a command; record id unique per gateway and ``n``."""
    return CommandResultRecord(
        record_id=f"{gateway_id}:cr:{n}",
        time=record_time(n),
        body=CommandResultBody.model_validate(
            {
                "command_id": command_id,
                "result": result,
                "reason": reason,
                "event_id": event_id,
                "at": T0 + timedelta(minutes=n),
            }
        ),
    )


def batch_json(
    records: Sequence[Record],
    gateway_id: str = GATEWAY,
    site_id: str = SITE,
    *,
    schema_version: SchemaVersion = SCHEMA_VERSION,
) -> bytes:
    """An ``IngestBatch`` body as a gateway sends it (before compression)."""
    batch = IngestBatch(
        schema_version=schema_version, gateway_id=gateway_id, site_id=site_id, records=list(records)
    )
    return batch.model_dump_json().encode()


def schema_differences(engine: Engine) -> list[object]:
    """How the database's schema differs from ``tables.metadata`` (Alembic's autogenerate)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def stored_count(engine: Engine) -> int:
    """How many records the central database holds: summaries, alert, eviction, access events."""
    with engine.connect() as conn:
        return sum(
            int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for table in (summaries, alert_events, evictions, access_events)
        )


T = TypeVar("T")


def eventually(probe: Callable[[], T], what: str, timeout_s: float = 10.0) -> T:
    """``probe()``'s first truthy answer, polled for up to ``timeout_s``; fails saying ``what``."""
    deadline = time.monotonic() + timeout_s
    while not (answer := probe()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout_s} s")
        time.sleep(0.02)
    return answer
