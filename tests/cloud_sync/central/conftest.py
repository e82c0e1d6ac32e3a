"""The central API's own tests: every test runs on SQLite and on PostgreSQL, with one server per
module and database, and each test starts from empty tables. A module may narrow
``database_kind`` (the scale tests need PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.cloud_sync.conftest import DATABASES, Central


@pytest.fixture(scope="module", params=DATABASES)
def database_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def central(fresh_central: Central) -> Central:
    return fresh_central


@pytest.fixture
def http(central: Central) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=central.base_url, timeout=10) as client:
        yield client
