"""The gateway's status, typed: what ``/api/status`` answers, one model per service.

``Gateway.status()`` returns a ``GatewayStatus``; each section is its service's own model, built
by the service (``Analytics.status()``, ``DoorSensors.status()``, ``Escalator.status()``,
``AlertPublisher.status()``, ``Pipeline.stats()``, ``AccessGuard.status()``) or, for a snapshot
of a package below ``edge`` (the bus, the gates, the sync client) and of the store, converted
by the daemon with ``Model.model_validate(snapshot, from_attributes=True)``.

The field names are the JSON keys: ``status.model_dump(mode="json")`` is the document.
The models are frozen and refuse unknown fields. Models named ``...View`` mirror a dataclass of
the same name in a lower package, field for field (a test keeps them in step), plus what the
console needs that the snapshot has at hand (``online``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from cloud_sync.client import UplinkState
from firmware_bridge.modbus.bus import ConnectionState, DeviceState
from firmware_bridge.modbus.gate import Command, CommandOutcome

Respond = Literal["within_3h", "calibrated"]
"""A dwelling's choice of alert threshold (``models.cessation.RESPONSES``)."""
DwellingStateName = Literal["learning", "in_use", "quiet", "night", "away", "alert"]
"""A dwelling's state in one word: learning its history; in use; quiet (no use for a while);
quiet in its usual night; presumed out (a door opened, then no use); alerted (``use_stopped``)."""


class _Status(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", from_attributes=True, use_attribute_docstrings=True
    )


# --- acquisition: Modbus (firmware_bridge.modbus.bus) ---------------------------------------


class DeviceStatusView(_Status):
    """One device on a bus (``DeviceStatus``); counters count requests."""

    name: str
    unit_id: int
    state: DeviceState
    last_ok_wall_time: float | None
    """When the device last answered; None if it has not since the bus started."""
    reads_ok: int
    reads_failed: int
    timeouts: int
    exceptions: int
    """Requests the device refused with a Modbus exception."""
    frame_errors: int
    """Answers refused: a bad CRC or a malformed frame."""
    decode_errors: int
    values_dropped: int
    consecutive_failures: int
    online: bool
    """``state == "online"``: the last poll (or one of the last few) got an answer."""


class BusStatusView(_Status):
    """One bus (``BusStatus``): its connection and every device."""

    endpoint: str
    connection: ConnectionState
    connects: int
    devices: tuple[DeviceStatusView, ...]


# --- the pipeline and the store ---------------------------------------------------------------


class PipelineStatus(_Status):
    """The queue between acquisition and the store (``Pipeline.stats()``)."""

    queued: int
    received: int
    dropped: int
    written: int
    batches: int
    write_failures: int
    access_queued: int = 0
    access_received: int = 0
    access_written: int = 0
    access_overflow: int = 0
    """Access events refused because ``ACCESS_HARD_CAP`` were pending."""
    access_rejected: int = 0
    """Access events refused because they cannot go on the wire."""
    states_received: int = 0
    """Findings received from the sources other than the rules."""
    states_dropped: int = 0
    """Alert changes dropped because ``STATE_HARD_CAP`` were pending."""


class DiskStatusView(_Status):
    """The filesystem under the store (``edge.store.disk.DiskStatus``)."""

    total_bytes: int
    free_bytes: int
    watermark_bytes: int
    """The free-disk watermark in force: ``store.min_free_bytes`` fitted to the filesystem."""
    reserve_bytes: int
    """What the reserve file holds now; 0 while it is given back."""
    disk_full: bool
    full_episodes: int
    full_errors: int


class StoreStatus(_Status):
    """The SQLite store (``Store.stats()``): rows kept, the outbox, the disk."""

    readings: int
    summaries: int
    active_alerts: int
    access_events: int
    forecasts: int
    outbox: dict[str, int]
    """Records waiting to be sent, per kind."""
    set_aside: dict[str, int]
    """Outbox records the central API refused, per kind (kept; sent again after an upgrade)."""
    bytes: int
    """Database plus WAL on disk."""
    evicted: dict[str, int]
    """Records evicted by the quota since the database was created, per kind."""
    disk: DiskStatusView
    outbox_oldest_at: float | None = None
    """When (wall time) the oldest record waiting to be sent was written; None: none waits."""


