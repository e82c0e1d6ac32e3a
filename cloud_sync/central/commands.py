"""Platform commands on alerts: a person acknowledges or resolves, a gateway applies.

``issue`` stores a command (``pending``) for an alert the central API knows; ``pending_for`` is
what its gateway pulls (oldest first, none older than ``COMMAND_TTL``); ``apply_results`` sets
``applied`` or ``refused`` from the gateway's ``command_result`` records, the first result only;
``expire`` marks ``expired`` what is still pending a day after issue; ``changes_after`` is the
platform's list, by ``changed_seq``. A command on one of the central API's own alerts
(``gateway_silent``) is applied at once by the central API, which makes the event.
Every state change draws a new ``changed_seq`` under the site's lock (``locks``).
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from sqlalchemy import Connection, Engine, func, select, update

from cloud_sync.central import alert_store, texts
from cloud_sync.central.lifecycle import CENTRAL_ALERT_PREFIX
from cloud_sync.central.locks import lock_site
from cloud_sync.central.tables import commands, gateways
from cloud_sync.schemas import CommandResultRecord
from nbedge.errors import NbedgeError

__all__ = [
    "COMMAND_TTL",
    "UnknownTarget",
    "apply_results",
    "changes_after",
    "expire",
    "issue",
    "pending_for",
    "shown_state",
]

COMMAND_TTL: Final = timedelta(days=1)
"""A command not applied this long after issue has expired: its gateway no longer gets it."""
COMMAND_ID_BYTES = 16
MAX_EXPIRED_PER_SITE = 1000
"""At most this many commands of a site are marked expired per call (the rest at the next)."""


class UnknownTarget(NbedgeError):
    """The gateway or the alert a command names is not known to the central API."""

    def __init__(self, what: Literal["gateway", "alert"], name: str) -> None:
        self.what = what
        self.name = name
        super().__init__(f"no {what} {name!r}")


def _next_changed_seq(conn: Connection, site_id: str) -> int:
    """The next ``changed_seq`` of a site's commands (the caller holds the site's lock)."""
    held = conn.execute(
        select(func.max(commands.c.changed_seq)).where(commands.c.site_id == site_id)
    ).scalar_one()
    return int(held or 0) + 1


def shown_state(row: Mapping[str, Any], now: datetime) -> str:
    """A command's state as the platform sees it: pending past its time is expired, even
    before ``expire`` has marked it."""
    state = str(row["state"])
    if state == "pending" and row["issued_at"] <= now - COMMAND_TTL:
        return "expired"
    return state


def issue(
    engine: Engine,
    *,
    site_id: str,
    gateway_id: str,
    alert_id: str,
    action: Literal["acknowledge", "resolve"],
    by: str,
    note: str | None,
    outcome: str | None,
    now: datetime,
) -> dict[str, Any]:
    """Store a command on an alert of a gateway of ``site_id`` and return its row; applied at
    once if the alert is the central API's own. ``UnknownTarget`` if the gateway is not the
    site's or the central API holds no event of the alert."""
    with engine.begin() as conn:
        lock_site(conn, site_id)
        gateway = conn.execute(
            select(gateways.c.gateway_id).where(
                gateways.c.gateway_id == gateway_id, gateways.c.site_id == site_id
            )
        ).first()
        if gateway is None:
            raise UnknownTarget("gateway", gateway_id)
        state = alert_store.state_of(conn, gateway_id, alert_id)
        if state is None or state["site_id"] != site_id:
            raise UnknownTarget("alert", alert_id)
        row: dict[str, Any] = {
            "command_id": secrets.token_urlsafe(COMMAND_ID_BYTES),
            "site_id": site_id,
            "gateway_id": gateway_id,
            "alert_id": alert_id,
            "action": action,
            "by": by,
            "note": note,
            "outcome": outcome,
            "issued_at": now,
            "state": "pending",
            "reason": None,
            "event_id": None,
            "result_at": None,
            "changed_at": now,
            "changed_seq": _next_changed_seq(conn, site_id),
        }
        if alert_id.startswith(CENTRAL_ALERT_PREFIX):
            row |= {"state": "applied", "result_at": now}
            row["event_id"] = _apply_centrally(conn, state, row, now)
        conn.execute(commands.insert().values(row))
        return row


