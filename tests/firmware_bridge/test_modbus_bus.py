"""ModbusTcpBus against SimulatedBuilding over real TCP on 127.0.0.1: no mocks of pymodbus."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import statistics
import time
from collections.abc import AsyncIterator
from datetime import datetime
from itertools import pairwise

import pytest
from pymodbus.client import AsyncModbusTcpClient

from firmware_bridge.modbus.bus import (
    ConnectionState,
    DeviceSpec,
    DeviceState,
    DeviceStateChange,
    ModbusTcpBus,
)
from firmware_bridge.modbus.profiles import DeviceProfile, load_profile, parse_profile
from firmware_bridge.readings import Reading
from sim.meter import SimulatedMeter
from sim.modbus_server import SimulatedBuilding, meters_for, serve_building
from tests.conftest import free_port, wait_until

SDM630 = load_profile("eastron_sdm630")
SDM120 = load_profile("eastron_sdm120")
START = datetime(2024, 5, 6, 19, 0)  # a Monday evening: the load is high

pytestmark = pytest.mark.timeout(30)


@contextlib.asynccontextmanager
async def running(bus: ModbusTcpBus) -> AsyncIterator[asyncio.Task[None]]:
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(bus.run(), name="bus")
        try:
            yield task
        finally:
            task.cancel()


def latest(readings: list[Reading], device: str) -> dict[str, Reading]:
    return {r.point: r for r in readings if r.device == device}


def poll_times(readings: list[Reading], device: str) -> list[int]:
    """The ``monotonic_ns`` of each poll of ``device``, in order (one stamp per poll)."""
    return sorted({r.monotonic_ns for r in readings if r.device == device})


def two_meters() -> dict[int, SimulatedMeter]:
    return meters_for({1: SDM630, 2: SDM120}, start=START, seed=7)


async def test_readings_equal_the_values_the_simulator_served() -> None:
    meters = two_meters()
    meters[1].override("voltage_l1", 262.0)  # outside EN 50160's 230 V +-10 %
    meters[1].override("import_energy", 12345.5)
    meters[2].override("frequency", 49.5)
    readings: list[Reading] = []
    # A long update interval: the values served stay those of the first refresh.
    async with SimulatedBuilding(meters, port=0, update_interval_s=60) as building:
        devices = [DeviceSpec("flat_a", 1, SDM630, 0.1), DeviceSpec("flat_b", 2, SDM120, 0.1)]
        bus = ModbusTcpBus(
            "127.0.0.1", building.port, devices, readings.append, wall_clock=lambda: 1.7e9
        )
        async with running(bus):
            await wait_until(
                lambda: (
                    len(latest(readings, "flat_a")) == 13 and len(latest(readings, "flat_b")) == 6
                )
            )
    for name, meter in ((("flat_a"), meters[1]), ("flat_b", meters[2])):
        got = latest(readings, name)
        assert set(got) == set(meter.last_values)
        for point, reading in got.items():
            assert reading.value == pytest.approx(meter.last_values[point], rel=1e-6, abs=1e-9)
            assert reading.unit == meter.profile.point(point).unit
    assert latest(readings, "flat_a")["voltage_l1"].value == 262.0
    assert latest(readings, "flat_a")["import_energy"].value == 12345.5
    assert latest(readings, "flat_b")["frequency"].value == 49.5
    assert all(r.wall_time == 1.7e9 for r in readings)
    first_poll = [r for r in readings if r.device == "flat_a"][:13]
    assert len({r.monotonic_ns for r in first_poll}) == 1  # one poll, one stamp
    status = bus.status()
    assert status.connection is ConnectionState.DISCONNECTED  # run() ended, client closed
    assert all(d.online and d.reads_failed == 0 for d in status.devices)
    assert status.device("flat_a").reads_ok >= 3  # SDM630: three reads per poll


async def test_a_unit_that_is_not_served_goes_offline_and_the_others_keep_their_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="firmware_bridge.modbus.bus")
    readings: list[Reading] = []
    async with SimulatedBuilding(two_meters(), port=0, update_interval_s=0.1) as building:
        devices = [
            DeviceSpec("flat_a", 1, SDM630, 0.1),
            DeviceSpec("flat_b", 2, SDM120, 0.1),
            DeviceSpec("ghost", 3, SDM120, 0.1),
        ]
        bus = ModbusTcpBus(
            "127.0.0.1", building.port, devices, readings.append, timeout_s=0.5, offline_after=3
        )
        async with running(bus):
            # The ghost goes offline and each meter is polled 15 times (1.5 s at 0.1 s): waited
            # for rather than slept through, so that a stall of the machine cannot cut it short.
            await wait_until(
                lambda: (
                    bus.status().device("ghost").state is DeviceState.OFFLINE
                    and all(len(poll_times(readings, name)) >= 15 for name in ("flat_a", "flat_b"))
                ),
                timeout_s=10,
            )
    status = bus.status()
    ghost = status.device("ghost")
    assert ghost.state is DeviceState.OFFLINE
    assert ghost.exceptions >= 3
    assert ghost.reads_ok == 0
    assert ghost.last_ok_wall_time is None
    assert not any(r.device == "ghost" for r in readings)
    for name, points in (("flat_a", 13), ("flat_b", 6)):
        times = poll_times(readings, name)
        # The ghost's exception replies cost milliseconds: the meters keep their rate. The median
        # gap between two polls says so; a stall of the whole machine lengthens a gap or two.
        gaps_s = [(b - a) / 1e9 for a, b in pairwise(times)]
        median_s = statistics.median(gaps_s)
        assert median_s <= 1.25 * 0.1, f"{name}: median gap {median_s:.3f} s at 0.1 s, {gaps_s}"
        assert len([r for r in readings if r.device == name]) == len(times) * points
        assert status.device(name).online
    offline_logs = [r for r in caplog.records if r.getMessage() == "modbus device offline"]
    assert len(offline_logs) == 1  # a state change, logged once, not per failed read
    assert offline_logs[0].__dict__["device"] == "ghost"
    assert "0x0b" in offline_logs[0].__dict__["reason"]


async def test_a_silent_unit_costs_the_others_no_more_than_its_timeout() -> None:
    readings: list[Reading] = []
    async with SimulatedBuilding(
        two_meters(), port=0, update_interval_s=0.1, unknown_units="silent"
    ) as building:
        devices = [DeviceSpec("flat_a", 1, SDM630, 0.1), DeviceSpec("ghost", 9, SDM120, 0.5)]
        bus = ModbusTcpBus(
            "127.0.0.1",
            building.port,
            devices,
            readings.append,
            timeout_s=0.2,
            retries=1,
            offline_after=2,
        )
        async with running(bus):
            await wait_until(lambda: bus.status().device("ghost").state is DeviceState.OFFLINE)
            since_ns = time.monotonic_ns()
            tries_before = bus.status().device("ghost").timeouts
            await wait_until(
                lambda: bus.status().device("ghost").timeouts >= tries_before + 8, timeout_s=15
            )
            tries = bus.status().device("ghost").timeouts - tries_before
    ghost = bus.status().device("ghost")
    assert ghost.state is DeviceState.OFFLINE
    assert ghost.timeouts >= 2 * 2 + 1  # two polls with a retry each, then single attempts
    # Once offline the ghost costs 0.2 s per 0.5 s: flat_a keeps at least half its rate, 2.5 of
    # its 5 polls for each try of the ghost (4 when all goes well). Counted against the ghost's
    # tries rather than the clock, so that a stall of the machine slows both alike.
    polls = len([t for t in poll_times(readings, "flat_a") if t >= since_ns])
    assert polls >= 2.5 * tries, f"flat_a: {polls} polls at 0.1 s while the ghost had {tries} tries"
    assert bus.status().device("flat_a").online


async def test_the_bus_waits_for_the_endpoint_and_reconnects_after_it_went_away(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="firmware_bridge.modbus.bus")
    port = free_port()
    readings: list[Reading] = []
    devices = [DeviceSpec("flat_a", 1, SDM630, 0.05)]
    bus = ModbusTcpBus(
        "127.0.0.1",
        port,
        devices,
        readings.append,
        timeout_s=0.3,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
    )

    def count() -> int:
        return len(readings)

    async with running(bus):
        await asyncio.sleep(0.3)  # nothing listens yet
        assert bus.status().connection is ConnectionState.CONNECTING
        assert readings == []
        async with SimulatedBuilding(two_meters(), port=port, update_interval_s=0.1):
            await wait_until(lambda: count() >= 13 * 3)
        await wait_until(lambda: bus.status().connection is not ConnectionState.CONNECTED)
        # A link that stays down past its grace period (2 s here) makes the device offline.
        assert bus.status().device("flat_a").online
        await wait_until(lambda: bus.status().device("flat_a").state is DeviceState.OFFLINE)
        before = count()
        await asyncio.sleep(0.5)  # the building is gone
        assert count() == before
        async with SimulatedBuilding(two_meters(), port=port, update_interval_s=0.1):
            await wait_until(lambda: count() >= before + 13 * 3)
            assert bus.status().connection is ConnectionState.CONNECTED
            assert bus.status().device("flat_a").online
    assert bus.status().connects == 2
    messages = [r.getMessage() for r in caplog.records if r.name == "firmware_bridge.modbus.bus"]
    assert messages.count("modbus endpoint unreachable, retrying with backoff") == 1
    assert messages.count("modbus connection lost") == 1
    assert messages.count("modbus endpoint connected") == 2


async def test_a_brief_drop_of_the_link_leaves_every_device_online() -> None:
    port = free_port()
    changes: list[DeviceStateChange] = []
    devices = [DeviceSpec("flat_a", 1, SDM630, 0.05), DeviceSpec("flat_b", 2, SDM630, 0.05)]
    bus = ModbusTcpBus(
        "127.0.0.1",
        port,
        devices,
        lambda r: None,
        timeout_s=1.0,
        backoff_initial_s=0.05,
        backoff_max_s=0.1,
        on_state=changes.append,
    )
    async with running(bus):
        async with SimulatedBuilding(two_meters(), port=port, update_interval_s=0.1):
            await wait_until(lambda: all(d.online for d in bus.status().devices))
        await wait_until(lambda: bus.status().connection is not ConnectionState.CONNECTED)
        await asyncio.sleep(0.3)  # down for well under the grace period (3 s)
        async with SimulatedBuilding(two_meters(), port=port, update_interval_s=0.1):
            await wait_until(lambda: bus.status().connects == 2)
            await wait_until(lambda: all(d.reads_ok > 20 for d in bus.status().devices))
    assert [(c.device, c.online) for c in changes] == [("flat_a", True), ("flat_b", True)]


async def test_cancelling_run_propagates_and_leaves_nothing_behind() -> None:
    async with SimulatedBuilding(two_meters(), port=0, update_interval_s=0.1) as building:
        bus = ModbusTcpBus(
            "127.0.0.1", building.port, [DeviceSpec("a", 1, SDM630, 0.05)], lambda r: None
        )
        task = asyncio.create_task(bus.run())
        await wait_until(lambda: bus.status().device("a").reads_ok > 0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_cancellation_lost_inside_a_request_still_stops_the_bus() -> None:
    # Python 3.11's wait_for, which pymodbus awaits on every request, returns the answer instead
    # of raising when the answer and the cancellation arrive in the same loop turn. An operation
    # here loses the cancellation the same way; the bus must stop all the same.
    async with SimulatedBuilding(two_meters(), port=0, update_interval_s=0.1) as building:
        bus = ModbusTcpBus(
            "127.0.0.1", building.port, [DeviceSpec("a", 1, SDM630, 0.05)], lambda r: None
        )
        task = asyncio.create_task(bus.run())
        await wait_until(lambda: bus.status().device("a").reads_ok > 0)
        inside = asyncio.Event()

        async def loses_the_cancellation(io: object) -> str:
            inside.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)
            return "answered"

        command = asyncio.create_task(bus.execute("a", loses_the_cancellation))
        await inside.wait()
        task.cancel()
        await asyncio.wait([task], timeout=5)
        assert task.cancelled()
        assert await command == "answered"
    assert asyncio.all_tasks() == {asyncio.current_task()}


def profile_with(extra_point: str) -> DeviceProfile:
    return parse_profile(
        f"""
        [profile]
        name = "sdm120_plus"
        manufacturer = "Eastron"
        model = "SDM120 with an extra point"
        source = "test"
        [[points]]
        name = "voltage"
        function = "input"
        address = 0x0000
        type = "float32"
        unit = "V"
        {extra_point}
        """
    )


async def test_exception_replies_and_non_finite_values_are_counted_never_fatal() -> None:
    meters = two_meters()
    meters[2].override("voltage", math.nan)  # a meter's "not available"
    beyond = profile_with(
        '[[points]]\nname = "ghost"\nfunction = "input"\naddress = 0x0400\n'
        'type = "uint16"\nunit = ""'
    )
    readings: list[Reading] = []
    async with SimulatedBuilding(meters, port=0, update_interval_s=60) as building:
        devices = [DeviceSpec("beyond", 1, beyond, 0.1), DeviceSpec("nan", 2, SDM120, 0.1)]
        bus = ModbusTcpBus("127.0.0.1", building.port, devices, readings.append, timeout_s=0.5)
        async with running(bus):
            await wait_until(
                lambda: (
                    bus.status().device("beyond").exceptions >= 2
                    and bus.status().device("nan").values_dropped >= 2
                )
            )
    nan_readings = [r for r in readings if r.device == "nan"]
    assert nan_readings
    assert all(r.point != "voltage" for r in nan_readings)
    assert all(math.isfinite(r.value) for r in readings)
    assert bus.status().device("nan").online


async def test_the_simulator_answers_like_a_meter_on_a_tcp_gateway() -> None:
    meters = two_meters()
    meters[1].override("voltage_l1", 230.0)
    async with SimulatedBuilding(meters, port=0, update_interval_s=60) as building:
        client = AsyncModbusTcpClient("127.0.0.1", port=building.port, timeout=1, retries=0)
        try:
            assert await client.connect()
            reply = await client.read_input_registers(0x00, count=2, device_id=1)
            assert reply.registers == [0x4366, 0x0000]  # 230.0 V as the datasheet encodes it
            meters[1].override("voltage_l1", 262.0)
            building.refresh()
            reply = await client.read_input_registers(0x00, count=2, device_id=1)
            assert reply.registers == [0x4383, 0x0000]
            reply = await client.read_input_registers(0x00, count=2, device_id=42)
            assert reply.isError()
            assert reply.exception_code == 0x0B
            reply = await client.read_input_registers(0x0156, count=4, device_id=1)
            assert reply.isError()
            assert reply.exception_code == 0x02
            reply = await client.read_holding_registers(0x00, count=2, device_id=1)
            assert reply.isError()
            assert reply.exception_code == 0x02
            reply = await client.write_register(0x00, 1, device_id=1)
            assert reply.isError()
        finally:
            client.close()
    with pytest.raises(ConnectionRefusedError):  # the server is gone
        await asyncio.open_connection("127.0.0.1", building.port)


async def test_serve_building_runs_n_meters_until_cancelled() -> None:
    ready: asyncio.Queue[SimulatedBuilding] = asyncio.Queue()
    task = asyncio.create_task(
        serve_building(
            2, port=0, update_interval_s=0.1, voltage_event_every_s=60, on_ready=ready.put_nowait
        )
    )
    building = await asyncio.wait_for(ready.get(), timeout=5)
    assert sorted(building.meters) == [1, 2]
    assert building.meters[1].voltage_events[0].voltage_v == 262.0
    client = AsyncModbusTcpClient("127.0.0.1", port=building.port, timeout=1, retries=0)
    try:
        assert await client.connect()
        reply = await client.read_input_registers(0x46, count=2, device_id=2)
        assert not reply.isError()
        frequency = client.convert_from_registers(reply.registers, client.DATATYPE.FLOAT32)
        assert frequency == pytest.approx(50.0, abs=0.2)
    finally:
        client.close()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_peer_that_accepts_then_hangs_up_is_retried_with_backoff_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Like a TCP gateway out of sockets: connecting succeeds, nothing is ever answered."""
    caplog.set_level(logging.INFO, logger="firmware_bridge.modbus.bus")

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bus = ModbusTcpBus(
        "127.0.0.1",
        port,
        [DeviceSpec("a", 1, SDM120, 0.05)],
        lambda r: None,
        timeout_s=0.2,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
    )
    try:
        async with running(bus):
            await asyncio.sleep(1.5)
            # A stall of the machine may have eaten most of the 1.5 s: retried all the same.
            await wait_until(lambda: bus.status().connects >= 3)
    finally:
        server.close()
        await server.wait_closed()
    assert 3 <= bus.status().connects <= 20  # without backoff this would be hundreds in 1.5 s
    messages = [r.getMessage() for r in caplog.records if r.name == "firmware_bridge.modbus.bus"]
    assert messages.count("modbus endpoint connected") == 1
    assert "modbus connection lost" not in messages
