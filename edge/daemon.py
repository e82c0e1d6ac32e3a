"""The gateway daemon: one root task group of services, started and stopped in order.

Start: open the store, load the active alerts, then start the store writer, the local publisher,
the sync client, the housekeeping, the escalation of alerts, the local web app and, last,
acquisition (the field-bus owners).
Every service that waits or schedules takes the gateway's one ``Clock``.
Stop (SIGTERM or Ctrl-C): acquisition first, then the writer flushes what is queued (bounded by
``SHUTDOWN_TIMEOUT_S``), then the rest is cancelled. What was committed to the store is never lost:
the outbox is on disk and the sync client resumes it at the next start.

A cancellation can be lost: on Python 3.11, ``asyncio.wait_for`` returns the result instead of
raising when the awaited future completes in the same loop turn as the cancellation (fixed in
3.12), and libraries call it on every request. So a task that is still running after a cancel is
cancelled again every ``RECANCEL_S`` until it ends, and named in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import httpx

from cloud_sync.client import SyncClient, trust
from cloud_sync.schemas import AlertCommand
from edge import systemd
from edge.alerts import Action, ActResult, Alert, AlertBook, Finding, Outcome
from edge.alerts.escalation import Escalator
from edge.asgi import serve_app
from edge.clock import Clock
from edge.doctor import Check, gateway_health
from edge.home_assistant import HomeAssistantBridge
from edge.layout import CREDENTIAL_KEY_FILE
from edge.maintenance import Maintenance
from edge.mqtt import AlertPublisher
from edge.mqtt_commands import Commands
from edge.people import PeopleStore
from edge.pipeline import Pipeline
from edge.reload import Plan, plan
from edge.rules import (
    EveryIntervalRule,
    GateFaultRule,
    Rule,
    ThresholdRule,
    VoltageRule,
    WindowRule,
)
from edge.runlock import run_lock
from edge.schemas import (
    GateSection,
    GatewayConfig,
    LocalApiSection,
    ModbusDeviceSection,
    UplinkSection,
)
from edge.status import (
    BusStatusView,
    GateStatusView,
    GatewayStatus,
    StoreStatus,
    UplinkStatus,
)
from edge.store import Quota, Retention, Store
from edge.store.history import HOUR_S, MAX_HOURS
from edge.store.housekeeping import Housekeeper
from edge.web import Changes, ConsoleSite, create_local_app
from edge.web.view import FORECAST_AHEAD_H, MeterHistory
from firmware_bridge.modbus.bus import (
    DeviceSpec,
    DeviceStateChange,
    Link,
    ModbusBus,
    SerialLine,
    TcpLink,
)
from firmware_bridge.modbus.gate import (
    Command,
    CommandResult,
    GateController,
    GateCursor,
    GateStatus,
    Pseudonymizer,
)
from firmware_bridge.modbus.profiles import load_profile
from firmware_bridge.readings import Reading
from nbedge.errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    from edge.analytics import Analytics
    from edge.ble import DoorSensors
    from firmware_bridge.ble.scanner import ScannerFactory

log = logging.getLogger(__name__)

COMMANDS_REMEMBERED = 10_000
"""Platform commands this process remembers having answered (a set, bounded)."""
REFUSED_RULE = "records_refused"
"""Warning while records the central API refused are set aside (``cloud_sync.client``)."""
SHUTDOWN_TIMEOUT_S = 8.0
RECANCEL_S = 1.0


class Gateway:
    """A running gateway. ``run`` returns once ``stop`` is set and everything is flushed."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        clock: Clock | None = None,
        uplink_transport: httpx.AsyncBaseTransport | None = None,
        config_path: Path | None = None,
        scanner_factory: ScannerFactory | None = None,
    ) -> None:
        """``clock`` is the one clock of every service that waits or schedules (default: the
        system's); ``uplink_transport`` replaces the sync client's network transport (fault
        injection); ``config_path`` is the file ``reload`` reads again; ``scanner_factory``
        makes the BLE scanners (default: bleak's; the demo's simulated radio)."""
        self.config = config
        self._scanner_factory = scanner_factory
        self.config_path = config_path
        self.clock = Clock() if clock is None else clock
        self._uplink_transport = uplink_transport
        self.started_at = self.clock.wall_time()
        self.housekeeper: Housekeeper | None = None
        self._commands_answered: set[str] = set()
        self.escalator: Escalator | None = None
        self.ready = asyncio.Event()
        self._store: Store | None = None
        self._book = AlertBook()
        self._pipeline: Pipeline | None = None
        self._publisher: AlertPublisher | None = None
        self._buses: list[ModbusBus] = []
        self._gates: dict[str, tuple[GateSection, GateController, ModbusBus]] = {}
        self._sync: SyncClient | None = None
        self.analytics: Analytics | None = None
        self.doors: DoorSensors | None = None
        self.changes = Changes()
        """Moved at each alert change: the console's live updates wait on it."""
        self._reload_wanted: asyncio.Event | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._acquisition: list[asyncio.Task[None]] = []
        self._analytics_task: asyncio.Task[None] | None = None
        self._doors_task: asyncio.Task[None] | None = None
        self._sink: Callable[[Reading], None] | None = None
        self._site: ConsoleSite | None = None
        self.reloads = 0
        self.reloads_refused = 0
        self.maintenance: Maintenance | None = None

    # --- what the local web app sees (edge.web.GatewayView) --------------------------------

    def active_alerts(self) -> list[Alert]:
        """The open alerts: not both cleared and resolved."""
        return self._book.open()

    async def latest_readings(self) -> list[dict[str, Any]]:
        return [] if self._store is None else await self._store.latest_readings()

    async def closed_alerts(self, since: float) -> list[Alert]:
        """The alerts closed since ``since`` (the console's history), newest first."""
        return [] if self._store is None else await self._store.closed_alerts(since)

    async def last_door_opening(self, dwelling: str) -> float | None:
        """When a door of ``dwelling`` last opened (its ``doors``), if it has any."""
        doors = next((d.doors for d in self.config.models.dwellings if d.name == dwelling), [])
        if self._store is None or not doors:
            return None
        return await self._store.last_access(doors, "opened")

    async def alert_outcomes(self, device: str) -> dict[str, int]:
        return {} if self._store is None else await self._store.alert_outcomes(device)

    async def meter_history(self, device: str, point: str, hours: int) -> MeterHistory:
        """A point's last ``hours`` hours (1..168) on the clock, for the console's chart: the
        current hour so far and the ``hours - 1`` before it, one bucket each, the readings not
        summarised yet as a finer tail (``edge.store.history``), and the building's forecast
        beside it when the meter feeds one. ``KeyError`` if the store never had a reading of
        ``device``/``point``; ``ValueError`` for ``hours`` out of range; ``RuntimeError``
        while the store is not open."""
        if not 1 <= hours <= MAX_HOURS:
            raise ValueError(f"hours must be 1..{MAX_HOURS}, not {hours}")
        store = self._store
        if store is None:
            raise RuntimeError("the store is not open")
        now = self.clock.wall_time()
        since = now // HOUR_S * HOUR_S - (hours - 1) * HOUR_S
        history = await store.meter_history(device, point, since=since, until=now)
        fed = [
            s for s in self.config.models.demand if device in (m.split(":")[0] for m in s.meters)
        ]
        if not fed:
            return MeterHistory(**dict(history))
        forecast: list[float | None] = [None] * (hours + FORECAST_AHEAD_H)
        for issued in await store.forecasts(fed[0].name, since - 23 * HOUR_S):
            for i, kwh in enumerate(issued.values):
                slot = int((issued.start - since) // HOUR_S) + i
                if 0 <= slot < len(forecast):
                    forecast[slot] = kwh  # later forecasts overwrite earlier ones
        return MeterHistory(**dict(history), forecast=forecast, forecast_series=fed[0].name)

    async def health(self) -> list[Check]:
        """``nbedge doctor``'s checks as this gateway sees them (``/api/health``)."""
        return await gateway_health(self)

    async def status(self) -> GatewayStatus:
        """The whole gateway (``/api/status``). The bus, the gates, the sync client and the store
        give dataclass snapshots (their packages know nothing of ``edge.status``): they are
        converted here; the other services give their own models."""
        cfg = self.config.gateway
        stored = None if self._store is None else await self._store.stats()
        window = None if self.maintenance is None else self.maintenance.window()
        uplink = None if self._sync is None else self._sync.status()
        return GatewayStatus(
            gateway=cfg.id,
            site=cfg.site,
            uptime_s=round(self.clock.wall_time() - self.started_at, 1),
            ready=self.ready.is_set(),
            modbus=tuple(
                BusStatusView.model_validate(bus.status(), from_attributes=True)
                for bus in self._buses
            ),
            pipeline=None if self._pipeline is None else self._pipeline.stats(),
            store=None
            if stored is None
            else StoreStatus.model_validate(stored, from_attributes=True),
            mqtt=None if self._publisher is None else self._publisher.status(),
            uplink=None
            if uplink is None
            else UplinkStatus.model_validate(uplink, from_attributes=True),
            gates=tuple(
                GateStatusView.model_validate(gate.status(), from_attributes=True)
                for gate in self._gate_controllers()
            ),
            analytics=None if self.analytics is None else self.analytics.status(),
            ble=None if self.doors is None else self.doors.status(),
            active_alerts=len(self._book.active()),
            open_alerts=len(self._book.open()),
            escalation=None if self.escalator is None else self.escalator.status(),
            maintenance_until=None if window is None else window.until,
        )

    # --- the services a reload may rebuild ------------------------------------------------

    def _build_acquisition(
        self, config: GatewayConfig, gates: Sequence[tuple[GateSection, GateController]]
    ) -> None:
        """The bus owners of ``config``'s devices and gates (not started)."""
        assert self._pipeline is not None
        assert self._sink is not None
        pipeline = self._pipeline
        self._buses = build_buses(
            config.modbus.devices,
            self._sink,
            (
                functools.partial(pipeline.submit_state, zone=config.site.timezone)
                if config.rules.device_silent.enabled
                else None
            ),
            gates=gates,
        )
        self._gates = {
            section.name: (section, controller, bus)
            for section, controller in gates
            for bus in self._buses
            if bus.has_device(section.name)
        }

    def _start_buses(self) -> None:
        assert self._tasks is not None
        self._acquisition = [
            self._tasks.create_task(bus.run(), name=f"modbus {bus.endpoint}") for bus in self._buses
        ]

    def _start_analytics(self, config: GatewayConfig) -> None:
        assert self._tasks is not None
        assert self._store is not None
        assert self._pipeline is not None
        self.analytics, self._analytics_task = None, None
        if config.models.enabled:
            from edge.analytics import Analytics

            self.analytics = Analytics(config, self._store, self._pipeline, clock=self.clock)
            self._analytics_task = self._tasks.create_task(self.analytics.run(), name="analytics")

    def _start_doors(self, config: GatewayConfig) -> None:
        assert self._tasks is not None
        assert self._store is not None
        assert self._pipeline is not None
        self.doors, self._doors_task = None, None
        if config.ble.enabled:
            from edge.ble import DoorSensors

            self.doors = DoorSensors(
                config.ble,
                self._store,
                self._pipeline,
                clock=self.clock,
                scanner_factory=self._scanner_factory,
            )
            self._doors_task = self._tasks.create_task(self.doors.run(), name="ble")

    def _producers_started_later(self) -> list[asyncio.Task[None]]:
        return [t for t in (self._analytics_task, self._doors_task) if t is not None]

    # --- reload (SIGHUP) -------------------------------------------------------------------

    def request_reload(self) -> None:
        """Read the configuration file again, soon (the SIGHUP handler); ignored until the
        gateway runs."""
        if self._reload_wanted is not None:
            self._reload_wanted.set()

    async def _reloads(self) -> None:
        assert self._reload_wanted is not None
        wanted = self._reload_wanted
        while True:
            await wanted.wait()
            wanted.clear()
            try:
                await self.reload()
            except Exception:
                log.exception("reload failed; the gateway goes on as it ran")

    async def reload(self) -> Plan | None:
        """Take the configuration file's changes that need no restart (``edge.reload``); an
        invalid file is refused, and the gateway goes on as it ran."""
        from edge.config import load_config

        if self.config_path is None:
            log.warning("reload asked, but the gateway was not started from a file")
            return None
        try:
            new = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            self.reloads_refused += 1
            log.error(  # noqa: TRY400 (the errors are the message, not a traceback)
                "reload refused: the configuration is not valid",
                extra={"path": str(self.config_path), "errors": [str(i) for i in exc.issues]},
            )
            return None
        change = plan(self.config, new)
        systemd.notify("RELOADING=1")
        if change.needs_restart:
            log.warning(
                "configuration changes that need a restart, not applied",
                extra={"keys": list(change.needs_restart)},
            )
        config = change.config
        try:
            await self._apply(change, config)
            self.config = config
            self.reloads += 1
        finally:
            systemd.notify("READY=1")
        log.info(
            "configuration reloaded",
            extra={"changed": list(change.changed), "removed": sorted(change.removed)},
        )
        return change

    async def _apply(self, change: Plan, config: GatewayConfig) -> None:
        store, pipeline = self._store, self._pipeline
        assert store is not None
        assert pipeline is not None
        if change.rules:
            pipeline.set_rules(build_rules(config))
        if change.escalation and self.escalator is not None:
            self.escalator.set_policies(config.alerts.escalation)
        if change.modbus or change.rules:  # device_silent's callback goes with the buses
            same = {_link_of(g) for g in config.modbus.gates}  # a new label keeps the driver
            kept = {
                section.name: controller
                for section, controller, _ in self._gates.values()
                if _link_of(section) in same
            }
            fresh = [
                (section, controller)
                for section, controller in await build_gates(config, store, pipeline)
                if section.name not in kept
            ]
            gates = [
                *((s, kept[s.name]) for s in config.modbus.gates if s.name in kept),
                *fresh,
            ]
            await _cancel_and_wait(self._acquisition)
            store.counters = counter_points(config)
            self._build_acquisition(config, gates)
            self._start_buses()
        if change.models:
            await _cancel_and_wait([self._analytics_task] if self._analytics_task else [])
            self._start_analytics(config)
        if change.ble:
            await _cancel_and_wait([self._doors_task] if self._doors_task else [])
            self._start_doors(config)
        if self._site is not None:
            self._site.update(ConsoleSite.from_config(config))
        if self._publisher is not None and self._publisher.home_assistant is not None:
            self._publisher.home_assistant.reconfigure(config, change.removed)
        now = self.clock.wall_time()
        for alert in self._book.active():
            if alert.device in change.removed:
                pipeline.submit_finding(
                    Finding(
                        code=alert.rule,
                        device=alert.device,
                        point=alert.point,
                        active=False,
                        value=alert.value,
                        at=now,
                        params={"removed": True},
                    )
                )

    def _on_alert(self, alert: Alert) -> None:
        """Each alert change, once stored: to MQTT, and to the console's live updates."""
        if self._publisher is not None:
            self._publisher.publish(alert)
        self.changes.notify()

    def gates(self) -> list[GateStatus]:
        return [gate.status() for gate in self._gate_controllers()]

    async def gate_command(self, name: str, command: Command, *, operator: str) -> CommandResult:
        """Open or close gate ``name`` (KeyError if there is none); the result is logged."""
        section, controller, bus = self._gates[name]
        return await controller.command(
            bus, command, operator=operator, confirm_timeout_s=section.confirm_timeout_s
        )

    def act(
        self,
        alert_id: str,
        action: Action,
        *,
        by: str,
        note: str | None = None,
        outcome: Outcome | None = None,
    ) -> ActResult:
        """A person on the local API acknowledges or resolves an alert."""
        if self._pipeline is None:
            return ActResult(refused="the gateway is starting")
        return self._pipeline.act(
            alert_id,
            action,
            by=by,
            via="local_api",
            at=self.clock.wall_time(),
            note=note,
            outcome=outcome,
        )

    async def _apply_commands(self, commands: Sequence[AlertCommand]) -> None:
        """The platform's commands, each applied once, even across restarts and commands sent
        again: one already applied (its event is in the store) or already answered by this
        process is not applied twice. Each is answered through the outbox: applied (with the
        event it made, written in the same transaction), or refused with the reason."""
        store, pipeline = self._store, self._pipeline
        if store is None or pipeline is None:
            return
        for command in commands:
            if command.command_id in self._commands_answered:
                continue
            self._commands_answered.add(command.command_id)
            if len(self._commands_answered) > COMMANDS_REMEMBERED:
                self._commands_answered.pop()
            at = self.clock.wall_time()
            if await store.applied_command(command.command_id) is not None:
                continue  # applied before a restart; its result is in the outbox already
            result = pipeline.act(
                command.alert_id,
                command.action,
                by=command.by,
                via="platform",
                at=at,
                note=command.note,
                outcome=command.outcome,
                command_id=command.command_id,
            )
            if result.changes:
                continue  # the result goes with the event (edge.store.store)
            refused = result.refused
            if refused is not None and self._book.get(command.alert_id) is None:
                stored = await store.alert_state(command.alert_id)
                if stored == ("cleared", "resolved"):
                    refused = None  # closed already: nothing to do, and that is applied
            log.info(
                "platform command %s",
                "refused" if refused else "applied, alert already in that state",
                extra={"command_id": command.command_id, "alert_id": command.alert_id},
            )
            await store.write_command_result(
                command.command_id,
                "refused" if refused else "applied",
                reason=refused,
                at=at,
            )

    def _gate_controllers(self) -> list[GateController]:
        return [controller for _, controller, _ in self._gates.values()]

    def _records_refused(self, count: int, last: str | None) -> None:
        """The sync client counted the records set aside: ``records_refused`` is active while
        any are (a level finding; the book decides whether it changes)."""
        if self._pipeline is None:
            return
        self._pipeline.submit_finding(
            Finding(
                code=REFUSED_RULE,
                device=self.config.gateway.id,
                point="uplink",
                active=count > 0,
                value=float(count),
                at=self.clock.wall_time(),
                params={"count": count, "last": (last or "")[:200]},
            )
        )

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        config = self.config
        with run_lock(config.gateway.state_dir):
            await self._run(stop)

    async def _run(self, stop: asyncio.Event) -> None:
        config = self.config
        async with open_store(config, self.clock) as store:
            self._store = store
            self.maintenance = Maintenance(config.gateway.state_dir, now=self.clock.wall_time)
            self._book = AlertBook(await store.open_alerts(), testing=self.maintenance.active)
            people = PeopleStore.for_gateway(config)
            home_assistant = None
            if config.mqtt.enabled and config.mqtt.home_assistant.enabled:
                home_assistant = HomeAssistantBridge(config)
            if config.mqtt.enabled:
                self._publisher = AlertPublisher(
                    config.mqtt,
                    site=config.gateway.site,
                    gateway=config.gateway.id,
                    open_alerts=self._book.open,
                    home_assistant=home_assistant,
                )
            self._pipeline = pipeline = Pipeline(
                store,
                rules=build_rules(config),
                book=self._book,
                on_alert=self._on_alert,
                queue_size=config.store.queue_size,
                batch_max_items=config.store.batch_max_items,
                batch_max_delay_s=config.store.batch_max_delay_s,
            )
            if self._publisher is not None:
                self._publisher.commands = Commands(
                    people, act=pipeline.act, alert=self._book.get, now=self.clock.wall_time
                )
            self._sink = (
                pipeline.submit if home_assistant is None else home_assistant.tee(pipeline.submit)
            )
            self._build_acquisition(config, await build_gates(config, store, pipeline))
            if config.uplink is not None and config.uplink.enabled:
                self._sync = build_sync_client(
                    config,
                    store,
                    config.uplink,
                    clock=self.clock,
                    transport=self._uplink_transport,
                    on_set_aside=self._records_refused,
                    on_commands=self._apply_commands,
                )
            self.housekeeper = Housekeeper(
                store,
                summary_interval_s=config.store.summary_interval_s,
                interval_s=config.store.housekeeping_interval_s,
                on_finding=pipeline.submit_finding,
            )
            self.escalator = Escalator(
                self._book, pipeline, store, config.alerts.escalation, clock=self.clock
            )

            self._site = ConsoleSite.from_config(config)
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                writer = tasks.create_task(pipeline.run(), name="store-writer")
                services = [tasks.create_task(self.housekeeper.run(), name="housekeeping")]
                producers: list[asyncio.Task[None]] = []  # submit to the pipeline, like buses
                producers.append(tasks.create_task(self.escalator.run(), name="escalation"))
                if self._publisher is not None:
                    services.append(tasks.create_task(self._publisher.run(), name="mqtt"))
                if self._sync is not None:
                    services.append(tasks.create_task(self._sync.run(), name="uplink"))
                self._start_analytics(config)
                self._start_doors(config)
                self._reload_wanted = asyncio.Event()
                services.append(tasks.create_task(self._reloads(), name="reload"))
                if config.local_api.enabled:
                    web_started = asyncio.Event()
                    services.append(
                        tasks.create_task(
                            serve_app(
                                create_local_app(
                                    self,
                                    people,
                                    self._site,
                                    now=self.clock.wall_time,
                                    monotonic=self.clock.monotonic,
                                ),
                                host=config.local_api.host,
                                port=config.local_api.port,
                                tls=_tls(config.local_api),
                                started=web_started,
                            ),
                            name="local-api",
                        )
                    )
                    await _wait_or_fail(web_started, services[-1])
                watchdog = systemd.watchdog_interval_s()
                if watchdog is not None:
                    services.append(tasks.create_task(systemd.keep_watchdog_fed(watchdog)))
                self._start_buses()
                self.ready.set()
                systemd.notify("READY=1")
                log.info(
                    "gateway running",
                    extra={"gateway": config.gateway.id, "devices": len(config.modbus.devices)},
                )

                await stop.wait()
                systemd.notify("STOPPING=1")
                log.info("gateway stopping")
                self._reload_wanted = None
                await _cancel_and_wait(
                    [*self._acquisition, *producers, *self._producers_started_later()]
                )
                pipeline.close()
                try:
                    async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
                        await asyncio.shield(writer)
                except TimeoutError:
                    flushed = False
                else:
                    flushed = True
                if not flushed:
                    log.error(
                        "store flush did not finish in time; queued readings and access events"
                        " are lost"
                    )
                    await _cancel_and_wait([writer])
                await _cancel_and_wait(services)
        stats = pipeline.stats()
        log.info(
            "gateway stopped",
            extra={
                "written": stats.written,
                "dropped": stats.dropped,
                "access_written": stats.access_written,
            },
        )


def _link_of(gate: GateSection) -> str:
    """A gate's settings but for its label: what its controller and bus depend on."""
    return gate.model_dump_json(exclude={"label"})


def build_rules(config: GatewayConfig) -> list[Rule]:
    """The rules the pipeline runs on every batch of readings."""
    rules: list[Rule] = [GateFaultRule()]
    if config.rules.voltage.enabled:
        rules.append(VoltageRule(config.rules.voltage))
    if config.rules.threshold:
        rules.append(ThresholdRule(config.rules.threshold))
    if config.rules.window:
        rules.append(WindowRule(config.rules.window, ZoneInfo(config.site.timezone)))
    if config.rules.every_interval:
        rules.append(EveryIntervalRule(config.rules.every_interval))
    return rules


def counter_points(config: GatewayConfig) -> frozenset[tuple[str, str]]:
    """The (device, point) pairs whose summaries carry a delta: the profiles' counters."""
    return frozenset(
        (device.name, point)
        for device in config.modbus.devices
        for point in load_profile(device.profile).counter_names
    )


def open_store(config: GatewayConfig, clock: Clock | None = None) -> Store:
    cfg = config.store
    counters = counter_points(config)
    return Store(
        config.database_path,
        gateway_id=config.gateway.id,
        clock=clock,
        quota=Quota(max_bytes=cfg.max_bytes, min_free_bytes=cfg.min_free_bytes),
        retention=Retention(
            reading_s=cfg.reading_retention_s,
            summary_s=cfg.summary_retention_s,
            cleared_alert_s=cfg.cleared_alert_retention_s,
            access_s=cfg.access_retention_s,
        ),
        counters=counters,
    )


async def build_gates(
    config: GatewayConfig, store: Store, pipeline: Pipeline
) -> list[tuple[GateSection, GateController]]:
    """A driver per configured gate controller, resuming after the last event stored."""
    if not config.modbus.gates:
        return []
    pseudonymize = Pseudonymizer.from_file(config.gateway.state_dir / CREDENTIAL_KEY_FILE)
    gates = []
    for section in config.modbus.gates:
        controller = GateController(
            section.name,
            emit_reading=pipeline.submit,
            emit_event=lambda event, key, value: pipeline.submit_access(event, (key, value)),
            pseudonymize=pseudonymize,
        )
        controller.resume(GateCursor.parse(await store.cursor(controller.cursor_key)))
        gates.append((section, controller))
    return gates


def build_buses(
    devices: Sequence[ModbusDeviceSection],
    sink: Callable[[Reading], None],
    on_state: Callable[[DeviceStateChange], None] | None = None,
    *,
    gates: Sequence[tuple[GateSection, GateController]] = (),
) -> list[ModbusBus]:
    """One bus owner per Modbus TCP endpoint and per serial port, serving every device on it:
    meters and gate controllers alike.

    The schema has checked that devices on one serial port agree on its line settings; a bus
    takes the largest ``timeout_s`` and ``request_gap_s`` of its devices.
    """
    by_link: dict[tuple[str, str, int], list[ModbusDeviceSection | GateSection]] = {}
    drivers = {section.name: controller for section, controller in gates}
    listed: list[ModbusDeviceSection | GateSection] = [*devices, *(g for g, _ in gates)]
    for device in listed:
        by_link.setdefault(device.bus_key, []).append(device)
    buses = []
    for group in by_link.values():
        first = group[0]
        link: Link
        if first.transport == "rtu":
            assert first.serial_port is not None  # the schema requires it for rtu
            link = SerialLine(first.serial_port, first.baudrate, first.parity, first.stopbits)
        else:
            assert first.host is not None  # the schema requires it for tcp
            link = TcpLink(first.host, first.port)
        specs = [
            DeviceSpec(
                name=d.name,
                unit_id=d.unit_id,
                profile=load_profile(d.profile) if isinstance(d, ModbusDeviceSection) else None,
                poll_interval_s=d.poll_interval_s,
                driver=drivers.get(d.name),
            )
            for d in group
        ]
        gaps = [d.request_gap_s for d in group if d.request_gap_s is not None]
        buses.append(
            ModbusBus(
                link,
                specs,
                sink,
                timeout_s=max(d.timeout_s for d in group),
                request_gap_s=max(gaps) if gaps else None,
                on_state=on_state,
            )
        )
    return buses


def build_sync_client(
    config: GatewayConfig,
    store: Store,
    uplink: UplinkSection,
    *,
    clock: Clock | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    on_set_aside: Callable[[int, str | None], None] | None = None,
    on_commands: Callable[[Sequence[AlertCommand]], Awaitable[None]] | None = None,
) -> SyncClient:
    clock = store.clock if clock is None else clock
    if uplink.token is not None:
        token = uplink.token
    else:
        assert uplink.token_file is not None  # the schema requires one of the two
        token = uplink.token_file.read_text().strip()
    try:
        verify = trust(uplink.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            "uplink", [ConfigIssue("uplink.ca_file", f"cannot read {uplink.ca_file}: {exc}")]
        ) from exc
    return SyncClient(
        store,
        base_url=str(uplink.url).rstrip("/"),
        verify=verify,
        token=token,
        gateway_id=config.gateway.id,
        site_id=config.gateway.site,
        batch_max_records=uplink.batch_max_records,
        batch_max_bytes=uplink.batch_max_bytes,
        drain_max_records_per_s=uplink.drain_max_records_per_s or None,  # 0: no limit
        drain_jitter_s=uplink.drain_jitter_s,
        interval_s=uplink.interval_s,
        timeout_s=uplink.timeout_s,
        backoff_max_s=uplink.backoff_max_s,
        transport=transport,
        sleep=clock.sleep,
        clock=clock.monotonic,
        on_set_aside=on_set_aside,
        on_commands=on_commands,
    )


async def _wait_or_fail(event: asyncio.Event, task: asyncio.Task[None]) -> None:
    """Wait for a service to say it started; if its task ends first, its error surfaces."""
    while not event.is_set():
        if task.done():
            await task
            raise RuntimeError(f"{task.get_name()} stopped before it started")
        await asyncio.sleep(0.02)


async def _cancel_and_wait(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended. One still running ``RECANCEL_S``
    after a cancellation lost it (see the module doc): it is cancelled again, and logged once
    with where it waits."""
    for task in tasks:
        task.cancel()
    pending: set[asyncio.Task[Any]] = set(tasks)
    logged: set[asyncio.Task[Any]] = set()
    while pending:
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_S)
        stubborn = sorted(pending - logged, key=lambda t: t.get_name())
        if stubborn:
            log.warning(
                "tasks did not stop when cancelled; cancelling again",
                extra={"tasks": [f"{task.get_name()} at {_where(task)}" for task in stubborn]},
            )
            logged.update(stubborn)
        for task in pending:
            task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _where(task: asyncio.Task[Any]) -> str:
    """The innermost coroutine a task waits in (following ``cr_await``), as file:line (name)."""
    coro: Any = task.get_coro()
    while getattr(getattr(coro, "cr_await", None), "cr_frame", None) is not None:
        coro = coro.cr_await
    frame = getattr(coro, "cr_frame", None)
    if frame is None:
        return "?"
    return f"{frame.f_code.co_filename}:{frame.f_lineno} ({frame.f_code.co_name})"


async def run_gateway(config: GatewayConfig, config_path: Path | None = None) -> None:
    """Run a gateway until SIGTERM or SIGINT; SIGHUP reads ``config_path`` again."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    gateway = Gateway(config, config_path=config_path)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, gateway.request_reload)
    try:
        await gateway.run(stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)


def _tls(api: LocalApiSection) -> tuple[str, str] | None:
    """The console's certificate and key files, when it is served over HTTPS."""
    if api.tls_cert is None or api.tls_key is None:
        return None
    return str(api.tls_cert), str(api.tls_key)
