"""Gate and barrier controllers that speak the nbedge gate register map (docs/gate-controller.md).

:class:`GateController` is a :class:`~firmware_bridge.modbus.bus.DeviceDriver`: the bus owner of
the controller's endpoint or serial line calls its ``poll`` like it reads a meter. Each poll reads
the 16 header registers; the state and fault code become readings (``gate_state``,
``gate_fault_code``) when they change and once a minute. When the controller's ``last_seq`` is
ahead of the gateway's cursor, the missing event slots are read (15 slots per request, at most
``max_events_per_poll`` per poll so a long backlog does not hold the line), checked, and handed
on oldest first, each with the cursor it advances to. The owner of ``emit_event`` stores the
event and its cursor in one transaction: an event read but not stored is read again after a
restart, an event stored is never read again.

Commands (:meth:`GateController.command`) go through :meth:`ModbusBus.execute`, one short step
at a time, so the meters on the same line keep their poll rate while a gate is confirmed.

The controller gives a credential as its index in the controller's own list, never a card
number; :class:`Pseudonymizer` turns that into a keyed hash before it leaves this module.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from firmware_bridge.events import AccessEvent, AccessEventKind
from firmware_bridge.modbus.bus import DeviceIO, ModbusBus
from firmware_bridge.readings import Reading
from nbedge.errors import DecodeError, DeviceRefused, DeviceUnavailable

logger = logging.getLogger(__name__)

MAP_VERSION: Final = 1
HEADER_REGISTERS: Final = 16
SLOT_REGISTERS: Final = 8
SLOTS_PER_READ: Final = 15  # 120 registers: within the 125 of one Modbus read
MAX_CAPACITY: Final = (0x10000 - HEADER_REGISTERS) // SLOT_REGISTERS
NO_CREDENTIAL: Final = 0
UNKNOWN_CREDENTIAL: Final = 0xFFFFFFFF
COIL_OPEN: Final = 0
COIL_CLOSE: Final = 1
COIL_HOLD_OPEN: Final = 2
STATE_POINT: Final = "gate_state"
STATE_READING_EVERY_NS: Final = 60 * 1_000_000_000
"""State and fault code become readings when they change, and at least this often."""
FAULT_POINT: Final = "gate_fault_code"


class GateState(enum.IntEnum):
    CLOSED = 0
    OPENING = 1
    OPEN = 2
    CLOSING = 3
    FAULT = 4

    @property
    def label(self) -> str:
        return self.name.lower()


EVENTS: Final[dict[int, AccessEventKind]] = {
    1: "granted",
    2: "denied",
    3: "forced_open",
    4: "held_open",
    5: "opened",
    6: "closed",
}
DENIED_BECAUSE: Final = {
    1: "credential not enrolled",
    2: "outside its schedule",
    3: "credential expired",
    4: "credential blocked",
}
OPENED_BY: Final = {1: "remote command", 2: "exit button", 3: "key switch", 4: "schedule"}
FAULTS: Final = {
    0: "none",
    1: "motor overcurrent",
    2: "obstacle or safety edge",
    3: "limit switch",
    4: "power supply or battery",
    0xFFFF: "other",
}

Command = Literal["open", "close"]
CommandOutcome = Literal["confirmed", "refused", "unreachable", "not_confirmed"]
_MOVING_TO: Final[dict[Command, frozenset[GateState]]] = {
    "open": frozenset({GateState.OPENING, GateState.OPEN}),
    "close": frozenset({GateState.CLOSING, GateState.CLOSED}),
}
_CONFIRM_POLL_S: Final = 0.2


def _u32(high: int, low: int) -> int:
    return (high << 16) | low


@dataclass(frozen=True, slots=True)
class GateHeader:
    """Registers 0-15 of the controller."""

    state: GateState
    fault_code: int
    capacity: int
    epoch: int
    last_seq: int
    clock: int


def decode_state(registers: list[int]) -> GateState:
    """The state from registers 0-1 (map version, state); ``DecodeError`` if not map version 1."""
    if registers[0] != MAP_VERSION:
        raise DecodeError(f"gate register map version {registers[0]}, expected {MAP_VERSION}")
    try:
        return GateState(registers[1])
    except ValueError:
        raise DecodeError(f"gate state {registers[1]} is not one of 0..4") from None


def decode_header(registers: list[int]) -> GateHeader:
    """The header from registers 0-15; ``DecodeError`` when it does not follow map version 1."""
    if len(registers) < 10:
        raise DecodeError(f"a gate header has {HEADER_REGISTERS} registers, got {len(registers)}")
    state = decode_state(registers)
    capacity = registers[3]
    if not 1 <= capacity <= MAX_CAPACITY:
        raise DecodeError(f"gate ring capacity {capacity} is not 1..{MAX_CAPACITY}")
    epoch = _u32(registers[4], registers[5])
    if epoch == 0:
        raise DecodeError("gate ring epoch 0 (must be non-zero)")
    return GateHeader(
        state=state,
        fault_code=registers[2],
        capacity=capacity,
        epoch=epoch,
        last_seq=_u32(registers[6], registers[7]),
        clock=_u32(registers[8], registers[9]),
    )


@dataclass(frozen=True, slots=True)
class SlotEvent:
    """One event slot as the controller wrote it."""

    seq: int
    time: int
    code: int
    detail: int
    credential: int


def decode_slot(registers: list[int]) -> SlotEvent:
    """One 8-register slot."""
    if len(registers) != SLOT_REGISTERS:
        raise DecodeError(f"a gate event slot has {SLOT_REGISTERS} registers")
    return SlotEvent(
        seq=_u32(registers[0], registers[1]),
        time=_u32(registers[2], registers[3]),
        code=registers[4],
        detail=registers[5],
        credential=_u32(registers[6], registers[7]),
    )


def slot_address(seq: int, capacity: int) -> int:
    """The first register of the slot that holds event ``seq``."""
    return HEADER_REGISTERS + ((seq - 1) % capacity) * SLOT_REGISTERS


@dataclass(frozen=True, slots=True)
class GateCursor:
    """How far the gateway has stored a controller's events: its epoch and last sequence."""

    epoch: int
    seq: int

    def encode(self) -> str:
        return f"{self.epoch}:{self.seq}"

    @classmethod
    def parse(cls, text: str) -> GateCursor | None:
        """The cursor stored as ``epoch:seq``; None for an empty or damaged value."""
        try:
            epoch, seq = (int(part) for part in text.split(":"))
        except ValueError:
            return None
        return cls(epoch, seq) if epoch > 0 and seq >= 0 else None


