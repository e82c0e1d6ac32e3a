"""``nbedge demo``: a whole building, broker, gateway and central API on 127.0.0.1.

Everything runs in this process but the broker (Mosquitto, a child process): the central API
(uvicorn, SQLite file), a simulated Eastron SDM630 meter behind a pymodbus TCP server, and the
gateway itself, configured through the same schema as a real one. The simulated meter pushes the
voltage of phase L1 out of EN 50160's band for 20 s every two minutes, so the alert is raised,
published on MQTT, synced, and cleared. The flat has BLE sensors (motion, a leak sensor, an
SOS button) that a simulated radio sends to the gateway's own scanner (``sim.radio``): the leak
and the press raise critical, latched alerts. The demo watches the central API's feeds and
prints what the platform would see.

The models need weeks of history, which a demo that has just started has not got: before the gateway
starts, the demo writes eight weeks of made-up hourly history into its store (summaries, as an
imported history would be), ending at the current hour. It is shaped to show every model's alert at
the first hourly run: the building's last hour is four times its usual use (``unusual_use``), the
flat has used nothing for four hours it is usually busy, and its motion sensor has seen nobody for
the last two (the run replays the day: ``use_quiet``, please check in, then ``use_stopped``, please
visit, when the motion sensor agrees), and the building's capacity is set below its usual evening
peak (``demand_capacity``, with the 24-hour forecast on the local page and at the central API).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import secrets
import shutil
import signal
import socket
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from edge.asgi import serve_app
from edge.daemon import Gateway
from edge.logs import configure_logging
from edge.schemas import GatewayConfig
from firmware_bridge.modbus.profiles import load_profile
from firmware_bridge.readings import Reading
from sim.bthome import ButtonEvent, SimulatedSensor
from sim.gate import RandomActivity, SimulatedGate
from sim.load_profile import ResidentialLoadProfile
from sim.meter import SimulatedMeter, VoltageEvent
from sim.modbus_server import SimulatedBuilding, drive_gates
from sim.radio import SimulatedRadio
from sim.sensors import LeakSensor, ShellyBluButton, ShellyBluMotion

SITE = "demo-site"
GATEWAY = "demo-gw"
GATE = "entrance"
GATE_UNIT = 2
ESCALATE_AFTER_S = 30
"""The demo's escalation of the flat's stop: every 30 s, to three audiences."""
SUMMARY_INTERVAL_S = 30
SHOWN_POINTS = {"voltage_l1", "total_power"}  # the demo prints these summaries (all are synced)
FLAT, FLAT_UNIT, FLAT_WATER, FLAT_WATER_UNIT = "flat-1", 3, "flat-1-water", 4
HISTORY_WEEKS = 8
VOLTAGE_EVENT = VoltageEvent(start_s=15.0, duration_s=20.0, voltage_v=262.0, period_s=120.0)
FLAT_MOTION, FLAT_LEAK, FLAT_SOS = "flat-1-motion", "flat-1-leak", "flat-1-sos"
MOTION_MAC, LEAK_MAC, SOS_MAC = "BC:02:6E:00:01:01", "BC:02:6E:00:01:02", "BC:02:6E:00:01:03"
MOTION_BEACON_S = 30.0
LEAK_AT_S = 20.0
"""The flat's leak sensor gets wet this long after the gateway starts, and stays wet."""
SOS_AT_S = 30.0
"""The flat's SOS button is pressed this long after the gateway starts."""
STOPPED_AFTER_H = 12.0
"""The flat's longer window: without a motion sensor that agrees, a visit after 12 quiet hours
(its made-up history is never quiet by day, so its own would be no longer than the check-in)."""


