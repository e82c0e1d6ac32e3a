"""Several central API processes on one PostgreSQL: same answers as one, cursors that never skip.

See ``cloud_sync.central.db`` for why a feed's cursor is safe: ingest transactions of one site
take turns on an advisory lock, so ``seq`` values of a site become visible in ``seq`` order.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select

from cloud_sync.central import CentralSettings, db
from cloud_sync.central.admin import make_engine, register_gateway, register_site
from cloud_sync.central.migrations import upgrade
from cloud_sync.central.tables import summaries
from cloud_sync.schemas import IngestBatch
from tests.cloud_sync.conftest import (
    Central,
    batch_json,
    schema_differences,
    serving,
    summary_record,
)
from tests.cloud_sync.servers import PostgresCluster, central_process


@pytest.fixture(scope="module")
def database_kind() -> str:
    return "postgresql"


def batch(*numbers: int, gateway_id: str = "gw-1", site_id: str = "site-1") -> IngestBatch:
    records = [summary_record(n, gateway_id) for n in numbers]
    return IngestBatch(gateway_id=gateway_id, site_id=site_id, records=list(records))


def feed_ids(engine: Engine, site_id: str = "site-1") -> list[str]:
    return [row["record_id"] for row in db.summaries_after(engine, site_id, 0, 1000)]


def test_without_the_lock_a_smaller_seq_can_commit_after_a_larger(central: Central) -> None:
    """The hazard itself, shown with plain inserts: why ``store_batch`` takes the site's lock."""
    rows = [db.record_row(r, batch(1, 2), datetime.now(UTC)) for r in batch(1, 2).records]
    with central.engine.connect() as slow, central.engine.connect() as fast:
        slow.begin()
        slow.execute(summaries.insert(), rows[0])  # draws the smaller seq, commits late
        with fast.begin():
            fast.execute(summaries.insert(), rows[1])
        cursor_after_first_pull = max(
            r["seq"] for r in db.summaries_after(central.engine, "site-1", 0, 10)
        )
        slow.commit()
    missed = db.summaries_after(central.engine, "site-1", cursor_after_first_pull, 10)
    assert missed == []  # gw-1:s:1 exists, but a reader past gw-1:s:2 never sees it
    assert sorted(feed_ids(central.engine)) == ["gw-1:s:1", "gw-1:s:2"]


def test_a_site_ingests_one_batch_at_a_time(central: Central) -> None:
    register_site(central.engine, "site-2", "Next door")
    register_gateway(central.engine, "site-2", "gw-9")
    second: list[object] = []
    with central.engine.begin() as conn:
        db.insert_batch(conn, batch(1))  # holds site-1's lock until this transaction ends
        waiting = threading.Thread(
            target=lambda: second.append(db.store_batch(central.engine, batch(2)))
        )
        waiting.start()
        waiting.join(timeout=0.5)
        assert waiting.is_alive(), "a second batch of the same site must wait for the first"
        assert feed_ids(central.engine) == []
        db.store_batch(central.engine, batch(5, gateway_id="gw-9", site_id="site-2"))
        assert feed_ids(central.engine, "site-2") == ["gw-9:s:5"]  # other sites do not wait
    waiting.join(timeout=10)
    assert len(second) == 1
    rows = db.summaries_after(central.engine, "site-1", 0, 10)
    assert [row["record_id"] for row in rows] == ["gw-1:s:1", "gw-1:s:2"]
    assert rows[0]["seq"] < rows[1]["seq"]


GATEWAYS = 4
RECORDS_PER_GATEWAY = 240
BATCH = 30
STEP = 20  # consecutive batches overlap by BATCH - STEP records


