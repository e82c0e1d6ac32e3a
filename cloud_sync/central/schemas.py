"""Response bodies of the central API's platform feeds (the request bodies are the wire schema).

A feed item is the wire record's body flattened, plus where and when it came from: the pull
cursor ``seq``, ``record_id``, ``site_id``, ``gateway_id``, the record's time fields and when the
central API received it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from cloud_sync.schemas import (
    INT64_MAX,
    AccessBody,
    AlertBody,
    EvictionBody,
    ForecastBody,
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


class AlertItem(AlertBody, _FeedMeta):
    """One change of state of an alert: ``raised`` or ``cleared``."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
    """Alerts raised and not yet cleared, each as its latest ``raised`` event."""

    items: list[AlertItem]


class Health(BaseModel):
    """The API is up and its database answers."""

    status: str = "ok"
