"""SimulatedGate against nbedge's gate register map (docs/gate-controller.md): the state machine on
a fake clock, the event ring bit for bit, the coils and their exceptions; then over real Modbus
TCP and RTU on 127.0.0.1, gates served beside meters that still answer exactly as before."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient, ModbusBaseClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerType

from firmware_bridge.modbus.profiles import load_profile
from sim.gate import (
    NOT_ENROLLED,
    Coil,
    GateAddressError,
    GateEvent,
    GateState,
    RandomActivity,
    SimulatedGate,
)
from sim.modbus_server import SimulatedBuilding, meters_for, register_image, serve_building

T0 = 1_700_000_000  # 0x6553F100
START = datetime(2024, 5, 6, 19, 0)
SDM120 = load_profile("eastron_sdm120")


class FakeClock:
    """The model's clock and a wall clock that moves with it: event times are T0 + model time."""

    def __init__(self) -> None:
        self.t = 0.0

    def at(self, t: float) -> float:
        self.t = t
        return t

    def wall(self) -> float:
        return T0 + self.t


def gate_on(clock: FakeClock, **kwargs: int | float) -> SimulatedGate:
    return SimulatedGate(wall_clock=clock.wall, **kwargs)  # type: ignore[arg-type]


def summary(gate: SimulatedGate) -> list[tuple[int, int, str, int, int]]:
    return [(e.seq, e.time - T0, e.event, e.detail, e.credential) for e in gate.events]


# -- the state machine ---------------------------------------------------------------------------


def test_an_open_command_opens_then_the_gate_closes_by_itself() -> None:
    clock = FakeClock()
    gate = gate_on(clock)  # travel 3 s, automatic closing after 10 s open
    assert gate.state is GateState.CLOSED
    assert gate.command_open(clock.at(0.0))
    assert gate.state is GateState.OPENING
    assert gate.coils(0, 4) == [False, False, False, True]  # the lamp flashes while it moves
    gate.advance(clock.at(2.9))
    assert gate.state is GateState.OPENING
    gate.advance(clock.at(3.0))
    assert gate.state is GateState.OPEN
    assert gate.coils(0, 4) == [False, False, False, False]
    gate.advance(clock.at(12.9))
    assert gate.state is GateState.OPEN
    gate.advance(clock.at(13.0))
    assert gate.state is GateState.CLOSING
    assert gate.warning_lamp
    gate.advance(clock.at(16.5))
    assert gate.state is GateState.CLOSED
    assert summary(gate) == [(1, 0, "opened", 1, 0), (2, 16, "closed", 0, 0)]

    # Advanced in one jump, another gate records the same events with the same times.
    other_clock = FakeClock()
    other = gate_on(other_clock)
    other.command_open(other_clock.at(0.0))
    other.advance(other_clock.at(500.0))
    assert summary(other) == summary(gate)


def test_a_grant_a_denial_the_exit_button_and_a_reopening_while_closing() -> None:
    clock = FakeClock()
    gate = gate_on(clock)
    gate.present(17, granted=True, now=clock.at(1.0))
    gate.present(None, granted=False, now=clock.at(2.0))  # a badge not enrolled
    gate.present(42, granted=False, reason=3, now=clock.at(2.5))  # expired
    gate.advance(clock.at(14.0))  # open at 4, closing since 14
    assert gate.state is GateState.CLOSING
    gate.exit_button(clock.at(15.5))  # half-way closed: it takes 1.5 s to open again
    gate.advance(clock.at(16.9))
    assert gate.state is GateState.OPENING
    gate.advance(clock.at(17.0))
    assert gate.state is GateState.OPEN
    assert gate.exit_button(clock.at(20.0))  # open already: no event, the timer restarts
    gate.advance(clock.at(29.9))
    assert gate.state is GateState.OPEN
    gate.advance(clock.at(33.0))
    assert summary(gate) == [
        (1, 1, "granted", 0, 17),
        (2, 2, "denied", 1, NOT_ENROLLED),
        (3, 2, "denied", 3, 42),
        (4, 15, "opened", 2, 0),
        (5, 33, "closed", 0, 0),
    ]


