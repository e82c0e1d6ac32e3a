"""The owner of one Modbus TCP endpoint: polls its devices, decodes, hands readings to a sink.

One :class:`ModbusTcpBus` per endpoint (a meter with a network port, or a TCP/RTU gateway with
many meters behind it). It keeps one connection and sends one request at a time, because a Modbus
device answers one request at a time; concurrency per endpoint gains nothing.

Scheduling: each device has a monotonic deadline; the bus polls the device whose deadline is
earliest, then sleeps until the next one. A poll that overruns skips the missed slots rather than
bursting to catch up. Every read is bounded by ``timeout_s``; a device that stops answering costs
other devices at most one timeout per poll of it once it is offline (no retries while offline).

Failure handling, per the error contract of :mod:`nbedge.errors`:

- no answer or an exception reply: the read fails; after ``offline_after`` failed polls in a row
  the device is offline, and online again on the first good poll;
- a reply that cannot be decoded: counted in ``decode_errors``, dropped, never fatal;
- NaN or infinite values: counted in ``values_dropped``, never handed on;
- connection lost or refused: reconnect with jittered exponential backoff (capped at
  ``backoff_max_s``); state changes are logged, attempts are not.

Readings of one poll of one device share one ``wall_time`` and ``monotonic_ns``, taken when the
poll starts. ``sink`` must not block; an exception from it ends :meth:`ModbusTcpBus.run`.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.pdu import ModbusPDU

from firmware_bridge.modbus.plan import ReadBlock, decode_block, plan_reads
from firmware_bridge.modbus.profiles import DeviceProfile
from firmware_bridge.readings import Reading
from nbedge.errors import DecodeError

logger = logging.getLogger(__name__)

_GUARD_S = 1.0  # our own bound on top of pymodbus's timeout, should pymodbus ever not time out


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One device on the endpoint: its name for readings, Modbus unit id, profile and poll rate."""

    name: str
    unit_id: int
    profile: DeviceProfile
    poll_interval_s: float

    def __post_init__(self) -> None:
        if not 0 <= self.unit_id <= 255:
            raise ValueError(f"{self.name}: unit_id must be 0..255, not {self.unit_id}")
        if not self.poll_interval_s > 0:
            raise ValueError(f"{self.name}: poll_interval_s must be > 0")


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
    """A snapshot of one device's health and counters (counters count read requests)."""

    name: str
    unit_id: int
    state: DeviceState
    last_ok_wall_time: float | None
    reads_ok: int
    reads_failed: int
    timeouts: int
    exceptions: int
    decode_errors: int
    values_dropped: int
    consecutive_failures: int

    @property
    def online(self) -> bool:
        """Whether the last poll (or one of the last ``offline_after``) got an answer."""
        return self.state is DeviceState.ONLINE


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
            decode_errors=self.decode_errors,
            values_dropped=self.values_dropped,
            consecutive_failures=self.consecutive_failures,
        )


class _ConnectionLost(Exception):
    """Internal: the connection went away during a poll."""


