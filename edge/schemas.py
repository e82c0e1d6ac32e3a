"""The gateway's configuration file: one TOML file, validated in full at start-up.

Every key is documented in ``docs/configuration.md``; a test keeps the two in step. Unknown keys are
errors, so a misspelt key never silently falls back to a default.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    field_validator,
    model_validator,
)

Identifier = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
"""Names of sites, gateways and devices: safe in URLs, MQTT topics, record ids and file names."""

PositiveSeconds = Annotated[float, Field(gt=0, le=86_400)]

Label = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""A name people read in place of an id (any Unicode, e.g. ``3号楼东门``): the console, alert
texts and Home Assistant show it; records, topics and the store keep the id."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySection(_Section):
    id: Identifier
    """This gateway's id, unique in the fleet (record ids and MQTT topics carry it)."""
    site: Identifier
    """The building (site) this gateway belongs to."""
    state_dir: Path = Path("/var/lib/nbedge")
    """Folder for the database and credentials; created if missing."""


class StoreSection(_Section):
    path: Path | None = None
    """SQLite database file; default ``<state_dir>/gateway.db``."""
    queue_size: Annotated[int, Field(ge=10, le=1_000_000)] = 10_000
    """Readings held in memory between the field bus and the store; when full, the oldest
    reading is dropped and counted."""
    batch_max_items: Annotated[int, Field(ge=1, le=100_000)] = 500
    """At most this many readings per store transaction."""
    batch_max_delay_s: Annotated[float, Field(gt=0, le=60)] = 0.2
    """A reading waits at most this long before it is written."""
    summary_interval_s: Annotated[int, Field(ge=10, le=86_400)] = 3600
    """Length of a summary period; must divide a day (3600 = hourly summaries)."""
    reading_retention_s: Annotated[int, Field(ge=60)] = 7 * 86_400
    """Raw readings older than this are deleted once summarised."""
    summary_retention_s: Annotated[int, Field(ge=3600)] = 90 * 86_400
    """The local copy of a summary is deleted this long after its period ended (the outbox keeps
    its record until the central API has it)."""
    cleared_alert_retention_s: Annotated[int, Field(ge=3600)] = 90 * 86_400
    """A cleared alert leaves the local history this long after it cleared."""
    access_retention_s: Annotated[int, Field(ge=3600)] = 90 * 86_400
    """An access event of a door or gate leaves the local history this long after it happened,
    once counted in a summary (its outbox record is kept until the central API has it)."""
    max_bytes: Annotated[int, Field(ge=1 << 20)] = 512 << 20
    """The database (with its WAL) on disk, at most; beyond it records are evicted in the
    documented order, and every eviction is reported."""
    min_free_bytes: Annotated[int, Field(ge=0)] = 64 << 20
    """Free space the filesystem holding the database must keep, at most a tenth of its size;
    below it bulk data is evicted (never unsent alerts or access events)."""
    housekeeping_interval_s: Annotated[float, Field(ge=0.5, le=600)] = 5.0
    """How often the quota and the free-disk watermark are checked."""

    @model_validator(mode="after")
    def _period_divides_a_day(self) -> StoreSection:
        if 86_400 % self.summary_interval_s:
            raise ValueError("summary_interval_s must divide a day (86400 s) evenly")
        return self


class HomeAssistantSection(_Section):
    """The building in Home Assistant, through its MQTT discovery (docs/home-assistant.md)."""

    enabled: bool = False
    """Announce the building to Home Assistant: off unless asked for, since it puts the meters'
    readings on the broker and needs a broker account and a person for Home Assistant."""
    discovery_prefix: Annotated[
        str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    ] = "homeassistant"
    """Home Assistant's discovery prefix (its MQTT integration's setting)."""
    account: Identifier = "homeassistant"
    """Home Assistant's broker account: its buttons acknowledge as this account, which must be a
    person of the gateway with the responder role."""
    name: Label | None = None
    """The building's name in Home Assistant, e.g. ``枫林苑12号楼``; ``<site> <gateway>`` when
    unset."""
    language: Literal["zh-Hans", "en"] = "zh-Hans"
    """The language of the entities' names (the alert texts carry both)."""
    state_interval_s: Annotated[float, Field(ge=1, le=3600)] = 60.0
    """A meter's point is published at most this often."""


