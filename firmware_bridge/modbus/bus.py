"""The owner of one Modbus link: polls its devices, decodes, hands readings to a sink.

A link is a Modbus TCP endpoint (:class:`TcpLink`: a meter with a network port, or a TCP/RTU
gateway with many meters behind it) or a serial port speaking Modbus RTU (:class:`SerialLine`: an
RS-485 line with meters on it). One :class:`ModbusBus` per link: it keeps one connection and sends
one request at a time, because a Modbus device (and an RS-485 line) carries one request at a time;
concurrency per link gains nothing. :class:`ModbusTcpBus` is the TCP case by host and port.

Pacing: after each answer (or timeout) the bus waits ``request_gap_s`` before the next request.
On a serial line the default is the RTU inter-frame silence, 3.5 character times (1.75 ms above
19,200 baud, per the Modbus serial line specification), but at least 5 ms, because USB-RS-485
adapters and meters need time to turn the line around; over TCP the default is no gap.

Scheduling: each device has a monotonic deadline; the bus polls the device whose deadline is
earliest, then sleeps until the next one. A poll that overruns skips the missed slots rather than
bursting to catch up. Devices with the same interval stay in phase: fifty meters polled every
second are read back to back, then the bus sleeps. Spreading their phases over the interval was
measured (bench/modbus_poll.py, 50 meters on one endpoint): p99 poll jitter fell from about
+40 ms to +5 ms, but the gateway's CPU per read rose by 60 % (a wake-up per device instead of
one per second), and a few tens of milliseconds do not matter to a reading stamped when its
poll starts. Every read is bounded by ``timeout_s``; a device that stops answering costs
other devices at most one timeout per poll of it once it is offline (no retries while offline).

Failure handling, per the error contract of :mod:`nbedge.errors`:

- no answer or an exception reply: the read fails; after ``offline_after`` failed polls in a row
  the device is offline, and online again on the first good poll;
- an RTU answer with a bad CRC or broken framing: pymodbus drops it and the read times out; the
  bus counts it in the device's ``frame_errors`` (not ``timeouts``), retries like a timeout, and
  never treats it as fatal;
- a reply that cannot be decoded: counted in ``decode_errors``, dropped, never fatal;
- NaN or infinite values: counted in ``values_dropped``, never handed on;
- connection lost or refused (TCP peer gone, USB adapter unplugged): reconnect with jittered
  exponential backoff (capped at ``backoff_max_s``); state changes are logged, attempts are not.

Readings of one poll of one device share one ``wall_time`` and ``monotonic_ns``, taken when the
poll starts. ``sink`` must not block; an exception from it ends :meth:`ModbusBus.run`.

Devices other than meters (gate controllers) bring a :class:`DeviceDriver` instead of a profile:
the bus calls its ``poll`` with a :class:`DeviceIO`, through which every request gets the same
pacing, timeout, retries and counters as a meter's reads; a failed request fails the poll.
:meth:`ModbusBus.execute` runs a short operation on one device (a gate command: write a coil,
read the state back) between two polls, ahead of any poll that is due, so a command waits for
at most the request in flight.

State changes: the optional ``on_state`` gets a :class:`DeviceStateChange` each time a device
becomes online (its first good poll, or the first after being offline) or offline (after
``offline_after`` failed polls, a dropped connection counting as one, or when the link stays
down longer than ``max(2 s, offline_after x timeout_s)``; a link that comes back sooner changes
no device's state, so a brief drop raises no alert for every meter on it). Like
``sink``, it must not block, and an exception from it ends :meth:`ModbusBus.run`.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Literal, Protocol, TypedDict, TypeVar, Unpack

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient, ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.framer import FramerRTU, FramerType
from pymodbus.pdu import DecodePDU, ModbusPDU

from firmware_bridge.modbus.plan import ReadBlock, decode_block, plan_reads
from firmware_bridge.modbus.profiles import DeviceProfile
from firmware_bridge.readings import Reading
from nbedge.errors import DecodeError, DeviceRefused, DeviceUnavailable

logger = logging.getLogger(__name__)

_GUARD_S = 1.0  # our own bound on top of pymodbus's timeout, should pymodbus ever not time out
MIN_SERIAL_GAP_S: Final = 0.005
"""The shortest default pause between requests on a serial line (see the module doc)."""

T = TypeVar("T")
Parity = Literal["N", "E", "O"]
BAUDRATES: Final = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


@dataclass(frozen=True, slots=True)
class TcpLink:
    """A Modbus TCP endpoint."""

    host: str
    port: int = 502

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SerialLine:
    """A serial port speaking Modbus RTU, and its line settings (RTU always has 8 data bits).

    ``port`` is a device (``/dev/ttyUSB0``) or any pyserial URL, e.g. ``socket://127.0.0.1:5020``
    for RTU frames over a TCP socket (tests, or a transparent serial server).
    """

    port: str
    baudrate: int = 9600
    parity: Parity = "N"
    stopbits: int = 1

    def __post_init__(self) -> None:
        if not self.port:
            raise ValueError("a serial line needs a port")
        if self.baudrate not in BAUDRATES:
            raise ValueError(f"baudrate must be one of {BAUDRATES}, not {self.baudrate}")
        if self.parity not in ("N", "E", "O"):
            raise ValueError(f"parity must be N, E or O, not {self.parity!r}")
        if self.stopbits not in (1, 2):
            raise ValueError(f"stopbits must be 1 or 2, not {self.stopbits}")

    @property
    def endpoint(self) -> str:
        return f"{self.port} ({self.baudrate} 8{self.parity}{self.stopbits})"

    @property
    def char_time_s(self) -> float:
        """Seconds one character takes on the line: start bit, 8 data bits, parity, stop bits."""
        bits = 1 + 8 + (self.parity != "N") + self.stopbits
        return bits / self.baudrate

    @property
    def frame_gap_s(self) -> float:
        """The RTU inter-frame silence: 3.5 characters, fixed at 1.75 ms above 19,200 baud."""
        return 0.00175 if self.baudrate > 19200 else 3.5 * self.char_time_s


Link = TcpLink | SerialLine


def default_request_gap_s(link: Link) -> float:
    """No gap over TCP; on a serial line the RTU frame gap, but at least ``MIN_SERIAL_GAP_S``."""
    if isinstance(link, SerialLine):
        return max(link.frame_gap_s, MIN_SERIAL_GAP_S)
    return 0.0


class FrameCheck:
    """A pymodbus ``trace_packet`` hook for RTU clients: counts answers dropped as garbled.

    pymodbus's RTU framer silently discards a buffer whose CRC does not match (the request then
    times out); this hook runs the same check on what arrives so the owner can tell a garbled
    answer from silence.
    """

    def __init__(self) -> None:
        self.garbled = 0
        self._framer = FramerRTU(DecodePDU(False))

    def __call__(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            used, _, _, frame = self._framer.decode(data)
            if used and not frame:
                self.garbled += 1
        return data


def make_client(
    link: Link,
    *,
    timeout_s: float,
    name: str,
    frame_check: FrameCheck | None = None,
) -> ModbusBaseClient:
    """A pymodbus client for ``link`` that neither retries nor reconnects on its own.

    Create it inside a running event loop.
    """
    if isinstance(link, SerialLine):
        return AsyncModbusSerialClient(
            link.port,
            framer=FramerType.RTU,
            baudrate=link.baudrate,
            bytesize=8,
            parity=link.parity,
            stopbits=link.stopbits,
            timeout=timeout_s,
            retries=0,
            reconnect_delay=0,
            name=name,
            trace_packet=frame_check,
        )
    return AsyncModbusTcpClient(
        link.host,
        port=link.port,
        timeout=timeout_s,
        retries=0,
        reconnect_delay=0,
        name=name,
    )


class DeviceDriver(Protocol):
    """What a device that is not a plain meter (a gate controller) does at each poll."""

    async def poll(self, io: DeviceIO, wall_time: float, stamp_ns: int) -> None:
        """Read the device through ``io``. A ``DeviceUnavailable`` from ``io`` fails the poll (let
        it propagate); raise ``DecodeError`` for an answer that makes no sense (counted)."""
        ...


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One device on the endpoint: its name for readings, Modbus unit id, poll rate, and what to
    read: a meter's ``profile`` or, for other devices, a ``driver`` (exactly one of the two)."""

    name: str
    unit_id: int
    profile: DeviceProfile | None
    poll_interval_s: float
    driver: DeviceDriver | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.unit_id <= 255:
            raise ValueError(f"{self.name}: unit_id must be 0..255, not {self.unit_id}")
        if not self.poll_interval_s > 0:
            raise ValueError(f"{self.name}: poll_interval_s must be > 0")
        if (self.profile is None) == (self.driver is None):
            raise ValueError(f"{self.name}: give a profile or a driver, not both or neither")


