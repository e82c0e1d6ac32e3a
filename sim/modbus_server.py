"""A building's meters behind a real Modbus server (pymodbus), on loopback by default.

:class:`SimulatedBuilding` serves one :class:`~sim.meter.SimulatedMeter` per unit id, the way a
Modbus TCP/RTU gateway in a meter cabinet serves the meters on its RS-485 line. Registers are
encoded from the same profile files the gateway reads with
(:func:`firmware_bridge.modbus.plan.encode_point`), so a profile mistake shows up on both sides
alike. Every ``update_interval_s`` the meters are recomputed at the simulator's time and the
register images replaced; :meth:`SimulatedBuilding.refresh` does it at once (after an
``override``, say).

A request for a unit id that is not served gets exception 0x0B (gateway target device failed to
respond), as a real TCP gateway answers for a dead meter, or no answer at all with
``unknown_units="silent"`` (the client times out, as on a bare RS-485 line). Reads of registers a
profile does not define but that lie between its points return 0; reads past the last point get
exception 0x02; writes get exception 0x01.

With ``framer="rtu"`` the same meters are served with Modbus RTU framing (unit id, PDU, CRC) over
the TCP socket, as a transparent serial server would pass an RS-485 line through: a client opens
``AsyncModbusSerialClient(port=f"socket://127.0.0.1:{port}", framer=FramerType.RTU)``, or an
nbedge ``SerialLine(f"socket://127.0.0.1:{port}")``. Units not served stay silent by default, as
on a bare RS-485 line. Fault injection for this transport: ``garble_fraction`` of the answers
(drawn with ``garble_seed``) leave with their CRC's last byte inverted, so the client's framer
must reject them; :attr:`SimulatedBuilding.garbled` counts them.

Faults of one meter, on either transport: :meth:`SimulatedBuilding.silence` makes a served unit
stop answering (no reply at all: the client times out) until :meth:`SimulatedBuilding.resume` or
for a given time; :meth:`SimulatedBuilding.reboot` resets its counters (energy, water volume) to 0
and silences it for a few seconds, as a meter that restarts; :meth:`SimulatedBuilding.set_delay`
makes its answers slow. Keep a delay below the client's timeout: pymodbus's server answers a late
request with the transaction id of the latest one, so an answer that outlives the client's timeout
could be taken for the answer to the next request (use ``silence`` for a device that never answers).

Gates: ``gates`` serves :class:`~sim.gate.SimulatedGate` models on unit ids of their own, by
nbedge's gate register map (docs/gate-controller.md): function 3 reads the header and the event
ring, function 1 the four coils, function 5 writes one (open, close, hold_open; the warning lamp
answers 0x02, open and close in fault 0x04); other functions answer 0x01. Before each request the
gate is advanced to :meth:`SimulatedBuilding.now`, the simulator's time (``time_scale`` applies),
the clock to pass to the model's methods from a test: ``building.gate(5).present(17,
granted=True, now=building.now())``. Silence, delay and garbling apply to gates as to meters; a
gate that reboots is silent for a while but keeps its ring (a controller keeps its log in flash).
A read of coils that starts at 0-3 but runs past coil 3 gets 0 for the coils past it, not 0x02:
the request hook sees only the 16-coil words asked for.

Usage::

    meters = meters_for({1: "eastron_sdm630", 2: "eastron_sdm120"}, start=datetime.now())
    async with SimulatedBuilding(meters, port=0, update_interval_s=0.1) as building:
        print(building.port)                 # the port the OS picked
        meters[1].override("voltage_l1", 262.0)
        building.refresh()                   # served from now on
        ...                                  # point a ModbusTcpBus at 127.0.0.1:building.port

    await serve_building(meters, port=5020)  # for a CLI: runs until cancelled
    await serve_building(3, port=5020, voltage_event_every_s=120)  # three SDM630 on units 1..3
    await serve_building(2, gates=2, port=5020)  # meters on units 1-2, busy gates on units 3-4

    async with SimulatedBuilding({}, gates={5: SimulatedGate(capacity=64)}, port=0) as building:
        building.gate(5).present(17, granted=True, now=building.now())  # event 1, opening

Leaving the ``async with`` block stops the refresh task and the server and closes every client
connection; nothing is left running.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from types import TracebackType
from typing import Final, Literal, Self

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware_bridge.modbus.plan import Function, encode_point
from firmware_bridge.modbus.profiles import DeviceProfile, load_profile
from sim.gate import Coil, GateAddressError, RandomActivity, SimulatedGate
from sim.load_profile import LoadProfile, ResidentialLoadProfile
from sim.meter import SimulatedMeter, VoltageEvent

logger = logging.getLogger(__name__)

_FUNCTION_CODES: Final[Mapping[int, Function]] = {3: "holding", 4: "input"}
_ADDRESS_SPACE: Final = 0x10000
_READ_COILS: Final = 1
_READ_HOLDING: Final = 3
_WRITE_COIL: Final = 5
SWELL_V: Final = 262.0  # outside EN 50160's 230 V +-10 %
Framing = Literal["tcp", "rtu"]
UnknownUnits = Literal["exception", "silent"]

_Action = Callable[
    [int, int, int, int, list[int], list[int] | list[bool] | None],
    Coroutine[None, None, ExcCodes | None],
]


def meters_for(
    profiles: Mapping[int, str | DeviceProfile],
    *,
    start: datetime,
    seed: int = 0,
    load: LoadProfile | None = None,
) -> dict[int, SimulatedMeter]:
    """One meter per unit id, from profile names (or loaded profiles), each with its own seed."""
    shared_load = load or ResidentialLoadProfile(noise=0.05, seed=seed)
    return {
        unit: SimulatedMeter(
            profile if isinstance(profile, DeviceProfile) else load_profile(profile),
            shared_load,
            start=start,
            seed=seed * 1000 + unit,
        )
        for unit, profile in profiles.items()
    }


def register_image(
    profile: DeviceProfile, values: Mapping[str, float]
) -> dict[Function, list[int]]:
    """The registers of each function, from address 0 to the last point, encoding ``values``."""
    images: dict[Function, list[int]] = {}
    for function in ("input", "holding"):
        points = [p for p in profile.points if p.function == function]
        if not points:
            continue
        image = [0] * max(p.address + p.count for p in points)
        for point in points:
            image[point.address : point.address + point.count] = encode_point(
                point, values.get(point.name, 0.0)
            )
        images[function] = image
    return images


class SimulatedBuilding:
    """An async context manager serving simulated meters over Modbus (see the module doc)."""

    def __init__(
        self,
        meters: Mapping[int, SimulatedMeter],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        update_interval_s: float = 1.0,
        unknown_units: UnknownUnits | None = None,
        time_scale: float = 1.0,
        framer: Framing = "tcp",
        garble_fraction: float = 0.0,
        garble_seed: int = 0,
        gates: Mapping[int, SimulatedGate] | None = None,
    ) -> None:
        """``port`` 0 or None: the OS picks a free port. ``time_scale`` speeds simulated time up.

        ``unknown_units`` defaults to ``"exception"`` over TCP and ``"silent"`` over RTU;
        ``garble_fraction`` (RTU only) is the share of answers sent with a bad CRC. ``gates``
        are served on unit ids of their own; ``meters`` may then be empty.
        """
        units = [*meters, *(gates or {})]
        if not units or any(not 1 <= unit <= 247 for unit in units):
            raise ValueError("serve at least one meter or gate, on unit ids 1..247")
        if shared := sorted(set(meters) & set(gates or {})):
            raise ValueError(f"unit ids {shared} are given both a meter and a gate")
        if update_interval_s <= 0 or time_scale <= 0:
            raise ValueError("update_interval_s and time_scale must be > 0")
        if framer not in ("tcp", "rtu"):
            raise ValueError(f"framer must be 'tcp' or 'rtu', not {framer!r}")
        if not 0 <= garble_fraction <= 1 or (garble_fraction and framer != "rtu"):
            raise ValueError("garble_fraction is a share (0..1) of RTU answers")
        self.meters = dict(meters)
        self.gates: dict[int, SimulatedGate] = dict(gates or {})
        self.host = host
        self._requested_port = port or 0
        self._port: int | None = None
        self.update_interval_s = update_interval_s
        self.framer: Framing = framer
        self.unknown_units: UnknownUnits = unknown_units or (
            "silent" if framer == "rtu" else "exception"
        )
        self.time_scale = time_scale
        self.garble_fraction = garble_fraction
        self._garble_rng = random.Random(garble_seed)
        self.answers = 0
        """Answers sent (RTU only: counted by the fault-injection hook)."""
        self.garbled = 0
        """Answers sent with a bad CRC."""
        self._images: dict[int, dict[Function, list[int]]] = {}
        self._silent_until: dict[int, float] = {}  # event-loop time, per silenced unit
        self._delay_s: dict[int, float] = {}
        self._t0 = 0.0
        self._wall0 = 0.0
        self._server: ModbusTcpServer | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._refresher: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The port the server listens on (known once the context is entered)."""
        if self._port is None:
            raise RuntimeError("the building is not serving yet")
        return self._port

    def sim_time(self) -> float:
        """Seconds of simulated time since the server started."""
        return (asyncio.get_running_loop().time() - self._t0) * self.time_scale

    def now(self) -> float:
        """The gates' clock: the simulator's time, as :meth:`sim_time`."""
        return self.sim_time()

    def wall_time(self) -> float:
        """UTC seconds when the server started plus the simulated time since: a wall clock that
        runs ``time_scale`` times fast, for gates' clocks when ``time_scale`` is not 1."""
        return self._wall0 + self.sim_time()

    def gate(self, unit: int) -> SimulatedGate:
        """The gate served on ``unit``, to script its activity (pass it :meth:`now`)."""
        return self.gates[unit]

    def refresh(self) -> None:
        """Recompute every meter now and serve the new values from the next request on."""
        t = self.sim_time()
        self._images = {
            unit: register_image(meter.profile, meter.values_at(t))
            for unit, meter in self.meters.items()
        }

    def silence(self, unit: int, for_s: float = math.inf) -> None:
        """``unit`` stops answering (for ``for_s`` seconds, or until :meth:`resume`)."""
        if unit not in self.meters and unit not in self.gates:
            raise KeyError(unit)
        self._silent_until[unit] = asyncio.get_running_loop().time() + for_s

    def resume(self, unit: int) -> None:
        """``unit`` answers again."""
        self._silent_until.pop(unit, None)

    def reboot(self, unit: int, down_s: float = 3.0) -> None:
        """``unit`` restarts: silent for ``down_s``, then answers with its counters back at 0.

        A gate keeps its state and its event ring: it is only silent for ``down_s``.
        """
        if unit in self.gates:
            self.silence(unit, down_s)
            return
        self.meters[unit].reset_counters()
        self.silence(unit, down_s)
        self.refresh()

    def set_delay(self, unit: int, delay_s: float) -> None:
        """``unit`` answers ``delay_s`` late (0: at once); keep it below the client's timeout."""
        if unit not in self.meters and unit not in self.gates:
            raise KeyError(unit)
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        self._delay_s[unit] = delay_s

    async def __aenter__(self) -> Self:
        self._t0 = asyncio.get_running_loop().time()
        self._wall0 = time.time()
        self.refresh()
        devices = [self._device(unit) for unit in [*self.meters, *self.gates]]
        catch_all = _unit_silent if self.unknown_units == "silent" else _unit_not_served
        devices.append(SimDevice(id=0, simdata=[self._registers(_ADDRESS_SPACE)], action=catch_all))
        server = ModbusTcpServer(
            devices,
            address=(self.host, self._requested_port),
            framer=FramerType.RTU if self.framer == "rtu" else FramerType.SOCKET,
            ignore_missing_devices=True,  # only the "silent" hooks raise NoSuchIdException
            trace_packet=self._garble if self.framer == "rtu" else None,
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self.host}:{self._requested_port}") from exc
        self._server = server
        self._port = _bound_port(server, self._requested_port)
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._refresher = self._tasks.create_task(self._refresh_loop(), name="sim-modbus-refresh")
        logger.info(
            "simulated building serving",
            extra={
                "host": self.host,
                "port": self._port,
                "framer": self.framer,
                "units": sorted(self.meters),
                "gates": sorted(self.gates),
            },
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._refresher is not None:
                self._refresher.cancel()
            if self._tasks is not None:
                await self._tasks.__aexit__(None, None, None)
        finally:
            self._tasks = self._refresher = None
            if self._server is not None:
                await self._server.shutdown()  # type: ignore[no-untyped-call]
                self._server = None

    def _garble(self, sending: bool, packet: bytes) -> bytes:
        """pymodbus's packet hook: invert the CRC's last byte of some answers."""
        if not sending:
            return packet
        self.answers += 1
        if packet and self._garble_rng.random() < self.garble_fraction:
            self.garbled += 1
            return packet[:-1] + bytes([packet[-1] ^ 0xFF])
        return packet

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.update_interval_s)
            self.refresh()

    def _registers(self, count: int) -> SimData:
        return SimData(address=0, count=count, values=0, datatype=DataType.REGISTERS)

    def _device(self, unit: int) -> SimDevice:
        if unit in self.gates:
            return self._gate_device(unit)
        size = max(len(image) for image in self._images[unit].values())
        return SimDevice(id=unit, simdata=[self._registers(size)], action=self._action(unit))

    def _gate_device(self, unit: int) -> SimDevice:
        """Separate blocks: every coil and holding address reaches the hook, which answers."""
        return SimDevice(
            id=unit,
            simdata=(
                [SimData(0, values=[0] * (_ADDRESS_SPACE // 16), datatype=DataType.BITS)],
                [SimData(0, count=1, values=0, datatype=DataType.BITS)],
                [self._registers(_ADDRESS_SPACE)],
                [self._registers(1)],
            ),
            action=self._action(unit),
        )

    def _action(self, unit: int) -> _Action:
        """The hook pymodbus calls per request: copy the unit's current image into its registers.

        For a gate: advance it to now, then serve it (see :meth:`_serve_gate`).
        """

        async def serve(
            function_code: int,
            start_address: int,
            address: int,
            count: int,
            registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            silent_until = self._silent_until.get(unit)
            if silent_until is not None:
                if asyncio.get_running_loop().time() < silent_until:
                    raise NoSuchIdException("unit silenced")  # pymodbus then stays mute
                del self._silent_until[unit]
            delay_s = self._delay_s.get(unit, 0.0)
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            gate = self.gates.get(unit)
            if gate is not None:
                return self._serve_gate(
                    gate, function_code, start_address, address, count, registers, set_values
                )
            function = _FUNCTION_CODES.get(function_code)
            if set_values is not None or function is None:
                return ExcCodes.ILLEGAL_FUNCTION
            image = self._images[unit].get(function)
            if image is None or address + count > len(image):
                return ExcCodes.ILLEGAL_ADDRESS
            offset = address - start_address
            registers[offset : offset + count] = image[address : address + count]
            return None

        return serve

    def _serve_gate(
        self,
        gate: SimulatedGate,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """One request to a gate. For coils, ``count`` is the number of 16-coil words asked for
        and ``registers`` holds 16 coils per word; pymodbus writes a coil's new value itself once
        this returns None, and then reads it back (function 5, no values) for the echo."""
        now = max(self.now(), gate.now or 0.0)  # a test may have acted a little ahead
        gate.advance(now)
        if function_code == _READ_HOLDING and set_values is None:
            try:
                values = gate.registers(address, count)
            except GateAddressError:
                return ExcCodes.ILLEGAL_ADDRESS
            offset = address - start_address
            registers[offset : offset + count] = values
            return None
        if function_code == _READ_COILS and set_values is None:
            if address >= len(Coil) or count != 1:
                return ExcCodes.ILLEGAL_ADDRESS
            coils = gate.coils(0, len(Coil))
            registers[address // 16 - start_address] = sum(
                1 << bit for bit, on in enumerate(coils) if on
            )
            return None
        if function_code == _WRITE_COIL:
            if set_values is None:
                return None  # the echo of the value just written
            return gate.write_coil(address, bool(set_values[0]), now)
        return ExcCodes.ILLEGAL_FUNCTION


async def _unit_not_served(
    function_code: int,
    start_address: int,
    address: int,
    count: int,
    registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> ExcCodes | None:
    """Device 0 catches every unit id not served: answer 0x0B, as a TCP gateway does."""
    return ExcCodes.GATEWAY_NO_RESPONSE


async def _unit_silent(
    function_code: int,
    start_address: int,
    address: int,
    count: int,
    registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> ExcCodes | None:
    """Device 0 catches every unit id not served: pymodbus then stays mute (ignore_missing)."""
    raise NoSuchIdException("unit id not served")


def _bound_port(server: ModbusTcpServer, requested: int) -> int:
    sockets = getattr(server.transport, "sockets", None) or ()
    for sock in sockets:
        return int(sock.getsockname()[1])
    return requested


async def serve_building(
    meters: int | Mapping[int, SimulatedMeter] = 1,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    update_interval_s: float = 1.0,
    unknown_units: UnknownUnits | None = None,
    time_scale: float = 1.0,
    framer: Framing = "tcp",
    garble_fraction: float = 0.0,
    voltage_event_every_s: float | None = None,
    seed: int = 0,
    on_ready: Callable[[SimulatedBuilding], None] | None = None,
    gates: int | Mapping[int, SimulatedGate] = 0,
) -> None:
    """Serve until cancelled; ``on_ready`` is called once the server listens.

    ``meters`` is either the meters to serve by unit id, or a count N: N SDM630 meters on unit ids
    1..N with the residential load profile, where ``voltage_event_every_s`` (if set and > 0)
    puts L1 at 262 V for a tenth of each period (at most 30 s), first after one period.

    ``gates`` is either the gates to serve by unit id (their activity is yours to script), or a
    count N: N gates on the unit ids after the meters, each with its own :class:`RandomActivity`
    (seeded from ``seed``) and an epoch taken from the clock at start, so a restarted simulator
    shows a new event log, as a replaced controller would; their clocks run at the simulator's
    pace (:meth:`SimulatedBuilding.wall_time`).
    """
    if isinstance(meters, int):
        events: list[VoltageEvent] = []
        if voltage_event_every_s:
            every = voltage_event_every_s
            events.append(VoltageEvent(every, min(30.0, every / 10), SWELL_V, period_s=every))
        profile = load_profile("eastron_sdm630")
        start = datetime.now()  # naive local time: the load profile reads the building's clock
        meters = {
            unit: SimulatedMeter(
                profile,
                ResidentialLoadProfile(noise=0.05, seed=seed),
                start=start,
                seed=seed * 1000 + unit,
                voltage_events=events,
            )
            for unit in range(1, meters + 1)
        }
    elif voltage_event_every_s:
        raise ValueError("voltage_event_every_s applies to generated meters; give yours events")
    activities: dict[int, RandomActivity] = {}
    if isinstance(gates, int):
        if gates < 0:
            raise ValueError("gates must be a count >= 0 or the gates by unit id")
        first = max(meters, default=0) + 1
        epoch = max(1, int(time.time()) & 0xFFFFFFFF)
        activities = {
            unit: RandomActivity(seed * 1000 + unit) for unit in range(first, first + gates)
        }
        gates = {unit: SimulatedGate(epoch=epoch) for unit in activities}
        generated = list(gates.values())
    else:
        generated = []
    building = SimulatedBuilding(
        meters,
        host=host,
        port=port,
        update_interval_s=update_interval_s,
        unknown_units=unknown_units,
        time_scale=time_scale,
        framer=framer,
        garble_fraction=garble_fraction,
        gates=gates,
    )
    for gate in generated:
        gate.wall_clock = building.wall_time
    async with building:
        if on_ready is not None:
            on_ready(building)
        if activities:
            await drive_gates(building, activities)
        await asyncio.Event().wait()


async def drive_gates(
    building: SimulatedBuilding, activities: Mapping[int, RandomActivity], *, tick_s: float = 0.5
) -> None:
    """Step each gate's activity on the building's clock every ``tick_s``, until cancelled."""
    while True:
        now = building.now()
        for unit, activity in activities.items():
            activity.step(building.gate(unit), now)
        await asyncio.sleep(tick_s)