class MqttSection(_Section):
    enabled: bool = True
    """Publish alerts and the gateway's status to the local broker."""
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65_535)] = 1883
    username: str | None = None
    password: str | None = None
    topic_prefix: Identifier = "nbedge"
    """Topics are ``<topic_prefix>/<site>/<gateway>/...``."""
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    home_assistant: HomeAssistantSection = HomeAssistantSection()

    @model_validator(mode="after")
    def _home_assistant_needs_mqtt(self) -> MqttSection:
        if self.home_assistant.enabled and not self.enabled:
            raise ValueError("home_assistant.enabled needs mqtt.enabled: it goes through MQTT")
        return self


class UplinkSection(_Section):
    enabled: bool = True
    """Sync the outbox to the central API."""
    url: HttpUrl
    """Base URL of the central API, e.g. ``https://central.example.org``."""
    token: str | None = None
    """The gateway's credential. Prefer ``token_file``; one of the two is required."""
    token_file: Path | None = None
    """File holding the gateway's credential (mode 0600)."""
    ca_file: Path | None = None
    """PEM file of the CA(s) to trust for the central API's certificate (a private CA); default:
    the system's CAs."""
    allow_insecure: bool = False
    """Allow ``http://`` to a central API that is not on this machine: the credential and every
    record would cross the network in clear. Only on a network you trust."""
    batch_max_records: Annotated[int, Field(ge=1, le=1000)] = 500
    batch_max_bytes: Annotated[int, Field(ge=1000, le=8 * 1024 * 1024)] = 1_000_000
    """Bytes of JSON per batch before compression; a larger single record is sent alone."""
    drain_max_records_per_s: Annotated[float, Field(ge=0, le=1_000_000)] = 5000.0
    """Rate limit while draining a backlog; 0: no limit."""
    drain_jitter_s: Annotated[float, Field(ge=0, le=3600)] = 20.0
    """After a long outage, or at start with a backlog, the drain starts after a random delay
    of up to this long, so a fleet coming back online does not arrive all at once."""
    interval_s: PositiveSeconds = 2.0
    """Pause between syncs when the outbox is empty."""
    timeout_s: PositiveSeconds = 10.0
    backoff_max_s: PositiveSeconds = 300.0

    @model_validator(mode="after")
    def _one_credential(self) -> UplinkSection:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("set exactly one of token and token_file")
        return self

    @model_validator(mode="after")
    def _tls_unless_local(self) -> UplinkSection:
        if self.url.scheme == "http" and not self.allow_insecure and not _loopback(self.url.host):
            raise ValueError(
                f"url {self.url} is plain http to another machine: the credential and the records"
                " would cross the network in clear; use https://, or set allow_insecure = true"
                " on a network you trust"
            )
        return self


def _loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine: ``localhost`` or a loopback address."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class VoltageRuleSection(_Section):
    enabled: bool = True
    nominal_v: Annotated[float, Field(gt=0, le=1000)] = 230.0
    tolerance_pct: Annotated[float, Field(gt=0, le=50)] = 10.0
    """EN 50160: supply voltage within nominal +-10 %."""
    hysteresis_pct: Annotated[float, Field(ge=0, le=10)] = 1.0
    """An alert clears only once the voltage is this far back inside the band."""
    points: list[Identifier] = ["voltage", "voltage_l1", "voltage_l2", "voltage_l3"]
    """Names of the points this rule watches."""


class DeviceSilentRuleSection(_Section):
    enabled: bool = True
    """Raise a ``device_silent`` alert while a Modbus device does not answer."""


