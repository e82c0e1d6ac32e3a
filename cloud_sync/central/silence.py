"""``gateway_silent``: the central API's own alert for a gateway that stopped reporting.

``Contacts.heard(engine, gateway, now)`` notes a gateway's contact (ingest, command pull),
writing ``gateways.last_contact_at`` at most every ``every`` per gateway and process, and clears
its silent alert if it had one. ``raise_silent(engine, now, silent_after)`` raises the alert for
each gateway heard before but not for ``silent_after``. Both are compare-and-set updates of
``gateways.silent_alert_id`` under the site's lock, so with any number of API processes an
alert is raised once and cleared once. The alert's id is ``central.gateway_silent.<ms>``, the
milliseconds of the last contact before the silence: one per silence.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Engine, select, update

from cloud_sync.central import alert_store, texts
from cloud_sync.central.lifecycle import CENTRAL_ALERT_PREFIX
from cloud_sync.central.locks import lock_site
from cloud_sync.central.tables import gateways

__all__ = ["CODE", "POINT", "SEVERITY", "Contacts", "Heard", "raise_silent"]

CODE: Final = "gateway_silent"
POINT: Final = "uplink"
SEVERITY: Final = "critical"
"""While a gateway is silent, none of its building's alerts reach the platform."""
MAX_RAISED_PER_CHECK = 1000
"""At most this many gateways are found silent per check (the rest at the next)."""


@dataclass(frozen=True, slots=True)
class Heard:
    """What noting a contact did: whether it ended a silence (its alert cleared once)."""

    cleared: bool = False


def _alert_id(last_contact: datetime) -> str:
    return f"{CENTRAL_ALERT_PREFIX}{CODE}.{int(last_contact.timestamp() * 1000)}"


class Contacts:
    """Notes gateways' contacts, writing each gateway's at most every ``every`` from a process."""

    def __init__(self, every: timedelta) -> None:
        self.every = every
        self._written: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def heard(self, engine: Engine, gateway_id: str, site_id: str, now: datetime) -> Heard:
        """Note that a gateway was heard at ``now``; clear its silent alert if it had one."""
        with self._lock:
            last = self._written.get(gateway_id)
            if last is not None and last <= now < last + self.every:
                return Heard()
            self._written[gateway_id] = now
        with engine.begin() as conn:
            row = conn.execute(
                update(gateways)
                .where(
                    gateways.c.gateway_id == gateway_id,
                    gateways.c.last_contact_at.is_(None)
                    | (gateways.c.last_contact_at <= now - self.every)
                    | (gateways.c.last_contact_at > now)  # a clock set back: write it
                    | gateways.c.silent_alert_id.is_not(None),
                )
                .values(last_contact_at=now)
                .returning(gateways.c.silent_alert_id)
            ).first()
        if row is None or row.silent_alert_id is None:
            return Heard()
        return Heard(cleared=_clear(engine, gateway_id, site_id, row.silent_alert_id, now))


def _clear(engine: Engine, gateway_id: str, site_id: str, alert_id: str, now: datetime) -> bool:
    """Clear a gateway's silent alert, and resolve it (``auto``) unless a person did; True if
    this call did it (another process may have been first)."""
    with engine.begin() as conn:
        lock_site(conn, site_id)
        won = conn.execute(
            update(gateways)
            .where(gateways.c.gateway_id == gateway_id, gateways.c.silent_alert_id == alert_id)
            .values(silent_alert_id=None)
            .returning(gateways.c.gateway_id)
        ).first()
        if won is None:
            return False
        state = alert_store.state_of(conn, gateway_id, alert_id)
        if state is None:
            return True
        silent_s = (now - state["raised_at"]).total_seconds() + _silent_before_raise(state)
        steps: list[tuple[str, str, tuple[str, str], str | None, str]] = []
        if state["condition"] == "active":
            steps.append(
                (
                    "cleared",
                    state["human_state"],
                    texts.gateway_back(gateway_id, silent_s),
                    None,
                    "rule",
                )
            )
        if state["human_state"] != "resolved":
            steps.append(
                ("resolved", "resolved", texts.gateway_back_resolved(gateway_id), "auto", "policy")
            )
        for event, human_state, (en, zh), outcome, via in steps:
            made = alert_store.CentralEvent(
                site_id=site_id,
                gateway_id=gateway_id,
                alert_id=alert_id,
                event=event,
                code=CODE,
                device=gateway_id,
                point=POINT,
                severity=state["severity"],
                condition="cleared",
                human_state=human_state,
                raised_at=state["raised_at"],
                at=now,
                value=silent_s,
                text_en=en,
                text_zh_hans=zh,
                via=via,
                outcome=outcome,
                level=state["level"],
                params=state["params"],
            )
            alert_store.store_events(
                conn, gateway_id, [alert_store.central_row(conn, made, now)], now
            )
        return True


def _silent_before_raise(state: dict[str, object]) -> float:
    """How long the gateway had been silent when its alert was raised (``params``)."""
    params = state.get("params")
    value = params.get("silent_s") if isinstance(params, dict) else None
    return float(value) if isinstance(value, int | float) else 0.0


def raise_silent(engine: Engine, now: datetime, silent_after: timedelta) -> int:
    """Raise ``gateway_silent`` for every gateway heard before, not heard for ``silent_after``
    and not already silent; how many this call raised."""
    cutoff = now - silent_after
    with engine.connect() as conn:
        candidates = conn.execute(
            select(gateways.c.gateway_id, gateways.c.site_id, gateways.c.last_contact_at)
            .where(
                gateways.c.last_contact_at.is_not(None),
                gateways.c.last_contact_at < cutoff,
                gateways.c.silent_alert_id.is_(None),
            )
            .order_by(gateways.c.last_contact_at)
            .limit(MAX_RAISED_PER_CHECK)
        ).all()
    raised = 0
    for gateway_id, site_id, last_contact in candidates:
        alert_id = _alert_id(last_contact)
        with engine.begin() as conn:
            lock_site(conn, site_id)
            won = conn.execute(
                update(gateways)
                .where(
                    gateways.c.gateway_id == gateway_id,
                    gateways.c.silent_alert_id.is_(None),
                    gateways.c.last_contact_at == last_contact,
                )
                .values(silent_alert_id=alert_id)
                .returning(gateways.c.gateway_id)
            ).first()
            if won is None:
                continue  # heard meanwhile, or raised by another process
            silent_s = (now - last_contact).total_seconds()
            en, zh = texts.gateway_silent(gateway_id, silent_s)
            made = alert_store.CentralEvent(
                site_id=site_id,
                gateway_id=gateway_id,
                alert_id=alert_id,
                event="raised",
                code=CODE,
                device=gateway_id,
                point=POINT,
                severity=SEVERITY,
                condition="active",
                human_state="new",
                raised_at=now,
                at=now,
                value=silent_s,
                text_en=en,
                text_zh_hans=zh,
                params={
                    "silent_s": int(silent_s),
                    "silent_after_s": int(silent_after.total_seconds()),
                    "last_contact_at": last_contact.isoformat(),
                },
            )
            alert_store.store_events(
                conn, gateway_id, [alert_store.central_row(conn, made, now)], now
            )
            raised += 1
    return raised