def port_or_free(preferred: int) -> int:
    """``preferred`` if nothing listens there on 127.0.0.1, else any free port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def mosquitto(state_dir: Path, port: int) -> AsyncIterator[None]:
    """A Mosquitto broker on 127.0.0.1:port for the demo, stopped on exit."""
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if binary is None:
        raise SystemExit(
            "nbedge demo needs Mosquitto: run `make demo`, or `sudo apt-get install mosquitto`"
        )
    conf = state_dir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n"
    )
    # Its own session: Ctrl-C at the terminal reaches the demo only, which stops the broker
    # last, after the gateway has said offline.
    proc = await asyncio.create_subprocess_exec(binary, "-c", str(conf), start_new_session=True)
    try:
        async with asyncio.timeout(10):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                await writer.wait_closed()
                break
        yield
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def demo_config(
    state_dir: Path,
    *,
    modbus_port: int,
    mqtt_port: int,
    central_port: int,
    local_port: int,
    token: str,
    operator_token: str,
    capacity_kwh: float = 1.0,
    timezone: str = "UTC",
    sos_key: bytes | None = None,
) -> GatewayConfig:
    """The demo gateway's configuration. With ``sos_key`` (the SOS button's bind key) the flat
    has its BLE sensors (motion, leak, SOS button), which the demo's simulated radio sends
    (``flat_sensors``); without, none, for a gateway run with no radio of its own."""
    return GatewayConfig.model_validate(
        {
            "gateway": {"id": GATEWAY, "site": SITE, "state_dir": str(state_dir / "gateway")},
            "store": {"summary_interval_s": SUMMARY_INTERVAL_S},
            "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
            "uplink": {
                "url": f"http://127.0.0.1:{central_port}",
                "token": token,
                "interval_s": 1.0,
            },
            "modbus": {
                "devices": [
                    {
                        "name": "main-meter",
                        "label": "1号楼总电表",
                        "profile": "eastron_sdm630",
                        "host": "127.0.0.1",
                        "port": modbus_port,
                        "unit_id": 1,
                        "poll_interval_s": 1.0,
                    },
                    {
                        "name": FLAT,
                        "label": "2单元301室电表",
                        "profile": "eastron_sdm120",
                        "host": "127.0.0.1",
                        "port": modbus_port,
                        "unit_id": FLAT_UNIT,
                    },
                    {
                        "name": FLAT_WATER,
                        "label": "2单元301室水表",
                        "profile": "advantech_adam6050_water",
                        "host": "127.0.0.1",
                        "port": modbus_port,
                        "unit_id": FLAT_WATER_UNIT,
                    },
                ],
                "gates": [
                    {
                        "name": GATE,
                        "label": "3号楼东门",
                        "host": "127.0.0.1",
                        "port": modbus_port,
                        "unit_id": GATE_UNIT,
                    }
                ],
            },
            "local_api": {
                "host": "127.0.0.1",
                "port": local_port,
                "operators": [
                    {
                        "name": "demo-operator",
                        "token_sha256": hashlib.sha256(operator_token.encode()).hexdigest(),
                    }
                ],
            },
            "site": {"label": "幸福里3号楼", "timezone": timezone},
            # Fast, so that the demo shows it: the flat's stop escalates every 30 s.
            "alerts": {
                "escalation": [
                    {
                        "rule": "use_stopped",
                        "after_s": ESCALATE_AFTER_S,
                        "every_s": ESCALATE_AFTER_S,
                        "levels": ["family", "grid_worker", "community_office"],
                    }
                ]
            },
            "models": {
                "demand": [
                    {
                        "name": "building",
                        "meters": ["main-meter:import_energy"],
                        "capacity_kwh": capacity_kwh,
                    }
                ],
                "anomaly": [{"meter": "main-meter:import_energy"}],
                "dwellings": [
                    {
                        "name": FLAT,
                        "label": "2单元301室 (李奶奶)",
                        "meters": [f"{FLAT}:import_energy", f"{FLAT_WATER}:volume"],
                    }
                    | (
                        {}
                        if sos_key is None
                        # the visit when the motion sensor agrees; without it, after 12 h
                        else {"motion": [FLAT_MOTION], "stopped_after_h": STOPPED_AFTER_H}
                    )
                ],
            },
            "ble": {"sensors": [] if sos_key is None else _flat_ble(sos_key)},
            "log": {"level": "warning", "format": "text"},
        }
    )


def _flat_ble(sos_key: bytes) -> list[dict[str, Any]]:
    """The flat's BLE sensors as the configuration names them."""
    return [
        {"name": FLAT_MOTION, "kind": "motion", "label": "2单元301室人体感应", "mac": MOTION_MAC},
        {"name": FLAT_LEAK, "kind": "leak", "label": "2单元301室卫生间", "mac": LEAK_MAC},
        {
            "name": FLAT_SOS,
            "kind": "button",
            "label": "2单元301室紧急按钮",
            "mac": SOS_MAC,
            "bind_key": sos_key.hex(),
            "sos_press": "any",
        },
    ]


