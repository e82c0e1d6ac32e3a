"""Bodies of the central API's platform routes (what gateways send is the wire schema).

A feed item is the wire record's body flattened, plus where and when it came from: the pull
cursor ``seq``, ``record_id``, ``site_id``, ``gateway_id``, the record's time fields and when the
central API received it. An alert's current state (``CurrentAlert``, ``OpenWorkItem``) and the
platform's commands (``AcknowledgeRequest``, ``ResolveRequest``, ``CommandItem``) are the
central API's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from cloud_sync.schemas import (
    INT64_MAX,
    AccessBody,
    ActedVia,
    AlertBody,
    AlertCondition,
    AlertEventKind,
    EvictionBody,
    ForecastBody,
    HumanState,
    Note,
    Outcome,
    PersonName,
    Severity,
    SummaryBody,
)

Cursor = Annotated[int, Field(ge=0, le=INT64_MAX)]
"""A position in a feed. ``seq`` is a signed 64-bit column on both databases, so every cursor,
asked for or answered, fits it; the routes refuse any other value (422) before a query."""


class _FeedMeta(BaseModel):
    """Fields every feed item carries besides the body."""

    seq: Annotated[Cursor, Field(description="Position in the feed; pass the last one as `after`.")]
    record_id: str
    site_id: str
    gateway_id: str
    wall_time: AwareDatetime
    boot_id: str
    monotonic_ns: int
    clock_synced: bool
    received_at: AwareDatetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        """Build an item from a database row whose column names are the field names."""
        return cls.model_validate(dict(row))


class SummaryItem(SummaryBody, _FeedMeta):
    """One hourly (or other period) summary of one point of one device."""

    model_config = ConfigDict(extra="forbid", frozen=True)


ParamValue = bool | int | float | str


class AlertTextsItem(BaseModel):
    """An event's text in English and Simplified Chinese (None for legacy records: English only)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)

    en: str
    zh_hans: str | None = Field(alias="zh-Hans")


def _texts(row: Mapping[str, Any], en: str) -> AlertTextsItem:
    return AlertTextsItem.model_validate({"en": row[en], "zh-Hans": row["text_zh_hans"]})


