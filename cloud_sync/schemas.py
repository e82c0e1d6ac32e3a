"""The wire schema between gateways and the central API, versions 1 and 2.

A gateway posts an ``IngestBatch`` of records. Every record has a stable ``record_id`` chosen by the
gateway, so that the central API can ignore a record it already holds and a retry is harmless.
Every record carries the time contract: wall time (UTC), the boot it was taken in, a monotonic
counter of that boot, and whether the clock was synchronised when it was taken.

In version 1 a batch is stored whole or refused whole. In version 2 the central API judges each
record: it stores the valid ones and names the ones it refuses, and why (``IngestResult.refused``).
``GET /v1/wire`` (``WireTerms``) says which versions and record kinds a central API takes, so that
each side can be upgraded first (docs/central-api.md, "Versions").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

SCHEMA_VERSION: Final = 2
"""The newest wire version this code speaks."""
SCHEMA_VERSIONS: Final = (1, 2)
"""Every wire version this code speaks."""
MAX_RECORDS_PER_BATCH = 1000
INT64_MAX: Final = 2**63 - 1

IDENTIFIER_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=IDENTIFIER_PATTERN)]
"""Names of sites, gateways, devices and points: safe in URLs, MQTT topics and file names."""

_NO_NUL = r"^[^\x00]*$"
"""Free text may hold anything but NUL, which PostgreSQL cannot store in a text column."""

Counter64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
"""A count or counter that fits a signed 64-bit column."""

Finite = Annotated[float, Field(allow_inf_nan=False)]
"""A measured value: a real number, never NaN or infinite."""

Severity = Literal["info", "warning", "critical"]


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 9999-12-31T23:00-05:00 is past year 9999 in UTC
        raise ValueError("the time is out of range once converted to UTC") from exc


Timestamp = Annotated[AwareDatetime, AfterValidator(_in_utc)]
"""An instant with its UTC offset (``Z`` or ``+01:00``); read as UTC."""


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecordTime(_Wire):
    """When a record was taken, in a form that survives a gateway without a real-time clock."""

    wall_time: Timestamp
    boot_id: Annotated[str, Field(min_length=1, max_length=64, pattern=_NO_NUL)]
    monotonic_ns: Counter64
    clock_synced: bool


class SummaryBody(_Wire):
    """Statistics of one point of one device over one period ``[period_start, period_end)``.

    ``delta`` is set for counters (e.g. energy in kWh) only: the consumption within the period,
    the sum of the positive steps between consecutive readings (the first compared with the last
    reading of the previous summary), so that consecutive deltas add up; a reset counts 0.
    """

    device: Identifier
    point: Identifier
    unit: Annotated[str, Field(max_length=16, pattern=_NO_NUL)]
    period_start: Timestamp
    period_end: Timestamp
    count: Annotated[int, Field(ge=1, le=INT64_MAX)]
    min: Finite
    max: Finite
    mean: Finite
    last: Finite
    delta: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class AlertBody(_Wire):
    """One change of state of an alert. ``alert_id`` names the occurrence, shared by its changes."""

    alert_id: Identifier
    rule: Identifier
    device: Identifier
    point: Identifier
    state: Literal["raised", "cleared"]
    severity: Severity
    message: Annotated[str, Field(max_length=500, pattern=_NO_NUL)]
    value: Finite
    raised_at: Timestamp
    cleared_at: Timestamp | None = None


class EvictionBody(_Wire):
    """Records a gateway deleted before they were synced, to stay within its disk quota.

    An eviction is never silent: the gateway reports what it dropped, how many and from when.
    """

    evicted: Literal["reading", "summary", "alert", "access", "forecast"]
    count: Annotated[int, Field(ge=1, le=INT64_MAX)]
    oldest: Timestamp
    newest: Timestamp
    reason: Literal["quota", "disk_full", "retention"]


CREDENTIAL_REF_PATTERN: Final = r"^[A-Za-z0-9_.:+/=-]+$"
"""A credential reference: a keyed hash or token in hex, base32 or base64, without spaces."""


class AccessBody(_Wire):
    """One event of a door or gate: a credential granted or denied, a door forced or held open,
    opened or closed.

    ``credential_ref`` names the credential pseudonymously, e.g. a keyed hash (HMAC) of the card
    or tag id made on the gateway: never the raw card number.
    """

    device: Identifier
    event: Literal["granted", "denied", "forced_open", "held_open", "opened", "closed"]
    credential_ref: (
        Annotated[str, Field(min_length=1, max_length=64, pattern=CREDENTIAL_REF_PATTERN)] | None
    ) = None
    occurred_at: Timestamp
    detail: Annotated[str, Field(max_length=200, pattern=_NO_NUL)] | None = None


FORECAST_HOURS: Final = 24
"""A forecast covers the 24 hours from its start, one value per hour."""


def _on_the_hour(value: datetime) -> datetime:
    if value.minute or value.second or value.microsecond:
        raise ValueError("a forecast starts on a UTC hour boundary")
    return value


HourlyEnergy = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""The energy (kWh) of one hour: finite and never negative."""