def flat_sensors(start: float, sos_key: bytes) -> list[SimulatedSensor]:
    """The flat's sensors, switched on at ``start`` (wall time): the motion sensor sees nobody
    (the resident whose use has stopped), the leak sensor gets wet at ``LEAK_AT_S`` and the
    SOS button is pressed at ``SOS_AT_S``."""
    return [
        ShellyBluMotion(MOTION_MAC, start=start, beacon_interval_s=MOTION_BEACON_S),
        LeakSensor(LEAK_MAC, start=start, active_between=[(LEAK_AT_S, math.inf)]),
        ShellyBluButton(
            SOS_MAC, bind_key=sos_key, start=start, presses=[(SOS_AT_S, ButtonEvent.PRESS)]
        ),
    ]


@dataclass(frozen=True, slots=True)
class DemoHistory:
    """Hourly use of the demo's meters before the current hour, and where their counters end."""

    building_kwh: np.ndarray
    flat_kwh: np.ndarray
    flat_litres: np.ndarray
    flat_moved: np.ndarray
    """1 for an hour in which the flat's motion sensor saw the resident, else 0."""
    end_hour: int

    @property
    def capacity_kwh(self) -> float:
        """Below the building's usual daily peak, so that the demo shows ``demand_capacity``."""
        days = self.building_kwh[:-24].reshape(-1, 24)
        return round(0.8 * float(np.median(days.max(axis=1))), 1)


def demo_timezone(now: float) -> tuple[str, int]:
    """A fixed-offset time zone where it is mid-afternoon at ``now``, and its offset in hours.

    The flat's quiet spell must fall in hours it is usually busy, and its nights must be nights,
    whenever the demo runs: the demo building stands where it is 15:00 or so.
    """
    utc_hour = datetime.fromtimestamp(now, UTC).hour
    offset = (15 - utc_hour + 12) % 24 - 12  # -12 .. +11
    name = "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-3 is UTC+3
    return name, offset