def test_hold_open_keeps_the_gate_open_and_records_held_open_once() -> None:
    clock = FakeClock()
    gate = gate_on(clock)
    assert gate.write_coil(Coil.HOLD_OPEN, True, clock.at(0.0)) is None
    gate.present(5, granted=True, now=clock.at(0.0))
    gate.advance(clock.at(100.0))
    assert gate.state is GateState.OPEN
    assert gate.coils(2, 1) == [True]
    assert gate.write_coil(Coil.HOLD_OPEN, False, clock.at(100.0)) is None
    assert gate.state is GateState.CLOSING  # overdue: it closes at once
    gate.advance(clock.at(103.0))
    assert summary(gate) == [
        (1, 0, "granted", 0, 5),
        (2, 33, "held_open", 30, 0),  # open at 3 s, 30 s later
        (3, 103, "closed", 0, 0),
    ]


def test_a_forced_gate_stays_open_until_closed_by_command() -> None:
    clock = FakeClock()
    gate = gate_on(clock, held_open_after_s=20.0)
    gate.force_open(clock.at(5.0))
    assert gate.state is GateState.OPEN  # at once: nothing drove the motor
    gate.advance(clock.at(300.0))
    assert gate.state is GateState.OPEN
    assert gate.command_close(clock.at(300.0))
    gate.advance(clock.at(303.0))
    assert summary(gate) == [
        (1, 5, "forced_open", 0, 0),
        (2, 25, "held_open", 20, 0),
        (3, 303, "closed", 0, 0),
    ]


def test_in_fault_open_and_close_are_refused_with_0x04_until_cleared() -> None:
    clock = FakeClock()
    gate = gate_on(clock)
    gate.command_open(clock.at(0.0))
    gate.fault(2, clock.at(1.0))  # an obstacle, a third of the way open
    assert gate.state is GateState.FAULT
    assert gate.registers(1, 2) == [4, 2]
    assert not gate.warning_lamp
    assert gate.write_coil(Coil.OPEN, True, clock.at(2.0)) == ExcCodes.DEVICE_FAILURE
    assert gate.write_coil(Coil.CLOSE, True, clock.at(2.0)) == ExcCodes.DEVICE_FAILURE
    assert gate.write_coil(Coil.OPEN, False, clock.at(2.0)) is None  # writing 0 does nothing
    assert gate.write_coil(Coil.HOLD_OPEN, True, clock.at(2.0)) is None
    assert not gate.exit_button(clock.at(3.0))
    gate.present(9, granted=True, now=clock.at(4.0))  # recorded; the gate cannot move
    gate.advance(clock.at(60.0))
    assert gate.state is GateState.FAULT
    gate.clear_fault(clock.at(61.0))
    assert gate.state is GateState.CLOSED
    assert gate.registers(1, 2) == [0, 0]
    assert summary(gate) == [
        (1, 0, "opened", 1, 0),
        (2, 4, "granted", 0, 9),
        (3, 61, "closed", 0, 0),  # it was not closed when the fault struck
    ]


def test_coil_writes_and_reads_outside_the_map() -> None:
    clock = FakeClock()
    gate = gate_on(clock)
    assert gate.write_coil(Coil.WARNING_LAMP, True, clock.at(0.0)) == ExcCodes.ILLEGAL_ADDRESS
    assert gate.write_coil(4, True, clock.at(0.0)) == ExcCodes.ILLEGAL_ADDRESS
    assert gate.write_coil(Coil.CLOSE, True, clock.at(0.0)) is None  # closed already: fine
    assert gate.events == []
    assert gate.write_coil(Coil.OPEN, True, clock.at(1.0)) is None
    assert gate.coils(0, 2) == [False, False]  # the command coils pulse: they read 0
    with pytest.raises(GateAddressError):
        gate.coils(3, 2)
    with pytest.raises(ValueError, match="backwards"):
        gate.advance(0.5)


# -- the event ring ------------------------------------------------------------------------------