# --- MQTT and the uplink ----------------------------------------------------------------------


class MqttCommandsStatus(_Status):
    """The commands people send on MQTT (``Commands.counts()``)."""

    applied: int
    repeats: int
    ignored_empty: int
    refused: dict[str, int]
    """Refusals by reason."""


class MqttStatus(_Status):
    """The local broker's publisher (``AlertPublisher.status()``)."""

    connected: bool
    published: int
    pending: int
    connection_failures: int
    escalations_pending: int = 0
    escalations_published: int = 0
    escalations_dropped: int = 0
    commands: MqttCommandsStatus | None = None
    """None if the publisher takes no commands."""


class WireAgreementView(_Status):
    """What the gateway and its central API agreed on (``cloud_sync.client.WireAgreement``)."""

    schema_version: int
    kinds: tuple[str, ...]
    central_version: str | None
    fingerprint: str


class UplinkStatus(_Status):
    """The sync client (``cloud_sync.client.SyncStatus``)."""

    state: UplinkState
    records_sent: int
    batches_sent: int
    failures: int
    last_error: str | None
    last_success: datetime | None
    """Wall time (UTC) of the last acknowledged batch."""
    wire: WireAgreementView | None = None
    records_refused: int = 0
    set_aside: int = 0
    last_refusal: str | None = None
    commands_received: int = 0


# --- gates (firmware_bridge.modbus.gate) ------------------------------------------------------


class CommandResultView(_Status):
    """What became of one gate command (``CommandResult``)."""

    gate: str
    command: Command
    operator: str
    result: CommandOutcome
    state_before: str | None
    state_after: str | None
    elapsed_s: float
    detail: str = ""


class GateStatusView(_Status):
    """One gate controller (``GateStatus``)."""

    name: str
    state: str | None
    fault: str | None
    epoch: int | None
    last_seq: int | None
    stored_seq: int | None
    events_read: int
    events_lost: int
    events_rejected: int
    commands: int
    last_command: CommandResultView | None


# --- the models (edge.analytics) --------------------------------------------------------------


class ModelSlotStatus(_Status):
    """The model in use of one kind, and what its slot has done."""

    model: str | None
    """The bundle's label; None: none loaded."""
    bundle: str | None
    """The bundle's folder."""
    previous: str | None
    swaps: int
    rollbacks: int
    invalid_outputs: int


class ForecastStatus(_Status):
    """A building's latest 24-hour forecast."""

    start: float
    """The first hour's start (UTC, epoch seconds)."""
    issued_at: float
    kwh: tuple[float, ...]
    model: str


class DemandStatus(_Status):
    """One building's demand forecasts."""

    status: str
    cv_rmse_7d: float | None
    """CV(RMSE) in % of the last 7 days' forecasts over the hours that have passed."""
    hours_compared_7d: int
    capacity_kwh: float | None
    forecast: ForecastStatus | None


class MeterStatus(_Status):
    """One meter scored for unusual use."""

    status: str
    score: float | None


class RespondChoice(_Status):
    """What one choice of ``respond`` costs a dwelling, from its own history."""

    threshold: float | None
    past_alarms_per_month: float | None
    """Alarms a month its last 26 weeks would have raised at this threshold."""
    response_h: float | None
    """Median hours from a stop at a usually active hour to the alert; None: over 24 h."""


class DwellingStatus(_Status):
    """One watched dwelling: its state, and what its choice of ``respond`` (and the other)
    costs it (the fields of the choice in force are repeated at the top level)."""

    status: str
    """The state in words, e.g. ``quiet for 2 h`` or ``alert: no water use for 4 h, ...``."""
    score: float
    reason: str
    respond: Respond
    threshold: float | None
    past_alarms_per_month: float | None
    response_h: float | None
    choices: dict[str, RespondChoice] | None
    """Both choices, worked out at the last daily fit; None before the first."""
    state: DwellingStateName = "learning"
    quiet_h: float | None = None
    """Hours without use, as the detector counts them; None before its first hour."""
    last_door_hour: float | None = None
    """Start (UTC, epoch seconds) of the latest hour in which a door of the dwelling opened, in
    its history and the hours since; None without door sensors or if none has opened."""


