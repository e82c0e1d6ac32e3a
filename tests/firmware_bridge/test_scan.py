"""``nbedge scan modbus`` and :func:`scan_units` against real pymodbus servers on 127.0.0.1: over
TCP (a gateway that answers 0x0B for missing units, or one that stays silent), over RTU framing,
and the CLI as a subprocess, Ctrl-C included."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import datetime
from pathlib import Path

import pytest

from firmware_bridge.modbus.bus import SerialLine, TcpLink
from firmware_bridge.modbus.profiles import available_profiles, load_profile
from firmware_bridge.modbus.scan import UnitProbe, parse_units, scan_units
from nbedge.errors import DeviceUnavailable
from sim.modbus_server import SimulatedBuilding, meters_for
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2024, 5, 6, 19, 0)
PROFILES = [load_profile(name) for name in available_profiles()]

pytestmark = pytest.mark.timeout(60)


async def scan(link: TcpLink | SerialLine, units: list[int], **options: float) -> list[UnitProbe]:
    return [probe async for probe in scan_units(link, units, PROFILES, **options)]


def found(probes: list[UnitProbe]) -> dict[int, tuple[str, ...]]:
    return {p.unit_id: p.profiles for p in probes if p.answered}


async def test_a_tcp_scan_finds_the_served_units_and_tells_the_meter_models_apart() -> None:
    meters = meters_for(
        {2: "eastron_sdm630", 5: "eastron_sdm120", 7: "carlo_gavazzi_em24"}, start=START
    )
    async with SimulatedBuilding(meters, port=0) as building:  # others: exception 0x0B
        probes = await scan(TcpLink("127.0.0.1", building.port), list(range(1, 11)))
    assert [p.unit_id for p in probes] == list(range(1, 11))  # one probe per unit, in order
    assert found(probes) == {
        2: ("eastron_sdm630",),
        5: ("eastron_sdm120",),
        7: ("carlo_gavazzi_em24",),
    }


async def test_a_silent_gateway_costs_a_timeout_per_unit_and_the_scan_survives_reconnects() -> None:
    meters = meters_for({3: "eastron_sdm630", 9: "eastron_sdm630"}, start=START)
    async with SimulatedBuilding(meters, port=0, unknown_units="silent") as building:
        # pymodbus drops a TCP connection after a few timeouts in a row: the scan reconnects.
        probes = await scan(TcpLink("127.0.0.1", building.port), list(range(1, 11)), timeout_s=0.1)
    assert found(probes) == {3: ("eastron_sdm630",), 9: ("eastron_sdm630",)}


async def test_an_rtu_scan_over_a_socket_finds_the_meters_on_the_line() -> None:
    meters = meters_for({4: "eastron_sdm120", 6: "eastron_sdm630"}, start=START)
    async with SimulatedBuilding(meters, port=0, framer="rtu") as building:
        line = SerialLine(f"socket://127.0.0.1:{building.port}", 9600, "N", 1)
        probes = await scan(line, list(range(1, 8)), timeout_s=0.1)
    assert found(probes) == {4: ("eastron_sdm120",), 6: ("eastron_sdm630",)}


async def test_a_unit_that_answers_only_with_an_exception_is_there_without_a_profile() -> None:
    # The water counter has holding registers only: reading input registers gets exception 0x02.
    meters = meters_for({1: "advantech_adam6050_water"}, start=START)
    async with SimulatedBuilding(meters, port=0) as building:
        (probe,) = await scan(TcpLink("127.0.0.1", building.port), [1])
    assert probe.answered
    assert probe.profiles == ()
    assert probe.answer == "yes (exception 0x02)"


async def test_an_unreachable_link_is_reported_as_unavailable() -> None:
    with pytest.raises(DeviceUnavailable, match="cannot open"):
        await scan(TcpLink("127.0.0.1", free_port()), [1], timeout_s=0.2)


def test_unit_ranges() -> None:
    assert parse_units("1-247") == list(range(1, 248))
    assert parse_units("5, 2,10-12,2") == [2, 5, 10, 11, 12]
    for bad in ("0-3", "5-2", "248", "x", "1-"):
        with pytest.raises(ValueError, match="unit"):
            parse_units(bad)


async def nbedge(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edge.cli",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def table(stdout: bytes) -> list[list[str]]:
    lines = stdout.decode().splitlines()
    assert lines[0].split() == ["unit", "answered", "suggested", "profile"]
    return [line.split() for line in lines[1:]]


async def test_the_cli_finds_units_2_and_5_of_1_to_10_and_suggests_the_sdm630() -> None:
    meters = meters_for({2: "eastron_sdm630", 5: "eastron_sdm630"}, start=START)
    async with SimulatedBuilding(meters, port=0) as building:
        process = await nbedge(
            "scan", "modbus", "--host", "127.0.0.1", "--port", str(building.port),
            "--units", "1-10", "--timeout", "0.2",
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    assert table(stdout) == [["2", "yes", "eastron_sdm630"], ["5", "yes", "eastron_sdm630"]]
    progress = stderr.decode()
    assert "unit 2: answered (eastron_sdm630)" in progress
    assert "2 unit(s) answered" in progress


async def test_ctrl_c_prints_what_was_found_so_far_and_exits_130() -> None:
    meters = meters_for({2: "eastron_sdm630", 5: "eastron_sdm120"}, start=START)
    async with SimulatedBuilding(meters, port=0, unknown_units="silent") as building:
        # 247 units at 0.2 s each would take most of a minute: interrupt after unit 5.
        process = await nbedge(
            "scan", "modbus", "--host", "127.0.0.1", "--port", str(building.port),
            "--timeout", "0.2",
        )  # fmt: skip
        assert process.stderr is not None
        progress = b""
        async with asyncio.timeout(20):
            while b"unit 5: answered" not in progress:
                line = await process.stderr.readline()
                assert line, "the scan ended before it found unit 5"
                progress += line
        process.send_signal(signal.SIGINT)
        stdout, rest = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 130, (progress + rest).decode()
    assert table(stdout) == [["2", "yes", "eastron_sdm630"], ["5", "yes", "eastron_sdm120"]]
    assert b"interrupted" in rest
    assert b"Traceback" not in rest


async def test_the_cli_says_when_the_link_cannot_be_opened() -> None:
    process = await nbedge(
        "scan", "modbus", "--host", "127.0.0.1", "--port", str(free_port()), "--units", "1-3"
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert b"cannot open the Modbus link" in stderr
    assert table(stdout) == []
