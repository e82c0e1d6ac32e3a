"""Claiming a gateway with a one-time code, on SQLite and PostgreSQL, over real HTTP.

The operator makes a code (``admin.create_claim_code``); the gateway exchanges it once, through
``provision.claim_gateway``, for its credential. Reused, expired and unknown codes are refused and
change nothing.
"""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from cloud_sync.central.admin import AdminError, create_claim_code, register_site
from cloud_sync.central.claims import ALPHABET
from cloud_sync.central.db import claim_codes, gateways
from cloud_sync.provision import Credential, claim_gateway
from nbedge.errors import UplinkRejected, UplinkUnavailable
from tests.cloud_sync.conftest import Central, batch_json, stored_count, summary_record
from tests.conftest import free_port


def claim(http: httpx.Client, code: str) -> httpx.Response:
    return http.post("/v1/claim", json={"code": code})


_fresh_records = itertools.count(1000)


def can_write(http: httpx.Client, token: str, gateway_id: str, site_id: str = "site-1") -> bool:
    """Whether ``token`` lets ``gateway_id`` store a record (a fresh one each time)."""
    body = batch_json([summary_record(next(_fresh_records), gateway_id)], gateway_id, site_id)
    reply = http.post("/v1/ingest", content=body, headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code in (200, 401), reply.text
    return reply.status_code == 200


def test_a_code_is_claimed_once_for_a_working_token(http: httpx.Client, central: Central) -> None:
    code = create_claim_code(central.engine, "site-1", "gw-new")
    groups = code.split("-")
    assert [len(g) for g in groups] == [4, 4, 4, 4]
    assert set("".join(groups)) <= set(ALPHABET)

    reply = claim(http, code)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["gateway_id"], body["site_id"]) == ("gw-new", "site-1")
    assert reply.headers["Cache-Control"] == "no-store"
    assert can_write(http, body["token"], "gw-new")

    again = claim(http, code)
    assert again.status_code == 403
    assert "used" in again.json()["detail"]
    assert can_write(http, body["token"], "gw-new")  # the refused reuse changed nothing


def test_the_database_keeps_no_code_and_no_token(http: httpx.Client, central: Central) -> None:
    code = create_claim_code(central.engine, "site-1", "gw-new")
    token = claim(http, code).json()["token"]
    with central.engine.connect() as conn:
        stored = [str(v) for row in conn.execute(select(claim_codes)) for v in row]
        stored += [str(v) for row in conn.execute(select(gateways)) for v in row]
    plain = code.replace("-", "")
    assert not [v for v in stored if plain in v.replace("-", "") or token in v]


@pytest.mark.parametrize(
    "typed",
    [
        lambda c: c.lower(),
        lambda c: c.replace("-", ""),
        lambda c: " ".join(c.split("-")),
        lambda c: c.replace("0", "o").replace("1", "l"),
    ],
    ids=["lower-case", "no-dashes", "spaces", "letters-for-digits"],
)
def test_a_code_may_be_typed_loosely(http: httpx.Client, central: Central, typed: object) -> None:
    code = create_claim_code(central.engine, "site-1", "gw-new")
    assert callable(typed)
    assert claim(http, typed(code)).status_code == 200


def test_an_expired_code_is_refused(http: httpx.Client, central: Central) -> None:
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    code = create_claim_code(central.engine, "site-1", "gw-late", now=two_days_ago)
    reply = claim(http, code)
    assert reply.status_code == 403
    assert "expired" in reply.json()["detail"]
    with central.engine.connect() as conn:
        assert conn.execute(select(gateways).where(gateways.c.gateway_id == "gw-late")).all() == []


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("0000-0000-0000-0000", 404),  # well formed, never issued
        ("ABCD", 404),  # too short
        ("UUUU-UUUU-UUUU-UUUU", 404),  # U is not in the alphabet
        ("", 422),
        ("DROP TABLE gateways; --", 422),
        ("x" * 65, 422),
    ],
)
def test_an_unknown_or_malformed_code_is_refused(
    http: httpx.Client, central: Central, code: str, status: int
) -> None:
    create_claim_code(central.engine, "site-1", "gw-new")
    assert claim(http, code).status_code == status
    with central.engine.connect() as conn:
        assert conn.execute(select(claim_codes.c.used_at)).scalar_one() is None


