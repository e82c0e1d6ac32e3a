"""The central API against what an attacker or a broken client may send.

- schemathesis generates requests from the API's own OpenAPI document, valid and not, for every
  endpoint, against a real uvicorn on SQLite and on PostgreSQL: no answer may be a 5xx. Bodies of
  ``POST /v1/ingest`` are sent in the name of the test's gateway, so that they reach the database.
  Its strings hold NUL and any Unicode, but it sends few integers far out of range, no made-up
  method and no malformed request target.
- hypothesis, for what schemathesis does not send: integers of any size and spelling in every
  integer parameter (422 naming it, or an answer), made-up methods on every path (405 or 404),
  and request targets with broken percent-encoding, bytes that are not UTF-8, Unicode and NUL,
  raw or percent-encoded, written to the socket as they are: no answer may be a 5xx. Each runs a
  bounded number of examples; ``-m slow`` runs many more.
- Explicit refusals: writes without a credential or for another site, reused and expired codes
  (the latter two in detail in ``test_claims``; here as one security checklist).
"""

from __future__ import annotations

import re
import socket
import string
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from cloud_sync.central.admin import create_claim_code, register_gateway, register_site
from cloud_sync.schemas import INT64_MAX
from tests.cloud_sync.central.openapi import (
    IntegerParameter,
    api_document,
    fill,
    integer_parameters,
    operations,
)
from tests.cloud_sync.conftest import (
    ALERT,
    Central,
    alert_event_record,
    batch_json,
    stored_count,
    summary_record,
)

MAX_EXAMPLES = 20
_schemas: dict[str, Any] = {}
BUDGETS = [
    pytest.param(40, id="40"),
    pytest.param(2000, id="2000", marks=pytest.mark.slow),
]
"""Examples per hypothesis test: a few in the default suite, many with ``-m slow``."""


def _fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,  # the same requests on every run: a failure here is reproducible
        suppress_health_check=list(HealthCheck),
        database=None,
    )


def _operations() -> list[tuple[str, str, GenerationMode]]:
    """Every operation of the API's OpenAPI document (read from the app itself), with each way
    of generating requests that applies: invalid ones only where there is an input to spoil."""
    cases = []
    for method, path, operation in operations():
        cases.append((method, path, GenerationMode.POSITIVE))
        if operation.get("parameters") or operation.get("requestBody"):
            cases.append((method, path, GenerationMode.NEGATIVE))
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
    by_gateway = path == "/v1/ingest" or path.startswith("/v1/gateway/")
    headers = central.gateway_headers() if by_gateway else central.platform_headers()
    if "{alert_id}" in path:  # valid commands name an alert the central API holds
        raised = batch_json([alert_event_record(1)])
        reply = httpx.post(
            f"{central.base_url}/v1/ingest", content=raised, headers=central.gateway_headers()
        )
        assert reply.json()["accepted"] == 1

    @given(case=operation.as_strategy(generation_mode=mode))
    @_fuzz_settings(MAX_EXAMPLES)
    def no_server_error(case: Any) -> None:
        # Reach the database: valid requests name the test's site, batches its gateway.
        if path == "/v1/ingest" and isinstance(case.body, dict):
            case.body["gateway_id"], case.body["site_id"] = central.gateway_id, central.site_id
        if mode == GenerationMode.POSITIVE and "site_id" in (case.path_parameters or {}):
            case.path_parameters["site_id"] = central.site_id
            if "gateway_id" in case.path_parameters:
                case.path_parameters["gateway_id"] = central.gateway_id
            if "alert_id" in case.path_parameters:
                case.path_parameters["alert_id"] = ALERT
        response = case.call(headers=headers, timeout=30)
        assert response.status_code < 500, f"{method} {path}: {response.text[:500]}"
        statuses.append(response.status_code)

    statuses: list[int] = []
    no_server_error()
    if "{alert_id}" in path and mode == GenerationMode.POSITIVE:
        assert 202 in statuses, statuses  # valid commands reached the database and were issued


def test_the_fuzzing_covers_the_alert_routes() -> None:
    """The routes of alerts people act on are in the document the fuzzing walks."""
    covered = {(method, path) for method, path, _ in _operations()}
    assert {
        ("GET", "/v1/sites/{site_id}/alerts/current"),
        ("GET", "/v1/sites/{site_id}/open-work"),
        ("GET", "/v1/sites/{site_id}/commands"),
        ("POST", "/v1/sites/{site_id}/gateways/{gateway_id}/alerts/{alert_id}/acknowledge"),
        ("POST", "/v1/sites/{site_id}/gateways/{gateway_id}/alerts/{alert_id}/resolve"),
        ("GET", "/v1/gateway/commands"),
    } <= covered
    names = {(p.path.rsplit("/", 1)[-1], p.name) for p in integer_parameters()}
    assert {("current", "after"), ("current", "limit"), ("current", "history")} <= names
    assert {("commands", "after"), ("commands", "limit"), ("open-work", "limit")} <= names
    assert {(t.path.rsplit("/", 1)[-1], t.name) for t in _time_parameters()} == {
        ("current", "raised_from"),
        ("current", "raised_before"),
    }


