"""Modbus RTU without hardware: the simulator serves RTU frames (unit id, PDU, CRC) over a TCP
socket on 127.0.0.1 and the bus opens ``socket://127.0.0.1:PORT`` through pyserial, so framing
and CRC are real; fault injection garbles the CRC of a share of the answers. Also the RTU keys of
the configuration and one bus owner per serial port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from itertools import pairwise

import pytest

from edge.config import parse_config
from edge.daemon import build_buses
from firmware_bridge.modbus.bus import (
    DeviceSpec,
    DeviceState,
    ModbusBus,
    SerialLine,
    TcpLink,
    default_request_gap_s,
)
from firmware_bridge.modbus.plan import plan_reads
from firmware_bridge.modbus.profiles import load_profile
from firmware_bridge.readings import Reading
from nbedge.errors import ConfigError
from sim.meter import SimulatedMeter
from sim.modbus_server import SimulatedBuilding, meters_for
from tests.conftest import wait_until

SDM630 = load_profile("eastron_sdm630")
SDM120 = load_profile("eastron_sdm120")
START = datetime(2024, 5, 6, 19, 0)

pytestmark = pytest.mark.timeout(30)

GATEWAY = """
[gateway]
id = "gw-1"
site = "site-1"
"""


@contextlib.asynccontextmanager
async def running(bus: ModbusBus) -> AsyncIterator[None]:
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(bus.run(), name="bus")
        try:
            yield
        finally:
            task.cancel()


def latest(readings: list[Reading], device: str) -> dict[str, Reading]:
    return {r.point: r for r in readings if r.device == device}


def two_meters() -> dict[int, SimulatedMeter]:
    return meters_for({1: SDM630, 2: SDM120}, start=START, seed=7)


def line(building: SimulatedBuilding) -> SerialLine:
    return SerialLine(f"socket://127.0.0.1:{building.port}", 9600, "N", 1)


async def test_rtu_polling_returns_what_the_simulator_served() -> None:
    meters = two_meters()
    meters[1].override("voltage_l2", 262.0)
    meters[2].override("import_energy", 4321.25)
    readings: list[Reading] = []
    async with SimulatedBuilding(meters, port=0, update_interval_s=60, framer="rtu") as building:
        devices = [DeviceSpec("flat_a", 1, SDM630, 0.1), DeviceSpec("flat_b", 2, SDM120, 0.1)]
        bus = ModbusBus(line(building), devices, readings.append, timeout_s=0.5)
        async with running(bus):
            await wait_until(
                lambda: (
                    len(latest(readings, "flat_a")) == 13 and len(latest(readings, "flat_b")) == 6
                )
            )
    for name, meter in (("flat_a", meters[1]), ("flat_b", meters[2])):
        got = latest(readings, name)
        assert set(got) == set(meter.last_values)
        for point, reading in got.items():
            assert reading.value == pytest.approx(meter.last_values[point], rel=1e-6, abs=1e-9)
    assert latest(readings, "flat_a")["voltage_l2"].value == 262.0
    assert latest(readings, "flat_b")["import_energy"].value == 4321.25
    status = bus.status()
    assert status.endpoint == f"socket://127.0.0.1:{building.port} (9600 8N1)"
    assert all(d.online and d.reads_failed == 0 and d.frame_errors == 0 for d in status.devices)


async def test_garbled_answers_are_counted_and_the_device_stays_online(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="firmware_bridge.modbus.bus")
    readings: list[Reading] = []
    async with SimulatedBuilding(
        two_meters(), port=0, update_interval_s=0.1, framer="rtu", garble_fraction=0.2
    ) as building:
        devices = [DeviceSpec("flat_a", 1, SDM630, 0.1)]
        bus = ModbusBus(line(building), devices, readings.append, timeout_s=0.5, offline_after=3)
        async with running(bus):
            await wait_until(lambda: bus.status().device("flat_a").frame_errors >= 5, 15)
        garbled = building.garbled
    status = bus.status().device("flat_a")
    assert status.state is DeviceState.ONLINE
    assert status.timeouts == 0  # a garbled answer is not mistaken for silence
    assert garbled - 1 <= status.frame_errors <= garbled  # one may still be in flight at the end
    assert status.reads_failed == status.frame_errors
    assert status.reads_ok > 3 * status.frame_errors  # 80 % of the answers were good
    assert not [r for r in caplog.records if r.getMessage() == "modbus device offline"]
    per_poll = Counter(r.monotonic_ns for r in readings)
    complete = sum(1 for count in per_poll.values() if count == 13)
    # A garbled read is retried once: a poll is cut short only when both attempts are garbled.
    assert complete >= 0.8 * len(per_poll)


async def test_two_devices_on_one_serial_port_share_one_owner() -> None:
    readings: list[Reading] = []
    async with SimulatedBuilding(
        two_meters(), port=0, update_interval_s=0.1, framer="rtu"
    ) as building:
        config = parse_config(
            GATEWAY
            + f"""
