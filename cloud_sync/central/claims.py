"""One-time claim codes: how a new gateway gets its credential without anyone copying a token.

An operator makes a code for a gateway of a site (``create_claim_code``) and gives it to the
installer, who types it into ``nbedge provision`` on the gateway. The gateway posts it to
``POST /v1/claim`` and gets its gateway id, site id and a new token, once (``redeem``).

A code is 16 characters of Crockford's base32 in four groups (``7KQ2-M9XD-4HRT-B3WN``): 80
random bits, so guessing one online is hopeless even without rate limits, and easy to read
aloud: case, dashes and spaces do not matter, and ``O``, ``I`` and ``L`` read as ``0``, ``1``,
``1``. The database keeps only the SHA-256 of the normalised code. A code works once and until
it expires; redeeming it for a gateway that already has a token rotates that token.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import Engine, select, update

from cloud_sync.central.db import set_gateway_token
from cloud_sync.central.tables import claim_codes
from nbedge.errors import NbedgeError

__all__ = ["ClaimProblem", "ClaimRefused", "ClaimedGateway", "create", "normalise", "redeem"]

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32: no I, L, O, U
GROUPS = 4
GROUP_LENGTH = 4
TOKEN_BYTES = 32
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})


class ClaimProblem(StrEnum):
    """Why a code was refused."""

    UNKNOWN = "unknown"  # never issued (or mistyped)
    USED = "used"  # redeemed already
    EXPIRED = "expired"
    CONFLICT = "conflict"  # the gateway id has meanwhile been registered to another site


class ClaimRefused(NbedgeError):
    """A claim code cannot be redeemed; nothing was changed."""

    def __init__(self, problem: ClaimProblem) -> None:
        self.problem = problem
        super().__init__(f"claim code refused: {problem}")


@dataclass(frozen=True, slots=True)
class ClaimedGateway:
    """What redeeming a code gives: the gateway, its site and its new token."""

    gateway_id: str
    site_id: str
    token: str = field(repr=False)


def new_code() -> str:
    """A fresh random code, grouped for reading: ``XXXX-XXXX-XXXX-XXXX``."""
    chars = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_LENGTH))
    return "-".join(chars[i : i + GROUP_LENGTH] for i in range(0, len(chars), GROUP_LENGTH))


def normalise(code: str) -> str:
    """The canonical form of a typed code; ``ClaimRefused(UNKNOWN)`` if it cannot be one."""
    canonical = "".join(code.split()).replace("-", "").upper().translate(_READ_AS)
    if len(canonical) != GROUPS * GROUP_LENGTH or not set(canonical) <= set(ALPHABET):
        raise ClaimRefused(ClaimProblem.UNKNOWN)
    return canonical


def hash_code(code: str) -> str:
    return hashlib.sha256(normalise(code).encode()).hexdigest()


def create(
    engine: Engine, site_id: str, gateway_id: str, ttl_s: float, now: datetime | None = None
) -> str:
    """Store the hash of a new code for ``gateway_id`` of ``site_id`` and return the code.

    The caller has checked the identifiers and that the gateway, if known, belongs to the site.
    """
    now = now or datetime.now(UTC)
    code = new_code()
    with engine.begin() as conn:
        conn.execute(
            claim_codes.insert().values(
                code_hash=hash_code(code),
                site_id=site_id,
                gateway_id=gateway_id,
                created_at=now,
                expires_at=now + timedelta(seconds=ttl_s),
            )
        )
    return code


def redeem(engine: Engine, code: str) -> ClaimedGateway:
    """Use ``code`` once: register its gateway (or rotate its token) and return the token.

    One transaction: the code is marked used by a conditional UPDATE, so of two concurrent
    claims with one code exactly one wins; on any refusal nothing changes.
    """
    code_hash = hash_code(code)
    now = datetime.now(UTC)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with engine.begin() as conn:
        claimed = conn.execute(
            update(claim_codes)
            .where(
                claim_codes.c.code_hash == code_hash,
                claim_codes.c.used_at.is_(None),
                claim_codes.c.expires_at > now,
            )
            .values(used_at=now)
            .returning(claim_codes.c.site_id, claim_codes.c.gateway_id)
        ).first()
        if claimed is None:
            known = conn.execute(
                select(claim_codes.c.used_at).where(claim_codes.c.code_hash == code_hash)
            ).first()
            if known is None:
                raise ClaimRefused(ClaimProblem.UNKNOWN)
            raise ClaimRefused(ClaimProblem.USED if known.used_at else ClaimProblem.EXPIRED)
        site_id, gateway_id = claimed.site_id, claimed.gateway_id
        if set_gateway_token(conn, site_id, gateway_id, token, now) is not None:
            raise ClaimRefused(ClaimProblem.CONFLICT)  # rolls back: the code stays unused
    return ClaimedGateway(gateway_id=gateway_id, site_id=site_id, token=token)
