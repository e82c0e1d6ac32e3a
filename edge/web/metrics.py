"""The gateway in Prometheus's text format, at the local API's ``GET /metrics``.

Every figure is read from the gateway's typed status (``edge.status``) and its open alerts at
the moment of the scrape: the services keep their own counters, nothing is counted twice, and a
scrape costs one status (a few ms). The page needs no login, like ``/api/status``, and tells
nothing of residents: no dwelling, no reading, alerts by severity only.

Labels take their values from closed sets: the names the configuration gives (devices, buses,
gates, sensors, demand series), the kinds of records and of models, the severities, the reasons
a frame is refused. Addresses heard but not configured are summed, never labelled.
docs/metrics.md lists every metric.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import get_args

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

import nbedge
from cloud_sync.client import UplinkState
from edge.alerts import Alert
from edge.alerts.book import Severity
from edge.status import GatewayStatus

__all__ = ["CONTENT_TYPE", "exposition"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SEVERITIES: tuple[Severity, ...] = get_args(Severity)


def exposition(status: GatewayStatus, alerts: Sequence[Alert], now: float) -> bytes:
    """The scrape's body: ``status`` and the open ``alerts`` at wall time ``now``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(status, alerts, now))
    return generate_latest(registry)


def _by(family: GaugeMetricFamily | CounterMetricFamily, values: Mapping[str, float]) -> Metric:
    """``family`` with one sample per label value of ``values`` (a closed set), sorted."""
    for label, value in sorted(values.items()):
        family.add_metric([label], value)
    return family


