"""What the local web app sees of the running gateway, and the site it serves."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from edge.alerts import Action, ActResult, Alert, Outcome
from edge.store.history import History
from firmware_bridge.modbus.gate import Command, CommandResult, GateStatus

if TYPE_CHECKING:
    from edge.doctor import Check
    from edge.schemas import GatewayConfig
    from edge.status import GatewayStatus


class GatewayView(Protocol):
    """The running gateway as the local web app may use it."""

    changes: Changes

    async def status(self) -> GatewayStatus: ...

    async def health(self) -> list[Check]: ...

    def active_alerts(self) -> list[Alert]: ...

    async def closed_alerts(self, since: float) -> list[Alert]: ...

    async def last_door_opening(self, dwelling: str) -> float | None: ...

    async def alert_outcomes(self, device: str) -> dict[str, int]: ...

    async def meter_history(self, device: str, point: str, hours: int) -> MeterHistory: ...

    async def latest_readings(self) -> list[dict[str, Any]]: ...

    def gates(self) -> list[GateStatus]: ...

    async def gate_command(
        self, name: str, command: Command, *, operator: str
    ) -> CommandResult: ...

    def act(
        self,
        alert_id: str,
        action: Action,
        *,
        by: str,
        note: str | None = None,
        outcome: Outcome | None = None,
    ) -> ActResult: ...


FORECAST_AHEAD_H = 24
"""How many hours to come a meter's chart shows of the building's forecast."""


class MeterHistory(History):
    """``GET /api/meters/{device}/history``: one point's history (``edge.store.history``:
    hourly buckets from ``since``, the newest readings as a finer ``recent`` tail) and, when
    the meter feeds a demand forecast, the forecast beside it."""

    forecast: list[float | None] | None = None
    """kWh per hour, one per hour from ``since``: the window's hours, then the
    ``FORECAST_AHEAD_H`` to come. None: the meter feeds no forecast; an item None: no forecast
    was made for that hour."""
    forecast_series: str | None = None
    """The demand series (``models.demand``) the forecast is of."""


class Changes:
    """A counter the gateway moves each time an alert changes. The console's live streams wait
    on it: one ``asyncio.Event`` per version, set and replaced at each change, so any number of
    open pages wake once each. Used from the event loop only."""

    def __init__(self) -> None:
        self.version = 0
        self._next: asyncio.Event | None = None

    def notify(self) -> None:
        self.version += 1
        if self._next is not None:
            self._next.set()
            self._next = None

    async def wait(self, seen: int, timeout_s: float) -> int:
        """The version once it differs from ``seen``, or after ``timeout_s`` whatever it is."""
        if self.version == seen:
            if self._next is None:
                self._next = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._next.wait(), timeout=timeout_s)
        return self.version


@dataclass(slots=True)
class ConsoleSite:
    """What the console shows of the site beside the running gateway: names people read."""

    site: str
    gateway: str
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    labels: dict[str, str] = field(default_factory=dict)
    """Device, gate and sensor ids and what people read for them."""
    home_labels: dict[str, str] = field(default_factory=dict)
    """Dwelling ids and what people read for them (a dwelling may share its meter's id)."""
    dwellings: tuple[str, ...] = ()
    """The watched homes (residents)."""
    resident_devices: frozenset[str] = frozenset()
    """The homes, their meters and their door and motion sensors: what tells of residents, for
    responders only (their alerts, readings and charts)."""
    doors: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Each watched home's door sensors."""
    meters: tuple[str, ...] = ()
    """The Modbus meters (the meters page)."""
    forecasts: dict[str, str] = field(default_factory=dict)
    """Meter id: the demand series whose forecast is drawn over its chart."""
    https: bool = False
    session_idle_s: float = 30 * 60.0
    session_max_s: float = 12 * 3600.0

    @classmethod
    def from_config(cls, config: GatewayConfig) -> ConsoleSite:
        labels: dict[str, str] = {}
        named: list[tuple[str, str | None]] = [
            *((d.name, d.label) for d in config.modbus.devices),
            *((g.name, g.label) for g in config.modbus.gates),
            *((s.name, s.label) for s in config.ble.sensors),
        ]
        for name, label in named:
            if label:
                labels[name] = label
        if config.site.label:
            labels.setdefault(config.gateway.site, config.site.label)
        forecasts: dict[str, str] = {}
        for series in config.models.demand:
            for meter in series.meters:
                forecasts.setdefault(meter.partition(":")[0], series.name)
        api = config.local_api
        return cls(
            site=config.gateway.site,
            gateway=config.gateway.id,
            timezone=ZoneInfo(config.site.timezone),
            labels=labels,
            home_labels={d.name: d.label for d in config.models.dwellings if d.label},
            dwellings=tuple(d.name for d in config.models.dwellings),
            doors={d.name: tuple(d.doors) for d in config.models.dwellings},
            resident_devices=frozenset(
                name
                for d in config.models.dwellings
                for name in (d.name, *d.doors, *d.motion, *(m.partition(":")[0] for m in d.meters))
            ),
            meters=tuple(d.name for d in config.modbus.devices),
            forecasts=forecasts,
            https=api.tls_cert is not None,
            session_idle_s=api.session_idle_s,
            session_max_s=api.session_max_s,
        )

    def update(self, new: ConsoleSite) -> None:
        """Take ``new``'s names, homes and meters (a reload); the site's own ids, HTTPS and the
        session times stay as the console was started with."""
        for name in (
            "timezone",
            "labels",
            "home_labels",
            "dwellings",
            "resident_devices",
            "doors",
            "meters",
            "forecasts",
        ):
            setattr(self, name, getattr(new, name))

    def label(self, name: str) -> str:
        """What people read for a device, gate or sensor."""
        return self.labels.get(name, name)

    def home(self, name: str) -> str:
        """What people read for a watched home."""
        return self.home_labels.get(name, name)

    def source(self, alert: Alert) -> str:
        """What people read for where an alert comes from."""
        return self.home(alert.device) if self.about_resident(alert) else self.label(alert.device)

    def about_resident(self, alert: Alert) -> bool:
        """Whether an alert tells something of a home's residents (responders only)."""
        return alert.device in self.resident_devices