class ConnectionState(enum.StrEnum):
    """The state of the bus's one connection."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


class DeviceState(enum.StrEnum):
    """``unknown`` until the first poll settles it; then ``online`` or ``offline``."""

    UNKNOWN = "unknown"
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A snapshot of one device's health and counters (counters count requests: reads, and
    writes of commands)."""

    name: str
    unit_id: int
    state: DeviceState
    last_ok_wall_time: float | None
    reads_ok: int
    reads_failed: int
    timeouts: int
    exceptions: int
    frame_errors: int
    decode_errors: int
    values_dropped: int
    consecutive_failures: int

    @property
    def online(self) -> bool:
        """Whether the last poll (or one of the last ``offline_after``) got an answer."""
        return self.state is DeviceState.ONLINE


@dataclass(frozen=True, slots=True)
class DeviceStateChange:
    """A device became online or offline (see the module doc), at ``wall_time``."""

    device: str
    unit_id: int
    online: bool
    wall_time: float
    reason: str
    """Why: ``answered``, or the last failure (``no answer within 0.5 s``, ``connection lost``)."""
    last_ok_wall_time: float | None
    """When the device last answered; None if it never has since the bus started."""
    consecutive_failures: int


@dataclass(frozen=True, slots=True)
class BusStatus:
    """A snapshot of the bus: its connection and every device."""

    endpoint: str
    connection: ConnectionState
    connects: int
    devices: tuple[DeviceStatus, ...]

    def device(self, name: str) -> DeviceStatus:
        """The status of the device called ``name`` (KeyError if none)."""
        for status in self.devices:
            if status.name == name:
                return status
        raise KeyError(name)


