"""nbedge and ThingsBoard IoT Gateway polling the same simulated SDM630 meters every second.

For each meter count (20 and 50 by default) the same building is served twice, once per gateway,
each time by a fresh simulator in a process of its own (this script run with ``--serve-sim``), so
the simulator's CPU is counted against neither gateway. The topology is the usual one for RS-485
meters: a Modbus TCP gateway in the meter cabinet, one TCP endpoint with the meters behind it on
unit ids 1..N (``--topology per-meter``: each meter its own endpoint instead). Both gateways
keep one connection per endpoint and send one request at a time on it (nbedge's bus owner by
design, ThingsBoard through pymodbus's per-client transaction lock).

Both gateways read every point of ``firmware_bridge/profiles/eastron_sdm630.toml`` (13 float32,
high word first, input registers) every ``--interval`` seconds, with a 1 s timeout and one
retry. nbedge runs as the real daemon (``nbedge run``: bus owners, pipeline, rules, SQLite
store; MQTT, uplink and the local API off); it coalesces neighbouring registers into 3 reads per
meter. ThingsBoard IoT Gateway (PyPI ``thingsboard-gateway``, its Modbus connector, in a virtual
environment of its own that this script creates when missing) reads each point as configured,
13 reads per meter, and publishes to a local Mosquitto; a small client in this script stands in
for the ThingsBoard server: it answers the gateway's ``getSessionLimits`` RPC (without the
answer the gateway never publishes) and counts what arrives on ``v1/gateway/telemetry``.

What is measured, at the simulator for both gateways alike: every request is logged (unit,
monotonic time, function, address, count) by a wrapper around the simulator's per-unit request
hook. After a warm-up, over a window of ``--seconds``: Modbus reads/s answered, registers/s and
values/s (profile points carried by the answers); poll cycles (a cycle of a meter starts with the
request for its lowest address) done against expected, missed cycles (a whole interval between
two cycle starts of one meter with no cycle start), and jitter, the gap between consecutive cycle
starts of one meter minus the interval (p50, p99, max). At the gateway: CPU (user + system time
of its process tree over the window, in % of one core, and per read and per value) and peak RSS
(VmHWM summed over its process tree). Downstream: the readings nbedge stored in SQLite in the
window (by their monotonic time stamp); the telemetry messages and values ThingsBoard published
in the window. "Other processes" is the machine's remaining busy time in the window (broker,
this script, anything else): a high figure means a disturbed run. Ratios are nbedge / ThingsBoard.

    .venv/bin/python bench/modbus_poll.py [--meters 20 50] [--seconds 60] [--interval 1.0]
        [--topology shared|per-meter] [--dir /tmp] [--tb-venv .bench-venv/thingsboard] [--skip-tb]
        [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

from pymodbus.constants import ExcCodes

from firmware_bridge.modbus.profiles import DeviceProfile, load_profile
from sim.meter import SimulatedMeter
from sim.modbus_server import SimulatedBuilding, meters_for

PROFILE: Final = "eastron_sdm630"
TB_VERSION: Final = "3.8.5"
TB_PREINSTALL: Final = ("pymodbus==3.9.2", "pyserial", "pyserial-asyncio")
MOSQUITTO: Final = shutil.which("mosquitto") or "/usr/sbin/mosquitto"  # Debian: not on a user PATH
READY_TIMEOUT_S: Final = 90.0
STOP_TIMEOUT_S: Final = 15.0
TELEMETRY_TOPIC: Final = "v1/gateway/telemetry"
RPC_REQUEST_PREFIX: Final = "v1/devices/me/rpc/request/"
RPC_RESPONSE_PREFIX: Final = "v1/devices/me/rpc/response/"
SESSION_LIMITS: Final = {  # what the gateway's client reads (tb_device_mqtt.py, tb_gateway_mqtt.py)
    "maxPayloadSize": 65536,
    "maxInflightMessages": 100,
    "rateLimits": {},  # empty: no limit
    "gatewayRateLimits": {},
}

Topology = Literal["shared", "per-meter"]
# unit, monotonic time, function code, address, count, answered without an exception
Request = tuple[int, float, int, int, int, bool]
_Action = Callable[
    [int, int, int, int, list[int], list[int] | list[bool] | None],
    Coroutine[None, None, ExcCodes | None],
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start") from None
            time.sleep(0.05)


# --- the simulator, in its own process ---------------------------------------------------------


class LoggedBuilding(SimulatedBuilding):
    """A :class:`SimulatedBuilding` that logs every request it answers."""

    def __init__(
        self, meters: dict[int, SimulatedMeter], requests: list[Request], **options: Any
    ) -> None:
        super().__init__(meters, **options)
        self.requests = requests

    def _action(self, unit: int) -> _Action:
        serve = super()._action(unit)
        requests = self.requests

        async def logged(
            function_code: int,
            start_address: int,
            address: int,
            count: int,
            registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            received = time.monotonic()
            result = await serve(
                function_code, start_address, address, count, registers, set_values
            )
            requests.append((unit, received, function_code, address, count, result is None))
            return result

        return logged


def write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value))


async def serve_sim(meters: int, topology: Topology, ready: Path, log: Path) -> None:
    """Serve ``meters`` SDM630 meters until SIGTERM, then write the request log to ``log``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    requests: list[Request] = []
    start = datetime.now()
    groups = (
        [dict.fromkeys(range(1, meters + 1), PROFILE)]
        if topology == "shared"
        else [{unit: PROFILE} for unit in range(1, meters + 1)]
    )
    async with contextlib.AsyncExitStack() as stack:
        ports = []
        for group in groups:
            building = LoggedBuilding(meters_for(group, start=start), requests, port=0)
            await stack.enter_async_context(building)
            ports.append(building.port)
        write_json(ready, {"ports": ports})
        await stop.wait()
    write_json(log, requests)