class ThresholdRuleSection(_Section):
    """A point above or below a limit (``threshold`` alerts). The limits are ``above`` and
    ``below``, or ``nominal`` with ``above_pct`` and ``below_pct`` (220 V +7 % / -10 %)."""

    name: Identifier
    """The rule's id, unique among the rules (in the alert's parameters)."""
    label: Label | None = None
    """What people read for the rule in the alert's text (any Unicode); default: its name."""
    device: Identifier | None = None
    """The device watched; None: every device that has ``point``."""
    point: Identifier
    above: Annotated[float, Field(allow_inf_nan=False)] | None = None
    below: Annotated[float, Field(allow_inf_nan=False)] | None = None
    nominal: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    above_pct: Annotated[float, Field(gt=0, le=1000)] | None = None
    below_pct: Annotated[float, Field(gt=0, le=100)] | None = None
    hysteresis: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    """In the point's unit: the alert clears once a reading is this far back inside."""
    for_s: Annotated[float, Field(ge=0, le=7 * 86_400)] = 0.0
    """How long the point must stay beyond the limit before the alert is raised."""
    severity: Literal["info", "warning", "critical"] = "warning"

    @model_validator(mode="after")
    def _limits(self) -> ThresholdRuleSection:
        absolute = self.above is not None or self.below is not None
        relative = self.above_pct is not None or self.below_pct is not None
        if absolute and (relative or self.nominal is not None):
            raise ValueError("give above/below, or nominal with above_pct/below_pct, not both")
        if relative and self.nominal is None:
            raise ValueError("above_pct and below_pct need nominal")
        if not absolute and not relative:
            raise ValueError("give a limit: above, below, or nominal with above_pct/below_pct")
        high, low = self.high, self.low
        if high is not None and low is not None:
            if not low < high:
                raise ValueError(f"the lower limit {low:g} must be below the upper {high:g}")
            if self.hysteresis * 2 >= high - low:
                raise ValueError(f"hysteresis {self.hysteresis:g} is wider than half the band")
        return self

    @property
    def high(self) -> float | None:
        if self.above_pct is not None and self.nominal is not None:
            return self.nominal * (1 + self.above_pct / 100)
        return self.above

    @property
    def low(self) -> float | None:
        if self.below_pct is not None and self.nominal is not None:
            return self.nominal * (1 - self.below_pct / 100)
        return self.below


LocalTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
"""A time of day on the site's clock (``[site] timezone``), ``HH:MM``."""


class WindowRuleSection(_Section):
    """A condition within local hours (``window`` alerts): water flowing at night."""

    name: Identifier
    label: Label | None = None
    device: Identifier | None = None
    point: Identifier
    above: Annotated[float, Field(allow_inf_nan=False)] | None = None
    below: Annotated[float, Field(allow_inf_nan=False)] | None = None
    rate: bool = False
    """Judge the point's rate per hour (a counter: litres or kWh an hour), not its value."""
    start: LocalTime
    end: LocalTime
    """The window's end; before ``start``, it runs past midnight (``23:00`` to ``05:00``)."""
    for_s: Annotated[float, Field(ge=0, le=86_400)] = 0.0
    severity: Literal["info", "warning", "critical"] = "warning"

    @model_validator(mode="after")
    def _a_condition(self) -> WindowRuleSection:
        if self.above is None and self.below is None:
            raise ValueError("give the condition: above, below or both")
        if self.start == self.end:
            raise ValueError("start and end are the same time: the window would be empty")
        return self


class EveryIntervalRuleSection(_Section):
    """A counter that moved in each of ``intervals`` intervals in a row (``every_interval``
    alerts): water used in every half hour of a whole day, a suspected leak."""

    name: Identifier
    label: Label | None = None
    device: Identifier | None = None
    point: Identifier
    interval_s: Annotated[int, Field(ge=60, le=86_400)] = 1800
    """Intervals are whole multiples of this on the clock (1800: each half hour)."""
    intervals: Annotated[int, Field(ge=2, le=10_000)] = 48
    min_delta: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    """An interval counts as moved when the counter rose by more than this."""
    severity: Literal["info", "warning", "critical"] = "warning"


class RulesSection(_Section):
    voltage: VoltageRuleSection = VoltageRuleSection()
    device_silent: DeviceSilentRuleSection = DeviceSilentRuleSection()
    threshold: list[ThresholdRuleSection] = []
    window: list[WindowRuleSection] = []
    every_interval: list[EveryIntervalRuleSection] = []

    @model_validator(mode="after")
    def _one_rule_per_point(self) -> RulesSection:
        for kind, rules in self.on_points():
            names = [r.name for r in rules]
            if twice := sorted({n for n in names if names.count(n) > 1}):
                raise ValueError(f"{kind} rule names must be unique: {', '.join(twice)}")
            watched = [(r.device or "*", r.point) for r in rules]
            for i, (device, point) in enumerate(watched):
                if any(p == point and (d == device or "*" in (d, device)) for d, p in watched[:i]):
                    raise ValueError(
                        f"{kind}.{i}: another {kind} rule already watches {point} of"
                        f" {'every device' if device == '*' else device}; one rule per point"
                    )
        return self

    def on_points(self) -> list[tuple[str, Sequence[_PointRule]]]:
        """The rules of the configuration on a device's point, by kind."""
        return [
            ("threshold", self.threshold),
            ("window", self.window),
            ("every_interval", self.every_interval),
        ]