class AlertItem(AlertBody, _FeedMeta):
    """One event of an alert: raised, cleared, acknowledged, resolved or escalated.

    ``rule``, ``state`` (``raised`` while the condition is active, then ``cleared``), ``message``
    (the English text) and ``cleared_at`` (on the cleared event) read as before alert events, for
    older clients; ``code``, ``condition`` and ``text`` say the same in the new words, and
    ``human_state`` is the wire's ``state``. Legacy records have no ``event_id`` and no Chinese.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str | None
    event: AlertEventKind
    code: str
    condition: AlertCondition
    human_state: HumanState
    at: AwareDatetime
    via: ActedVia
    by: str | None
    note: str | None
    outcome: Outcome | None
    level: int
    audience: str | None
    params: dict[str, ParamValue]
    text: AlertTextsItem
    command_id: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        """Build an item from a row of ``alert_events``."""
        fields = {name: row[name] for name in cls.model_fields if name in row}
        return cls.model_validate(
            fields
            | {
                "code": row["rule"],
                "condition": "active" if row["state"] == "raised" else "cleared",
                "params": row["params"] or {},
                "text": _texts(row, "message"),
            }
        )


class EvictionItem(EvictionBody, _FeedMeta):
    """A gateway's report of records it deleted unsent, to stay within its disk quota."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AccessItem(AccessBody, _FeedMeta):
    """One event of a door or gate; the credential is named only by a pseudonymous reference."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ForecastItem(ForecastBody, _FeedMeta):
    """A building's electricity forecast for 24 hours. One per gateway, ``series`` and ``start``:
    a later item with the same three replaces an earlier one (the newest ``issued_at``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _Page(BaseModel):
    next_cursor: Annotated[
        Cursor, Field(description="The `after` of the next request; equal to `after` if empty.")
    ]


class SummaryPage(_Page):
    """A page of the summaries feed, in ``seq`` order."""

    items: list[SummaryItem]


class AlertPage(_Page):
    """A page of the alert events feed, in ``seq`` order."""

    items: list[AlertItem]


class EvictionPage(_Page):
    """A page of the evictions feed, in ``seq`` order."""

    items: list[EvictionItem]


class AccessPage(_Page):
    """A page of the access events feed, in ``seq`` order."""

    items: list[AccessItem]


class ForecastPage(_Page):
    """A page of the forecasts feed, in ``seq`` order."""

    items: list[ForecastItem]


class ActiveAlerts(BaseModel):
    """Alerts whose condition is active, each as its latest event."""

    items: list[AlertItem]


class _AlertState(BaseModel):
    """An alert's current state, folded from all its events (``lifecycle``)."""

    seq: Annotated[
        Cursor,
        Field(description="The `seq` of the alert's event stored last; pass it as `after`."),
    ]
    site_id: str
    gateway_id: str
    alert_id: str
    code: str
    device: str
    point: str
    severity: Severity
    condition: AlertCondition
    human_state: HumanState
    level: int
    value: float
    params: dict[str, ParamValue]
    text: AlertTextsItem
    raised_at: AwareDatetime
    cleared_at: AwareDatetime | None
    acknowledged_at: AwareDatetime | None
    acknowledged_by: str | None
    acknowledged_note: str | None
    resolved_at: AwareDatetime | None
    resolved_by: str | None
    resolved_note: str | None
    outcome: Outcome | None
    last_event: AlertEventKind
    last_event_id: str | None
    last_event_at: AwareDatetime
    events: Annotated[int, Field(description="How many events of the alert the API holds.")]
    updated_at: AwareDatetime

    @staticmethod
    def _fields(row: Mapping[str, Any]) -> dict[str, Any]:
        return dict(row) | {"text": _texts(row, "text_en")}


class CurrentAlert(_AlertState):
    """An alert's current state and its latest events (``history``, oldest first)."""

    history: list[AlertItem]

    @classmethod
    def from_row(cls, row: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> Self:
        events = [AlertItem.from_row(event) for event in history]
        return cls.model_validate(cls._fields(row) | {"history": events})


class CurrentAlertPage(_Page):
    """A page of alerts' current states, in ``seq`` order: an alert that changes comes again
    later, so reading on from the last cursor keeps a copy up to date."""

    items: list[CurrentAlert]


class OpenWorkItem(_AlertState):
    """An unresolved alert, with how long it has been open and how long acknowledging took."""

    age_s: Annotated[float, Field(description="Seconds since it was raised.")]
    time_to_acknowledge_s: Annotated[
        float | None, Field(description="Seconds from raised to acknowledged; None until then.")
    ]

    @classmethod
    def from_row(cls, row: Mapping[str, Any], now: datetime) -> Self:
        acknowledged = row["acknowledged_at"]
        return cls.model_validate(
            cls._fields(row)
            | {
                "age_s": (now - row["raised_at"]).total_seconds(),
                "time_to_acknowledge_s": None
                if acknowledged is None
                else (acknowledged - row["raised_at"]).total_seconds(),
            }
        )


class OpenWorkPage(BaseModel):
    """A page of open work: critical first, then the oldest first."""

    items: list[OpenWorkItem]
    next_cursor: Annotated[
        str | None,
        Field(description="The `after` of the next request; equal to `after` if empty."),
    ]


PersonOutcome = Literal["resident_ok", "help_given", "false_alarm", "device_fault", "other"]
"""How a person ends an alert (``auto`` is the gateway's policy's)."""


class AcknowledgeRequest(BaseModel):
    """A person acknowledges an alert: they have seen it and act on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    by: PersonName
    note: Note | None = None


class ResolveRequest(AcknowledgeRequest):
    """A person resolves an alert, saying how it ended."""

    outcome: PersonOutcome


CommandState = Literal["pending", "applied", "refused", "expired"]


class CommandItem(BaseModel):
    """A platform command and what became of it. ``event_id`` is the alert event it made (None
    while pending, when refused, or when the alert was already in that state)."""

    seq: Annotated[
        Cursor, Field(description="Position of the command's last change; pass it as `after`.")
    ]
    command_id: str
    site_id: str
    gateway_id: str
    alert_id: str
    action: Literal["acknowledge", "resolve"]
    by: str
    note: str | None
    outcome: Outcome | None
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    state: CommandState
    reason: str | None
    event_id: str | None
    result_at: AwareDatetime | None
    changed_at: AwareDatetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any], state: str, expires_at: datetime) -> Self:
        fields = {name: row[name] for name in cls.model_fields if name in row}
        return cls.model_validate(
            fields | {"seq": row["changed_seq"], "state": state, "expires_at": expires_at}
        )


class CommandPage(_Page):
    """A page of commands in the order of their last change: a command comes again when its
    state changes (keep the latest per ``command_id``)."""

    items: list[CommandItem]


class Health(BaseModel):
    """The API is up and its database answers."""

    status: str = "ok"
