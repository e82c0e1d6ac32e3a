"""The central API against what an attacker or a broken client may send.

- schemathesis generates requests from the API's own OpenAPI document, valid and not, for every
  endpoint, against a real uvicorn on SQLite and on PostgreSQL: no answer may be a 5xx. Bodies of
  ``POST /v1/ingest`` are sent in the name of the test's gateway, so that they reach the database.
- Explicit refusals: writes without a credential or for another site, reused and expired codes
  (the latter two in detail in ``test_claims``; here as one security checklist).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import GenerationMode

from cloud_sync.central import CentralSettings, create_app
from cloud_sync.central.admin import create_claim_code, register_gateway, register_site
from tests.cloud_sync.conftest import Central, batch_json, stored_count, summary_record

MAX_EXAMPLES = 20
_schemas: dict[str, Any] = {}


def _operations() -> list[tuple[str, str, GenerationMode]]:
    """Every operation of the API's OpenAPI document (read from the app itself), with each way
    of generating requests that applies: invalid ones only where there is an input to spoil."""
    settings_ = CentralSettings(database_url="sqlite://", platform_token=SecretStr("x" * 32))
    spec = create_app(settings_).openapi()
    cases = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            cases.append((method.upper(), path, GenerationMode.POSITIVE))
            if operation.get("parameters") or operation.get("requestBody"):
                cases.append((method.upper(), path, GenerationMode.NEGATIVE))
    return cases


# schemathesis's own pytest integration does not run on pytest 9 yet: drive its strategies
# with hypothesis directly, one test per operation and generation mode.
@pytest.mark.parametrize(("method", "path", "mode"), _operations())
def test_no_request_makes_the_api_fail(
    central: Central, method: str, path: str, mode: GenerationMode
) -> None:
    if central.base_url not in _schemas:  # one server per module and database: load it once
        _schemas[central.base_url] = schemathesis.openapi.from_url(
            f"{central.base_url}/openapi.json"
        )
    operation = _schemas[central.base_url][path][method]
    headers = central.gateway_headers() if path == "/v1/ingest" else central.platform_headers()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,  # the same requests on every run: a failure here is reproducible
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def no_server_error(case: Any) -> None:
        # Reach the database: valid requests name the test's site, batches its gateway.
        if path == "/v1/ingest" and isinstance(case.body, dict):
            case.body["gateway_id"], case.body["site_id"] = central.gateway_id, central.site_id
        if mode == GenerationMode.POSITIVE and "site_id" in (case.path_parameters or {}):
            case.path_parameters["site_id"] = central.site_id
        response = case.call(headers=headers, timeout=30)
        assert response.status_code < 500, f"{method} {path}: {response.text[:500]}"

    no_server_error()


@pytest.fixture
def http(central: Central) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=central.base_url, timeout=10) as client:
        yield client


def test_unauthenticated_writes_are_refused(http: httpx.Client, central: Central) -> None:
    body = batch_json([summary_record(1)])
    for headers in ({}, {"Authorization": "Token abcdefgh"}, central.platform_headers()):
        assert http.post("/v1/ingest", content=body, headers=headers).status_code == 401
    assert stored_count(central.engine) == 0


def test_writes_to_another_site_are_refused(http: httpx.Client, central: Central) -> None:
    register_site(central.engine, "site-2", "Next door")
    neighbour = register_gateway(central.engine, "site-2", "gw-2")
    for token, gateway, site in [
        (central.gateway_token, "gw-1", "site-2"),  # own gateway id, other site
        (central.gateway_token, "gw-2", "site-2"),  # posing as the neighbour
        (neighbour, "gw-1", "site-1"),  # the neighbour posing as us
    ]:
        body = batch_json([summary_record(1, gateway)], gateway_id=gateway, site_id=site)
        reply = http.post("/v1/ingest", content=body, headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 403
    assert stored_count(central.engine) == 0


def test_reused_and_expired_codes_are_refused(http: httpx.Client, central: Central) -> None:
    code = create_claim_code(central.engine, central.site_id, "gw-new")
    assert http.post("/v1/claim", json={"code": code}).status_code == 200
    assert http.post("/v1/claim", json={"code": code}).status_code == 403
    long_ago = datetime.now(UTC) - timedelta(seconds=3601)
    stale = create_claim_code(central.engine, central.site_id, "gw-late", 3600, now=long_ago)
    assert http.post("/v1/claim", json={"code": stale}).status_code == 403
    unknown = http.post("/v1/claim", json={"code": "ZZZZ-ZZZZ-ZZZZ-ZZZZ"})
    assert unknown.status_code == 404


def test_feeds_are_not_readable_with_a_gateway_token(http: httpx.Client, central: Central) -> None:
    for feed in ("summaries", "alerts", "alerts/active", "evictions", "access-events"):
        url = f"/v1/sites/{central.site_id}/{feed}"
        assert http.get(url, headers=central.gateway_headers()).status_code == 401