[[modbus.devices]]
name = "flat_a"
profile = "eastron_sdm630"
transport = "rtu"
serial_port = "socket://127.0.0.1:{building.port}"
baudrate = 19200
parity = "E"
unit_id = 1
poll_interval_s = 0.1

[[modbus.devices]]
name = "flat_b"
profile = "eastron_sdm120"
transport = "rtu"
serial_port = "socket://127.0.0.1:{building.port}"
baudrate = 19200
parity = "E"
unit_id = 2
poll_interval_s = 0.1
request_gap_s = 0.01

[[modbus.devices]]
name = "tcp_meter"
profile = "eastron_sdm120"
host = "127.0.0.1"
port = 1502
"""
        )
        buses = build_buses(config.modbus.devices, readings.append)
        assert [type(b.link) for b in buses] == [SerialLine, TcpLink]
        rtu = buses[0]
        assert rtu.link == SerialLine(f"socket://127.0.0.1:{building.port}", 19200, "E", 1)
        assert [d.name for d in rtu.status().devices] == ["flat_a", "flat_b"]
        async with running(rtu):
            await wait_until(
                lambda: (
                    len(latest(readings, "flat_a")) == 13 and len(latest(readings, "flat_b")) == 6
                )
            )
    assert all(d.online for d in rtu.status().devices)


async def test_the_bus_leaves_the_request_gap_between_an_answer_and_the_next_request() -> None:
    readings: list[Reading] = []
    reads_per_poll = len(plan_reads(SDM120.points, SDM120.max_registers, SDM120.max_gap))
    async with SimulatedBuilding(two_meters(), port=0, framer="rtu") as building:
        # Polled as often as it can be (several reads per poll), paced at 50 ms per read.
        flat_b = DeviceSpec("flat_b", 2, SDM120, 0.001)
        bus = ModbusBus(line(building), [flat_b], readings.append, request_gap_s=0.05)
        async with running(bus):
            await wait_until(lambda: len({r.monotonic_ns for r in readings}) >= 8)
    # The time a read takes, from the gaps between the starts of two polls: at least the 50 ms
    # gap, and not much more on loopback. The median, because a stall of the whole machine
    # lengthens a gap or two.
    polls = sorted({r.monotonic_ns for r in readings})
    per_read_s = [(b - a) / 1e9 / reads_per_poll for a, b in pairwise(polls)]
    median_s = statistics.median(per_read_s)
    assert 0.05 <= median_s <= 0.1, f"{median_s:.3f} s a read with a 50 ms gap: {per_read_s}"


def test_the_default_gap_is_three_and_a_half_characters_but_at_least_five_ms() -> None:
    assert SerialLine("/dev/ttyUSB0", 9600, "N", 1).frame_gap_s == pytest.approx(3.5 * 10 / 9600)
    assert SerialLine("/dev/ttyUSB0", 9600, "E", 1).frame_gap_s == pytest.approx(3.5 * 11 / 9600)
    assert SerialLine("/dev/ttyUSB0", 115200).frame_gap_s == 0.00175
    assert default_request_gap_s(SerialLine("/dev/ttyUSB0", 9600)) == 0.005
    assert default_request_gap_s(SerialLine("/dev/ttyUSB0", 1200)) == pytest.approx(0.0292, 1e-2)
    assert default_request_gap_s(TcpLink("192.0.2.1")) == 0.0


def test_a_serial_line_refuses_settings_rtu_cannot_have() -> None:
    with pytest.raises(ValueError, match="baudrate"):
        SerialLine("/dev/ttyUSB0", 9601)
    with pytest.raises(ValueError, match=r"unit ids are 1\.\.247"):
        ModbusBus(SerialLine("/dev/ttyUSB0"), [DeviceSpec("all", 0, SDM120, 1)], lambda _: None)


def device(**keys: object) -> str:
    lines = [f"{k} = {v!r}".replace("'", '"') for k, v in keys.items()]
    return "\n[[modbus.devices]]\n" + "\n".join(lines) + "\n"


def issues(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(GATEWAY + text)
    return str(caught.value)


def test_rtu_keys_default_to_9600_8n1_and_tcp_stays_the_default() -> None:
    config = parse_config(
        GATEWAY
        + device(name="a", profile="eastron_sdm120", transport="rtu", serial_port="/dev/ttyUSB0")
        + device(name="b", profile="eastron_sdm120", host="192.0.2.1")
    )
    rtu, tcp = config.modbus.devices
    assert (rtu.baudrate, rtu.parity, rtu.stopbits, rtu.request_gap_s) == (9600, "N", 1, None)
    assert tcp.transport == "tcp"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"transport": "rtu"}, 'serial_port is required with transport = "rtu"'),
        ({}, 'host is required with transport = "tcp"'),
        ({"host": "h", "baudrate": 9600}, 'baudrate applies to transport = "rtu" only'),
        (
            {"transport": "rtu", "serial_port": "/dev/ttyUSB0", "host": "h"},
            'host applies to transport = "tcp" only',
        ),
        (
            {"transport": "rtu", "serial_port": "/dev/ttyUSB0", "unit_id": 0},
            "unit_id 0 is the RTU broadcast address",
        ),
        ({"transport": "rtu", "serial_port": "/dev/x", "parity": "X"}, "parity"),
        ({"transport": "rtu", "serial_port": "/dev/x", "baudrate": 9601}, "baudrate"),
        ({"transport": "rtu", "serial_port": "/dev/x", "stopbits": 3}, "stopbits"),
        ({"transport": "serial"}, "transport"),
    ],
)
def test_rtu_and_tcp_keys_are_checked(keys: dict[str, object], message: str) -> None:
    error = issues(device(name="m", profile="eastron_sdm120", **keys))
    assert "modbus.devices.0" in error
    assert message in error


def test_devices_on_one_serial_port_must_agree_on_its_line_settings() -> None:
    rtu = {"profile": "eastron_sdm120", "transport": "rtu", "serial_port": "/dev/ttyUSB0"}
    error = issues(
        device(name="a", unit_id=1, **rtu)
        + device(name="b", unit_id=2, baudrate=19200, parity="E", **rtu)
        + device(name="c", unit_id=2, **rtu)
        + device(name="d", unit_id=2, **{**rtu, "serial_port": "/dev/ttyUSB1"})
    )
    assert "devices.1.baudrate: 19200 differs from 9600 of devices.0 (a) on /dev/ttyUSB0" in error
    assert "devices.1.parity: 'E' differs from 'N'" in error
    assert "devices.2.unit_id: 2 is already b's on /dev/ttyUSB0" in error
    assert "devices.3" not in error  # another port, its own settings and unit ids