@dataclass
class Simulator:
    """The simulator process of one run: its endpoints and, after :meth:`stop`, its log."""

    proc: subprocess.Popen[bytes]
    ports: list[int]
    log: Path

    @classmethod
    def start(cls, folder: Path, meters: int, topology: Topology) -> Simulator:
        ready, log = folder / "sim-ready.json", folder / "sim-requests.json"
        with (folder / "sim.log").open("wb") as out:
            proc = subprocess.Popen(
                [
                    *(sys.executable, __file__, "--serve-sim", "--meters", str(meters)),
                    *("--topology", topology, "--sim-ready", str(ready), "--sim-log", str(log)),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_process(proc)
                raise SystemExit(f"the simulator did not start (see {folder / 'sim.log'})")
            time.sleep(0.05)
        time.sleep(0.05)  # the file is written in one call; let it land
        return cls(proc, list(json.loads(ready.read_text())["ports"]), log)

    def endpoint(self, unit: int) -> tuple[str, int]:
        return "127.0.0.1", self.ports[0] if len(self.ports) == 1 else self.ports[unit - 1]

    def stop(self) -> list[Request]:
        stop_process(self.proc)
        if not self.log.exists():
            raise SystemExit("the simulator left no request log")
        return [tuple(r) for r in json.loads(self.log.read_text())]


def start_logged(
    command: list[str],
    log: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a session of its own, its output to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it is still there after STOP_TIMEOUT_S."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)


# --- process accounting ------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and its living descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text()
                todo.extend(int(child) for child in children.split())
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid``'s process tree."""
    ticks = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{member}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time every core of the machine spent busy (all processes), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Window:
    """The measured window: its bounds and the CPU seconds spent in it, per party."""

    t0: float
    t1: float
    gateway_cpu_s: float
    sim_cpu_s: float
    other_cpu_s: float  # every other process on the machine (broker, this script, anything else)
    rss_mb: float


async def measure(gateway: int, sim: int, seconds: float) -> Window:
    """CPU of the gateway's and the simulator's process trees, and of the rest, over ``seconds``."""
    gw0, sim0, all0, t0 = (
        cpu_seconds(gateway),
        cpu_seconds(sim),
        machine_busy_seconds(),
        time.monotonic(),
    )
    await asyncio.sleep(seconds)
    gw1, sim1, all1, t1 = (
        cpu_seconds(gateway),
        cpu_seconds(sim),
        machine_busy_seconds(),
        time.monotonic(),
    )
    gw, sm = gw1 - gw0, sim1 - sim0
    return Window(t0, t1, gw, sm, max(0.0, all1 - all0 - gw - sm), peak_rss_mb(gateway))


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) summed over ``pid``'s process tree, in MB."""
    kb = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    kb += int(line.split()[1])
    return kb / 1024


# --- what the simulator saw --------------------------------------------------------------------


@dataclass(frozen=True)
class PollStats:
    reads: int
    failed: int
    registers: int
    values: int
    cycles: int
    expected: int
    missed: int
    jitter_ms: tuple[float, float, float]  # p50, p99, max


def percentile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def poll_stats(
    requests: Sequence[Request],
    profile: DeviceProfile,
    meters: int,
    window: tuple[float, float],
    interval: float,
) -> PollStats:
    """Reads, values, cycles and jitter in ``window`` (monotonic seconds), see the module doc."""
    t0, t1 = window
    points = [(p.address, p.count) for p in profile.points if p.function == "input"]
    first = min(address for address, _ in points)
    covered: dict[tuple[int, int], int] = {}
    reads = failed = registers = values = 0
    starts: dict[int, list[float]] = defaultdict(list)
    for unit, t, function, address, count, ok in sorted(requests, key=lambda r: r[1]):
        if function == 4 and address == first and ok:
            starts[unit].append(t)
        if not t0 <= t < t1:
            continue
        if not ok:
            failed += 1
            continue
        reads += 1
        registers += count
        key = (address, count)
        if key not in covered:
            covered[key] = sum(address <= a and a + n <= address + count for a, n in points)
        values += covered[key]
    cycles = missed = 0
    jitter: list[float] = []
    for unit in range(1, meters + 1):
        before = [t for t in starts[unit] if t < t0]
        inside = [t for t in starts[unit] if t0 <= t < t1]
        cycles += len(inside)
        chain = before[-1:] + inside
        if not chain:
            missed += round((t1 - t0) / interval)
            continue
        for a, b in itertools.pairwise(chain):
            missed += max(0, round((b - a) / interval) - 1)
            jitter.append((b - a - interval) * 1000)
        missed += max(0, round((t1 - chain[-1]) / interval) - 1)
    jitter.sort()
    return PollStats(
        reads=reads,
        failed=failed,
        registers=registers,
        values=values,
        cycles=cycles,
        expected=round(meters * (t1 - t0) / interval),
        missed=missed,
        jitter_ms=(
            percentile(jitter, 0.5),
            percentile(jitter, 0.99),
            max(jitter, default=math.nan),
        ),
    )


@dataclass
class RunResult:
    gateway: str
    meters: int
    window: Window
    polls: PollStats
    downstream: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.window.t1 - self.window.t0

    def rate(self, count: float) -> float:
        return count / self.seconds


# --- nbedge ------------------------------------------------------------------------------------


def nbedge_config(folder: Path, sim: Simulator, meters: int, interval: float) -> Path:
    lines = [
        "[gateway]",
        'id = "bench-gw"',
        'site = "bench-site"',
        f'state_dir = "{folder / "state"}"',
        "",
        "[mqtt]",
        "enabled = false",
        "",
        "[local_api]",
        "enabled = false",
        "",
        "[log]",
        'level = "warning"',
        'format = "text"',
    ]
    for unit in range(1, meters + 1):
        host, port = sim.endpoint(unit)
        lines += [
            "",
            "[[modbus.devices]]",
            f'name = "meter-{unit}"',
            f'profile = "{PROFILE}"',
            f'host = "{host}"',
            f"port = {port}",
            f"unit_id = {unit}",
            f"poll_interval_s = {interval}",
            "timeout_s = 1.0",
        ]
    path = folder / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def stored_readings(db: Path, window: tuple[float, float] | None = None) -> int:
    """Readings in the store (in ``window`` by their monotonic stamp); 0 if none yet."""
    if not db.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
            if window is None:
                row = con.execute("SELECT count(*) FROM readings").fetchone()
            else:
                t0, t1 = (round(t * 1e9) for t in window)
                row = con.execute(
                    "SELECT count(*) FROM readings WHERE monotonic_ns >= ? AND monotonic_ns < ?",
                    (t0, t1),
                ).fetchone()
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    return int(row[0])


async def run_nbedge(
    folder: Path, meters: int, topology: Topology, seconds: float, warmup: float, interval: float
) -> RunResult:
    profile = load_profile(PROFILE)
    sim = Simulator.start(folder, meters, topology)
    gateway: subprocess.Popen[bytes] | None = None
    try:
        config = nbedge_config(folder, sim, meters, interval)
        db = folder / "state" / "gateway.db"
        gateway = start_logged(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
            folder / "nbedge.log",
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while stored_readings(db) == 0:
            if gateway.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"nbedge stored no reading (see {folder / 'nbedge.log'})")
            await asyncio.sleep(0.2)
        await asyncio.sleep(warmup)
        window = await measure(gateway.pid, sim.proc.pid, seconds)
        stop_process(gateway)  # a clean stop flushes the queue into the store
        requests = sim.stop()
    finally:
        if gateway is not None:
            stop_process(gateway)
        stop_process(sim.proc)
    return RunResult(
        gateway="nbedge",
        meters=meters,
        window=window,
        polls=poll_stats(requests, profile, meters, (window.t0, window.t1), interval),
        downstream={"readings stored": stored_readings(db, (window.t0, window.t1))},
    )


# --- ThingsBoard IoT Gateway -------------------------------------------------------------------


def tb_python(venv: Path) -> Path:
    """The ThingsBoard gateway's interpreter, installing it into ``venv`` when missing."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import thingsboard_gateway.version as v; print(v.VERSION)"]
    if python.exists():
        found = subprocess.run(probe, capture_output=True, text=True, check=False)
        if found.returncode == 0 and found.stdout.strip() == TB_VERSION:
            return python
    print(f"installing thingsboard-gateway {TB_VERSION} into {venv} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    # Its Modbus connector pip-installs pymodbus 3.9.2 at run time unless it is there already.
    subprocess.run([*pip, *TB_PREINSTALL], check=True)
    subprocess.run([*pip, f"thingsboard-gateway=={TB_VERSION}"], check=True)
    subprocess.run(probe, check=True, capture_output=True)
    return python


def tb_package_configs(python: Path) -> Path:
    """The folder of the default configuration files shipped in the installed package."""
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import thingsboard_gateway as t, os; print(os.path.dirname(t.__file__))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip()) / "config"


def tb_configs(
    folder: Path, defaults: Path, sim: Simulator, meters: int, mqtt_port: int, interval: float
) -> Path:
    """tb_gateway.json, modbus.json and logs.json, from the package's own defaults."""
    config_dir = folder / "tb-config"
    config_dir.mkdir()
    main = json.loads((defaults / "tb_gateway.json").read_text())
    tb = main["thingsboard"]
    tb.update(host="127.0.0.1", port=mqtt_port, remoteConfiguration=False, remoteShell=False)
    tb["statistics"]["enable"] = False
    tb["security"] = {"type": "accessToken", "accessToken": "bench-token"}
    main["storage"]["type"] = "memory"
    main["connectors"] = [{"type": "modbus", "name": "Modbus", "configuration": "modbus.json"}]
    (config_dir / "tb_gateway.json").write_text(json.dumps(main, indent=2))

    logs = json.loads((defaults / "logs.json").read_text())
    (folder / "tb-logs").mkdir()
    for handler in logs["handlers"].values():
        if "filename" in handler:
            handler["filename"] = str(folder / "tb-logs" / Path(handler["filename"]).name)
    for logger in logs["loggers"].values():
        logger["level"] = "WARNING"
    (config_dir / "logs.json").write_text(json.dumps(logs, indent=2))

    profile = load_profile(PROFILE)
    if any(p.type != "float32" or p.function != "input" for p in profile.points):
        raise SystemExit(f"{PROFILE}: this bench maps float32 input registers only")
    timeseries = [  # ThingsBoard's name for float32 in two registers; input registers: function 4
        {
            "tag": p.name,
            "type": "32float",
            "functionCode": 4,
            "objectsCount": 2,
            "address": p.address,
        }
        for p in profile.points
    ]
    slaves = []
    for unit in range(1, meters + 1):
        host, port = sim.endpoint(unit)
        slaves.append(
            {
                "host": host,
                "port": port,
                "type": "tcp",
                "method": "socket",
                "unitId": unit,
                "deviceName": f"meter-{unit}",
                "deviceType": PROFILE,
                "timeout": 1.0,  # seconds, as nbedge's timeout_s
                "retries": 1,  # as nbedge's bus: one more attempt after a timeout
                "byteOrder": "BIG",
                "wordOrder": "BIG",
                "pollPeriod": round(interval * 1000),
                "attributes": [],
                "timeseries": timeseries,
                "attributeUpdates": [],
                "rpc": [],
            }
        )
    modbus = {"logLevel": "WARNING", "master": {"slaves": slaves}}
    (config_dir / "modbus.json").write_text(json.dumps(modbus, indent=2))
    return config_dir


@dataclass
class ServerStandIn:
    """Stands in for the ThingsBoard server on the broker: answers getSessionLimits, counts."""

    port: int
    telemetry: list[tuple[float, int]] = field(default_factory=list)  # arrival, values
    topics: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    limits_answered: int = 0

    async def run(self, subscribed: asyncio.Event) -> None:
        import aiomqtt  # the project's MQTT client; only this part of the bench needs it

        async with aiomqtt.Client("127.0.0.1", self.port, identifier="bench-server") as client:
            await client.subscribe("#", qos=1)
            subscribed.set()
            async for message in client.messages:
                topic = str(message.topic)
                payload = message.payload if isinstance(message.payload, bytes) else b""
                if topic == TELEMETRY_TOPIC:
                    self.telemetry.append((time.monotonic(), count_values(json.loads(payload))))
                    continue
                self.topics[topic] += 1
                if topic.startswith(RPC_REQUEST_PREFIX):
                    request = json.loads(payload)
                    if request.get("method") == "getSessionLimits":
                        rpc_id = topic.removeprefix(RPC_REQUEST_PREFIX)
                        answer = json.dumps(SESSION_LIMITS)
                        await client.publish(f"{RPC_RESPONSE_PREFIX}{rpc_id}", answer, qos=1)
                        self.limits_answered += 1

    def in_window(self, window: tuple[float, float]) -> tuple[int, int]:
        inside = [n for t, n in self.telemetry if window[0] <= t < window[1]]
        return len(inside), sum(inside)


def count_values(payload: object) -> int:
    """Values in a gateway telemetry message: ``{device: [{"ts": ..., "values": {...}}]}``."""
    if not isinstance(payload, dict):
        return 0
    total = 0
    for entries in payload.values():
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, dict):
                values = entry.get("values", entry)
                total += len(values) if isinstance(values, dict) else 0
    return total


def start_mosquitto(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"log_dest file {folder / 'mosquitto.log'}\n"
    )
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, proc, "mosquitto")
    except SystemExit:
        stop_process(proc)
        raise
    return proc, port