_PointRule = ThresholdRuleSection | WindowRuleSection | EveryIntervalRuleSection


class EscalationSection(_Section):
    """Who is told, and when, about an alert nobody acknowledges (``edge.alerts.escalation``):
    the alerts of ``rule``, of ``severity``, or of both."""

    rule: str | None = None
    """An alert code of the catalogue (``edge.alerts.catalogue``)."""
    severity: Literal["info", "warning", "critical"] | None = None
    after_s: Annotated[float, Field(ge=0, le=7 * 86_400)] = 600.0
    """Seconds unacknowledged before the first level."""
    every_s: Annotated[float, Field(gt=0, le=7 * 86_400)] = 600.0
    """Seconds between one level and the next."""
    levels: list[Identifier]
    """The audience of each level, in order (``grid_worker``, ``community_office``, ``family``,
    ``social_worker`` are translated; others are shown as written)."""

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, rule: str | None) -> str | None:
        from edge.alerts.catalogue import CATALOGUE

        if rule is not None and rule not in CATALOGUE:
            raise ValueError(f"unknown alert code {rule!r}; codes: {', '.join(sorted(CATALOGUE))}")
        return rule

    @field_validator("levels")
    @classmethod
    def _some_levels(cls, levels: list[str]) -> list[str]:
        if not 1 <= len(levels) <= 10:
            raise ValueError("name from 1 to 10 levels: the audience told at each, in order")
        return levels

    @model_validator(mode="after")
    def _selects_alerts(self) -> Self:
        if self.rule is None and self.severity is None:
            raise ValueError("set rule, severity or both: the alerts this policy is for")
        return self

    def due_s(self, level: int) -> float:
        """Seconds unacknowledged at which ``level`` (1 for the first) is due."""
        return self.after_s + (level - 1) * self.every_s


def default_escalation() -> list[EscalationSection]:
    """With no ``[[alerts.escalation]]``: a resident whose use stopped, the family at 10 min,
    the grid worker at 20, the community office at 30; any other critical alert, the grid
    worker at 10 min and the community office at 20 (docs/alerts.md, "Escalation")."""
    return [
        EscalationSection(rule="use_stopped", levels=["family", "grid_worker", "community_office"]),
        EscalationSection(severity="critical", levels=["grid_worker", "community_office"]),
    ]


class AlertsSection(_Section):
    escalation: list[EscalationSection] = Field(default_factory=default_escalation)
    """Escalation policies; ``escalation = []``: no alert escalates."""

    @model_validator(mode="after")
    def _one_policy_per_selection(self) -> AlertsSection:
        seen: dict[tuple[str | None, str | None], int] = {}
        for index, policy in enumerate(self.escalation):
            selection = (policy.rule, policy.severity)
            if selection in seen:
                raise ValueError(
                    f"escalation.{index} is for the same alerts as escalation.{seen[selection]}"
                    f" (rule {policy.rule}, severity {policy.severity})"
                )
            seen[selection] = index
        return self


_SERIAL_KEYS = ("serial_port", "baudrate", "parity", "stopbits")
_LINE_SETTINGS = ("baudrate", "parity", "stopbits")


class _ModbusLinkSection(_Section):
    """Where a Modbus device is: the link fields shared by meters and gate controllers."""

    name: Identifier
    """Device name, unique on this gateway."""
    transport: Literal["tcp", "rtu"] = "tcp"
    """``tcp``: Modbus TCP at ``host``; ``rtu``: Modbus RTU on the serial port ``serial_port``."""
    host: str | None = None
    """TCP only, required there."""
    port: Annotated[int, Field(ge=1, le=65_535)] = 502
    """TCP only."""
    serial_port: str | None = None
    """RTU only, required there: ``/dev/ttyUSB0``, or a pyserial URL such as ``socket://h:p``."""
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    """Eastron meters ship with 9600 8N1; the Modbus specification's default is 8E1."""
    stopbits: Literal[1, 2] = 1
    unit_id: Annotated[int, Field(ge=0, le=247)] = 1
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    request_gap_s: Annotated[float, Field(ge=0, le=10)] | None = None
    """Pause between one answer and the next request on the bus; default 3.5 character times
    (at least 5 ms) on RTU, none on TCP."""

    @model_validator(mode="after")
    def _transport_keys(self) -> Self:
        problems = []
        given = self.model_fields_set
        if self.transport == "tcp":
            if self.host is None:
                problems.append('host is required with transport = "tcp"')
            problems += [
                f'{key} applies to transport = "rtu" only' for key in _SERIAL_KEYS if key in given
            ]
        else:
            if self.serial_port is None:
                problems.append('serial_port is required with transport = "rtu"')
            elif not self.serial_port.strip():
                problems.append("serial_port must not be empty")
            problems += [
                f'{key} applies to transport = "tcp" only'
                for key in ("host", "port")
                if key in given
            ]
            if self.unit_id == 0:
                problems.append("unit_id 0 is the RTU broadcast address: no device answers it")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def bus_key(self) -> tuple[str, str, int]:
        """Devices with the same key share one bus owner: a TCP endpoint or a serial port."""
        if self.transport == "rtu":
            return ("rtu", self.serial_port or "", 0)
        return ("tcp", self.host or "", self.port)