def test_the_header_lays_out_version_state_capacity_epoch_seq_and_clock() -> None:
    clock = FakeClock()
    gate = gate_on(clock, capacity=300, epoch=0x00020003, clock_offset_s=-3600.0)
    gate.present(17, granted=True, now=clock.at(10.0))
    clock_value = T0 + 10 - 3600
    assert gate.registers(0, 16) == [
        1,  # map version
        1,  # opening
        0,  # no fault
        300,
        0x0002,
        0x0003,
        0,
        1,  # last_seq
        clock_value >> 16,
        clock_value & 0xFFFF,
        *[0] * 6,
    ]
    assert gate.events[0].time == clock_value  # events by the controller's clock


def test_a_slot_is_bit_exact_and_lives_at_seq_minus_one_mod_capacity() -> None:
    clock = FakeClock()
    gate = gate_on(clock, capacity=16, start_seq=0x00012344)
    gate.present(0x00ABCDEF, granted=False, reason=4, now=clock.at(0.0))
    assert gate.last_seq == 0x00012345
    slot = (0x00012345 - 1) % 16
    address = 16 + 8 * slot
    assert gate.registers(address, 8) == [
        0x0001,
        0x2345,  # seq
        0x6553,
        0xF100,  # time: T0
        2,  # denied
        4,  # blocked
        0x00AB,
        0xCDEF,  # the credential's index
    ]
    assert gate.registers(0, 24)[16:] == [0] * 8  # slot 0 is empty
    assert gate.registers(address - 3, 10)[3:11] == gate.registers(address, 7)  # any window


def test_the_ring_wraps_at_capacity_and_ends_where_the_map_ends() -> None:
    clock = FakeClock()
    gate = gate_on(clock, capacity=4)
    for n in range(1, 7):
        gate.present(n, granted=False, now=clock.at(float(n)))
    assert gate.last_seq == 6
    ring = gate.registers(16, 32)
    seqs = [(ring[8 * i] << 16) | ring[8 * i + 1] for i in range(4)]
    assert seqs == [5, 6, 3, 4]
    assert ring[8 * 1 : 8 * 2] == gate.events[5].slot_registers()
    assert ring[8 * 1 + 7] == 6  # the credential of seq 6
    assert gate.register_count == 48
    assert len(gate.registers(40, 8)) == 8
    with pytest.raises(GateAddressError):
        gate.registers(41, 8)
    with pytest.raises(GateAddressError):
        gate.registers(48, 1)


def test_a_new_epoch_empties_the_ring_and_counts_from_one_again() -> None:
    clock = FakeClock()
    gate = gate_on(clock, capacity=8, epoch=5)
    gate.present(1, granted=False, now=clock.at(0.0))
    gate.present(2, granted=False, now=clock.at(1.0))
    gate.reset_log(9)
    assert gate.registers(4, 4) == [0, 9, 0, 0]
    assert gate.registers(16, 64) == [0] * 64
    gate.present(3, granted=False, now=clock.at(2.0))
    assert gate.events[-1] == GateEvent(1, T0 + 2, "denied", 1, 3, epoch=9)
    assert [(e.epoch, e.seq) for e in gate.events] == [(5, 1), (5, 2), (9, 1)]
    with pytest.raises(ValueError, match="epoch"):
        gate.reset_log(9)
    # Past 0xFFFFFFFF the log starts over under the next epoch.
    full = gate_on(clock, epoch=3, start_seq=0xFFFFFFFF)
    full.present(4, granted=False, now=clock.at(3.0))
    assert (full.epoch, full.last_seq) == (4, 1)


def test_random_activity_is_seeded_and_shows_every_kind_of_event() -> None:
    def run(seed: int) -> list[GateEvent]:
        clock = FakeClock()
        gate = gate_on(clock)
        activity = RandomActivity(seed)
        for second in range(4 * 3600):
            activity.step(gate, clock.at(float(second)))
        return gate.events

    events = run(1)
    assert events == run(1)
    assert events != run(2)
    assert sum(e.event in ("granted", "denied", "opened", "forced_open") for e in events) > 300
    assert {e.event for e in events} == {
        "granted",
        "denied",
        "forced_open",
        "held_open",
        "opened",
        "closed",
    }
    assert {e.detail for e in events if e.event == "denied"} == {1, 2, 3, 4}