def demo_history(now: float, seed: int = 11) -> DemoHistory:
    """Eight weeks of made-up hourly use ending at the hour of ``now`` (see the module doc)."""
    rng = np.random.default_rng(seed)
    _, offset = demo_timezone(now)
    end_hour = int(now // 3600) * 3600
    hours = HISTORY_WEEKS * 168
    profile = ResidentialLoadProfile(base_w=4000, morning_peak_w=9000, evening_peak_w=16000)
    local_starts = [end_hour - (hours - h) * 3600 + offset * 3600 for h in range(hours)]
    building = np.array(
        [
            np.mean([profile.shape_w(datetime.fromtimestamp(t + m * 600, UTC)) for m in range(6)])
            / 1000
            for t in local_starts
        ]
    ) * rng.uniform(0.93, 1.07, hours)
    building[-1] *= 4.0  # the last hour: four times the usual
    # The flat is lived in from 07:00 to 23:00 local, every day.
    local_hour = np.array([datetime.fromtimestamp(t, UTC).hour for t in local_starts])
    active = (local_hour >= 7) & (local_hour < 23) & (rng.random(hours) < 0.97)
    flat = 0.06 + rng.uniform(0, 0.02, hours) + active * rng.uniform(0.2, 0.9, hours)
    litres = np.where(active & (rng.random(hours) < 0.9), rng.uniform(5, 40, hours), 0.0)
    moved = (active & (rng.random(hours) < 0.95)).astype(np.float64)
    flat[-4:] = 0.07  # quiet for the last four hours (about 11:00 to 15:00 local)
    litres[-4:] = 0.0
    moved[-4:] = [1.0, 1.0, 0.0, 0.0]  # she moved about for two of them, then nobody
    return DemoHistory(building, flat, litres, moved, end_hour)


async def seed_history(config: GatewayConfig, history: DemoHistory) -> None:
    """Write the history into the gateway's store as hourly summaries, before the gateway runs."""
    from edge.clock import Clock
    from edge.store import Store

    start = history.end_hour - len(history.building_kwh) * 3600
    series = (
        ("main-meter", "import_energy", "kWh", history.building_kwh),
        (FLAT, "import_energy", "kWh", history.flat_kwh),
        (FLAT_WATER, "volume", "m3", history.flat_litres / 1000),
    )
    readings = []
    for device, point, unit, hourly in series:
        total = 0.0
        for hour, used in enumerate(hourly):
            for k in range(2):
                total += float(used) / 2
                at = start + hour * 3600 + k * 1800 + 900
                readings.append(Reading(device, point, total, unit, at, 0))
    if any(sensor.name == FLAT_MOTION for sensor in config.ble.sensors):
        # the motion sensor's state as it sends it: 1 when it sees her, 0 a while after
        for hour, seen in enumerate(history.flat_moved):
            for k, state in enumerate((float(seen), 0.0)):
                at = start + hour * 3600 + k * 1500 + 600
                readings.append(Reading(FLAT_MOTION, "motion", state, "", at, 0))
    counters = frozenset((device, point) for device, point, _, _ in series)
    clock = Clock(synchronised=lambda: True)
    async with Store(
        config.database_path, gateway_id=config.gateway.id, counters=counters, clock=clock
    ) as store:
        await store.write(readings, [])
        await store.summarise(now=history.end_hour + 10, interval_s=3600, grace_s=5)
    # Made-up history stays on the gateway: the central API gets the live summaries only.
    with contextlib.closing(sqlite3.connect(config.database_path)) as conn, conn:
        conn.execute("DELETE FROM outbox WHERE kind = 'summary'")


async def run_demo(*, state_dir: Path | None = None, duration_s: float | None = None) -> int:
    from cloud_sync.central import admin
    from cloud_sync.central.app import create_app
    from cloud_sync.central.settings import CentralSettings

    configure_logging("warning", "text")
    if state_dir is None:
        state_dir = Path(tempfile.mkdtemp(prefix="nbedge-demo-"))
    state_dir.mkdir(parents=True, exist_ok=True)

    central_port, local_port = port_or_free(8800), port_or_free(8801)
    mqtt_port = port_or_free(1883)
    engine = admin.make_engine(f"sqlite:///{state_dir / 'central.db'}")
    admin.init_db(engine)
    admin.register_site(engine, SITE, "Demo building")
    gateway_token = admin.register_gateway(engine, SITE, GATEWAY)
    engine.dispose()
    platform_token = secrets.token_urlsafe(24)
    central = create_app(
        CentralSettings(
            database_url=f"sqlite:///{state_dir / 'central.db'}",
            platform_token=platform_token,  # type: ignore[arg-type]
        )
    )

    history = demo_history(time.time())
    meter = SimulatedMeter(
        load_profile("eastron_sdm630"),
        ResidentialLoadProfile(),
        start=datetime.now(tz=UTC),
        voltage_events=[VOLTAGE_EVENT],
        initial_energy_kwh=float(np.sum(history.building_kwh)),
    )
    flat_load = ResidentialLoadProfile(base_w=80, morning_peak_w=600, evening_peak_w=900)
    flat = SimulatedMeter(
        load_profile("eastron_sdm120"),
        flat_load,
        start=datetime.now(tz=UTC),
        initial_energy_kwh=float(np.sum(history.flat_kwh)),
    )
    water = SimulatedMeter(
        load_profile("advantech_adam6050_water"),
        flat_load,
        start=datetime.now(tz=UTC),
        initial_volume_m3=float(np.sum(history.flat_litres)) / 1000,
    )
    gate = SimulatedGate(travel_s=3.0, auto_close_s=8.0)
    operator_token = secrets.token_urlsafe(24)
    sos_key = secrets.token_bytes(16)
    stop = asyncio.Event()
    async with (
        mosquitto(state_dir, mqtt_port),
        SimulatedBuilding(
            {1: meter, FLAT_UNIT: flat, FLAT_WATER_UNIT: water},
            gates={GATE_UNIT: gate},
            port=port_or_free(5020),
        ) as building,
        asyncio.TaskGroup() as tasks,
    ):
        badges = tasks.create_task(
            drive_gates(building, {GATE_UNIT: RandomActivity(events_per_minute=6.0)})
        )
        central_started = asyncio.Event()
        central_task = tasks.create_task(
            serve_app(central, host="127.0.0.1", port=central_port, started=central_started)
        )
        await central_started.wait()
        config = demo_config(
            state_dir,
            modbus_port=building.port,
            mqtt_port=mqtt_port,
            central_port=central_port,
            local_port=local_port,
            token=gateway_token,
            operator_token=operator_token,
            capacity_kwh=history.capacity_kwh,
            timezone=demo_timezone(time.time())[0],
            sos_key=sos_key,
        )
        await seed_history(config, history)
        console_password = demo_people(config)
        # The flat's sensors start with the gateway; the printed times count from then.
        started = time.monotonic()
        radio = SimulatedRadio(flat_sensors(time.time(), sos_key))
        gateway = Gateway(config, scanner_factory=radio)
        gateway_task = tasks.create_task(gateway.run(stop))
        await gateway.ready.wait()
        _print_guide(
            state_dir,
            central_port,
            mqtt_port,
            local_port,
            platform_token,
            building.port,
            operator_token,
            console_password,
        )
        watcher = tasks.create_task(
            _watch_central(
                central_port, platform_token, mqtt_port, local_port, operator_token, started
            )
        )
        # Ctrl-C or SIGTERM stop the demo in order, as they stop a gateway: the gateway first
        # (it flushes and says offline), then the central API, the simulator and the broker.
        finish = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, finish.set)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finish.wait(), duration_s)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            stop.set()
            await gateway_task
            watcher.cancel()
            badges.cancel()
            central_task.cancel()
    print(f"demo stopped; its files are in {state_dir}", flush=True)
    return 0