@dataclass(frozen=True)
class TimeParameter:
    path: str
    name: str

    def __str__(self) -> str:
        return f"{self.path} {self.name}"


def _time_parameters() -> list[TimeParameter]:
    """Every query parameter of a GET whose schema is a date-time (possibly nullable)."""
    found = []
    for method, path, operation in operations():
        for parameter in operation.get("parameters", []):
            schema = parameter.get("schema", {})
            kinds = [schema, *schema.get("anyOf", [])]
            if method == "GET" and any(k.get("format") == "date-time" for k in kinds):
                found.append(TimeParameter(path, parameter["name"]))
    return found


def _time_texts() -> st.SearchStrategy[str]:
    """Times as a client may write them: with and without an offset, at the edges of the
    years a database stores, with offsets that push them past those edges, and not times."""
    years = st.sampled_from([1, 2, 1969, 1970, 2024, 2038, 9998, 9999])
    offsets = st.sampled_from(["Z", "+00:00", "+14:00", "-12:00", "+23:59", "-23:59", "", "+24:00"])
    fractions = st.sampled_from(["", ".5", ".123456", ".1234567"])
    written = st.builds(
        lambda y, mo, d, h, f, o: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:00:00{f}{o}",
        years,
        st.integers(1, 12),
        st.integers(1, 31),
        st.integers(0, 23),
        fractions,
        offsets,
    )
    return st.one_of(written, st.text(max_size=40), st.integers().map(str))


@pytest.mark.parametrize("examples", BUDGETS)
@pytest.mark.parametrize("parameter", _time_parameters(), ids=str)
def test_times_of_any_spelling_in_every_time_parameter(
    http: httpx.Client, central: Central, parameter: TimeParameter, examples: int
) -> None:
    """A time gets an answer or 422 naming the parameter, never a 5xx."""

    @given(text=_time_texts())
    @_fuzz_settings(examples)
    def refused_naming_it_or_served(text: str) -> None:
        reply = http.get(
            fill(parameter.path, central.site_id),
            params={parameter.name: text},
            headers=central.platform_headers(),
        )
        assert reply.status_code in (200, 422), (text, reply.status_code, reply.text[:300])
        if reply.status_code == 422:
            locs = {tuple(error["loc"][:2]) for error in reply.json()["detail"]}
            assert locs == {("query", parameter.name)}, (text, locs)

    refused_naming_it_or_served()


_EDGES = [0, 1, 2**31, 2**32, 2**53 + 1, INT64_MAX, 2**63, 2**64, 10**19, 10**30]
_SIGNED_EDGES = sorted({sign * edge for edge in _EDGES for sign in (1, -1)})


def _integer_texts() -> st.SearchStrategy[str]:
    """Integers as a client may spell them: near the edges of 32 and 64 bits, of any size, and
    with a sign, leading zeros, spaces, underscores, a fraction or an exponent."""
    near_edges = st.sampled_from(_SIGNED_EDGES).flatmap(lambda e: st.integers(e - 2, e + 2))
    number = st.one_of(
        near_edges,
        st.integers(min_value=-(10**40), max_value=10**40),
        st.integers(0, 80).map(lambda k: 10**k),
    )
    spellings = st.sampled_from(["{}", "+{}", "00{}", " {} ", "{}.0", "{}e3", "{:_}", "0x{:x}"])
    long_digits = st.integers(19, 6000).map(lambda k: "9" * k)
    return st.one_of(
        number.map(str),
        st.tuples(spellings, number).map(lambda pair: pair[0].format(pair[1])),
        long_digits,
    )


@pytest.mark.parametrize("examples", BUDGETS)
@pytest.mark.parametrize("parameter", integer_parameters(), ids=str)
def test_integers_of_any_size_in_every_integer_parameter(
    http: httpx.Client, central: Central, parameter: IntegerParameter, examples: int
) -> None:
    """A decimal integer gets 422 naming the parameter exactly when it is out of the bounds
    OpenAPI states; any other spelling gets an answer or that 422, never a 5xx."""

    @given(text=_integer_texts())
    @_fuzz_settings(examples)
    def refused_naming_it_or_served(text: str) -> None:
        url, params = parameter.request(central.site_id, text)
        reply = http.get(url, params=params, headers=central.platform_headers())
        assert reply.status_code in (200, 422), (text[:60], reply.status_code, reply.text[:300])
        if reply.status_code == 422:
            locs = [error["loc"] for error in reply.json()["detail"]]
            assert locs == [[parameter.where, parameter.name]], (text[:60], locs)
        if re.fullmatch(r"-?[0-9]{1,40}", text):
            in_range = parameter.holds(int(text))
            assert (reply.status_code == 200) == in_range, (text, reply.text[:300])

    refused_naming_it_or_served()


_KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
_TOKEN = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"  # RFC 9110 token characters


@pytest.mark.parametrize("examples", BUDGETS)
def test_made_up_methods_are_refused_on_every_path(
    http: httpx.Client, central: Central, examples: int
) -> None:
    paths = sorted({fill(path, central.site_id) for _, path, _ in operations()})
    methods = st.text(_TOKEN, min_size=1, max_size=24).filter(
        lambda m: m.upper() not in _KNOWN_METHODS
    )

    @given(method=methods, path=st.sampled_from([*paths, "/", "/v1", "/no/such/path"]))
    @_fuzz_settings(examples)
    def refused(method: str, path: str) -> None:
        reply = http.request(method, path, headers=central.platform_headers())
        assert reply.status_code == (405 if path in paths else 404), (method, path)

    refused()


_BROKEN = [
    *(b"%", b"%%", b"%4", b"%G1", b"%zz", b"%e9%", b"%FF%FE", b"%00", b"\x00", b"\xff\xfe"),
    *(b"%C3%28", b"%ED%A0%80", b"%C0%AF", b"%F4%90%80%80", b"..", b"%2F", b"%2e%2e"),
]
"""Percent-encoding cut short or not hex, overlong, surrogate and past-U+10FFFF UTF-8, NUL."""


def _odd_bytes() -> st.SearchStrategy[bytes]:
    """A part of a request target as a careless or hostile client writes it."""
    unicode = st.text(min_size=1, max_size=8)  # NUL and any code point but lone surrogates
    raw_bytes = st.binary(min_size=1, max_size=12)
    return st.one_of(
        raw_bytes.map(lambda b: b.translate(None, b" \t\r\n")),  # not UTF-8, but one line
        raw_bytes.map(lambda b: "".join(f"%{x:02X}" for x in b).encode()),
        unicode.map(lambda t: t.encode().translate(None, b" \t\r\n")),
        unicode.map(lambda t: urllib.parse.quote(t, safe="").encode()),
        st.sampled_from(_BROKEN),
    )


def _odd_target(path: str, site_id: str) -> st.SearchStrategy[bytes]:
    """``path`` (a template) with odd bytes as its parameter, in its query or as a segment more."""
    template, filled = fill(path, "{site_id}").encode(), fill(path, site_id).encode()
    odd = _odd_bytes()
    return st.one_of(
        odd.map(lambda b: template.replace(b"{site_id}", b)),
        odd.map(lambda b: filled + b"?after=" + b),
        st.tuples(odd, odd).map(lambda kv: filled + b"?" + kv[0] + b"=" + kv[1]),
        odd.map(lambda b: filled + b"/" + b),
        odd.map(lambda b: b"/" + b),
    )


def _raw_status(base_url: str, target: bytes, headers: dict[str, str]) -> int:
    """Write one request with ``target`` exactly as given, and read the answer's status."""
    host, port = urllib.parse.urlsplit(base_url).netloc.split(":")
    head = b"".join(f"{name}: {value}\r\n".encode() for name, value in headers.items())
    request = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + head + b"\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n" not in answer and (chunk := sock.recv(4096)):
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 "), (target, answer[:200])
    return int(status_line.split()[1])


@pytest.mark.parametrize("examples", BUDGETS)
def test_odd_encodings_in_the_target_never_fail_the_api(central: Central, examples: int) -> None:
    paths = [path for path in api_document()["paths"] if "{site_id}" in path] + ["/v1/health"]

    @given(target=st.sampled_from(paths).flatmap(lambda path: _odd_target(path, central.site_id)))
    @_fuzz_settings(examples)
    def answered(target: bytes) -> None:
        status = _raw_status(central.base_url, target, central.platform_headers())
        assert status < 500, target

    answered()


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
    feeds = ("summaries", "alerts", "alerts/active", "evictions", "access-events", "forecasts")
    for feed in (*feeds, "alerts/current", "open-work", "commands"):
        url = f"/v1/sites/{central.site_id}/{feed}"
        assert http.get(url, headers=central.gateway_headers()).status_code == 401


def test_whoami_names_the_gateway_of_the_token_and_no_other(
    http: httpx.Client, central: Central
) -> None:
    me = http.get("/v1/gateways/me", headers=central.gateway_headers())
    assert me.status_code == 200
    assert me.json() == {"gateway_id": "gw-1", "site_id": central.site_id}
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, central.platform_headers()):
        assert http.get("/v1/gateways/me", headers=headers).status_code == 401