class _Snapshot(Collector):
    def __init__(self, status: GatewayStatus, alerts: Sequence[Alert], now: float) -> None:
        self.status = status
        self.alerts = alerts
        self.now = now

    def collect(self) -> Iterator[Metric]:
        yield from self._gateway()
        yield from self._modbus()
        yield from self._pipeline_and_store()
        yield from self._uplink()
        yield from self._alerts()
        yield from self._mqtt()
        yield from self._ble()
        yield from self._gates()
        yield from self._models()
        yield from self._local_api()

    def _gateway(self) -> Iterator[Metric]:
        s = self.status
        info = InfoMetricFamily("nbedge_gateway", "The gateway: its id, site and version.")
        info.add_metric([], {"gateway": s.gateway, "site": s.site, "version": nbedge.__version__})
        yield info
        yield GaugeMetricFamily("nbedge_uptime_seconds", "Seconds since start.", s.uptime_s)
        yield GaugeMetricFamily(
            "nbedge_ready", "1 once every service started.", 1.0 if s.ready else 0.0
        )
        yield GaugeMetricFamily(
            "nbedge_maintenance",
            "1 while a maintenance window is in force (its alerts are tests, nobody is paged).",
            0.0 if s.maintenance_until is None else 1.0,
        )

    def _modbus(self) -> Iterator[Metric]:
        reads = CounterMetricFamily(
            "nbedge_modbus_reads",
            "Modbus read requests per device, answered (ok) or not (failed).",
            labels=["device", "result"],
        )
        errors = CounterMetricFamily(
            "nbedge_modbus_errors",
            "Failed requests per device by kind: timeout, exception (refused by the device),"
            " frame (bad CRC or malformed), decode (a value that could not be read).",
            labels=["device", "kind"],
        )
        online = GaugeMetricFamily(
            "nbedge_modbus_device_online", "1 while the device answers.", labels=["device"]
        )
        last = GaugeMetricFamily(
            "nbedge_modbus_device_last_answer_timestamp_seconds",
            "When the device last answered (Unix time); absent before its first answer.",
            labels=["device"],
        )
        connects = CounterMetricFamily(
            "nbedge_modbus_connects", "Connections opened per bus.", labels=["bus"]
        )
        connected = GaugeMetricFamily(
            "nbedge_modbus_bus_connected", "1 while the bus is connected.", labels=["bus"]
        )
        for bus in self.status.modbus:
            connects.add_metric([bus.endpoint], bus.connects)
            connected.add_metric([bus.endpoint], 1.0 if bus.connection == "connected" else 0.0)
            for d in bus.devices:
                reads.add_metric([d.name, "ok"], d.reads_ok)
                reads.add_metric([d.name, "failed"], d.reads_failed)
                for kind, count in (
                    ("timeout", d.timeouts),
                    ("exception", d.exceptions),
                    ("frame", d.frame_errors),
                    ("decode", d.decode_errors),
                ):
                    errors.add_metric([d.name, kind], count)
                online.add_metric([d.name], 1.0 if d.online else 0.0)
                if d.last_ok_wall_time is not None:
                    last.add_metric([d.name], d.last_ok_wall_time)
        yield from (reads, errors, online, last, connects, connected)

    def _pipeline_and_store(self) -> Iterator[Metric]:
        pipeline, store = self.status.pipeline, self.status.store
        if pipeline is not None:
            yield GaugeMetricFamily(
                "nbedge_queue_depth",
                "Readings waiting between acquisition and the store.",
                pipeline.queued,
            )
            readings = CounterMetricFamily(
                "nbedge_queue_readings",
                "Readings received by the queue, written to the store, or dropped (queue full).",
                labels=["result"],
            )
            for result, count in (
                ("received", pipeline.received),
                ("written", pipeline.written),
                ("dropped", pipeline.dropped),
            ):
                readings.add_metric([result], count)
            yield readings
            yield CounterMetricFamily(
                "nbedge_store_write_failures",
                "Batches the store could not write (kept and retried).",
                pipeline.write_failures,
            )
        if store is None:
            return
        yield GaugeMetricFamily("nbedge_store_bytes", "The database and its WAL.", store.bytes)
        yield GaugeMetricFamily(
            "nbedge_store_readings", "Raw readings kept in the store.", store.readings
        )
        yield _by(
            GaugeMetricFamily(
                "nbedge_outbox_records",
                "Records waiting to be sent to the central API, per kind (those set aside"
                " included).",
                labels=["kind"],
            ),
            store.outbox,
        )
        yield _by(
            GaugeMetricFamily(
                "nbedge_outbox_set_aside_records",
                "Records the central API refused, kept in the outbox, per kind.",
                labels=["kind"],
            ),
            store.set_aside,
        )
        yield _by(
            CounterMetricFamily(
                "nbedge_store_evicted_records",
                "Records evicted by the store's quota since the database was made, per kind.",
                labels=["kind"],
            ),
            store.evicted,
        )
        disk = store.disk
        yield GaugeMetricFamily(
            "nbedge_disk_free_bytes", "Free space of the store's filesystem.", disk.free_bytes
        )
        yield GaugeMetricFamily(
            "nbedge_disk_watermark_bytes",
            "The free-space watermark in force (the store stops writing below it).",
            disk.watermark_bytes,
        )
        yield GaugeMetricFamily(
            "nbedge_disk_full", "1 while the disk is full.", 1.0 if disk.disk_full else 0.0
        )

    def _uplink(self) -> Iterator[Metric]:
        uplink, store = self.status.uplink, self.status.store
        if uplink is None:
            return
        state = GaugeMetricFamily(
            "nbedge_uplink_state",
            "The sync client's state: 1 for the one it is in.",
            labels=["state"],
        )
        for value in UplinkState:
            state.add_metric([value.value], 1.0 if uplink.state is value else 0.0)
        yield state
        yield CounterMetricFamily(
            "nbedge_uplink_records_sent",
            "Records acknowledged by the central API.",
            uplink.records_sent,
        )
        yield CounterMetricFamily(
            "nbedge_uplink_batches_sent", "Batches acknowledged.", uplink.batches_sent
        )
        yield CounterMetricFamily(
            "nbedge_uplink_failures",
            "Failed attempts to send, each retried with backoff.",
            uplink.failures,
        )
        yield CounterMetricFamily(
            "nbedge_uplink_records_refused",
            "Records the central API refused one by one (each set aside).",
            uplink.records_refused,
        )
        if uplink.last_success is not None:
            yield GaugeMetricFamily(
                "nbedge_uplink_last_success_timestamp_seconds",
                "When the last batch was acknowledged (Unix time).",
                uplink.last_success.timestamp(),
            )
        oldest = None if store is None else store.outbox_oldest_at
        yield GaugeMetricFamily(
            "nbedge_uplink_lag_seconds",
            "Age of the oldest record waiting to be sent; 0 when none waits.",
            0.0 if oldest is None else max(0.0, self.now - oldest),
        )

    def _alerts(self) -> Iterator[Metric]:
        active = Counter(a.severity for a in self.alerts if a.condition == "active")
        unacknowledged = Counter(a.severity for a in self.alerts if a.state == "new")
        opened = Counter(a.severity for a in self.alerts)
        for name, what, counts in (
            ("nbedge_alerts_active", "Alerts whose condition is active", active),
            ("nbedge_alerts_open", "Alerts not yet both cleared and resolved", opened),
            (
                "nbedge_alerts_unacknowledged",
                "Open alerts nobody acknowledged yet",
                unacknowledged,
            ),
        ):
            family = GaugeMetricFamily(name, f"{what}, per severity.", labels=["severity"])
            yield _by(family, {severity: counts[severity] for severity in SEVERITIES})
        escalation = self.status.escalation
        if escalation is not None:
            yield GaugeMetricFamily(
                "nbedge_alerts_escalation_waiting",
                "Alerts waiting for their next escalation level.",
                escalation.waiting_count,
            )
            yield CounterMetricFamily(
                "nbedge_alerts_escalations", "Escalations made since start.", escalation.escalated
            )

    def _mqtt(self) -> Iterator[Metric]:
        mqtt = self.status.mqtt
        if mqtt is None:
            return
        yield GaugeMetricFamily(
            "nbedge_mqtt_connected",
            "1 while connected to the local broker.",
            1.0 if mqtt.connected else 0.0,
        )
        yield CounterMetricFamily(
            "nbedge_mqtt_published", "Messages published to the broker.", mqtt.published
        )
        yield GaugeMetricFamily(
            "nbedge_mqtt_pending", "Messages waiting for the broker.", mqtt.pending
        )
        yield CounterMetricFamily(
            "nbedge_mqtt_connection_failures",
            "Failed connections to the broker.",
            mqtt.connection_failures,
        )

    def _ble(self) -> Iterator[Metric]:
        ble = self.status.ble
        if ble is None:
            return
        yield GaugeMetricFamily(
            "nbedge_ble_scanning", "1 while the adapter scans.", 1.0 if ble.scanning else 0.0
        )
        yield GaugeMetricFamily(
            "nbedge_ble_healthy",
            "1 while advertisements arrive as expected.",
            1.0 if ble.healthy else 0.0,
        )
        yield CounterMetricFamily(
            "nbedge_ble_scanner_restarts",
            "Scans stopped and started again because nothing was heard.",
            ble.restarts,
        )
        yield CounterMetricFamily(
            "nbedge_ble_advertisements", "Advertisements heard.", ble.advertisements
        )
        yield CounterMetricFamily(
            "nbedge_ble_frames_accepted",
            "BTHome frames of configured sensors accepted.",
            ble.frames,
        )
        yield _by(
            CounterMetricFamily(
                "nbedge_ble_frames_refused",
                "BTHome frames refused, per reason (unconfigured: from addresses the"
                " configuration does not name).",
                labels=["reason"],
            ),
            ble.rejected,
        )
        online = GaugeMetricFamily(
            "nbedge_ble_sensor_online",
            "1 while the sensor is heard; absent before it is first heard or missed.",
            labels=["sensor"],
        )
        battery = GaugeMetricFamily(
            "nbedge_ble_sensor_battery_percent", "Last battery level.", labels=["sensor"]
        )
        rssi = GaugeMetricFamily(
            "nbedge_ble_sensor_rssi_dbm", "Signal of the last frame accepted.", labels=["sensor"]
        )
        last = GaugeMetricFamily(
            "nbedge_ble_sensor_last_seen_timestamp_seconds",
            "When the last frame was accepted (Unix time).",
            labels=["sensor"],
        )
        for sensor in ble.sensors:
            for family, value in (
                (online, None if sensor.online is None else float(sensor.online)),
                (battery, sensor.battery),
                (rssi, sensor.rssi),
                (last, sensor.last_seen),
            ):
                if value is not None:
                    family.add_metric([sensor.name], value)
        yield from (online, battery, rssi, last)

    def _gates(self) -> Iterator[Metric]:
        if not self.status.gates:
            return
        events = CounterMetricFamily(
            "nbedge_gate_events",
            "Access events of a gate controller: read, lost (overwritten in the controller"
            " before they were read) or refused.",
            labels=["gate", "result"],
        )
        commands = CounterMetricFamily(
            "nbedge_gate_commands", "Commands sent to the gate.", labels=["gate"]
        )
        for gate in self.status.gates:
            events.add_metric([gate.name, "read"], gate.events_read)
            events.add_metric([gate.name, "lost"], gate.events_lost)
            events.add_metric([gate.name, "refused"], gate.events_rejected)
            commands.add_metric([gate.name], gate.commands)
        yield from (events, commands)

    def _models(self) -> Iterator[Metric]:
        analytics = self.status.analytics
        if analytics is None:
            return
        duration = SummaryMetricFamily(
            "nbedge_model_run_duration_seconds",
            "Runs of one series' model (a forecast, a meter's score, a dwelling's watch) and"
            " their time, per kind of model.",
            labels=["model"],
        )
        for kind in sorted(analytics.model_runs):
            duration.add_metric(
                [kind], analytics.model_runs[kind], analytics.model_seconds.get(kind, 0.0)
            )
        yield duration
        yield CounterMetricFamily(
            "nbedge_model_failures", "Model runs that failed.", analytics.failures
        )
        yield CounterMetricFamily(
            "nbedge_model_bundles_refused",
            "Model bundles refused (bad signature, card or outputs).",
            analytics.bundles_refused,
        )
        loaded = GaugeMetricFamily(
            "nbedge_model_loaded", "1 when a model of the kind is in use.", labels=["model"]
        )
        for kind, slot in sorted(analytics.models.items()):
            loaded.add_metric([kind], 0.0 if slot.model is None else 1.0)
        yield loaded
        error = GaugeMetricFamily(
            "nbedge_demand_forecast_cv_rmse_percent",
            "CV(RMSE) of the last 7 days' forecasts, per demand series.",
            labels=["series"],
        )
        for name, demand in sorted(analytics.demand.items()):
            if demand.cv_rmse_7d is not None:
                error.add_metric([name], demand.cv_rmse_7d)
        yield error

    def _local_api(self) -> Iterator[Metric]:
        local = self.status.local_api
        if local is None:
            return
        yield _by(
            CounterMetricFamily(
                "nbedge_local_api_refused",
                "Requests to the local API refused: a wrong token (unauthenticated), a role too"
                " low (forbidden), a missing CSRF token (csrf), a failed login (login), a login"
                " slowed down (slowed).",
                labels=["reason"],
            ),
            {
                "unauthenticated": local.auth_failures,
                "forbidden": local.forbidden,
                "csrf": local.csrf_refused,
                "login": local.logins_failed,
                "slowed": local.logins_slowed,
            },
        )
        yield GaugeMetricFamily(
            "nbedge_local_api_sessions", "Console sessions alive.", local.sessions
        )