class ModbusDeviceSection(_ModbusLinkSection):
    """A meter, read through its profile."""

    profile: str
    """Device profile: a packaged name such as ``eastron_sdm630`` or a path to a TOML file."""
    label: Label | None = None
    """What people read for this meter (the console, Home Assistant); the name when unset."""
    poll_interval_s: Annotated[float, Field(ge=0.1, le=3600)] = 5.0


class GateSection(_ModbusLinkSection):
    """A gate or barrier controller speaking the nbedge gate register map."""

    label: Label | None = None
    """What people read for this gate, e.g. ``3号楼东门``; the name when unset."""

    poll_interval_s: Annotated[float, Field(ge=0.1, le=60)] = 1.0
    confirm_timeout_s: Annotated[float, Field(ge=0.5, le=60)] = 5.0
    """How long a command may take to show in the gate's state before it is not confirmed."""


class ModbusSection(_Section):
    devices: list[ModbusDeviceSection] = []
    gates: list[GateSection] = []

    @model_validator(mode="after")
    def _unique_names(self) -> ModbusSection:
        names = [device.name for device in (*self.devices, *self.gates)]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"device names must be unique: {', '.join(duplicates)}")
        return self

    @model_validator(mode="after")
    def _one_setting_per_serial_line(self) -> ModbusSection:
        """Devices on one serial port share its baud rate, parity and stop bits and unit ids."""
        problems = []
        first_on_port: dict[str, tuple[str, _ModbusLinkSection]] = {}
        units_on_port: dict[tuple[str, int], str] = {}
        listed: list[tuple[str, _ModbusLinkSection]] = [
            (f"devices.{i}", d) for i, d in enumerate(self.devices)
        ]
        listed += [(f"gates.{i}", g) for i, g in enumerate(self.gates)]
        for index, device in listed:
            if device.transport != "rtu" or device.serial_port is None:
                continue
            port = device.serial_port
            first_index, first = first_on_port.setdefault(port, (index, device))
            for key in _LINE_SETTINGS:
                mine, theirs = getattr(device, key), getattr(first, key)
                if mine != theirs:
                    problems.append(
                        f"{index}.{key}: {mine!r} differs from {theirs!r} of "
                        f"{first_index} ({first.name}) on {port}; devices on one serial "
                        "port share its line settings"
                    )
            other = units_on_port.setdefault((port, device.unit_id), device.name)
            if other != device.name:
                problems.append(f"{index}.unit_id: {device.unit_id} is already {other}'s on {port}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class OperatorSection(_Section):
    """A person or system allowed to command gates through the local API: an installer
    (``edge.people``); ``nbedge users`` supersedes these entries."""

    name: Identifier
    """Who, as the command log names them."""
    token_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    """SHA-256 of the operator's bearer token in hex (``nbedge local-token NAME`` makes both):
    the token itself is never in the configuration."""


class LocalApiSection(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    """Address of the local status page and API; use the LAN address to reach it on site."""
    port: Annotated[int, Field(ge=1, le=65_535)] = 8080
    operators: list[OperatorSection] = []
    tls_cert: Path | None = None
    """With ``tls_key``: serve the console over HTTPS with this certificate (PEM), and mark its
    session cookie ``Secure``. Without them the console is plain HTTP on the LAN (the default),
    and its login page says so."""
    tls_key: Path | None = None
    session_idle_s: Annotated[float, Field(ge=60, le=7 * 86_400)] = 30 * 60.0
    """A console session unused this long ends (a phone shared between grid workers)."""
    session_max_s: Annotated[float, Field(ge=300, le=30 * 86_400)] = 12 * 3600.0
    """A console session ends this long after its login, used or not."""

    @model_validator(mode="after")
    def _tls_pair(self) -> LocalApiSection:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        return self

    @model_validator(mode="after")
    def _unique_operators(self) -> LocalApiSection:
        names = [operator.name for operator in self.operators]
        hashes = [operator.token_sha256 for operator in self.operators]
        if len(set(names)) != len(names) or len(set(hashes)) != len(hashes):
            raise ValueError("operator names and tokens must be unique")
        return self


MeterPoint = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*:[A-Za-z0-9_]+$",
        description="a device and one of its points, as device:point",
    ),
]
"""A device of ``[[modbus.devices]]`` and one of its profile's points: ``"main:import_energy"``."""


