"""Provisioning, on the gateway: exchange the operator's one-time code for the gateway's credential.

``claim_gateway(base_url, code)`` posts the code to the central API's ``POST /v1/claim`` and
returns the ``Credential`` (gateway id, site id, token) that the gateway keeps in its token file.
A code works once: if the answer is lost, ask the operator for a new code.

Failures follow ``nbedge.errors``: ``UplinkUnavailable`` when the central API cannot be reached or
fails temporarily (try again with the same code), ``UplinkRejected`` when it refuses the code
(404 unknown, 403 used or expired, 409 gateway moved to another site: ask for a new code).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

import httpx
from pydantic import ValidationError

import nbedge
from cloud_sync.client import refusal, transport_failure, trust
from cloud_sync.schemas import ClaimRequest, ClaimResponse
from nbedge.errors import UplinkRejected, UplinkUnavailable

__all__ = ["CLAIM_PATH", "Credential", "claim_gateway"]

CLAIM_PATH = "/v1/claim"


@dataclass(frozen=True, slots=True)
class Credential:
    """A gateway's identity and bearer token, as the central API issued them."""

    gateway_id: str
    site_id: str
    token: str = field(repr=False)


async def claim_gateway(
    base_url: str,
    code: str,
    *,
    timeout_s: float = 10,
    transport: httpx.AsyncBaseTransport | None = None,
    verify: ssl.SSLContext | None = None,
) -> Credential:
    """Claim this gateway's credential with ``code`` from the central API at ``base_url``.

    ``transport`` replaces httpx's network transport (tests inject faults with it); ``verify``
    is what is trusted of its certificate (``cloud_sync.client.trust``: the system's CAs).
    """
    try:
        request = ClaimRequest(code=code)
    except ValidationError as exc:
        raise UplinkRejected(422, "not a claim code: letters, digits, spaces and dashes") from exc
    headers = {"User-Agent": f"nbedge/{nbedge.__version__}"}
    try:
        async with (
            asyncio.timeout(timeout_s),
            httpx.AsyncClient(
                base_url=base_url,
                headers=headers,
                transport=transport,
                verify=trust() if verify is None else verify,
                timeout=timeout_s,
            ) as http,
        ):
            response = await http.post(CLAIM_PATH, json=request.model_dump())
    except TimeoutError as exc:
        raise UplinkUnavailable(f"no answer within {timeout_s:g} s") from exc
    except httpx.TransportError as exc:
        raise transport_failure(exc) from exc
    except httpx.HTTPError as exc:
        raise UplinkUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
    status = response.status_code
    if response.is_success:
        try:
            claimed = ClaimResponse.model_validate_json(response.content)
        except ValidationError as exc:
            raise UplinkUnavailable(f"the answer ({status}) is not a credential") from exc
        return Credential(claimed.gateway_id, claimed.site_id, claimed.token)
    raise refusal(response)