class AnalyticsStatus(_Status):
    """The hourly model runs (``Analytics.status()``)."""

    models: dict[str, ModelSlotStatus]
    """Per kind (``demand``, ``anomaly``)."""
    runs: int
    last_run_at: float | None
    next_run_at: float | None
    forecasts: int
    failures: int
    bundles_refused: int
    bundle_errors: tuple[str, ...]
    """The last few bundles refused, and why."""
    demand: dict[str, DemandStatus]
    meters: dict[str, MeterStatus]
    dwellings: dict[str, DwellingStatus]
    model_runs: dict[str, int] = {}
    """Runs of one series' model since start, per kind (``demand``, ``anomaly``,
    ``cessation``), failed or not."""
    model_seconds: dict[str, float] = {}
    """Their total duration in seconds, per kind."""


# --- door sensors (edge.ble over firmware_bridge.ble.scanner) ---------------------------------


class BleSensorStatus(_Status):
    """One door sensor (``SensorStatus``)."""

    name: str
    mac: str
    encrypted: bool
    last_seen: float | None
    """Wall time of the last frame accepted."""
    door_open: bool | None
    battery: float | None
    """Percent."""
    rssi: int | None
    """Signal strength of the last frame accepted, dBm."""
    accepted: int
    rejected: dict[str, int]
    """Frames refused, by reason."""
    online: bool | None = None
    """False while its ``sensor_silent`` alert would be active; None: not heard since start,
    and not yet silent for long."""


class BleStatus(_Status):
    """The BLE scanner (``ScannerStatus``) and its sensors."""

    adapter: str
    mode: Literal["active", "passive"]
    """As ``firmware_bridge.ble.scanner.ScanMode`` (not imported here: it loads bleak)."""
    scanning: bool
    healthy: bool
    reason: str | None
    """Why it is unhealthy or not scanning, if it is."""
    starts: int
    restarts: int
    """Stopped and started again because no advertisement came."""
    failures: int
    """Failures in a row (reset by an advertisement)."""
    advertisements: int
    frames: int
    """BTHome frames of configured sensors accepted."""
    rejected: dict[str, int]
    unconfigured: dict[str, int]
    """BTHome frames per address the configuration does not name."""
    sensors: tuple[BleSensorStatus, ...]


# --- escalation, the local API, the whole -----------------------------------------------------


class EscalationWaiting(_Status):
    """An alert waiting for its next level."""

    alert_id: str
    rule: str
    level: int
    next_level: int
    next_audience: str
    unacknowledged_s: float
    next_due_in_s: float
    paused: bool
    """True while the alert's condition is cleared (its timer does not run)."""


class EscalationStatus(_Status):
    """The escalation of alerts (``Escalator.status()``)."""

    policies: int
    escalated: int
    """Escalation events made since start."""
    waiting_count: int
    waiting: tuple[EscalationWaiting, ...]
    """The first ``STATUS_MAX`` of them, soonest due first."""


class LocalApiStatus(_Status):
    """The people of the local API and the requests refused (``AccessGuard.status()``)."""

    people: dict[str, int]
    """How many people have each role."""
    from_configuration: int
    people_file_problem: str | None
    auth_failures: int
    forbidden: int
    sessions: int = 0
    """Console sessions alive now (``edge.web.sessions``)."""
    sessions_expired: int = 0
    csrf_refused: int = 0
    """Console forms and session requests refused for a missing or wrong CSRF token."""
    logins_failed: int = 0
    logins_slowed: int = 0
    """Login attempts answered 429 while failures from that address or account wait."""


class GatewayStatus(_Status):
    """The whole gateway, as ``/api/status`` answers it."""

    gateway: str
    site: str
    uptime_s: float
    ready: bool
    modbus: tuple[BusStatusView, ...]
    pipeline: PipelineStatus | None
    store: StoreStatus | None
    mqtt: MqttStatus | None
    uplink: UplinkStatus | None
    gates: tuple[GateStatusView, ...]
    analytics: AnalyticsStatus | None
    ble: BleStatus | None
    active_alerts: int
    open_alerts: int
    escalation: EscalationStatus | None
    local_api: LocalApiStatus | None = None
    """Filled by the web layer (the people and refused requests are the app's)."""
    maintenance_until: float | None = None
    """When the maintenance window in force ends (its alerts are tests); None: none is."""