@dataclass(slots=True)
class _Device:
    """Mutable per-device state, owned by the bus's one task."""

    spec: DeviceSpec
    blocks: list[ReadBlock]
    interval_ns: int
    state: DeviceState = DeviceState.UNKNOWN
    last_ok_wall_time: float | None = None
    reads_ok: int = 0
    reads_failed: int = 0
    timeouts: int = 0
    exceptions: int = 0
    frame_errors: int = 0
    decode_errors: int = 0
    values_dropped: int = 0
    consecutive_failures: int = 0

    def snapshot(self) -> DeviceStatus:
        return DeviceStatus(
            name=self.spec.name,
            unit_id=self.spec.unit_id,
            state=self.state,
            last_ok_wall_time=self.last_ok_wall_time,
            reads_ok=self.reads_ok,
            reads_failed=self.reads_failed,
            timeouts=self.timeouts,
            exceptions=self.exceptions,
            frame_errors=self.frame_errors,
            decode_errors=self.decode_errors,
            values_dropped=self.values_dropped,
            consecutive_failures=self.consecutive_failures,
        )


class _ConnectionLost(Exception):
    """Internal: the connection went away during a poll."""


@dataclass(frozen=True, slots=True)
class _Command(Generic[T]):
    """Internal: an operation waiting for its turn on the link."""

    device: _Device
    operation: Callable[[DeviceIO], Awaitable[T]]
    future: asyncio.Future[T]


@dataclass(frozen=True, slots=True)
class _Failed:
    """Internal: why a request failed, and the exception code if the device refused it."""

    reason: str
    exception_code: int | None = None