# -- over Modbus ---------------------------------------------------------------------------------

pytest_timeout = pytest.mark.timeout(30)


@contextlib.asynccontextmanager
async def client_for(building: SimulatedBuilding) -> AsyncIterator[ModbusBaseClient]:
    client: ModbusBaseClient
    if building.framer == "rtu":
        client = AsyncModbusSerialClient(
            f"socket://127.0.0.1:{building.port}", framer=FramerType.RTU, timeout=1, retries=0
        )
    else:
        client = AsyncModbusTcpClient("127.0.0.1", port=building.port, timeout=1, retries=0)
    try:
        assert await client.connect()
        yield client
    finally:
        client.close()


def u32(registers: list[int]) -> int:
    return (registers[0] << 16) | registers[1]


@pytest_timeout
@pytest.mark.parametrize("framer", ["tcp", "rtu"])
async def test_a_gate_served_beside_a_meter(framer: str) -> None:
    meters = meters_for({1: SDM120}, start=START, seed=4)
    meters[1].override("voltage", 231.5)
    gate = SimulatedGate(capacity=32, epoch=77, travel_s=10.0)
    async with (
        SimulatedBuilding(
            meters,
            gates={2: gate},
            port=0,
            update_interval_s=60,
            framer=framer,  # type: ignore[arg-type]
        ) as building,
        client_for(building) as client,
    ):
        assert building.gate(2) is gate

        # The controller's clock and its event times are whole seconds of the wall clock: each is
        # read between two readings of the wall clock, so that a stall of the machine in between
        # does not count.
        before = time.time()
        reply = await client.read_holding_registers(0, count=16, device_id=2)
        after = time.time()
        assert not reply.isError()
        header = reply.registers
        assert header[:8] == [1, 0, 0, 32, 0, 77, 0, 0]
        assert before - 1 <= u32(header[8:10]) <= after + 1

        before = time.time()
        gate.present(17, granted=True, now=building.now())
        after = time.time()
        reply = await client.read_holding_registers(16, count=8, device_id=2)
        assert reply.registers[:2] == [0, 1]
        assert reply.registers[4:] == [1, 0, 0, 17]
        assert before - 1 <= u32(reply.registers[2:4]) <= after + 1

        # Closing takes as long as the gate has been opening (2 s): coil 0 comes well before it
        # is closed, and opens it again, recorded; it is still opening when read back.
        await asyncio.sleep(2.0)
        gate.command_close(building.now())
        reply = await client.write_coil(Coil.OPEN, True, device_id=2)
        assert not reply.isError()
        assert reply.bits[0] is True  # the echo
        reply = await client.read_holding_registers(0, count=8, device_id=2)
        assert reply.registers[1] == GateState.OPENING
        assert u32(reply.registers[6:8]) == 2
        assert gate.events[-1].event == "opened"
        assert gate.events[-1].detail == 1
        reply = await client.read_coils(0, count=4, device_id=2)
        assert reply.bits[:4] == [False, False, False, True]
        reply = await client.write_coil(Coil.HOLD_OPEN, True, device_id=2)
        assert not reply.isError()
        reply = await client.read_coils(2, count=2, device_id=2)
        assert reply.bits[:2] == [True, True]
        assert gate.hold_open

        gate.fault(1, building.now())
        reply = await client.write_coil(Coil.OPEN, True, device_id=2)
        assert reply.isError()
        assert reply.exception_code == 0x04
        reply = await client.write_coil(Coil.CLOSE, True, device_id=2)
        assert reply.exception_code == 0x04
        reply = await client.read_holding_registers(1, count=2, device_id=2)
        assert reply.registers == [GateState.FAULT, 1]
        reply = await client.write_coil(Coil.WARNING_LAMP, False, device_id=2)
        assert reply.exception_code == 0x02
        reply = await client.read_coils(4, count=1, device_id=2)
        assert reply.exception_code == 0x02
        reply = await client.read_holding_registers(16 + 8 * 32 - 4, count=5, device_id=2)
        assert reply.exception_code == 0x02
        reply = await client.read_input_registers(0, count=1, device_id=2)
        assert reply.exception_code == 0x01
        reply = await client.write_register(0, 1, device_id=2)
        assert reply.exception_code == 0x01

        # The meter beside it answers exactly what it served before gates existed.
        image = register_image(SDM120, meters[1].last_values)["input"]
        served: list[int] = []
        for address in range(0, len(image), 100):
            count = min(100, len(image) - address)
            reply = await client.read_input_registers(address, count=count, device_id=1)
            served += reply.registers
        assert served == image
        assert served[:2] == [0x4367, 0x8000]  # 231.5 V
        reply = await client.read_holding_registers(0, count=2, device_id=1)
        assert reply.exception_code == 0x02


