"""Operator actions on the central database: create it, register sites and gateways.

This is what ``nbedge central ...`` and the demo call. A gateway gets its token either from
``register_gateway`` (shown once to the operator, who copies it to the gateway) or, better, by
claiming a one-time code from ``create_claim_code`` (see ``claims``). The database keeps only the
SHA-256 of tokens and codes.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Engine, select, update

from cloud_sync.central import claims
from cloud_sync.central.db import (
    gateways,
    init_db,
    make_engine,
    set_gateway_token,
    site_exists,
    sites,
)
from cloud_sync.schemas import Identifier
from nbedge.errors import NbedgeError

__all__ = [
    "AdminError",
    "create_claim_code",
    "init_db",
    "make_engine",
    "register_gateway",
    "register_site",
]

TOKEN_BYTES = 32
_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)


class AdminError(NbedgeError):
    """An operator action cannot be done as asked (unknown site, gateway of another site)."""


def _check_identifier(what: str, value: str) -> None:
    try:
        _IDENTIFIER.validate_python(value)
    except ValidationError as exc:
        raise AdminError(
            f"{what} {value!r} is not an identifier: 1-64 letters, digits and _.:- "
            "starting with a letter or digit"
        ) from exc


def register_site(engine: Engine, site_id: str, name: str) -> None:
    """Create a site, or rename it if it exists."""
    _check_identifier("site id", site_id)
    with engine.begin() as conn:
        renamed = conn.execute(update(sites).where(sites.c.site_id == site_id).values(name=name))
        if renamed.rowcount == 0:
            conn.execute(
                sites.insert().values(site_id=site_id, name=name, created_at=datetime.now(UTC))
            )


def register_gateway(engine: Engine, site_id: str, gateway_id: str) -> str:
    """Register a gateway of a site and return its new token; for a known gateway, rotate it.

    The old token stops working at once. A gateway cannot move to another site this way.
    """
    _check_identifier("gateway id", gateway_id)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with engine.begin() as conn:
        if conn.execute(select(sites.c.site_id).where(sites.c.site_id == site_id)).first() is None:
            raise AdminError(f"no site {site_id!r}: register the site first")
        other_site = set_gateway_token(conn, site_id, gateway_id, token, datetime.now(UTC))
        if other_site is not None:
            raise AdminError(f"gateway {gateway_id!r} belongs to site {other_site!r}")
    return token


def create_claim_code(
    engine: Engine,
    site_id: str,
    gateway_id: str,
    ttl_s: float = 86400,
    *,
    now: datetime | None = None,
) -> str:
    """A one-time code with which gateway ``gateway_id`` of ``site_id`` claims its token.

    The code (``XXXX-XXXX-XXXX-XXXX``) is shown once; the database keeps its SHA-256. It works
    once, within ``ttl_s`` seconds (a day by default). The gateway need not be registered yet:
    claiming registers it; if it is, claiming rotates its token. ``now`` is for tests.
    """
    _check_identifier("site id", site_id)
    _check_identifier("gateway id", gateway_id)
    if not ttl_s > 0:
        raise AdminError(f"a claim code must live a while: ttl_s={ttl_s!r}")
    if not site_exists(engine, site_id):
        raise AdminError(f"no site {site_id!r}: register the site first")
    with engine.connect() as conn:
        current = conn.execute(
            select(gateways.c.site_id).where(gateways.c.gateway_id == gateway_id)
        ).first()
    if current is not None and current.site_id != site_id:
        raise AdminError(f"gateway {gateway_id!r} belongs to site {current.site_id!r}")
    return claims.create(engine, site_id, gateway_id, ttl_s, now)