async def run_tb(
    folder: Path,
    python: Path,
    meters: int,
    topology: Topology,
    seconds: float,
    warmup: float,
    interval: float,
) -> RunResult:
    profile = load_profile(PROFILE)
    broker, mqtt_port = start_mosquitto(folder)
    sim: Simulator | None = None
    gateway: subprocess.Popen[bytes] | None = None
    stand_in = ServerStandIn(mqtt_port)
    try:
        async with asyncio.TaskGroup() as tasks:
            subscribed = asyncio.Event()
            server = tasks.create_task(stand_in.run(subscribed))
            async with asyncio.timeout(10):
                await subscribed.wait()
            sim = Simulator.start(folder, meters, topology)
            config_dir = tb_configs(
                folder, tb_package_configs(python), sim, meters, mqtt_port, interval
            )
            gateway = start_logged(
                [str(python.parent / "thingsboard-gateway")],
                folder / "tb-stdout.log",
                cwd=folder,
                env=os.environ | {"TB_GW_CONFIG_DIR": f"{config_dir}/"},
            )
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not stand_in.telemetry:
                if gateway.poll() is not None or server.done() or time.monotonic() > deadline:
                    raise SystemExit(f"ThingsBoard published no telemetry (see {folder})")
                await asyncio.sleep(0.2)
            await asyncio.sleep(warmup)
            window = await measure(gateway.pid, sim.proc.pid, seconds)
            await asyncio.sleep(1.0)  # let what was polled in the window reach the broker
            server.cancel()
        stop_process(gateway)
        requests = sim.stop()
    finally:
        for proc in (gateway, sim.proc if sim else None, broker):
            if proc is not None:
                stop_process(proc)
    messages, values = stand_in.in_window((window.t0, window.t1))
    other = ", ".join(
        f"{t} x{n}"
        for t, n in sorted(stand_in.topics.items())
        if not t.startswith(RPC_RESPONSE_PREFIX)
    )
    print(
        f"  getSessionLimits answered {stand_in.limits_answered}x; "
        f"ThingsBoard also published: {other or 'nothing else'}",
        flush=True,
    )
    return RunResult(
        gateway="ThingsBoard",
        meters=meters,
        window=window,
        polls=poll_stats(requests, profile, meters, (window.t0, window.t1), interval),
        downstream={"telemetry messages": messages, "telemetry values": values},
    )