@pytest_timeout
@pytest.mark.parametrize("framer", ["tcp", "rtu"])
async def test_a_silent_or_rebooting_gate_keeps_its_ring(framer: str) -> None:
    gate = SimulatedGate(capacity=8, epoch=3)
    async with (
        SimulatedBuilding(
            {},
            gates={5: gate},
            port=0,
            framer=framer,  # type: ignore[arg-type]
        ) as building,
        client_for(building) as client,
    ):
        gate.present(1, granted=False, now=building.now())
        building.silence(5)
        with pytest.raises(ModbusIOException):  # no answer: the client times out
            await client.read_holding_registers(0, count=8, device_id=5)
        building.resume(5)
        if framer == "rtu":
            await asyncio.sleep(0.1)  # let the line settle after the timeout
        reply = await client.read_holding_registers(6, count=2, device_id=5)
        assert reply.registers == [0, 1]

        building.reboot(5, down_s=0.5)
        await asyncio.sleep(0.6)
        reply = await client.read_holding_registers(0, count=24, device_id=5)
        assert u32(reply.registers[4:6]) == 3  # same epoch
        assert u32(reply.registers[6:8]) == 1
        assert reply.registers[16:] == gate.events[0].slot_registers()


@pytest_timeout
async def test_serve_building_with_busy_gates_after_the_meters() -> None:
    ready: asyncio.Queue[SimulatedBuilding] = asyncio.Queue()
    task = asyncio.create_task(
        serve_building(2, gates=2, port=0, time_scale=600, seed=3, on_ready=ready.put_nowait)
    )
    try:
        building = await asyncio.wait_for(ready.get(), timeout=5)
        assert sorted(building.meters) == [1, 2]
        assert sorted(building.gates) == [3, 4]
        async with client_for(building) as client:
            deadline = time.monotonic() + 10
            while True:
                reply = await client.read_holding_registers(0, count=10, device_id=4)
                if u32(reply.registers[6:8]) > 0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert u32(reply.registers[6:8]) > 0  # events have happened
            assert u32(reply.registers[4:6]) != 0
            # The controller's clock runs at the simulator's pace (600 s a second here, so it is
            # read between two readings of the simulator's clock): event times never go back.
            before = building.wall_time()
            reply = await client.read_holding_registers(0, count=10, device_id=4)
            after = building.wall_time()
            assert before - 1 <= u32(reply.registers[8:10]) <= after + 1
            times = [e.time for e in building.gate(4).events]
            assert times == sorted(times)
            reply = await client.read_input_registers(0, count=2, device_id=1)
            assert not reply.isError()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_a_unit_id_serves_a_meter_or_a_gate_not_both() -> None:
    meters = meters_for({1: SDM120}, start=START)
    with pytest.raises(ValueError, match="both"):
        SimulatedBuilding(meters, gates={1: SimulatedGate()})
    with pytest.raises(ValueError, match="at least one"):
        SimulatedBuilding({}, gates={})
    with pytest.raises(ValueError, match=r"1\.\.247"):
        SimulatedBuilding({}, gates={248: SimulatedGate()})
    assert SimulatedBuilding({}, gates={247: SimulatedGate()}).gates  # gates alone will do