class Pseudonymizer:
    """Credential references: HMAC-SHA256(key, "<gate>:<index>"), the first 16 bytes in hex.

    The key is the gateway's own secret, so the platform can tell one credential's uses apart
    from another's without being able to recover the controller's index, let alone a card.
    """

    KEY_BYTES: Final = 32

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a credential key needs at least 16 bytes")
        self._key = key

    @classmethod
    def from_file(cls, path: Path) -> Pseudonymizer:
        """Load the key from ``path``, creating it (mode 0600, random) when missing."""
        try:
            return cls(path.read_bytes())
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(cls.KEY_BYTES)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # created meanwhile by another process
            return cls(path.read_bytes())
        with os.fdopen(fd, "wb") as file:
            file.write(key)
            file.flush()
            os.fsync(file.fileno())
        logger.info("credential key created", extra={"path": str(path)})
        return cls(key)

    def __call__(self, gate: str, index: int) -> str:
        digest = hmac.new(self._key, f"{gate}:{index}".encode(), hashlib.sha256).digest()
        return digest[:16].hex()


@dataclass(frozen=True, slots=True)
class GateStatus:
    """What the gateway knows of one controller (for ``/api/status`` and the local page)."""

    name: str
    state: str | None
    fault: str | None
    epoch: int | None
    last_seq: int | None
    stored_seq: int | None
    events_read: int
    events_lost: int
    events_rejected: int
    commands: int
    last_command: CommandResult | None


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What became of one command."""

    gate: str
    command: Command
    operator: str
    result: CommandOutcome
    state_before: str | None
    state_after: str | None
    elapsed_s: float
    detail: str = ""


EmitEvent = Callable[[AccessEvent, str, str], bool]
"""``emit_event(event, cursor_key, cursor_value)``: hand on an event with the cursor it advances
to; False if it was not taken (read it again later); ``DecodeError`` if it can never be."""


class GateController:
    """The driver of one gate controller on a bus (see the module doc)."""

    def __init__(
        self,
        name: str,
        *,
        emit_reading: Callable[[Reading], None],
        emit_event: EmitEvent,
        pseudonymize: Callable[[str, int], str],
        cursor: GateCursor | None = None,
        max_events_per_poll: int = 8 * SLOTS_PER_READ,
    ) -> None:
        self.name = name
        self.cursor_key = f"gate.{name}"
        self._emit_reading = emit_reading
        self._emit_event = emit_event
        self._pseudonymize = pseudonymize
        self._cursor = cursor
        self._max_events = max(1, max_events_per_poll)
        self._header: GateHeader | None = None
        self._state_emitted_ns = 0
        self._events_read = 0
        self._events_lost = 0
        self._events_rejected = 0
        self._commands = 0
        self._last_command: CommandResult | None = None

    def resume(self, cursor: GateCursor | None) -> None:
        """Continue after ``cursor``, the one stored with the last event (before polling)."""
        self._cursor = cursor

    def status(self) -> GateStatus:
        header = self._header
        return GateStatus(
            name=self.name,
            state=None if header is None else header.state.label,
            fault=None if header is None else FAULTS.get(header.fault_code, "other"),
            epoch=None if header is None else header.epoch,
            last_seq=None if header is None else header.last_seq,
            stored_seq=None if self._cursor is None else self._cursor.seq,
            events_read=self._events_read,
            events_lost=self._events_lost,
            events_rejected=self._events_rejected,
            commands=self._commands,
            last_command=self._last_command,
        )

    # --- polling ---------------------------------------------------------------------------

    async def poll(self, io: DeviceIO, wall_time: float, stamp_ns: int) -> None:
        header = decode_header(await io.read_holding(0, HEADER_REGISTERS))
        previous = self._header
        self._header = header
        if previous is None or previous.state is not header.state:
            logger.info(
                "gate state",
                extra={
                    "device": self.name,
                    "state": header.state.label,
                    "fault": FAULTS.get(header.fault_code, "other"),
                },
            )
        changed = previous is None or (previous.state, previous.fault_code) != (
            header.state,
            header.fault_code,
        )
        if changed or stamp_ns - self._state_emitted_ns >= STATE_READING_EVERY_NS:
            self._state_emitted_ns = stamp_ns
            # The fault code first: a rule seeing the state can then say which fault it is.
            for point, value in ((FAULT_POINT, header.fault_code), (STATE_POINT, header.state)):
                self._emit_reading(Reading(self.name, point, float(value), "", wall_time, stamp_ns))
        await self._read_events(io, header, wall_time, stamp_ns)

    async def _read_events(
        self, io: DeviceIO, header: GateHeader, wall_time: float, stamp_ns: int
    ) -> None:
        first_sight = self._cursor is None
        after = self._resume_point(header)
        if header.last_seq <= after:
            return
        first = max(after + 1, header.last_seq - header.capacity + 1)
        if first > after + 1 and not first_sight:  # older events are history, not losses
            self._lose(first - after - 1, "overwritten in the controller's ring before read")
        last = min(header.last_seq, first + self._max_events - 1)
        offset = wall_time - header.clock  # the controller's clock to the gateway's
        seq = first
        while seq <= last:
            slot_index = (seq - 1) % header.capacity
            count = min(SLOTS_PER_READ, header.capacity - slot_index, last - seq + 1)
            registers = await io.read_holding(
                slot_address(seq, header.capacity), count * SLOT_REGISTERS
            )
            for i in range(count):
                slot = decode_slot(registers[i * SLOT_REGISTERS : (i + 1) * SLOT_REGISTERS])
                expected = seq + i
                if slot.seq < expected:  # not written yet, or a confused controller: next poll
                    logger.warning(
                        "gate event slot behind its header; will read it again",
                        extra={"device": self.name, "expected": expected, "found": slot.seq},
                    )
                    return
                if slot.seq > expected:  # overwritten since the header was read
                    self._lose(1, "overwritten in the controller's ring while being read")
                    self._cursor = GateCursor(header.epoch, expected)
                    continue
                if not self._hand_on(slot, header, offset, stamp_ns, wall_time):
                    return
            seq += count

    def _resume_point(self, header: GateHeader) -> int:
        """The last sequence number already handed on, in the controller's current epoch."""
        cursor = self._cursor
        if cursor is None:
            self._cursor = GateCursor(header.epoch, 0)
            if header.last_seq:
                logger.info(
                    "gate first seen: reading the events its ring still holds",
                    extra={"device": self.name, "last_seq": header.last_seq},
                )
            return 0
        if cursor.epoch != header.epoch or header.last_seq < cursor.seq:
            logger.warning(
                "gate event log started over (controller reset or replaced)",
                extra={
                    "device": self.name,
                    "epoch": header.epoch,
                    "last_seq": header.last_seq,
                    "stored_epoch": cursor.epoch,
                    "stored_seq": cursor.seq,
                },
            )
            self._cursor = GateCursor(header.epoch, 0)
            return 0
        return cursor.seq

    def _hand_on(
        self,
        slot: SlotEvent,
        header: GateHeader,
        offset: float,
        stamp_ns: int,
        wall_time: float,
    ) -> bool:
        """Hand one event on; False if it was not taken (it is read again next poll)."""
        cursor = GateCursor(header.epoch, slot.seq)
        kind = EVENTS.get(slot.code)
        if kind is None:
            self._reject(slot, f"unknown event code {slot.code}")
            self._cursor = cursor
            return True
        event_wall = slot.time + offset
        age_ns = max(0, round((wall_time - event_wall) * 1e9))
        event = AccessEvent(
            device=self.name,
            event=kind,
            credential_ref=self._credential_ref(slot.credential),
            wall_time=event_wall,
            monotonic_ns=max(0, stamp_ns - age_ns),
            detail=self._detail(kind, slot),
        )
        try:
            taken = self._emit_event(event, self.cursor_key, cursor.encode())
        except DecodeError as exc:
            self._reject(slot, str(exc))
            self._cursor = cursor
            return True
        if not taken:
            return False
        self._cursor = cursor
        self._events_read += 1
        return True

    def _credential_ref(self, credential: int) -> str | None:
        if credential in (NO_CREDENTIAL, UNKNOWN_CREDENTIAL):
            return None
        return self._pseudonymize(self.name, credential)

    @staticmethod
    def _detail(kind: AccessEventKind, slot: SlotEvent) -> str | None:
        if kind == "denied":
            reason = DENIED_BECAUSE.get(slot.detail, f"reason {slot.detail}")
            if slot.credential == UNKNOWN_CREDENTIAL and slot.detail != 1:
                reason += "; credential not enrolled"
            return reason
        if kind == "opened":
            return OPENED_BY.get(slot.detail, f"source {slot.detail}")
        if kind == "held_open":
            return f"open for {slot.detail} s"
        return None

    def _lose(self, count: int, why: str) -> None:
        self._events_lost += count
        logger.error(
            "gate events lost",
            extra={"device": self.name, "count": count, "why": why, "lost": self._events_lost},
        )

    def _reject(self, slot: SlotEvent, why: str) -> None:
        self._events_rejected += 1
        logger.warning(
            "gate event rejected", extra={"device": self.name, "seq": slot.seq, "why": why}
        )

    # --- commands --------------------------------------------------------------------------

    async def command(
        self,
        bus: ModbusBus,
        command: Command,
        *,
        operator: str,
        confirm_timeout_s: float = 5.0,
    ) -> CommandResult:
        """Open or close the gate and read the state back until it moves the right way.

        Never raises for the device's behaviour: the outcome is in the result, which is logged.
        """
        started = time.monotonic()
        deadline = started + confirm_timeout_s
        before: GateState | None = None
        after: GateState | None = None
        written = False

        def finish(result: CommandOutcome, detail: str = "") -> CommandResult:
            outcome = CommandResult(
                gate=self.name,
                command=command,
                operator=operator,
                result=result,
                state_before=None if before is None else before.label,
                state_after=None if after is None else after.label,
                elapsed_s=round(time.monotonic() - started, 3),
                detail=detail,
            )
            self._commands += 1
            self._last_command = outcome
            log = logger.info if result == "confirmed" else logger.warning
            log("gate command", extra={"device": self.name, **_log_fields(outcome)})
            return outcome

        coil = COIL_OPEN if command == "open" else COIL_CLOSE
        try:
            async with asyncio.timeout(confirm_timeout_s):
                before = await bus.execute(self.name, _read_state)
                if before is GateState.FAULT:
                    after = before
                    return finish("refused", "the controller is in fault")
                await bus.execute(self.name, lambda io: io.write_coil(coil, True))
                written = True
                while True:
                    after = await bus.execute(self.name, _read_state)
                    if after in _MOVING_TO[command]:
                        return finish("confirmed")
                    if after is GateState.FAULT:
                        return finish("refused", "the controller went into fault")
                    await asyncio.sleep(min(_CONFIRM_POLL_S, max(0.0, deadline - time.monotonic())))
        except TimeoutError:
            if not written:
                return finish("unreachable", f"command not delivered within {confirm_timeout_s} s")
            still = after or before
            return finish("not_confirmed", f"state still {still.label if still else 'unknown'}")
        except DeviceRefused as exc:
            return finish("refused", f"exception reply {exc.exception_code:#04x}")
        except DeviceUnavailable as exc:
            return finish("unreachable", exc.reason)
        except DecodeError as exc:
            return finish("unreachable", f"answer not understood: {exc}")


async def _read_state(io: DeviceIO) -> GateState:
    return decode_state(await io.read_holding(0, 2))


def _log_fields(result: CommandResult) -> dict[str, object]:
    return {
        "command": result.command,
        "operator": result.operator,
        "result": result.result,
        "state_before": result.state_before,
        "state_after": result.state_after,
        "elapsed_s": result.elapsed_s,
        "detail": result.detail,
    }