RESPONDER = "wang.fang"


def demo_people(config: GatewayConfig) -> str:
    """A grid worker who may act on alerts in the console (王芳); her new password."""
    from edge.people import PeopleStore, Role

    password = secrets.token_urlsafe(9)
    people = PeopleStore.for_gateway(config)
    config.gateway.state_dir.mkdir(parents=True, exist_ok=True)
    if people.find(RESPONDER) is None:
        people.add(RESPONDER, Role.RESPONDER, display="王芳", password=password)
    else:
        people.set_password(RESPONDER, password)
    return password


def _print_guide(
    state_dir: Path,
    central_port: int,
    mqtt_port: int,
    local_port: int,
    platform_token: str,
    modbus_port: int,
    operator_token: str,
    console_password: str,
) -> None:
    central = f"http://127.0.0.1:{central_port}"
    event = VOLTAGE_EVENT
    auth = f"-H 'Authorization: Bearer {platform_token}'"
    print(
        f"""
nbedge demo: a simulated building on 127.0.0.1 (Ctrl-C to stop)

central API   {central}/docs
  summaries   curl {auth} {central}/v1/sites/{SITE}/summaries
  alerts      curl {auth} {central}/v1/sites/{SITE}/alerts
  access      curl {auth} {central}/v1/sites/{SITE}/access-events
  forecasts   curl {auth} {central}/v1/sites/{SITE}/forecasts
MQTT          mosquitto_sub -h 127.0.0.1 -p {mqtt_port} -t 'nbedge/#' -v
console       http://127.0.0.1:{local_port}/  (a phone's browser; status JSON at /api/status)
  log in as   {RESPONDER} (王芳, a grid worker: a responder), password {console_password}
meter         Eastron SDM630 (simulated) on Modbus TCP 127.0.0.1:{modbus_port}, unit 1
gate          "{GATE}" (simulated badge traffic) on the same endpoint, unit {GATE_UNIT}; open it:
  curl -X POST -H 'Authorization: Bearer {operator_token}' http://127.0.0.1:{local_port}/api/gates/{GATE}/open
files         {state_dir}

Summaries cover {SUMMARY_INTERVAL_S} s; the first reaches the central API within a minute.
Models: the gateway's store holds {HISTORY_WEEKS} weeks of made-up history, shaped so that
the first hourly run shows every model's alert: the building's last hour was four times its
usual use (unusual_use), the flat ("{FLAT}", units {FLAT_UNIT} and {FLAT_WATER_UNIT}) has used
nothing for four hours it is usually busy, and its motion sensor has seen nobody for the last
two: a quiet home in two stages, use_quiet first (a warning: please phone to check in), then
use_stopped when the motion sensor agrees (critical: please visit), and the building's capacity
is set below its usual evening peak (demand_capacity). The 24-hour forecast is on the local page
and at the central API. So that the flat's quiet hours are daytime ones whenever the demo
runs, the building stands in time zone {demo_timezone(time.time())[0]}, where it is mid-afternoon.
Phase L1 goes to {event.voltage_v:.0f} V {event.start_s:.0f} s after the start, for \
{event.duration_s:.0f} s, every {event.period_s:.0f} s.

The flat's BLE sensors, heard through a simulated radio (no Bluetooth adapter needed; the
frames go through the gateway's whole BLE path, the SOS button's encrypted):
  {FLAT_MOTION}  Shelly BLU Motion: sees nobody (motion 0, a frame every {MOTION_BEACON_S:.0f} s);
                 its history says whether she moved in each hour, for use_stopped
  {FLAT_LEAK}    a leak sensor: wet {LEAK_AT_S:.0f} s after the gateway starts -> water_leak
  {FLAT_SOS}     Shelly BLU Button: pressed {SOS_AT_S:.0f} s after the gateway starts -> sos
Both alerts are critical and latched: they reach MQTT and the central API within seconds and
stay open until a person resolves them (console, MQTT or platform); a press again adds an event.

What the platform sees at the central API (seconds since the gateway started):
""",
        flush=True,
    )