def test_claiming_again_with_a_fresh_code_rotates_the_token(
    http: httpx.Client, central: Central
) -> None:
    old = claim(http, create_claim_code(central.engine, "site-1", "gw-1")).json()["token"]
    assert old != central.gateway_token
    assert not can_write(http, central.gateway_token, "gw-1")  # the registered token is replaced
    new = claim(http, create_claim_code(central.engine, "site-1", "gw-1")).json()["token"]
    assert not can_write(http, old, "gw-1")
    assert can_write(http, new, "gw-1")


def test_a_claimed_gateway_writes_only_its_own_site(http: httpx.Client, central: Central) -> None:
    register_site(central.engine, "site-2", "Next door")
    token = claim(http, create_claim_code(central.engine, "site-2", "gw-2")).json()["token"]
    before = stored_count(central.engine)
    body = batch_json([summary_record(1, "gw-2")], gateway_id="gw-2", site_id="site-1")
    reply = http.post("/v1/ingest", content=body, headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 403
    assert stored_count(central.engine) == before


def test_a_code_whose_gateway_moved_is_refused_and_stays_unused(
    http: httpx.Client, central: Central
) -> None:
    from cloud_sync.central.admin import register_gateway

    code = create_claim_code(central.engine, "site-1", "gw-9")
    register_site(central.engine, "site-2", "Next door")
    register_gateway(central.engine, "site-2", "gw-9")
    assert claim(http, code).status_code == 409
    with central.engine.connect() as conn:
        assert conn.execute(select(claim_codes.c.used_at)).scalar_one() is None


def test_one_code_claimed_at_once_by_many_wins_once(central: Central) -> None:
    code = create_claim_code(central.engine, "site-1", "gw-race")
    statuses: list[int] = []
    start = threading.Barrier(8)

    def race() -> None:
        with httpx.Client(base_url=central.base_url, timeout=10) as client:
            start.wait()
            statuses.append(claim(client, code).status_code)

    racers = [threading.Thread(target=race) for _ in range(8)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert sorted(statuses) == [200] + [403] * 7


def test_the_operator_cannot_make_a_code_that_cannot_work(central: Central) -> None:
    with pytest.raises(AdminError, match="register the site first"):
        create_claim_code(central.engine, "no-such-site", "gw-2")
    register_site(central.engine, "site-2", "Next door")
    with pytest.raises(AdminError, match="belongs to site"):
        create_claim_code(central.engine, "site-2", "gw-1")
    with pytest.raises(AdminError, match="not an identifier"):
        create_claim_code(central.engine, "site-1", "gw 2")
    with pytest.raises(AdminError, match="live a while"):
        create_claim_code(central.engine, "site-1", "gw-2", ttl_s=0)


async def test_provisioning_gets_the_credential(central: Central) -> None:
    code = create_claim_code(central.engine, "site-1", "gw-prov")
    credential = await claim_gateway(central.base_url, code)
    assert isinstance(credential, Credential)
    assert (credential.gateway_id, credential.site_id) == ("gw-prov", "site-1")
    assert credential.token not in repr(credential)
    with httpx.Client(base_url=central.base_url, timeout=10) as http:
        assert can_write(http, credential.token, "gw-prov")

    with pytest.raises(UplinkRejected) as used:
        await claim_gateway(central.base_url, code)
    assert used.value.status == 403
    with pytest.raises(UplinkRejected) as unknown:
        await claim_gateway(central.base_url, "0000-0000-0000-0000")
    assert unknown.value.status == 404


async def test_provisioning_says_when_to_retry() -> None:
    with pytest.raises(UplinkUnavailable):
        await claim_gateway(f"http://127.0.0.1:{free_port()}", "0000-0000-0000-0000", timeout_s=2)

    def busy(request: httpx.Request) -> httpx.Response:  # a fault, as a proxy would answer
        return httpx.Response(503, headers={"Retry-After": "30"}, text="maintenance")

    with pytest.raises(UplinkUnavailable) as unavailable:
        await claim_gateway(
            "http://central.invalid", "0000-0000-0000-0000", transport=httpx.MockTransport(busy)
        )
    assert unavailable.value.retry_after_s == 30
    with pytest.raises(UplinkRejected) as not_a_code:
        await claim_gateway("http://central.invalid", "not/a/code")
    assert not_a_code.value.status == 422