# --- report ------------------------------------------------------------------------------------


def rows(r: RunResult) -> Iterator[tuple[str, float | None, str]]:
    """(label, number for the ratio, text) for one gateway."""
    p = r.polls
    yield "Modbus reads/s", r.rate(p.reads), f"{r.rate(p.reads):,.1f}"
    yield "registers/s", r.rate(p.registers), f"{r.rate(p.registers):,.1f}"
    yield "values/s", r.rate(p.values), f"{r.rate(p.values):,.1f}"
    yield "failed reads", None, f"{p.failed}"
    yield "poll cycles done / expected", p.cycles / p.expected, f"{p.cycles} / {p.expected}"
    yield "missed cycles", None, f"{p.missed}"
    p50, p99, worst = p.jitter_ms
    yield "jitter p50 / p99 / max (ms)", None, f"{p50:+.1f} / {p99:+.1f} / {worst:+.1f}"
    cpu = r.window.gateway_cpu_s
    cpu_pct = 100 * cpu / r.seconds
    yield "gateway CPU (% of one core)", cpu_pct, f"{cpu_pct:.1f}"
    per_read = 1000 * cpu / p.reads if p.reads else math.nan
    yield "CPU ms per read", per_read, f"{per_read:.3f}"
    per_value = 1000 * cpu / p.values if p.values else math.nan
    yield "CPU ms per value", per_value, f"{per_value:.4f}"
    yield "peak RSS (MB)", r.window.rss_mb, f"{r.window.rss_mb:.1f}"
    yield "simulator CPU (%, not counted)", None, f"{100 * r.window.sim_cpu_s / r.seconds:.1f}"
    yield "other processes' CPU (%)", None, f"{100 * r.window.other_cpu_s / r.seconds:.1f}"