async def _watch_central(
    port: int,
    platform_token: str,
    mqtt_port: int,
    local_port: int,
    operator_token: str,
    started: float,
) -> None:
    """Print new summaries and alert events from the central API's feeds, as the platform would,
    with the time since ``started`` (monotonic: the gateway's start); once the flat's stop is
    raised, how to act on it from the three places."""
    cursors = {"summaries": 0, "alerts": 0, "access-events": 0, "forecasts": 0}
    headers = {"Authorization": f"Bearer {platform_token}"}
    guided: set[str] = set()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=5
    ) as client:
        while True:
            await asyncio.sleep(2)
            for feed in cursors:
                try:
                    response = await client.get(
                        f"/v1/sites/{SITE}/{feed}", params={"after": cursors[feed]}
                    )
                    response.raise_for_status()
                except httpx.HTTPError as exc:
                    print(f"  central API: {exc}", flush=True)
                    continue
                page = response.json()
                for item in page["items"]:
                    if feed == "summaries" and item["point"] not in SHOWN_POINTS:
                        continue
                    print(
                        f"  +{time.monotonic() - started:5.0f} s  {_describe(feed, item)}",
                        flush=True,
                    )
                    first_stop = feed == "alerts" and item["code"] == "use_stopped"
                    if first_stop and item["alert_id"] not in guided:
                        guided.add(item["alert_id"])
                        guide = _act_guide(
                            item["alert_id"],
                            port,
                            platform_token,
                            mqtt_port,
                            local_port,
                            operator_token,
                        )
                        print(guide, flush=True)
                cursors[feed] = page["next_cursor"]


