"""The gate controller driver against the simulated controller, over Modbus TCP and RTU framing.

The simulator (sim/gate.py) implements docs/gate-controller.md on its own, without the driver's
code, so a misreading of the map on either side shows up here. Every event the simulated
controller records must reach the driver's sink once, in order, with the credential as a keyed
hash; a meter on the same link keeps being read; commands are confirmed by reading the state
back, refused in fault, and reported unreachable or not confirmed when that is what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.events import AccessEvent
from firmware_bridge.modbus.bus import DeviceSpec, Link, ModbusBus, SerialLine, TcpLink
from firmware_bridge.modbus.gate import (
    STATE_POINT,
    GateController,
    GateCursor,
    Pseudonymizer,
    decode_header,
    decode_slot,
)
from firmware_bridge.modbus.profiles import load_profile
from firmware_bridge.readings import Reading
from nbedge.errors import DecodeError
from sim.gate import GateEvent, SimulatedGate
from sim.modbus_server import SimulatedBuilding, meters_for
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(60)

GATE_UNIT = 5
KEY = bytes(range(32))
PSEUDONYM = Pseudonymizer(KEY)
UNKNOWN = 0xFFFFFFFF
DETAILS = {
    ("denied", 1): "credential not enrolled",
    ("denied", 2): "outside its schedule",
    ("denied", 3): "credential expired",
    ("denied", 4): "credential blocked",
    ("opened", 1): "remote command",
    ("opened", 2): "exit button",
}


def expected(
    event: GateEvent, gate: str = "north", pseudonym: Pseudonymizer = PSEUDONYM
) -> tuple[str, str | None, str | None]:
    """What the driver must make of one event the simulator recorded (docs/gate-controller.md)."""
    ref = None if event.credential in (0, UNKNOWN) else pseudonym(gate, event.credential)
    if event.event == "held_open":
        detail: str | None = f"open for {event.detail} s"
    else:
        detail = DETAILS.get((event.event, event.detail))
    return event.event, ref, detail


@dataclass
class Sink:
    """Collects what the driver hands on; ``refuse`` makes it refuse events (a full store)."""

    readings: list[Reading] = field(default_factory=list)
    events: list[tuple[AccessEvent, str]] = field(default_factory=list)
    refuse: bool = False

    def event(self, event: AccessEvent, key: str, value: str) -> bool:
        assert key == "gate.north"
        if self.refuse:
            return False
        self.events.append((event, value))
        return True

    def got(self) -> list[tuple[str, str | None, str | None]]:
        return [(e.event, e.credential_ref, e.detail) for e, _ in self.events]

    def cursor(self) -> GateCursor | None:
        return GateCursor.parse(self.events[-1][1]) if self.events else None


@dataclass
class Rig:
    building: SimulatedBuilding
    gate: SimulatedGate
    bus: ModbusBus
    controller: GateController
    sink: Sink
    now: Callable[[], float]


def make_link(framer: str, port: int) -> Link:
    if framer == "rtu":
        return SerialLine(f"socket://127.0.0.1:{port}")
    return TcpLink("127.0.0.1", port)


@contextlib.asynccontextmanager
async def polling(
    building: SimulatedBuilding,
    framer: str,
    sink: Sink,
    cursor: GateCursor | None = None,
    *,
    max_events_per_poll: int = 120,
) -> AsyncIterator[tuple[ModbusBus, GateController]]:
    """A bus owner polling the gate (and an SDM120 on unit 1) until the block ends."""
    controller = GateController(
        "north",
        emit_reading=sink.readings.append,
        emit_event=sink.event,
        pseudonymize=PSEUDONYM,
        cursor=cursor,
        max_events_per_poll=max_events_per_poll,
    )
    bus = ModbusBus(
        make_link(framer, building.port),
        [
            DeviceSpec("flat", 1, load_profile("eastron_sdm120"), 0.2),
            DeviceSpec("north", GATE_UNIT, None, 0.1, driver=controller),
        ],
        sink.readings.append,
        timeout_s=0.5,
    )
    task = asyncio.create_task(bus.run())
    try:
        yield bus, controller
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def new_gate(**options: float) -> SimulatedGate:
    settings = {"travel_s": 0.2, "auto_close_s": 0.3, "held_open_after_s": 0.6, **options}
    return SimulatedGate(capacity=32, epoch=7, **settings)  # type: ignore[arg-type]


def building(gate: SimulatedGate, framer: str) -> SimulatedBuilding:
    meters = meters_for({1: "eastron_sdm120"}, start=datetime(2024, 5, 6, 19, 0))
    return SimulatedBuilding(
        meters, gates={GATE_UNIT: gate}, port=0, framer=framer, update_interval_s=0.2
    )


async def all_read(sink: Sink, gate: SimulatedGate, timeout_s: float = 10.0) -> None:
    await wait_until(lambda: len(sink.events) >= gate.last_seq, timeout_s=timeout_s)


@pytest.mark.parametrize("framer", ["tcp", "rtu"])
async def test_every_kind_of_access_event_arrives_once_in_order(framer: str) -> None:
    # The controller's clock runs an hour behind: event times still land on the gateway's.
    gate = new_gate(clock_offset_s=-3600.0)
    sink = Sink()
    async with building(gate, framer) as sim, polling(sim, framer, sink) as (bus, controller):
        now = sim.now
        started = time.time()
        gate.present(17, granted=True, now=now())
        await asyncio.sleep(1.0)  # opens, closes by itself
        gate.present(None, granted=False, reason=1, now=now())
        gate.present(42, granted=False, reason=2, now=now())
        gate.present(17, granted=False, reason=3, now=now())
        gate.force_open(now=now())
        await asyncio.sleep(1.0)  # held open: a forced gate does not close by itself
        result = await controller.command(bus, "close", operator="test", confirm_timeout_s=3)
        assert result.result == "confirmed", result
        await asyncio.sleep(0.5)
        gate.exit_button(now=now())
        await asyncio.sleep(1.0)
        await all_read(sink, gate)
        await asyncio.sleep(0.5)  # and nothing more comes
        flat_readings = [r for r in sink.readings if r.device == "flat"]

    assert sink.got() == [expected(event) for event in gate.events]
    kinds = {event for event, _, _ in sink.got()}
    assert kinds == {"granted", "denied", "forced_open", "held_open", "opened", "closed"}
    refs = {ref for _, ref, _ in sink.got() if ref}
    assert refs == {PSEUDONYM("north", 17), PSEUDONYM("north", 42)}
    assert all(len(ref) == 32 and ref not in ("17", "42") for ref in refs)
    for event, _ in sink.events:
        assert started - 2 <= event.wall_time <= time.time() + 2  # on the gateway's time line
    assert [GateCursor.parse(value) for _, value in sink.events] == [
        GateCursor(7, seq) for seq in range(1, gate.last_seq + 1)
    ]
    assert len(flat_readings) >= 10, "the meter on the same link kept being read"
    states = [r.value for r in sink.readings if r.point == STATE_POINT]
    assert {0.0, 2.0} <= set(states)  # closed and open seen (readings on change)


@pytest.mark.parametrize("framer", ["tcp", "rtu"])
async def test_commands_are_confirmed_by_reading_the_state_back(framer: str) -> None:
    gate = new_gate(auto_close_s=30.0)
    sink = Sink()
    async with building(gate, framer) as sim, polling(sim, framer, sink) as (bus, controller):
        opened = await controller.command(bus, "open", operator="caretaker")
        assert (opened.result, opened.state_before) == ("confirmed", "closed")
        assert opened.state_after in ("opening", "open")
        closed = await controller.command(bus, "close", operator="caretaker")
        assert closed.result == "confirmed"
        assert closed.state_after in ("closing", "closed")
        await wait_until(lambda: gate.state == 0)

        gate.fault(2, now=sim.now())
        refused = await controller.command(bus, "open", operator="caretaker")
        assert (refused.result, refused.state_after) == ("refused", "fault")
        gate.clear_fault(now=sim.now())

        # A controller that takes the command but whose motor does not move.
        gate.command_open = lambda now: True  # type: ignore[method-assign]
        stuck = await controller.command(bus, "open", operator="caretaker", confirm_timeout_s=1.0)
        assert (stuck.result, stuck.state_after) == ("not_confirmed", "closed")

        sim.silence(GATE_UNIT)
        gone = await controller.command(bus, "open", operator="caretaker", confirm_timeout_s=1.5)
        assert gone.result == "unreachable"
        sim.resume(GATE_UNIT)
        status = controller.status()
    assert status.commands == 5
    assert status.last_command == gone
    opened_events = [e for e in gate.events if e.event == "opened"]
    assert [e.detail for e in opened_events] == [1]  # the one remote open that moved the gate


async def test_a_restart_resumes_after_the_last_event_handed_on() -> None:
    gate = new_gate()
    first, second = Sink(), Sink()
    async with building(gate, "tcp") as sim:
        async with polling(sim, "tcp", first):
            for credential in (1, 2, 3):
                gate.present(credential, granted=False, reason=4, now=sim.now())
            await all_read(first, gate)
        # The gateway is down: four more events, then it comes back with its stored cursor.
        for credential in (4, 5, 6, 7):
            gate.present(credential, granted=False, reason=4, now=sim.now())
        async with polling(sim, "tcp", second, first.cursor()):
            await wait_until(lambda: len(second.events) == 4)
            await asyncio.sleep(0.5)
    assert first.got() + second.got() == [expected(event) for event in gate.events]


async def test_a_ring_overrun_while_down_is_counted_and_the_rest_is_read() -> None:
    gate = new_gate()  # 32 slots
    first, second = Sink(), Sink()
    async with building(gate, "tcp") as sim:
        async with polling(sim, "tcp", first):
            gate.present(1, granted=False, reason=1, now=sim.now())
            await all_read(first, gate)
        for credential in range(2, 42):  # 40 events while down: 8 overwritten
            gate.present(credential, granted=False, reason=1, now=sim.now())
        async with polling(sim, "tcp", second, first.cursor(), max_events_per_poll=10) as (
            _,
            controller,
        ):
            await wait_until(lambda: len(second.events) == 32)
            await asyncio.sleep(0.5)
            status = controller.status()
    assert status.events_lost == 8
    assert second.got() == [expected(event) for event in gate.events[-32:]]


async def test_a_reset_controller_log_is_read_from_its_start() -> None:
    gate = new_gate()
    first, second = Sink(), Sink()
    async with building(gate, "tcp") as sim:
        async with polling(sim, "tcp", first):
            for credential in (1, 2, 3, 4, 5):
                gate.present(credential, granted=False, reason=1, now=sim.now())
            await all_read(first, gate)
        gate.reset_log(9)  # a replaced controller: its sequence starts again at 1
        gate.present(6, granted=False, reason=1, now=sim.now())
        async with polling(sim, "tcp", second, first.cursor()):
            await wait_until(lambda: len(second.events) == 1)
            await asyncio.sleep(0.5)
    assert second.got() == [expected(gate.events[-1])]
    assert second.cursor() == GateCursor(9, 1)


async def test_an_event_the_store_refuses_is_offered_again() -> None:
    gate = new_gate()
    sink = Sink(refuse=True)
    async with building(gate, "tcp") as sim, polling(sim, "tcp", sink):
        gate.present(1, granted=False, reason=1, now=sim.now())
        await asyncio.sleep(0.5)
        assert sink.events == []
        sink.refuse = False
        await all_read(sink, gate)
    assert sink.got() == [expected(gate.events[0])]


def test_a_header_of_another_map_or_with_nonsense_is_refused() -> None:
    good = [1, 0, 0, 32, 0, 7, 0, 0, 0x6000, 0]
    assert decode_header(good).capacity == 32
    for index, value in ((0, 2), (1, 9), (3, 0), (5, 0)):
        bad = list(good)
        bad[index] = value
        with pytest.raises(DecodeError):
            decode_header(bad)
    with pytest.raises(DecodeError):
        decode_slot([0] * 7)


@given(st.lists(st.integers(0, 0xFFFF), min_size=0, max_size=20))
def test_any_header_decodes_or_is_refused_with_a_decode_error(registers: list[int]) -> None:
    try:
        header = decode_header(registers)
    except DecodeError:
        return
    assert registers[0] == 1
    assert 1 <= header.capacity <= 8190
    assert header.epoch > 0


@given(st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=8))
def test_any_slot_decodes_to_its_fields(registers: list[int]) -> None:
    slot = decode_slot(registers)
    assert slot.seq == registers[0] << 16 | registers[1]
    assert (slot.code, slot.detail) == (registers[4], registers[5])
    assert 0 <= slot.credential <= 0xFFFFFFFF


def test_credential_pseudonyms_are_keyed_and_the_key_file_is_private(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "state" / "credential-key"
    first = Pseudonymizer.from_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert Pseudonymizer.from_file(path)("north", 17) == first("north", 17)  # stable
    assert first("north", 17) != first("south", 17) != first("north", 18)
    assert first("north", 17) != PSEUDONYM("north", 17)  # another gateway's key