def report(runs: list[RunResult], topology: Topology, interval: float) -> None:
    where = (
        "one Modbus TCP endpoint, unit ids 1..N"
        if topology == "shared"
        else "one Modbus TCP endpoint per meter"
    )
    for meters in sorted({r.meters for r in runs}):
        ours = next((r for r in runs if r.meters == meters and r.gateway == "nbedge"), None)
        theirs = next((r for r in runs if r.meters == meters and r.gateway != "nbedge"), None)
        shown = [r for r in (ours, theirs) if r is not None]
        seconds = shown[0].seconds
        print()
        print(f"{meters} SDM630 meters, every {interval:g} s, {where}, window {seconds:.1f} s")
        header = f"{'':32} {'nbedge':>22} {'ThingsBoard':>22} {'ratio':>8}"
        print(header)
        print("-" * len(header))
        columns = [list(rows(r)) for r in shown]
        for i, (label, _, _) in enumerate(columns[0]):
            texts = {r.gateway: columns[k][i][2] for k, r in enumerate(shown)}
            ratio = ""
            if len(shown) == 2:
                a, b = columns[0][i][1], columns[1][i][1]
                if a is not None and b and not math.isnan(a) and not math.isnan(b):
                    ratio = f"{a / b:.2f}"
            print(
                f"{label:32} {texts.get('nbedge', '-'):>22} "
                f"{texts.get('ThingsBoard', '-'):>22} {ratio:>8}"
            )
        for r in shown:
            delivered = ", ".join(
                f"{k} {v:,.0f} ({r.rate(v):,.1f}/s)" for k, v in r.downstream.items()
            )
            print(f"downstream, {r.gateway}: {delivered}")