def _act_guide(
    alert_id: str,
    central_port: int,
    platform_token: str,
    mqtt_port: int,
    local_port: int,
    operator_token: str,
) -> str:
    """How to act on the flat's alert, from the platform, over MQTT and on the local API."""
    alerts = f"nbedge/{SITE}/{GATEWAY}/alerts/{alert_id}"
    central = f"http://127.0.0.1:{central_port}/v1/sites/{SITE}/gateways/{GATEWAY}"
    local = f"http://127.0.0.1:{local_port}/api/alerts/{alert_id}"
    json_type = "-H 'Content-Type: application/json'"
    return f"""
  The flat has stopped: someone must go. Nobody acknowledges it yet, so it escalates every
  {ESCALATE_AFTER_S} s (the family, the grid worker, the community office). Act on it:
    from the platform (the work-order desk acknowledges it for a grid worker):
      curl -X POST -H 'Authorization: Bearer {platform_token}' {json_type} \\
        -d '{{"by": "王芳", "note": "on my way"}}' {central}/alerts/{alert_id}/acknowledge
    watch it on MQTT (condition, human state, who):
      mosquitto_sub -h 127.0.0.1 -p {mqtt_port} -t '{alerts}' -t '{alerts}/escalation/#' -v
    or acknowledge it over MQTT as a person of the gateway:
      mosquitto_pub -h 127.0.0.1 -p {mqtt_port} -t '{alerts}/set/demo-operator' \\
        -m '{{"action": "acknowledge", "note": "on my way"}}'
    resolve it on the local API, with the outcome, once someone has been:
      curl -X POST -H 'Authorization: Bearer {operator_token}' {json_type} \\
        -d '{{"outcome": "resident_ok", "note": "she was asleep"}}' {local}/resolve
"""


def _describe_alert(item: dict[str, Any]) -> str:
    """One alert event as the platform sees it, with the time it took to acknowledge."""
    event = item["event"]
    text = item["message"] if event in ("raised", "cleared") else item["text"]["en"]
    line = f"alert {event:7} {item['device']}/{item['point']}: {text}"
    if event == "acknowledged":
        waited = datetime.fromisoformat(item["at"]) - datetime.fromisoformat(item["raised_at"])
        line += f" ({waited.total_seconds():.0f} s after it was raised, via {item['via']})"
    return line


def _describe(feed: str, item: dict[str, Any]) -> str:
    if feed == "forecasts":
        hours = item["hours"]
        peak = max(range(len(hours)), key=hours.__getitem__)
        first = int(str(item["start"])[11:13])
        return (
            f"forecast {item['series']} for the 24 h from {first:02d}:00 UTC: "
            f"peak {hours[peak]:.1f} kWh at {(first + peak) % 24:02d}:00, "
            f"total {sum(hours):.0f} kWh ({item['model']})"
        )
    if feed == "access-events":
        who = f" credential {item['credential_ref'][:8]}..." if item["credential_ref"] else ""
        why = f" ({item['detail']})" if item["detail"] else ""
        return f"access  {item['event']:11} {item['device']}{who}{why}"
    if feed == "alerts":
        return _describe_alert(item)
    period = str(item["period_start"])[11:19]
    return (
        f"summary {item['device']}/{item['point']:13} from {period} UTC: "
        f"n={item['count']} mean={item['mean']:.2f} {item['unit']} "
        f"min={item['min']:.2f} max={item['max']:.2f}"
    )