class SiteSection(_Section):
    """Where the building is: the models' calendar (local hour, weekday, public holidays)."""

    label: Label | None = None
    """The building's name as people read it, e.g. ``幸福里3号楼`` (the console's title)."""
    timezone: str = "UTC"
    """IANA time zone of the building, e.g. ``Europe/London``."""
    country: str | None = None
    """ISO 3166 country code for public holidays (``GB``); none: no day is a holiday."""
    subdivision: str | None = None
    """Region for regional holidays (``ENG`` for England), as the ``holidays`` package names it."""

    @model_validator(mode="after")
    def _known(self) -> SiteSection:
        from models.calendar import Calendar

        try:
            Calendar(self.timezone, self.country, self.subdivision)
        except Exception as exc:  # ZoneInfoNotFoundError, NotImplementedError from holidays
            raise ValueError(f"unknown time zone, country or subdivision: {exc}") from exc
        return self


class DemandSeriesSection(_Section):
    """A building's electricity, forecast for the next 24 hours every hour."""

    name: Identifier
    """Names the forecast (records, alerts, the local page)."""
    meters: Annotated[list[MeterPoint], Field(min_length=1)]
    """Energy counters (kWh) whose hourly consumption adds up to the building's."""
    temperature: MeterPoint | None = None
    """An outdoor temperature gauge (degrees C), if the building has one."""
    capacity_kwh: Annotated[float, Field(gt=0)] | None = None
    """The most energy the building's connection carries in one hour (its capacity in kW): a
    forecast hour above it raises ``demand_capacity``; it clears when no forecast hour is above
    95 % of it."""


class AnomalyMeterSection(_Section):
    """A meter whose hourly consumption is scored against what is usual for it."""

    meter: MeterPoint
    """An energy or water counter."""


class DwellingSection(_Section):
    """A home whose use of electricity and water must not stop while it is usually active."""

    name: Identifier
    label: Label | None = None
    """What responders read for this home, e.g. ``2单元301``; the name when unset."""
    meters: Annotated[list[MeterPoint], Field(min_length=1)]
    """The dwelling's counters (electricity, water): all of them must go quiet for an alert."""
    doors: list[Identifier] = []
    """Names of ``[[ble.sensors]]`` on the dwelling's entrance door(s). With them, a quiet spell
    that starts as the door opens is taken for an outing: no alert while the dwelling is presumed
    out (at most ``away_max_h`` = 12 h, so that a door opened just before a fall does not silence
    it for longer), and the count of quiet hours starts again when the door opens again. A door
    that agrees (the quiet did not begin as it opened) makes the quiet home ``use_stopped`` at
    once."""
    motion: list[Identifier] = []
    """Names of ``[[ble.sensors]]`` of kind ``motion`` in the dwelling. An hour in which one saw
    movement is an hour of activity for its detector: ``use_quiet`` comes from the meters alone,
    ``use_stopped`` when nobody has moved either for long enough to be unusual for the home."""
    stopped_after_h: Annotated[float, Field(gt=0, le=72, allow_inf_nan=False)] | None = None
    """``use_stopped`` without a door or motion sensor that agrees: after so many quiet hours
    (outside the usual night). Unset: when the quiet spell is longer than the home's own last 26
    weeks allow at about one alarm every four months (measured: about one a month, 8 h at the
    median home of a real water-meter trial; docs/model-card-cessation.md)."""
    respond: Literal["within_3h", "calibrated"] = "within_3h"
    """``within_3h``: the alert threshold is capped so that a stop at an hour the dwelling is
    usually active in is alerted within 3 hours (94 % of the stops at those hours of its week,
    each hour counted by how likely a stop is then: use in the hour before), at the cost of the
    alarms its own quiet spells raise (``past_alarms_per_month`` in the status). ``calibrated``:
    the threshold its own last 26 weeks allow at about one false alarm every two months, however
    late that makes the alert (``response_h`` in the status says how late)."""