async def main_async(args: argparse.Namespace, folder: Path) -> None:
    main_task = asyncio.current_task()
    assert main_task is not None
    # SIGTERM cancels like Ctrl-C does, so every ``finally`` stops the processes it started.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    python = None if args.skip_tb else tb_python(args.tb_venv.resolve())
    runs: list[RunResult] = []
    for meters in args.meters:
        print(f"{meters} meters: nbedge ...", flush=True)
        (folder / f"nbedge-{meters}").mkdir()
        runs.append(
            await run_nbedge(
                folder / f"nbedge-{meters}",
                meters,
                args.topology,
                args.seconds,
                args.warmup,
                args.interval,
            )
        )
        if python is not None:
            print(f"{meters} meters: ThingsBoard IoT Gateway {TB_VERSION} ...", flush=True)
            (folder / f"tb-{meters}").mkdir()
            runs.append(
                await run_tb(
                    folder / f"tb-{meters}",
                    python,
                    meters,
                    args.topology,
                    args.seconds,
                    args.warmup,
                    args.interval,
                )
            )
    report(runs, args.topology, args.interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meters", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before the window")
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval, seconds")
    parser.add_argument("--topology", choices=["shared", "per-meter"], default="shared")
    parser.add_argument("--dir", type=Path, default=None, help="folder for temporary state")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    parser.add_argument("--tb-venv", type=Path, default=Path(".bench-venv/thingsboard"))
    parser.add_argument("--skip-tb", action="store_true", help="measure nbedge alone")
    parser.add_argument("--serve-sim", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sim-ready", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sim-log", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sim:
        asyncio.run(serve_sim(args.meters[0], args.topology, args.sim_ready, args.sim_log))
        return
    if args.interval < 0.1:
        parser.error("--interval must be >= 0.1 (nbedge's smallest poll_interval_s)")
    if not args.skip_tb and not Path(MOSQUITTO).exists():
        parser.error("mosquitto is needed for the ThingsBoard run (or pass --skip-tb)")
    folder = Path(tempfile.mkdtemp(prefix="modbus-poll-", dir=args.dir))
    try:
        asyncio.run(main_async(args, folder))
    finally:
        if args.keep:
            print(f"logs and state kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