def test_two_processes_store_each_record_once_and_feed_it_once(central: Central) -> None:
    tokens = {"gw-1": central.gateway_token}
    for n in range(2, GATEWAYS + 1):
        tokens[f"gw-{n}"] = register_gateway(central.engine, "site-1", f"gw-{n}")
    expected = {f"{gw}:s:{n}" for gw in tokens for n in range(RECORDS_PER_GATEWAY)}
    url = central.settings.database_url
    with (
        central_process(url, central.platform_token) as api_a,
        central_process(url, central.platform_token) as api_b,
    ):
        apis = [api_a, api_b]
        results: list[tuple[int, dict[str, Any]]] = []
        posted = Counter[str]()
        writing = threading.Event()
        writing.set()

        def write(gateway_id: str, seed: int) -> None:
            rng = random.Random(seed)
            starts = list(range(0, RECORDS_PER_GATEWAY - BATCH + STEP, STEP))
            starts += rng.sample(starts, 4)  # whole batches sent again, as after a lost answer
            clients = [httpx.Client(base_url=api, timeout=30) for api in apis]
            try:
                for i, start in enumerate(starts):
                    numbers = range(start, min(start + BATCH, RECORDS_PER_GATEWAY))
                    body = batch_json([summary_record(n, gateway_id) for n in numbers], gateway_id)
                    reply = clients[(i + seed) % 2].post(
                        "/v1/ingest",
                        content=body,
                        headers={"Authorization": f"Bearer {tokens[gateway_id]}"},
                    )
                    results.append((reply.status_code, reply.json()))
                    posted[gateway_id] += len(numbers)
            finally:
                for client in clients:
                    client.close()

        writers = [
            threading.Thread(target=write, args=(gw, seed), name=f"writer-{gw}")
            for seed, gw in enumerate(tokens)
        ]
        for writer in writers:
            writer.start()
        seen = _pull_while_writing(apis, central.platform_token, writers, len(expected))
        for writer in writers:
            writer.join()

        assert [status for status, _ in results if status != 200] == []
        assert sum(body["accepted"] for _, body in results) == len(expected)
        assert sum(body["duplicates"] for _, body in results) == sum(posted.values()) - len(
            expected
        )
        assert len(seen) == len(set(seen)), "the cursor repeated items"
        assert set(seen) == expected, f"the cursor missed {len(expected - set(seen))} items"
        through_a = _pull_all(api_a, central.platform_token)
        through_b = _pull_all(api_b, central.platform_token)
        assert through_a == through_b
        assert [item["record_id"] for item in through_a] == seen


def _pull_while_writing(
    apis: list[str], platform_token: str, writers: list[threading.Thread], total: int
) -> list[str]:
    """Page through the feed, alternating processes, until the writers are done and it is read.

    Bounded: at most 60 s and a number of pages that only a broken cursor would exceed.
    """
    headers = {"Authorization": f"Bearer {platform_token}"}
    seen: list[str] = []
    after = 0
    deadline = time.monotonic() + 60
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(httpx.Client(base_url=a, timeout=30)) for a in apis]
        for page_number in itertools.count():
            assert time.monotonic() < deadline, f"pulled {len(seen)} of {total} items in 60 s"
            assert page_number < 10 * total, "the cursor does not advance"
            done = not any(writer.is_alive() for writer in writers)
            page = clients[page_number % 2].get(
                "/v1/sites/site-1/summaries", params={"after": after, "limit": 17}, headers=headers
            )
            assert page.status_code == 200, page.text
            items = page.json()["items"]
            seen += [item["record_id"] for item in items]
            after = page.json()["next_cursor"]
            if not items and done:
                return seen
            if not items:
                time.sleep(0.01)
    raise AssertionError("unreachable")


def _pull_all(api: str, platform_token: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {platform_token}"}
    with httpx.Client(base_url=api, timeout=30, headers=headers) as client:
        items: list[dict[str, Any]] = []
        after = 0
        while page := client.get(
            "/v1/sites/site-1/summaries", params={"after": after, "limit": 1000}
        ).json()["items"]:
            items += page
            after = page[-1]["seq"]
        return items


@pytest.fixture
def fresh_postgres_database(postgres: PostgresCluster) -> Iterator[tuple[PostgresCluster, str]]:
    """An empty database (not even migrated), dropped afterwards."""
    name = f"empty_{secrets.token_hex(4)}"
    postgres.create_database(name)
    yield postgres, name
    with psycopg.connect(
        host=postgres.host, port=postgres.port, user=postgres.user, dbname="postgres"
    ) as conn:
        conn.autocommit = True
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def test_processes_starting_together_migrate_once(
    fresh_postgres_database: tuple[PostgresCluster, str],
) -> None:
    cluster, name = fresh_postgres_database
    engines = [make_engine(cluster.url(name)) for _ in range(4)]
    errors: list[BaseException] = []

    def migrate(engine: Engine) -> None:
        try:
            upgrade(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert schema_differences(engines[0]) == []
        with engines[0].connect() as conn:
            assert conn.execute(select(summaries)).all() == []
    finally:
        for engine in engines:
            engine.dispose()


def test_health_says_when_the_database_is_gone(
    fresh_postgres_database: tuple[PostgresCluster, str],
) -> None:
    cluster, name = fresh_postgres_database
    settings = CentralSettings(
        database_url=cluster.url(name), platform_token=SecretStr(secrets.token_urlsafe(24))
    )
    with serving(settings) as base_url, httpx.Client(base_url=base_url, timeout=10) as http:
        assert http.get("/v1/health").status_code == 200
        with psycopg.connect(
            host=cluster.host, port=cluster.port, user=cluster.user, dbname="postgres"
        ) as conn:
            conn.autocommit = True
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)'.encode())
        assert http.get("/v1/health").status_code == 503
        feed = http.get(
            "/v1/sites/site-1/summaries",
            headers={"Authorization": f"Bearer {settings.platform_token.get_secret_value()}"},
        )
        assert feed.status_code == 503
        assert feed.headers["Retry-After"] == "5"