class ModelsSection(_Section):
    """The models run on the gateway (see docs/models.md)."""

    trusted_keys: list[str] = []
    """Public keys (``ed25519:...``, from ``nbedge models keygen``) whose signed bundles the gateway
    takes from ``<state_dir>/models/``, besides the project's release key."""
    bundle_check_interval_s: Annotated[float, Field(ge=1, le=3600)] = 60.0
    """How often ``<state_dir>/models/`` is checked for a new bundle."""
    min_history_days: Annotated[int, Field(ge=1, le=60)] = 14
    """Days of a meter's own history needed before it is scored (its threshold and usual
    activity are learnt from them); until then the local page says it is learning."""
    demand: list[DemandSeriesSection] = []
    anomaly: list[AnomalyMeterSection] = []
    dwellings: list[DwellingSection] = []

    @model_validator(mode="after")
    def _keys_and_names(self) -> ModelsSection:
        from models.bundle import parse_public_key

        for index, text in enumerate(self.trusted_keys):
            try:
                parse_public_key(text)
            except ValueError as exc:
                raise ValueError(f"trusted_keys.{index}: {exc}") from exc
        names = [s.name for s in self.demand] + [d.name for d in self.dwellings]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"demand and dwelling names must be unique: {', '.join(duplicates)}")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.demand or self.anomaly or self.dwellings)


MacAddress = Annotated[
    str,
    Field(pattern=r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$", description="AA:BB:CC:DD:EE:FF"),
]


SensorKind = Literal["door", "leak", "smoke", "motion", "climate", "button"]
"""What a BTHome sensor watches (docs/ble.md); ``nbedge scan ble`` suggests it."""
SosPress = Literal["any", "press", "double_press", "triple_press", "long_press"]


class BleSensorSection(_Section):
    """A BTHome v2 sensor: a door or window (Shelly BLU Door/Window), a water leak, smoke,
    motion (Shelly BLU Motion), temperature and humidity (Shelly BLU H&T), or a button (an SOS
    button: Shelly BLU Button)."""

    name: Identifier
    """The sensor's name in the store, events and alerts (unique among all devices)."""
    kind: SensorKind = "door"
    """What it watches: door events, ``water_leak`` and ``smoke`` alerts, motion and climate
    readings, ``sos`` alerts for a button."""
    sos_press: SosPress = "any"
    """A button: which press means SOS (``any`` by default: an elderly resident presses as she
    can)."""
    test_every_s: Annotated[float, Field(ge=0, le=366 * 86_400)] = 30 * 86_400.0
    """A button, which sends only when pressed: ``press_to_test`` reminds people to press it
    when it has not been heard for this long (instead of ``sensor_silent``). 0: no reminder."""
    label: Label | None = None
    """What people read for this sensor, e.g. ``301室入户门``; the name when unset."""
    mac: MacAddress
    """The sensor's Bluetooth address, as ``nbedge scan ble`` lists it."""
    bind_key: SecretStr | None = None
    """The sensor's 16-byte encryption key in hex (32 characters), for encrypted sensors. Kept
    out of logs and errors; a file holding one must not be readable by others."""
    held_open_s: Annotated[float, Field(ge=0, le=7 * 86_400)] = 600.0
    """An open door raises ``door_held_open`` after this long; cleared when it closes. 0: no
    alert."""
    silent_s: Annotated[float, Field(ge=0, le=30 * 86_400)] = 6 * 3600.0
    """No frame from the sensor for this long raises ``sensor_silent``; cleared by two frames
    (set it to a few times the sensor's heartbeat). 0: no alert."""
    low_battery_pct: Annotated[float, Field(ge=0, le=100)] = 20.0
    """A battery at or below this raises ``low_battery``; it clears at 10 points above."""

    @field_validator("mac")
    @classmethod
    def _upper(cls, mac: str) -> str:
        return mac.upper()

    @field_validator("bind_key")
    @classmethod
    def _hex_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and re.fullmatch(r"[0-9A-Fa-f]{32}", key.get_secret_value()) is None:
            raise ValueError("a bind key is 32 hexadecimal characters (16 bytes)")
        return key

    @property
    def key_bytes(self) -> bytes | None:
        return None if self.bind_key is None else bytes.fromhex(self.bind_key.get_secret_value())


class BleSection(_Section):
    """The BLE scanner and its BTHome door sensors (see docs/ble.md)."""

    adapter: str | None = None
    """The Bluetooth adapter (``hci0``); none: the first powered one."""
    mode: Literal["active", "passive"] = "active"
    """Passive scanning sends no scan requests (less radio, less battery drain in the sensors'
    neighbours) and needs bluetoothd started with ``--experimental``."""
    restart_after_s: Annotated[float, Field(ge=5, le=86_400)] = 120.0
    """With no advertisement of any device for this long the scanner is restarted."""
    backoff_max_s: Annotated[float, Field(ge=1, le=3600)] = 60.0
    """Longest wait between two attempts to start a scanner that failed."""
    unhealthy_after: Annotated[int, Field(ge=1, le=100)] = 3
    """Failures in a row after which the adapter is reported unhealthy (``ble_adapter`` alert)."""
    reading_interval_s: Annotated[float, Field(ge=1, le=86_400)] = 300.0
    """Battery, illuminance and signal strength are stored at most this often per sensor (and
    at once when the battery changes); door events are stored as they happen."""
    sensors: list[BleSensorSection] = []

    @model_validator(mode="after")
    def _unique(self) -> BleSection:
        for what in ("name", "mac"):
            values = [getattr(sensor, what) for sensor in self.sensors]
            duplicates = sorted({v for v in values if values.count(v) > 1})
            if duplicates:
                raise ValueError(f"sensor {what}s must be unique: {', '.join(duplicates)}")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.sensors)

    @property
    def has_keys(self) -> bool:
        return any(sensor.bind_key is not None for sensor in self.sensors)


