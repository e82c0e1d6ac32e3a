"""The wire schema between gateways and the central API, version 1.

A gateway posts an ``IngestBatch`` of records. Every record has a stable ``record_id`` chosen by the
gateway, so that the central API can ignore a record it already holds and a retry is harmless.
Every record carries the time contract: wall time (UTC), the boot it was taken in, a monotonic
counter of that boot, and whether the clock was synchronised when it was taken.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SCHEMA_VERSION: Final = 1
MAX_RECORDS_PER_BATCH = 1000

Identifier = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
]
"""Names of sites, gateways, devices and points: safe in URLs, MQTT topics and file names."""


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecordTime(_Wire):
    """When a record was taken, in a form that survives a gateway without a real-time clock."""

    wall_time: AwareDatetime
    boot_id: Annotated[str, Field(min_length=1, max_length=64)]
    monotonic_ns: Annotated[int, Field(ge=0)]
    clock_synced: bool


class SummaryBody(_Wire):
    """Statistics of one point of one device over one period ``[period_start, period_end)``."""

    device: Identifier
    point: Identifier
    unit: Annotated[str, Field(max_length=16)]
    period_start: AwareDatetime
    period_end: AwareDatetime
    count: Annotated[int, Field(ge=1)]
    min: float
    max: float
    mean: float
    last: float


class AlertBody(_Wire):
    """One change of state of an alert. ``alert_id`` names the occurrence, shared by its changes."""

    alert_id: Identifier
    rule: Identifier
    device: Identifier
    point: Identifier
    state: Literal["raised", "cleared"]
    severity: Literal["info", "warning", "critical"]
    message: Annotated[str, Field(max_length=500)]
    value: float
    raised_at: AwareDatetime
    cleared_at: AwareDatetime | None = None


class EvictionBody(_Wire):
    """Records a gateway deleted before they were synced, to stay within its disk quota.

    An eviction is never silent: the gateway reports what it dropped, how many and from when.
    """

    evicted: Literal["reading", "summary", "alert", "access"]
    count: Annotated[int, Field(ge=1)]
    oldest: AwareDatetime
    newest: AwareDatetime
    reason: Literal["quota", "disk_full", "retention"]


class SummaryRecord(_Wire):
    kind: Literal["summary"] = "summary"
    record_id: Annotated[str, Field(min_length=1, max_length=128)]
    time: RecordTime
    body: SummaryBody


class AlertRecord(_Wire):
    kind: Literal["alert"] = "alert"
    record_id: Annotated[str, Field(min_length=1, max_length=128)]
    time: RecordTime
    body: AlertBody


class EvictionRecord(_Wire):
    kind: Literal["eviction"] = "eviction"
    record_id: Annotated[str, Field(min_length=1, max_length=128)]
    time: RecordTime
    body: EvictionBody


Record = Annotated[SummaryRecord | AlertRecord | EvictionRecord, Field(discriminator="kind")]


class IngestBatch(_Wire):
    """What a gateway posts to ``POST /v1/ingest`` (JSON, optionally gzip-encoded)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    gateway_id: Identifier
    site_id: Identifier
    records: Annotated[list[Record], Field(min_length=1, max_length=MAX_RECORDS_PER_BATCH)]


class IngestResult(_Wire):
    """The central API's answer: how many records were new and how many it already held."""

    accepted: int
    duplicates: int