def _apply_centrally(
    conn: Connection, state: Mapping[str, Any], command: Mapping[str, Any], now: datetime
) -> str | None:
    """Apply a command to one of the central API's own alerts: the event it made, or None when
    the alert was already in that state."""
    human_state = state["human_state"]
    if command["action"] == "acknowledge":
        if human_state != "new":
            return None
        event, after, (en, zh) = "acknowledged", "acknowledged", texts.acknowledged(command["by"])
    else:
        if human_state == "resolved":
            return None
        en, zh = texts.resolved(command["by"], command["outcome"])
        event, after = "resolved", "resolved"
    made = alert_store.CentralEvent(
        site_id=state["site_id"],
        gateway_id=state["gateway_id"],
        alert_id=state["alert_id"],
        event=event,
        code=state["code"],
        device=state["device"],
        point=state["point"],
        severity=state["severity"],
        condition=state["condition"],
        human_state=after,
        raised_at=state["raised_at"],
        at=now,
        value=state["value"],
        text_en=en,
        text_zh_hans=zh,
        via="platform",
        by=command["by"],
        note=command["note"],
        outcome=command["outcome"] if event == "resolved" else None,
        level=state["level"],
        params=state["params"],
        command_id=command["command_id"],
    )
    row = alert_store.central_row(conn, made, now)
    alert_store.store_events(conn, state["gateway_id"], [row], now)
    return str(row["event_id"])


def pending_for(engine: Engine, gateway_id: str, now: datetime, limit: int) -> list[dict[str, Any]]:
    """The gateway's pending, unexpired commands, oldest first."""
    stmt = (
        select(commands)
        .where(
            commands.c.gateway_id == gateway_id,
            commands.c.state == "pending",
            commands.c.issued_at > now - COMMAND_TTL,
        )
        .order_by(commands.c.seq)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(stmt).mappings()]


def apply_results(
    conn: Connection,
    site_id: str,
    gateway_id: str,
    results: Sequence[CommandResultRecord],
    now: datetime,
) -> Counter[tuple[str, str]]:
    """Set each command a result names, if it is the gateway's and has no result yet (pending or
    expired: a result that comes after expiry still tells what the gateway did). The caller
    holds the site's lock. Returns the changes by ``(action, result)``."""
    changed: Counter[tuple[str, str]] = Counter()
    for record in results:
        body = record.body
        won = conn.execute(
            update(commands)
            .where(
                commands.c.command_id == body.command_id,
                commands.c.gateway_id == gateway_id,
                commands.c.state.in_(("pending", "expired")),
            )
            .values(
                state=body.result,
                reason=body.reason,
                event_id=body.event_id,
                result_at=body.at,
                changed_at=now,
                changed_seq=_next_changed_seq(conn, site_id),
            )
            .returning(commands.c.action)
        ).first()
        if won is not None:
            changed[(str(won.action), body.result)] += 1
    return changed


def expire(engine: Engine, now: datetime) -> Counter[str]:
    """Mark ``expired`` the commands still pending ``COMMAND_TTL`` after issue; how many were
    marked, by action. Safe in several processes at once: a command is marked once."""
    due = (commands.c.state == "pending") & (commands.c.issued_at <= now - COMMAND_TTL)
    with engine.connect() as conn:
        site_ids = conn.execute(select(commands.c.site_id).where(due).distinct()).scalars().all()
    expired: Counter[str] = Counter()
    for site_id in site_ids:
        with engine.begin() as conn:
            lock_site(conn, site_id)
            rows = conn.execute(
                select(commands.c.seq, commands.c.action)
                .where(due, commands.c.site_id == site_id)
                .order_by(commands.c.seq)
                .limit(MAX_EXPIRED_PER_SITE)
            ).all()
            changed_seq = _next_changed_seq(conn, site_id)
            for offset, row in enumerate(rows):
                conn.execute(
                    update(commands)
                    .where(commands.c.seq == row.seq)
                    .values(state="expired", changed_at=now, changed_seq=changed_seq + offset)
                )
                expired[str(row.action)] += 1
    return expired


def changes_after(engine: Engine, site_id: str, after: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` commands of a site whose last change is after ``after``, in that order."""
    stmt = (
        select(commands)
        .where(commands.c.site_id == site_id, commands.c.changed_seq > after)
        .order_by(commands.c.changed_seq)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(stmt).mappings()]
