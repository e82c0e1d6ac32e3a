"""Operator actions on the central database: create it, register sites and gateways.

This is what ``nbedge central ...`` and the demo call. A gateway's token is shown once, when it
is made; the database keeps only its SHA-256. Claim codes (a one-time code exchanged by the
gateway for its token) will build on ``register_gateway``.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Engine, select, update

from cloud_sync.central.db import gateways, hash_token, init_db, make_engine, sites
from cloud_sync.schemas import Identifier
from nbedge.errors import NbedgeError

__all__ = ["AdminError", "init_db", "make_engine", "register_gateway", "register_site"]

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
    token_hash = hash_token(token)
    with engine.begin() as conn:
        if conn.execute(select(sites.c.site_id).where(sites.c.site_id == site_id)).first() is None:
            raise AdminError(f"no site {site_id!r}: register the site first")
        current = conn.execute(
            select(gateways.c.site_id).where(gateways.c.gateway_id == gateway_id)
        ).first()
        if current is None:
            conn.execute(
                gateways.insert().values(
                    gateway_id=gateway_id,
                    site_id=site_id,
                    token_hash=token_hash,
                    created_at=datetime.now(UTC),
                )
            )
        elif current.site_id != site_id:
            raise AdminError(f"gateway {gateway_id!r} belongs to site {current.site_id!r}")
        else:
            conn.execute(
                update(gateways)
                .where(gateways.c.gateway_id == gateway_id)
                .values(token_hash=token_hash)
            )
    return token