class DeviceIO:
    """Requests to one device, for a :class:`DeviceDriver` or an operation given to
    :meth:`ModbusBus.execute`: each paced, bounded by the bus's timeout, retried (unless the
    device is offline) and counted like a meter's reads. A request that fails raises
    ``DeviceUnavailable`` (``DeviceRefused`` for an exception reply)."""

    def __init__(self, bus: ModbusBus, client: ModbusBaseClient, device: _Device) -> None:
        self._bus = bus
        self._client = client
        self._device = device
        self.name = device.spec.name

    async def read_holding(self, address: int, count: int) -> list[int]:
        """Read ``count`` holding registers (function 3) from ``address``."""
        unit = self._device.spec.unit_id
        response = await self._call(
            lambda c: c.read_holding_registers(address, count=count, device_id=unit),
            f"read at {address:#06x}",
        )
        registers = list(response.registers)
        if len(registers) != count:
            raise DecodeError(f"{self.name}: asked {count} registers, got {len(registers)}")
        return registers

    async def read_coils(self, address: int, count: int) -> list[bool]:
        """Read ``count`` coils (function 1) from ``address``."""
        unit = self._device.spec.unit_id
        response = await self._call(
            lambda c: c.read_coils(address, count=count, device_id=unit),
            f"coil read at {address}",
        )
        return list(response.bits[:count])

    async def write_coil(self, address: int, value: bool) -> None:
        """Write one coil (function 5)."""
        unit = self._device.spec.unit_id
        await self._call(
            lambda c: c.write_coil(address, value, device_id=unit), f"coil write at {address}"
        )

    async def _call(
        self, request: Callable[[ModbusBaseClient], Awaitable[ModbusPDU]], what: str
    ) -> ModbusPDU:
        answer = await self._bus._exchange(self._client, self._device, request, what)
        if isinstance(answer, _Failed):
            if answer.exception_code is not None:
                raise DeviceRefused(self.name, answer.reason, answer.exception_code)
            raise DeviceUnavailable(self.name, answer.reason)
        return answer


class BusOptions(TypedDict, total=False):
    """The keyword options of :class:`ModbusBus` (and of :class:`ModbusTcpBus`)."""

    timeout_s: float
    retries: int
    offline_after: int
    request_gap_s: float | None
    backoff_initial_s: float
    backoff_max_s: float
    wall_clock: Callable[[], float]
    monotonic_ns: Callable[[], int]
    rng: random.Random | None
    on_state: Callable[[DeviceStateChange], None] | None