class ForecastBody(_Wire):
    """A building's electricity forecast: the energy (kWh) of each of the 24 hours from ``start``
    (a UTC hour boundary), made at ``issued_at`` by ``model`` (``"<name> <version> <sha256 first
    12>"``), with the building's ``capacity_kwh`` (the most its connection carries in one hour)
    if one is configured.

    There is one forecast per gateway, ``series`` and ``start``: a later one (a gateway restarted
    within the hour forecasts that hour again) replaces it. The forecast with the newest
    ``issued_at`` wins, on the gateway and at the central API, whatever order records arrive in.
    """

    series: Identifier
    issued_at: Timestamp
    start: Annotated[Timestamp, AfterValidator(_on_the_hour)]
    hours: Annotated[
        list[HourlyEnergy], Field(min_length=FORECAST_HOURS, max_length=FORECAST_HOURS)
    ]
    model: Annotated[str, Field(min_length=1, max_length=200, pattern=_NO_NUL)]
    capacity_kwh: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None


AlertCondition = Literal["active", "cleared"]
"""An alert's condition, set by its rule: active, then cleared when its cause ends."""
HumanState = Literal["new", "acknowledged", "resolved"]
"""An alert's human state: new, acknowledged by a person, resolved (by a person, or ``auto``
when its rule's policy needs nobody and the condition cleared)."""
Outcome = Literal["resident_ok", "help_given", "false_alarm", "device_fault", "other", "auto"]
"""How a resolved alert ended; ``auto``: resolved by the policy when the condition cleared."""
AlertEventKind = Literal["raised", "cleared", "acknowledged", "resolved", "escalated"]
ActedVia = Literal["rule", "policy", "local_api", "mqtt", "platform"]
"""Where an event came from: the alert's rule (raised, cleared), the gateway's policy (escalated,
resolved ``auto``), or a person on the local API, over MQTT or from the platform."""

PersonName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""Who acted, as people call them: any text without control characters (王芳, "Li Wei")."""
Note = Annotated[str, Field(max_length=500, pattern=_NO_NUL)]
EventId = Annotated[str, Field(min_length=1, max_length=128, pattern=IDENTIFIER_PATTERN)]
"""An alert event's id, unique per gateway: ``<alert_id>.<n>``, n counting the alert's events."""
CommandId = Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
ParamValue = (
    Annotated[str, Field(max_length=200, pattern=_NO_NUL)]
    | Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX)]
    | Finite
    | bool
)
AlertParams = Annotated[dict[Identifier, ParamValue], Field(max_length=32)]
"""An alert code's parameters (``use_stopped``: ``hours_quiet``, ``usual_uses``...)."""
AlertText = Annotated[str, Field(max_length=500, pattern=_NO_NUL)]


class AlertTexts(_Wire):
    """An alert event's text, rendered from the message catalogues in each language."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True
    )

    en: AlertText
    zh_hans: AlertText = Field(alias="zh-Hans")


class AlertEventBody(_Wire):
    """One step in the life of an alert, as the gateway's append-only history holds it.

    ``condition`` and ``state`` are the alert's after this event; ``code`` names the alert kind
    (the catalogue's), ``params`` its parameters and ``text`` the event rendered in English and
    Simplified Chinese. ``by`` is the person who acknowledged or resolved (None for the rule and
    the policy); ``command_id`` the platform command this event applied, if any.
    """

    event_id: EventId
    alert_id: Identifier
    event: AlertEventKind
    code: Identifier
    device: Identifier
    point: Identifier
    severity: Severity
    condition: AlertCondition
    state: HumanState
    at: Timestamp
    raised_at: Timestamp
    via: ActedVia
    by: PersonName | None = None
    note: Note | None = None
    outcome: Outcome | None = None
    level: Annotated[int, Field(ge=0, le=10)] = 0
    """The escalation level after this event (0: not escalated)."""
    audience: Identifier | None = None
    """Who an ``escalated`` event is for (a grid worker, the community office, the family)."""
    value: Finite
    params: AlertParams = {}
    text: AlertTexts
    command_id: CommandId | None = None


class CommandResultBody(_Wire):
    """A gateway's answer to a platform command: applied (with the event it made, or none when
    the alert was already in that state) or refused, and why."""

    command_id: CommandId
    result: Literal["applied", "refused"]
    reason: Annotated[str, Field(max_length=300, pattern=_NO_NUL)] | None = None
    event_id: EventId | None = None
    at: Timestamp


class AlertCommand(_Wire):
    """A person's action on an alert, sent by the platform for a gateway to apply."""

    command_id: CommandId
    alert_id: Identifier
    action: Literal["acknowledge", "resolve"]
    by: PersonName
    note: Note | None = None
    outcome: Outcome | None = None
    issued_at: Timestamp


class PendingCommands(_Wire):
    """``GET /v1/gateway/commands``: the commands waiting for the calling gateway, oldest first
    (none older than a day: those have expired)."""

    commands: Annotated[list[AlertCommand], Field(max_length=MAX_RECORDS_PER_BATCH)]


