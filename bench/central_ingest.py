"""Ingest rate of the central API: SQLite with one worker, PostgreSQL with one and two workers.

Every run posts the same pre-built, gzip-compressed batches (built before the clock starts) from
one client thread per gateway to ``uvicorn --workers N`` on 127.0.0.1, on a fresh database, and
counts the records the API accepted per second of wall time. PostgreSQL is a throw-away cluster
(fsync off, as in the tests: this measures the API and the database's CPU work, not the disk).
Each gateway belongs to a building (site) of its own, as in a neighbourhood; ``--one-site`` puts
them all in one building, where ingest transactions take turns on the site's lock.
``--kind alert_event`` posts alert events instead of summaries (each alert's five events:
raised, escalated, acknowledged, cleared, resolved, spread over consecutive batches), which the
API stores and folds into each alert's current state in the same transaction.

Usage, from the repository's root::

    python bench/central_ingest.py [--records 12000] [--batch 250] [--gateways 8] [--one-site]
        [--kind summary|alert_event] [--skip-sqlite]
"""

from __future__ import annotations

import argparse
import gzip
import os
import secrets
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cloud_sync.central.admin import init_db, make_engine, register_gateway, register_site
from cloud_sync.schemas import AlertEventRecord, Record
from tests.cloud_sync.conftest import alert_story, batch_json, summary_record
from tests.cloud_sync.servers import central_process, postgres_cluster


@dataclass(frozen=True)
class Run:
    name: str
    workers: int
    records: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def _records(kind: str, gateway_id: str, count: int) -> list[Record]:
    if kind == "summary":
        return [summary_record(n, gateway_id) for n in range(count)]
    events: list[AlertEventRecord] = []
    for n in range(0, count, 5):
        alert_id = f"use_stopped.flat-{n // 5}.water.1709251200000"
        events += alert_story(alert_id, gateway_id=gateway_id)
    # Step by step: a batch holds the same step of many alerts, the next batches the next steps.
    events.sort(key=lambda r: (int(r.body.event_id.rsplit(".", 1)[1]), r.record_id))
    return list(events[:count])


def bodies(
    gateways: list[tuple[str, str]], records: int, batch: int, kind: str = "summary"
) -> dict[str, list[bytes]]:
    """Gzip-compressed ingest batches of each gateway, ``records`` in all."""
    per_gateway = records // len(gateways)
    out: dict[str, list[bytes]] = {}
    for gateway_id, site_id in gateways:
        mine = _records(kind, gateway_id, per_gateway)
        out[gateway_id] = [
            gzip.compress(
                batch_json(mine[start : start + batch], gateway_id=gateway_id, site_id=site_id)
            )
            for start in range(0, per_gateway, batch)
        ]
    return out


def prepare(url: str, gateways: list[tuple[str, str]]) -> dict[str, str]:
    """Migrate a fresh database, register the sites and gateways; return their tokens."""
    engine = make_engine(url)
    try:
        init_db(engine)
        tokens = {}
        for gateway_id, site_id in gateways:
            register_site(engine, site_id, site_id)
            tokens[gateway_id] = register_gateway(engine, site_id, gateway_id)
        return tokens
    finally:
        engine.dispose()


def run(
    name: str,
    url: str,
    workers: int,
    gateways: list[tuple[str, str]],
    batches: dict[str, list[bytes]],
) -> Run:
    tokens = prepare(url, gateways)
    accepted: list[int] = []
    errors: list[str] = []

    def post_all(base_url: str, gateway_id: str) -> None:
        headers = {
            "Authorization": f"Bearer {tokens[gateway_id]}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        with httpx.Client(base_url=base_url, timeout=60, headers=headers) as client:
            for body in batches[gateway_id]:
                reply = client.post("/v1/ingest", content=body)
                if reply.status_code != 200:
                    errors.append(f"{reply.status_code} {reply.text[:200]}")
                    return
                accepted.append(reply.json()["accepted"])

    with central_process(url, secrets.token_urlsafe(24), workers=workers) as base_url:
        # One request per worker first, so that every worker has started and connected.
        with httpx.Client(base_url=base_url, timeout=10) as warm:
            for _ in range(4 * workers):
                warm.get("/v1/health")
        threads = [
            threading.Thread(target=post_all, args=(base_url, gateway_id))
            for gateway_id, _ in gateways
        ]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{name}: {len(errors)} batches refused, e.g. {errors[0]}")
    return Run(name, workers, sum(accepted), seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=12_000)
    parser.add_argument("--batch", type=int, default=250, help="records per batch")
    parser.add_argument("--gateways", type=int, default=8, help="concurrent gateways")
    parser.add_argument("--one-site", action="store_true", help="all gateways in one building")
    parser.add_argument("--kind", choices=["summary", "alert_event"], default="summary")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()

    gateways = [
        (f"gw-{n}", "site-1" if args.one_site else f"site-{n}") for n in range(args.gateways)
    ]
    batches = bodies(gateways, args.records, args.batch, args.kind)
    total = sum(len(b) for b in batches.values())
    print(
        f"central API ingest: {args.records} {args.kind} records in {total} batches of "
        f"{args.batch}, "
        f"{args.gateways} gateways posting at once, "
        f"{'one site' if args.one_site else 'one site per gateway'}; "
        f"{os.cpu_count()} CPUs (client, server and database share them)"
    )
    results: list[Run] = []
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{folder}/central.db"
            results.append(run("sqlite", url, 1, gateways, batches))
    with postgres_cluster() as cluster:
        for workers in (1, 2):
            url = cluster.create_database(f"bench_{workers}")
            results.append(run("postgresql", url, workers, gateways, batches))
    _report(results)


def _report(results: list[Run]) -> None:
    print(f"{'database':<12}{'workers':>8}{'records':>9}{'seconds':>9}{'records/s':>11}")
    for r in results:
        print(f"{r.name:<12}{r.workers:>8}{r.records:>9}{r.seconds:>9.2f}{r.rate:>11,.0f}")
    pg = {r.workers: r for r in results if r.name == "postgresql"}
    print(f"postgresql, 2 workers / 1 worker: {pg[2].rate / pg[1].rate:.2f}x")


if __name__ == "__main__":
    main()