class ModbusBus:
    """Polls every device of one Modbus link over one connection (see the module doc)."""

    def __init__(
        self,
        link: Link,
        devices: Sequence[DeviceSpec],
        sink: Callable[[Reading], None],
        *,
        timeout_s: float = 1.0,
        retries: int = 1,
        offline_after: int = 3,
        request_gap_s: float | None = None,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        wall_clock: Callable[[], float] = time.time,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
        rng: random.Random | None = None,
        on_state: Callable[[DeviceStateChange], None] | None = None,
    ) -> None:
        """``retries``: extra attempts after a timeout while a device is not offline.

        ``request_gap_s``: pause between the end of one answer and the next request; None takes
        :func:`default_request_gap_s` of the link.
        """
        names = [d.name for d in devices]
        if len(set(names)) != len(names):
            raise ValueError(f"device names must be unique on a bus: {names}")
        if timeout_s <= 0 or retries < 0 or offline_after < 1:
            raise ValueError("timeout_s must be > 0, retries >= 0, offline_after >= 1")
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")
        if request_gap_s is not None and not 0 <= request_gap_s <= 10:
            raise ValueError("request_gap_s must be 0..10 s")
        if isinstance(link, SerialLine):
            broadcast = [d.name for d in devices if not 1 <= d.unit_id <= 247]
            if broadcast:
                raise ValueError(f"on a serial line unit ids are 1..247: {broadcast}")
        self.link = link
        self.endpoint = link.endpoint
        self._request_gap_s = (
            default_request_gap_s(link) if request_gap_s is None else request_gap_s
        )
        self._line_free_at = 0.0  # event-loop time before which the next request must wait
        self._frame_check = FrameCheck() if isinstance(link, SerialLine) else None
        self._sink = sink
        self._on_state = on_state
        self._timeout_s = timeout_s
        self._retries = retries
        self._offline_after = offline_after
        # A link down for longer than this makes its devices offline (a brief drop does not).
        self._link_grace_ns = int(max(2.0, offline_after * timeout_s) * 1e9)
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._wall_clock = wall_clock
        self._monotonic_ns = monotonic_ns
        self._rng = rng or random.Random()
        self._devices = [
            _Device(
                spec=d,
                blocks=[]
                if d.profile is None
                else plan_reads(d.profile.points, d.profile.max_registers, d.profile.max_gap),
                interval_ns=round(d.poll_interval_s * 1e9),
            )
            for d in devices
        ]
        self._by_name = {d.spec.name: d for d in self._devices}
        self._commands: deque[_Command[object]] = deque()
        self._wake: asyncio.Future[None] | None = None  # resolved by execute() to end a sleep
        self._stopped = False
        self._connection = ConnectionState.IDLE
        self._connects = 0
        self._answered = False  # whether the current connection has carried one answer
        self._flaps = 0  # connections in a row that closed before any answer

    def has_device(self, name: str) -> bool:
        return name in self._by_name

    def status(self) -> BusStatus:
        """A consistent snapshot of the connection and every device's counters."""
        return BusStatus(
            endpoint=self.endpoint,
            connection=self._connection,
            connects=self._connects,
            devices=tuple(d.snapshot() for d in self._devices),
        )

    async def run(self) -> None:
        """Poll until cancelled; the one client is created inside the loop and closed on exit."""
        # Retries are ours (none for offline devices); reconnecting is ours too, with jitter and
        # state-change logs: the client does neither.
        client = make_client(
            self.link,
            timeout_s=self._timeout_s,
            name=f"nbedge-{self.endpoint}",
            frame_check=self._frame_check,
        )
        now = self._monotonic_ns()
        deadlines = [(now, i) for i in range(len(self._devices))]  # in phase: see the module doc
        heapq.heapify(deadlines)
        self._stopped = False
        task = asyncio.current_task()
        try:
            while True:
                if task is not None and task.cancelling():
                    # Cancelled, yet running: Python 3.11's wait_for, which pymodbus awaits on
                    # every request, returns the answer instead of raising when the answer and
                    # the cancellation arrive in the same loop turn.
                    raise asyncio.CancelledError
                if not client.connected:
                    if self._connection is ConnectionState.CONNECTED:
                        self._lost_connection(client)  # the peer closed it between polls
                    await self._connect(client)
                if self._commands:
                    try:
                        await self._run_command(client, self._commands.popleft())
                    except _ConnectionLost:
                        self._lost_connection(client)
                    continue
                due, index = deadlines[0]
                wait_ns = due - self._monotonic_ns()
                if wait_ns > 0:
                    # A plain future and asyncio.wait: no task per sleep, and a cancellation of
                    # the bus is never taken for the end of the sleep.
                    self._wake = asyncio.get_running_loop().create_future()
                    await asyncio.wait((self._wake,), timeout=wait_ns / 1e9)
                    continue
                device = self._devices[index]
                try:
                    await self._poll(client, device)
                except _ConnectionLost:
                    self._failed(device, self._wall_clock(), "connection lost")
                    self._lost_connection(client)
                    continue  # poll this device again once reconnected
                now = self._monotonic_ns()
                missed = max(0, (now - due) // device.interval_ns)
                heapq.heapreplace(deadlines, (due + (missed + 1) * device.interval_ns, index))
        finally:
            self._stopped = True
            client.close()
            if self._connection is not ConnectionState.IDLE:
                self._connection = ConnectionState.DISCONNECTED
            while self._commands:
                command = self._commands.popleft()
                if not command.future.done():
                    command.future.set_exception(
                        DeviceUnavailable(command.device.spec.name, "the bus stopped")
                    )

    async def execute(self, device: str, operation: Callable[[DeviceIO], Awaitable[T]]) -> T:
        """Run ``operation`` on ``device`` between two polls, ahead of the polls that are due.

        Keep it short (a few requests): the link is the operation's while it runs. Raises
        ``KeyError`` for an unknown device, ``DeviceUnavailable`` if the bus has stopped or the
        connection drops, and whatever ``operation`` raises. Bound the wait with a timeout:
        until the bus runs and while the link is down, the operation waits (cancelling withdraws
        it).
        """
        target = self._by_name[device]
        if self._stopped:
            raise DeviceUnavailable(device, "the bus has stopped")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._commands.append(_Command(target, operation, future))  # type: ignore[arg-type]
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        return await future

    async def _run_command(self, client: ModbusBaseClient, command: _Command[object]) -> None:
        if command.future.done():  # the caller gave up waiting
            return
        io = DeviceIO(self, client, command.device)
        try:
            result = await command.operation(io)
        except _ConnectionLost:
            command.future.set_exception(
                DeviceUnavailable(command.device.spec.name, "connection lost")
            )
            raise
        except Exception as exc:  # noqa: BLE001 - the caller of execute() gets it
            if not command.future.done():
                command.future.set_exception(exc)
            return
        if not command.future.done():
            command.future.set_result(result)

    # --- connection ------------------------------------------------------------------------------

    async def _connect(self, client: ModbusBaseClient) -> None:
        """Connect, retrying with jittered exponential backoff; log the first failure only."""
        was = self._connection
        self._connection = ConnectionState.CONNECTING
        attempts = 0
        started = self._monotonic_ns()
        if self._flaps:  # the peer accepts then drops us (e.g. a gateway out of sockets): back off
            await asyncio.sleep(self._backoff(self._flaps))
        while True:
            attempts += 1
            try:
                async with asyncio.timeout(self._timeout_s + _GUARD_S):
                    ok = await client.connect()
            except TimeoutError:
                ok = False
            if ok and client.connected:
                break
            if attempts == 1 and was is not ConnectionState.DISCONNECTED:
                logger.warning(
                    "modbus endpoint unreachable, retrying with backoff",
                    extra={"endpoint": self.endpoint},
                )
            if self._monotonic_ns() - started >= self._link_grace_ns:
                self._unreachable()
            await asyncio.sleep(self._backoff(attempts))
        self._connection = ConnectionState.CONNECTED
        self._connects += 1
        self._answered = False
        if self._flaps:
            return  # still flapping: logged when it started
        logger.info(
            "modbus endpoint connected",
            extra={
                "endpoint": self.endpoint,
                "attempts": attempts,
                "waited_s": round((self._monotonic_ns() - started) / 1e9, 3),
                "reconnect": self._connects > 1,
            },
        )

    def _unreachable(self) -> None:
        """The link stayed down past its grace period: every device still online is offline."""
        wall_time = self._wall_clock()
        for device in self._devices:
            if device.state is DeviceState.ONLINE:
                device.state = DeviceState.OFFLINE
                self._report(device, wall_time, "connection lost")

    def _backoff(self, attempts: int) -> float:
        """Equal jitter: half the exponential delay fixed, half random; capped."""
        ceiling = min(self._backoff_max_s, self._backoff_initial_s * 2.0 ** min(attempts - 1, 30))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _lost_connection(self, client: ModbusBaseClient) -> None:
        """The link dropped. Devices stay as they are: a reconnection within the grace period
        (``_connect``) changes nothing, so a brief drop raises no alert for every device."""
        client.close()
        self._connection = ConnectionState.DISCONNECTED
        if not self._answered:
            self._flaps += 1
            return
        self._flaps = 0
        logger.warning("modbus connection lost", extra={"endpoint": self.endpoint})

    # --- polling ---------------------------------------------------------------------------------

    async def _poll(self, client: ModbusBaseClient, device: _Device) -> None:
        """Read every block of one device (stop at its first failed read), or run its driver."""
        wall_time = self._wall_clock()
        stamp_ns = self._monotonic_ns()
        failure: str | None = None
        driver = device.spec.driver
        if driver is not None:
            failure = await self._poll_driver(client, device, driver, wall_time, stamp_ns)
        for block in device.blocks:
            failure = await self._read_block(client, device, block, wall_time, stamp_ns)
            if failure is not None:
                break
        if failure is None:
            device.consecutive_failures = 0
            device.last_ok_wall_time = wall_time
            if device.state is not DeviceState.ONLINE:
                device.state = DeviceState.ONLINE
                logger.info("modbus device online", extra=self._log_fields(device))
                self._report(device, wall_time, "answered")
            return
        self._failed(device, wall_time, failure)

    async def _poll_driver(
        self,
        client: ModbusBaseClient,
        device: _Device,
        driver: DeviceDriver,
        wall_time: float,
        stamp_ns: int,
    ) -> str | None:
        """Run a driver's poll; return why it failed, or None."""
        try:
            await driver.poll(DeviceIO(self, client, device), wall_time, stamp_ns)
        except DeviceUnavailable as exc:
            return exc.reason
        except DecodeError as exc:
            device.decode_errors += 1
            logger.warning(
                "modbus device answer not understood",
                extra={**self._log_fields(device), "error": str(exc)},
            )
        return None

    def _failed(self, device: _Device, wall_time: float, failure: str) -> None:
        """Count a failed poll; ``offline_after`` of them in a row make the device offline."""
        device.consecutive_failures += 1
        if (
            device.consecutive_failures >= self._offline_after
            and device.state is not DeviceState.OFFLINE
        ):
            device.state = DeviceState.OFFLINE
            fields = self._log_fields(device)
            fields["reason"] = failure
            fields["consecutive_failures"] = device.consecutive_failures
            logger.warning("modbus device offline", extra=fields)
            self._report(device, wall_time, failure)

    def _report(self, device: _Device, wall_time: float, reason: str) -> None:
        if self._on_state is None:
            return
        self._on_state(
            DeviceStateChange(
                device=device.spec.name,
                unit_id=device.spec.unit_id,
                online=device.state is DeviceState.ONLINE,
                wall_time=wall_time,
                reason=reason,
                last_ok_wall_time=device.last_ok_wall_time,
                consecutive_failures=device.consecutive_failures,
            )
        )

    async def _read_block(
        self,
        client: ModbusBaseClient,
        device: _Device,
        block: ReadBlock,
        wall_time: float,
        stamp_ns: int,
    ) -> str | None:
        """Read, decode and hand on one block; return why it failed, or None."""
        unit = device.spec.unit_id
        if block.function == "input":
            answer = await self._exchange(
                client,
                device,
                lambda c: c.read_input_registers(block.address, count=block.count, device_id=unit),
                f"read at {block.address:#06x}",
            )
        else:
            answer = await self._exchange(
                client,
                device,
                lambda c: c.read_holding_registers(
                    block.address, count=block.count, device_id=unit
                ),
                f"read at {block.address:#06x}",
            )
        if isinstance(answer, _Failed):
            return answer.reason
        try:
            values = decode_block(block, list(answer.registers))
        except DecodeError as exc:
            device.decode_errors += 1
            logger.debug(
                "modbus decode error", extra={**self._log_fields(device), "error": str(exc)}
            )
            return None
        device.values_dropped += len(block.points) - len(values)
        name = device.spec.name
        for point, value in values:
            self._sink(Reading(name, point.name, value, point.unit, wall_time, stamp_ns))
        return None

    async def _exchange(
        self,
        client: ModbusBaseClient,
        device: _Device,
        request: Callable[[ModbusBaseClient], Awaitable[ModbusPDU]],
        what: str,
    ) -> ModbusPDU | _Failed:
        """One request with the device's retries: the answer, or why it failed (counted)."""
        attempts = 1 if device.state is DeviceState.OFFLINE else 1 + self._retries
        for attempt in range(attempts):
            garbled = self._garbled()
            try:
                response = await self._request(client, request)
            except (ModbusException, TimeoutError, OSError) as exc:
                if isinstance(exc, ConnectionException) or not client.connected:
                    raise _ConnectionLost from exc
                device.reads_failed += 1
                if self._garbled() > garbled:
                    device.frame_errors += 1
                    reason = "garbled answer (bad CRC or framing)"
                else:
                    device.timeouts += 1
                    reason = f"no answer within {self._timeout_s} s"
                if attempt + 1 < attempts:
                    continue
                return _Failed(reason)
            break
        self._answered = True
        if response.isError():
            device.reads_failed += 1
            device.exceptions += 1
            code = int(response.exception_code)
            return _Failed(f"exception reply {code:#04x} to {what}", code)
        device.reads_ok += 1
        return response

    async def _request(
        self,
        client: ModbusBaseClient,
        request: Callable[[ModbusBaseClient], Awaitable[ModbusPDU]],
    ) -> ModbusPDU:
        """One request, after the line has been quiet for ``request_gap_s``."""
        loop = asyncio.get_running_loop()
        wait_s = self._line_free_at - loop.time()
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        try:
            async with asyncio.timeout(self._timeout_s + _GUARD_S):
                return await request(client)
        finally:
            self._line_free_at = loop.time() + self._request_gap_s

    def _garbled(self) -> int:
        return 0 if self._frame_check is None else self._frame_check.garbled

    def _log_fields(self, device: _Device) -> dict[str, object]:
        return {
            "endpoint": self.endpoint,
            "device": device.spec.name,
            "unit_id": device.spec.unit_id,
        }


class ModbusTcpBus(ModbusBus):
    """A :class:`ModbusBus` on the Modbus TCP endpoint ``host:port``."""

    def __init__(
        self,
        host: str,
        port: int,
        devices: Sequence[DeviceSpec],
        sink: Callable[[Reading], None],
        **options: Unpack[BusOptions],
    ) -> None:
        super().__init__(TcpLink(host, port), devices, sink, **options)
        self.host = host
        self.port = port