class GatewayIdentityAnswer(_Wire):
    """``GET /v1/gateways/me``: whom the credential belongs to. An authenticated no-op: what
    ``nbedge doctor`` asks to tell a refused credential from an unreachable central API."""

    gateway_id: str
    site_id: str


def _kind_required(schema: dict[str, Any]) -> None:
    """Say in the JSON Schema what validation demands: ``kind`` picks the record type."""
    required: list[str] = schema.setdefault("required", [])
    if "kind" not in required:
        required.insert(0, "kind")


class _WireRecord(_Wire):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_kind_required)


RecordId = Annotated[str, Field(min_length=1, max_length=128, pattern=_NO_NUL)]
"""A record's stable id, chosen by its gateway: unique per gateway."""


class SummaryRecord(_WireRecord):
    kind: Literal["summary"] = "summary"
    record_id: RecordId
    time: RecordTime
    body: SummaryBody


class AlertRecord(_WireRecord):
    kind: Literal["alert"] = "alert"
    record_id: RecordId
    time: RecordTime
    body: AlertBody


class EvictionRecord(_WireRecord):
    kind: Literal["eviction"] = "eviction"
    record_id: RecordId
    time: RecordTime
    body: EvictionBody


class AccessRecord(_WireRecord):
    kind: Literal["access"] = "access"
    record_id: RecordId
    time: RecordTime
    body: AccessBody


class ForecastRecord(_WireRecord):
    kind: Literal["forecast"] = "forecast"
    record_id: RecordId
    time: RecordTime
    body: ForecastBody


class AlertEventRecord(_WireRecord):
    kind: Literal["alert_event"] = "alert_event"
    record_id: RecordId
    time: RecordTime
    body: AlertEventBody


class CommandResultRecord(_WireRecord):
    kind: Literal["command_result"] = "command_result"
    record_id: RecordId
    time: RecordTime
    body: CommandResultBody


Record = Annotated[
    SummaryRecord
    | AlertRecord
    | EvictionRecord
    | AccessRecord
    | ForecastRecord
    | AlertEventRecord
    | CommandResultRecord,
    Field(discriminator="kind"),
]

RECORD_KINDS: Final = (
    "summary",
    "alert",
    "eviction",
    "access",
    "forecast",
    "alert_event",
    "command_result",
)
"""The record kinds of this wire schema (the discriminators of ``Record``)."""

SchemaVersion = Literal[1, 2]


class IngestBatch(_Wire):
    """What a gateway posts to ``POST /v1/ingest`` (JSON, optionally gzip-encoded)."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    gateway_id: Identifier
    site_id: Identifier
    records: Annotated[list[Record], Field(min_length=1, max_length=MAX_RECORDS_PER_BATCH)]


class IngestEnvelope(_Wire):
    """A batch as the central API reads it first: the envelope validated, each record left as
    JSON to be judged on its own (version 2)."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    gateway_id: Identifier
    site_id: Identifier
    records: Annotated[list[Any], Field(min_length=1, max_length=MAX_RECORDS_PER_BATCH)]


MAX_REFUSAL_DETAIL = 1000


class RecordRefusal(_Wire):
    """A record of a batch that the central API refuses, and why. ``index`` is its place in the
    batch (from 0); ``record_id`` is given when the record has a readable one."""

    index: Annotated[int, Field(ge=0, lt=MAX_RECORDS_PER_BATCH)]
    record_id: RecordId | None = None
    reason: Literal["unknown_kind", "invalid"]
    """``unknown_kind``: this central API does not take the record's kind; ``invalid``: the
    record breaks the wire schema (``detail`` says where)."""
    detail: Annotated[str, Field(max_length=MAX_REFUSAL_DETAIL)]


class IngestResult(_Wire):
    """The central API's answer: how many records were new, how many it already held and, from
    version 2, which it refused (``accepted + duplicates + len(refused)`` is the batch size)."""

    accepted: int
    duplicates: int
    refused: list[RecordRefusal] = []


class WireTerms(_Wire):
    """``GET /v1/wire``: what a central API takes. A gateway sends the newest version both speak
    and only the record kinds listed; ``api_version`` changes with every release."""

    schema_versions: Annotated[list[int], Field(min_length=1, max_length=100)]
    record_kinds: Annotated[list[Identifier], Field(max_length=100)]
    api_version: Annotated[str, Field(min_length=1, max_length=64, pattern=_NO_NUL)]


ClaimCode = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[0-9A-Za-z -]+$",
        description="The one-time code, as typed: case, spaces and dashes do not matter.",
        examples=["7KQ2-M9XD-4HRT-B3WN"],
    ),
]


class ClaimRequest(_Wire):
    """What a new gateway posts to ``POST /v1/claim``: the one-time code an operator gave."""

    code: ClaimCode


class ClaimResponse(_Wire):
    """The gateway's identity and credential, given once in exchange for a claim code."""

    gateway_id: Identifier
    site_id: Identifier
    token: Annotated[str, Field(min_length=16, description="The gateway's bearer token.")]