class ModbusTcpBus:
    """Polls every device of one Modbus TCP endpoint over one connection (see the module doc)."""

    def __init__(
        self,
        host: str,
        port: int,
        devices: Sequence[DeviceSpec],
        sink: Callable[[Reading], None],
        *,
        timeout_s: float = 1.0,
        retries: int = 1,
        offline_after: int = 3,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        wall_clock: Callable[[], float] = time.time,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
        rng: random.Random | None = None,
    ) -> None:
        """``retries``: extra attempts after a timeout while a device is not offline."""
        names = [d.name for d in devices]
        if len(set(names)) != len(names):
            raise ValueError(f"device names must be unique on a bus: {names}")
        if timeout_s <= 0 or retries < 0 or offline_after < 1:
            raise ValueError("timeout_s must be > 0, retries >= 0, offline_after >= 1")
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")
        self.host = host
        self.port = port
        self.endpoint = f"{host}:{port}"
        self._sink = sink
        self._timeout_s = timeout_s
        self._retries = retries
        self._offline_after = offline_after
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._wall_clock = wall_clock
        self._monotonic_ns = monotonic_ns
        self._rng = rng or random.Random()
        self._devices = [
            _Device(
                spec=d,
                blocks=plan_reads(d.profile.points, d.profile.max_registers, d.profile.max_gap),
                interval_ns=round(d.poll_interval_s * 1e9),
            )
            for d in devices
        ]
        self._connection = ConnectionState.IDLE
        self._connects = 0
        self._answered = False  # whether the current connection has carried one answer
        self._flaps = 0  # connections in a row that closed before any answer

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
        client = AsyncModbusTcpClient(
            self.host,
            port=self.port,
            timeout=self._timeout_s,
            retries=0,  # retries are ours: none for offline devices
            reconnect_delay=0,  # reconnecting is ours too, with jitter and state-change logs
            name=f"nbedge-{self.endpoint}",
        )
        now = self._monotonic_ns()
        deadlines = [(now, i) for i in range(len(self._devices))]
        heapq.heapify(deadlines)
        try:
            while True:
                if not client.connected:
                    if self._connection is ConnectionState.CONNECTED:
                        self._lost_connection(client)  # the peer closed it between polls
                    await self._connect(client)
                due, index = deadlines[0]
                wait_ns = due - self._monotonic_ns()
                if wait_ns > 0:
                    await asyncio.sleep(wait_ns / 1e9)
                    continue
                device = self._devices[index]
                try:
                    await self._poll(client, device)
                except _ConnectionLost:
                    self._lost_connection(client)
                    continue  # poll this device again once reconnected
                now = self._monotonic_ns()
                missed = max(0, (now - due) // device.interval_ns)
                heapq.heapreplace(deadlines, (due + (missed + 1) * device.interval_ns, index))
        finally:
            client.close()
            if self._connection is not ConnectionState.IDLE:
                self._connection = ConnectionState.DISCONNECTED

    # --- connection ------------------------------------------------------------------------------

    async def _connect(self, client: AsyncModbusTcpClient) -> None:
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

    def _backoff(self, attempts: int) -> float:
        """Equal jitter: half the exponential delay fixed, half random; capped."""
        ceiling = min(self._backoff_max_s, self._backoff_initial_s * 2.0 ** min(attempts - 1, 30))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _lost_connection(self, client: AsyncModbusTcpClient) -> None:
        client.close()
        self._connection = ConnectionState.DISCONNECTED
        for device in self._devices:
            if device.state is DeviceState.ONLINE:
                device.state = DeviceState.OFFLINE
        if not self._answered:
            self._flaps += 1
            return
        self._flaps = 0
        logger.warning("modbus connection lost", extra={"endpoint": self.endpoint})

    # --- polling ---------------------------------------------------------------------------------

    async def _poll(self, client: AsyncModbusTcpClient, device: _Device) -> None:
        """Read every block of one device; stop at its first failed read."""
        wall_time = self._wall_clock()
        stamp_ns = self._monotonic_ns()
        failure: str | None = None
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
            return
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

    async def _read_block(
        self,
        client: AsyncModbusTcpClient,
        device: _Device,
        block: ReadBlock,
        wall_time: float,
        stamp_ns: int,
    ) -> str | None:
        """Read, decode and hand on one block; return why it failed, or None."""
        attempts = 1 if device.state is DeviceState.OFFLINE else 1 + self._retries
        for attempt in range(attempts):
            try:
                response = await self._request(client, device.spec.unit_id, block)
            except (ModbusException, TimeoutError, OSError) as exc:
                if isinstance(exc, ConnectionException) or not client.connected:
                    raise _ConnectionLost from exc
                device.reads_failed += 1
                device.timeouts += 1
                if attempt + 1 < attempts:
                    continue
                return f"no answer within {self._timeout_s} s"
            break
        self._answered = True
        if response.isError():
            device.reads_failed += 1
            device.exceptions += 1
            return f"exception reply {response.exception_code:#04x} to read at {block.address:#06x}"
        device.reads_ok += 1
        try:
            values = decode_block(block, list(response.registers))
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

    async def _request(
        self, client: AsyncModbusTcpClient, unit_id: int, block: ReadBlock
    ) -> ModbusPDU:
        async with asyncio.timeout(self._timeout_s + _GUARD_S):
            if block.function == "input":
                return await client.read_input_registers(
                    block.address, count=block.count, device_id=unit_id
                )
            return await client.read_holding_registers(
                block.address, count=block.count, device_id=unit_id
            )

    def _log_fields(self, device: _Device) -> dict[str, object]:
        return {
            "endpoint": self.endpoint,
            "device": device.spec.name,
            "unit_id": device.spec.unit_id,
        }
