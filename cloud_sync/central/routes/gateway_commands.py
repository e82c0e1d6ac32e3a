"""``GET /v1/gateway/commands``: the commands waiting for the calling gateway (gateway token);
``GET /v1/gateways/me``: whom a gateway token belongs to.

A gateway sees only its own commands: pending, issued less than a day ago, oldest first. It
applies each and reports a ``command_result`` record through ``POST /v1/ingest``; until that
result arrives the command stays pending and comes again at every pull. The pull also counts as
the gateway's contact (``silence``).
"""

from __future__ import annotations

from fastapi import APIRouter

from cloud_sync.central import commands
from cloud_sync.central.deps import CurrentGateway, EngineDep, HeardGateway, NowDep
from cloud_sync.schemas import (
    MAX_RECORDS_PER_BATCH,
    AlertCommand,
    GatewayIdentityAnswer,
    PendingCommands,
)

router = APIRouter(tags=["gateways"])


@router.get(
    "/gateway/commands",
    summary="The commands waiting for this gateway",
    responses={401: {"description": "Missing or unknown gateway token"}},
)
def pending_commands(gateway: HeardGateway, engine: EngineDep, now: NowDep) -> PendingCommands:
    """The calling gateway's pending, unexpired commands, oldest first (at most 1000)."""
    rows = commands.pending_for(engine, gateway.gateway_id, now, MAX_RECORDS_PER_BATCH)
    return PendingCommands(
        commands=[
            AlertCommand(
                command_id=row["command_id"],
                alert_id=row["alert_id"],
                action=row["action"],
                by=row["by"],
                note=row["note"],
                outcome=row["outcome"],
                issued_at=row["issued_at"],
            )
            for row in rows
        ]
    )


@router.get(
    "/gateways/me",
    summary="Whom this gateway token belongs to",
    responses={401: {"description": "Missing or unknown gateway token"}},
)
def whoami(gateway: CurrentGateway) -> GatewayIdentityAnswer:
    """The calling gateway's id and site: a no-op that checks the credential (``nbedge
    doctor``). It is not a contact: a doctor run says nothing of whether the gateway runs."""
    return GatewayIdentityAnswer(gateway_id=gateway.gateway_id, site_id=gateway.site_id)