class LogSection(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"


class GatewayConfig(_Section):
    """The whole gateway configuration (``/etc/nbedge/gateway.toml``)."""

    gateway: GatewaySection
    store: StoreSection = StoreSection()
    mqtt: MqttSection = MqttSection()
    uplink: UplinkSection | None = None
    rules: RulesSection = RulesSection()
    alerts: AlertsSection = AlertsSection()
    modbus: ModbusSection = ModbusSection()
    local_api: LocalApiSection = LocalApiSection()
    site: SiteSection = SiteSection()
    models: ModelsSection = ModelsSection()
    ble: BleSection = BleSection()
    log: LogSection = LogSection()

    @model_validator(mode="after")
    def _device_names_unique(self) -> GatewayConfig:
        modbus = {d.name for d in (*self.modbus.devices, *self.modbus.gates)}
        clash = sorted(modbus & {sensor.name for sensor in self.ble.sensors})
        if clash:
            raise ValueError(f"BLE sensors and Modbus devices share names: {', '.join(clash)}")
        return self

    @model_validator(mode="after")
    def _threshold_devices_exist(self) -> GatewayConfig:
        devices = {d.name for d in self.modbus.devices} | {s.name for s in self.ble.sensors}
        problems = [
            f"rules.{kind}.{i}.device: {rule.device!r} is not a device of [[modbus.devices]]"
            " or [[ble.sensors]]"
            for kind, listed in self.rules.on_points()
            for i, rule in enumerate(listed)
            if rule.device is not None and rule.device not in devices
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _dwelling_doors_are_sensors(self) -> GatewayConfig:
        """A door or motion sensor a dwelling names must be a sensor the scanner listens to, of
        its kind: a misspelt one would never report, and the dwelling would be watched as if it
        had none."""
        kinds = {sensor.name: sensor.kind for sensor in self.ble.sensors}
        problems = [
            f"models.dwellings.{i}.doors.{j}: {door!r} is not a sensor of [[ble.sensors]]"
            for i, home in enumerate(self.models.dwellings)
            for j, door in enumerate(home.doors)
            if door not in kinds
        ] + [
            f"models.dwellings.{i}.motion.{j}: {name!r} is not a sensor of [[ble.sensors]]"
            if name not in kinds
            else f"models.dwellings.{i}.motion.{j}: {name!r} is a {kinds[name]} sensor, "
            'not kind = "motion"'
            for i, home in enumerate(self.models.dwellings)
            for j, name in enumerate(home.motion)
            if kinds.get(name) != "motion"
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def database_path(self) -> Path:
        return self.store.path or self.gateway.state_dir / "gateway.db"


def is_loopback(host: str) -> bool:
    """True when ``host`` names this machine only (used to warn about exposed services)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
