"""The typed status keeps the JSON ``/api/status`` served before it: the same keys in the same
order, the same values, and a snapshot of a lower package converted field for field."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from cloud_sync.client import SyncStatus, UplinkState, WireAgreement
from edge import status
from edge.store.disk import DiskStatus
from edge.store.store import StoreStats
from firmware_bridge.ble.scanner import ScannerStatus, SensorStatus
from firmware_bridge.modbus.bus import BusStatus, ConnectionState, DeviceState, DeviceStatus
from firmware_bridge.modbus.gate import CommandResult, GateStatus
from models.cessation import RESPONSES


def keys(text: str) -> list[str]:
    return text.split()


SERVED = {
    # The keys of each object of /api/status as the gateway served them before the typed models
    # (a running demo, December 2026): external users read them; none may go or move.
    "GatewayStatus": keys(
        "gateway site uptime_s ready modbus pipeline store mqtt uplink gates analytics ble "
        "active_alerts open_alerts escalation local_api"
    ),
    "BusStatusView": keys("endpoint connection connects devices"),
    "DeviceStatusView": keys(
        "name unit_id state last_ok_wall_time reads_ok reads_failed timeouts exceptions "
        "frame_errors decode_errors values_dropped consecutive_failures"
    ),
    "PipelineStatus": keys(
        "queued received dropped written batches write_failures access_queued access_received "
        "access_written access_overflow access_rejected states_received states_dropped"
    ),
    "StoreStatus": keys(
        "readings summaries active_alerts access_events forecasts outbox set_aside bytes evicted "
        "disk"
    ),
    "DiskStatusView": keys(
        "total_bytes free_bytes watermark_bytes reserve_bytes disk_full full_episodes full_errors"
    ),
    "MqttStatus": keys(
        "connected published pending connection_failures escalations_pending "
        "escalations_published escalations_dropped commands"
    ),
    "MqttCommandsStatus": keys("applied repeats ignored_empty refused"),
    "UplinkStatus": keys(
        "state records_sent batches_sent failures last_error last_success wire records_refused "
        "set_aside last_refusal commands_received"
    ),
    "WireAgreementView": keys("schema_version kinds central_version fingerprint"),
    "GateStatusView": keys(
        "name state fault epoch last_seq stored_seq events_read events_lost events_rejected "
        "commands last_command"
    ),
    "CommandResultView": keys(
        "gate command operator result state_before state_after elapsed_s detail"
    ),
    "AnalyticsStatus": keys(
        "models runs last_run_at next_run_at forecasts failures bundles_refused bundle_errors "
        "demand meters dwellings"
    ),
    "ModelSlotStatus": keys("model bundle previous swaps rollbacks invalid_outputs"),
    "DemandStatus": keys("status cv_rmse_7d hours_compared_7d capacity_kwh forecast"),
    "ForecastStatus": keys("start issued_at kwh model"),
    "MeterStatus": keys("status score"),
    "DwellingStatus": keys(
        "status score reason respond threshold past_alarms_per_month response_h choices"
    ),
    "RespondChoice": keys("threshold past_alarms_per_month response_h"),
    "BleStatus": keys(
        "adapter mode scanning healthy reason starts restarts failures advertisements frames "
        "rejected unconfigured sensors"
    ),
    "BleSensorStatus": keys(
        "name mac encrypted last_seen door_open battery rssi accepted rejected"
    ),
    "EscalationStatus": keys("policies escalated waiting_count waiting"),
    "EscalationWaiting": keys(
        "alert_id rule level next_level next_audience unacknowledged_s next_due_in_s paused"
    ),
    "LocalApiStatus": keys("people from_configuration people_file_problem auth_failures forbidden"),
}

ADDED = {
    # What the console needs that the services had at hand, added after the keys served before.
    "DeviceStatusView": ["online"],
    "BleSensorStatus": ["online"],
    "DwellingStatus": ["state", "quiet_h", "last_door_hour"],
    "LocalApiStatus": keys("sessions sessions_expired csrf_refused logins_failed logins_slowed"),
    "AnalyticsStatus": keys("model_runs model_seconds"),
    "GatewayStatus": ["maintenance_until"],
}
GROWN = {
    # Fields added since to a lower package's snapshot and its view alike, after the keys served.
    "StoreStatus": ["outbox_oldest_at"],
}
SNAPSHOTS: dict[type[BaseModel], type] = {
    # Each view and the lower package's dataclass it mirrors.
    status.DeviceStatusView: DeviceStatus,
    status.BusStatusView: BusStatus,
    status.DiskStatusView: DiskStatus,
    status.StoreStatus: StoreStats,
    status.WireAgreementView: WireAgreement,
    status.UplinkStatus: SyncStatus,
    status.CommandResultView: CommandResult,
    status.GateStatusView: GateStatus,
    status.BleSensorStatus: SensorStatus,
    status.BleStatus: ScannerStatus,
}


def models() -> list[type[BaseModel]]:
    """Every status model of ``edge.status``."""
    return [
        value
        for value in vars(status).values()
        if isinstance(value, type)
        and issubclass(value, status._Status)
        and value.__module__ == status.__name__
        and not value.__name__.startswith("_")
    ]


def test_every_key_served_before_is_served_in_the_same_order_and_the_additions_after() -> None:
    assert {model.__name__ for model in models()} == set(SERVED)
    for model in models():
        name = model.__name__
        expected = SERVED[name] + GROWN.get(name, []) + ADDED.get(name, [])
        assert list(model.model_fields) == expected, name


@pytest.mark.parametrize("view", list(SNAPSHOTS), ids=lambda view: view.__name__)
def test_a_view_has_every_field_of_the_snapshot_it_mirrors(view: type[BaseModel]) -> None:
    """``from_attributes`` reads the view's fields only: a field added to the dataclass and not
    to its view would silently be left out of the status."""
    snapshot = [f.name for f in fields(SNAPSHOTS[view])]
    assert list(view.model_fields) == snapshot + ADDED.get(view.__name__, [])


def served_before(snapshot: object) -> str:
    """The JSON of a snapshot as the gateway served it: ``asdict``, then pydantic's encoding of
    an untyped value (FastAPI's, for a route answering ``dict[str, Any]``)."""
    return json.dumps(to_jsonable_python(asdict(snapshot)))  # type: ignore[call-overload]


def without(document: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k not in keys}


def test_a_bus_snapshot_is_served_as_before_with_each_device_s_online_state() -> None:
    def device(name: str, state: DeviceState, last_ok: float | None, failures: int) -> DeviceStatus:
        return DeviceStatus(
            name=name, unit_id=3, state=state, last_ok_wall_time=last_ok, reads_ok=138,
            reads_failed=failures, timeouts=failures, exceptions=0, frame_errors=2,
            decode_errors=0, values_dropped=1, consecutive_failures=failures,
        )  # fmt: skip

    bus = BusStatus(
        endpoint="/dev/ttyUSB0",
        connection=ConnectionState.CONNECTED,
        connects=2,
        devices=(
            device("flat-1", DeviceState.ONLINE, 1_796_248_655.25, 0),
            device("flat-2", DeviceState.OFFLINE, None, 7),
            device("flat-3", DeviceState.UNKNOWN, None, 0),
        ),
    )
    view = status.BusStatusView.model_validate(bus, from_attributes=True)
    document = view.model_dump(mode="json")
    assert [d["online"] for d in document["devices"]] == [True, False, False]
    document["devices"] = [without(d, "online") for d in document["devices"]]
    assert json.dumps(document) == served_before(bus)


def test_gate_uplink_store_and_scanner_snapshots_are_served_as_before() -> None:
    gate = GateStatus(
        name="entrance", state="open", fault="none", epoch=1, last_seq=5, stored_seq=5,
        events_read=5, events_lost=0, events_rejected=0, commands=1,
        last_command=CommandResult(
            gate="entrance", command="open", operator="demo-operator", result="confirmed",
            state_before="closed", state_after="opening", elapsed_s=0.002,
        ),
    )  # fmt: skip
    uplink = SyncStatus(
        state=UplinkState.UP, records_sent=36, batches_sent=9, failures=0, last_error=None,
        last_success=datetime(2026, 12, 2, 21, 57, 27, 747_735, tzinfo=UTC),
        wire=WireAgreement(2, ("summary", "alert"), "0.1.0", "central 0.1.0 wire v2"),
        records_refused=1, set_aside=1, last_refusal="invalid: escalation_level",
    )  # fmt: skip
    store = StoreStats(
        readings=1662, summaries=4079, active_alerts=3, access_events=5, forecasts=1,
        outbox={"summary": 24}, set_aside={"alert_event": 1}, bytes=4_042_752, evicted={},
        disk=DiskStatus(270_553_174_016, 78_971_891_712, 67_108_864, 8_388_608, False, 0, 0),
    )  # fmt: skip
    for view, snapshot in (
        (status.GateStatusView, gate),
        (status.UplinkStatus, uplink),
        (status.StoreStatus, store),
    ):
        converted = view.model_validate(snapshot, from_attributes=True)
        assert json.dumps(converted.model_dump(mode="json")) == served_before(snapshot)
    scanner = ScannerStatus(
        adapter="hci0", mode="passive", scanning=True, healthy=True, reason=None, starts=1,
        restarts=0, failures=0, advertisements=40, frames=12, rejected={"replay": 1},
        unconfigured={"AA:BB:CC:DD:EE:FF": 3},
        sensors=(
            SensorStatus(
                name="entrance", mac="38:39:8F:00:00:01", encrypted=True, last_seen=1.79e9,
                door_open=True, battery=100.0, rssi=-71, accepted=12, rejected={"replay": 1},
            ),
        ),
    )  # fmt: skip
    ble = status.BleStatus.model_validate(scanner, from_attributes=True).model_dump(mode="json")
    assert [sensor.pop("online") for sensor in ble["sensors"]] == [None]  # DoorSensors fills it
    assert json.dumps(ble) == served_before(scanner)


def test_a_status_is_frozen_and_refuses_a_key_it_does_not_know() -> None:
    meter = status.MeterStatus(status="learning", score=None)
    with pytest.raises(ValidationError):
        meter.score = 1.0  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        status.MeterStatus.model_validate({"status": "learning", "score": None, "scor": 1.0})


def test_the_choices_of_respond_are_the_model_s() -> None:
    assert status.Respond.__args__ == RESPONSES  # type: ignore[attr-defined]
