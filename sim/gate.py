"""A gate or barrier controller implementing nbedge's gate register map, version 1.

:class:`SimulatedGate` is a pure model of one controller (docs/gate-controller.md): no I/O, no
asyncio. Every method that acts takes ``now``, the model's own monotonic clock in seconds (a
float that never goes backwards); :meth:`SimulatedGate.advance` moves the gate to ``now`` first,
so a test drives it with a fake clock and gets the same events every time. The controller's
own clock (the ``clock`` register and the event times) is ``wall_clock() + clock_offset_s``, read
when the model learns of an event: an event that happened ``d`` model seconds before (the gate
reaching ``closed`` between two requests, say) is stamped ``d`` seconds earlier, so the wall
clock must run at the pace of ``now`` (give a model whose clock runs fast a wall clock that runs
as fast, e.g. :meth:`~sim.modbus_server.SimulatedBuilding.wall_time`). Change
:attr:`SimulatedGate.clock_offset_s` over time for a drifting controller clock.

The state machine::

    closed --open--> opening --travel_s--> open --auto_close_s--> closing --travel_s--> closed
                                             ^                       |
                                             +-------open------------+   (reverses mid-way)

- :meth:`~SimulatedGate.command_open` (coil 0), :meth:`~SimulatedGate.exit_button` and a
  granted :meth:`~SimulatedGate.present` open the gate; the first two record ``opened``
  (detail 1 remote command, 2 exit button) when the gate starts to move, a grant records
  ``granted`` (the credential's index) whatever the gate does. On a gate already open they
  restart the automatic-closing timer instead.
- A denied :meth:`~SimulatedGate.present` records ``denied`` with its reason (1 not enrolled,
  2 outside its schedule, 3 expired, 4 blocked); a credential of ``None`` is one presented but
  not enrolled (0xFFFFFFFF).
- :meth:`~SimulatedGate.force_open` records ``forced_open`` and puts the gate open at once,
  without automatic closing: it stays open until closed by command (or a grant re-arms the
  timer), so after ``held_open_after_s`` it records ``held_open``.
- ``hold_open`` (coil 2) keeps an open gate open; ``held_open`` is recorded once per opening,
  when the gate has been fully open for ``held_open_after_s``, detail the seconds open.
- Reaching ``closed`` records ``closed``. The warning lamp (coil 3) is on while the gate moves.
- :meth:`~SimulatedGate.fault` stops the gate where it is; ``open`` and ``close`` are then
  refused (coil writes answer exception 0x04) until :meth:`~SimulatedGate.clear_fault`, which
  puts the gate closed (recording ``closed`` if it was not).

The event ring: ``capacity`` slots of 8 registers from holding register 16; the event with
sequence number ``seq`` lives in slot ``(seq - 1) % capacity``. :meth:`SimulatedGate.reset_log`
empties it under a new epoch. :attr:`SimulatedGate.events` keeps every event ever recorded (all
epochs), for tests to compare with what a gateway stored. Should ``last_seq`` ever pass
0xFFFFFFFF, the log starts over under the next epoch.

Usage::

    gate = SimulatedGate(capacity=64, epoch=7, travel_s=2.0)
    gate.present(17, granted=True, now=0.0)       # event 1: granted, the gate starts opening
    gate.advance(2.0)                             # open
    gate.registers(0, 10)                         # [1, 2, 0, 64, 0, 7, 0, 1, clock_hi, clock_lo]
    gate.write_coil(Coil.CLOSE, True, now=3.0)    # None: accepted, closing
    gate.advance(5.0)                             # event 2: closed

:class:`RandomActivity` drives a gate with seeded, plausible traffic (``nbedge sim building
--gates N``); :class:`~sim.modbus_server.SimulatedBuilding` serves gates over Modbus.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, Literal

from pymodbus.constants import ExcCodes

MAP_VERSION: Final = 1
HEADER_REGISTERS: Final = 16
SLOT_REGISTERS: Final = 8
MAX_CAPACITY: Final = 8190
COILS: Final = 4
NOT_ENROLLED: Final = 0xFFFFFFFF
"""The credential of an event whose badge was presented but is not enrolled."""
_UINT32: Final = 0xFFFFFFFF


class GateState(IntEnum):
    """The ``state`` register."""

    CLOSED = 0
    OPENING = 1
    OPEN = 2
    CLOSING = 3
    FAULT = 4


class Coil(IntEnum):
    """Coil addresses."""

    OPEN = 0
    CLOSE = 1
    HOLD_OPEN = 2
    WARNING_LAMP = 3


class OpenedBy(IntEnum):
    """The ``detail`` of an ``opened`` event."""

    REMOTE_COMMAND = 1
    EXIT_BUTTON = 2
    KEY_SWITCH = 3
    SCHEDULE = 4


class DenyReason(IntEnum):
    """The ``detail`` of a ``denied`` event."""

    NOT_ENROLLED = 1
    OUTSIDE_SCHEDULE = 2
    EXPIRED = 3
    BLOCKED = 4


EventName = Literal["granted", "denied", "forced_open", "held_open", "opened", "closed"]
EVENT_CODES: Final[Mapping[EventName, int]] = {
    "granted": 1,
    "denied": 2,
    "forced_open": 3,
    "held_open": 4,
    "opened": 5,
    "closed": 6,
}


class GateAddressError(IndexError):
    """A read outside the register map or the coils (a server answers exception 0x02)."""


@dataclass(frozen=True, slots=True)
class GateEvent:
    """One event of the ring, as recorded (``time`` by the controller's clock, UTC seconds)."""

    seq: int
    time: int
    event: EventName
    detail: int = 0
    credential: int = 0
    epoch: int = 1

    @property
    def code(self) -> int:
        """The ``event`` register's value."""
        return EVENT_CODES[self.event]

    def slot_registers(self) -> list[int]:
        """The slot's 8 registers: seq, time, event, detail, credential (uint32 high word first)."""
        return [
            *_words(self.seq),
            *_words(self.time),
            self.code,
            self.detail,
            *_words(self.credential),
        ]


def _words(value: int) -> tuple[int, int]:
    return value >> 16, value & 0xFFFF


class SimulatedGate:
    """One gate controller, driven by the caller's clock (see the module doc)."""

    def __init__(
        self,
        *,
        capacity: int = 256,
        epoch: int = 1,
        travel_s: float = 3.0,
        auto_close_s: float = 10.0,
        held_open_after_s: float = 30.0,
        clock_offset_s: float = 0.0,
        wall_clock: Callable[[], float] = time.time,
        start_seq: int = 0,
    ) -> None:
        """``start_seq``: the first event gets ``start_seq + 1`` (the earlier slots stay empty)."""
        if not 1 <= capacity <= MAX_CAPACITY:
            raise ValueError(f"capacity must be 1..{MAX_CAPACITY} slots")
        if not 1 <= epoch <= _UINT32:
            raise ValueError("epoch must be a non-zero uint32")
        if not 0 <= start_seq <= _UINT32:
            raise ValueError("start_seq must be a uint32")
        if travel_s < 0 or auto_close_s < 0 or held_open_after_s < 0:
            raise ValueError("travel_s, auto_close_s and held_open_after_s must be >= 0")
        self.capacity = capacity
        self.travel_s = travel_s
        self.auto_close_s = auto_close_s
        self.held_open_after_s = held_open_after_s
        self.clock_offset_s = clock_offset_s
        self.wall_clock = wall_clock
        self.events: list[GateEvent] = []
        """Every event recorded, oldest first, across epochs."""
        self._epoch = epoch
        self._last_seq = start_seq
        self._slots: list[GateEvent | None] = [None] * capacity
        self._now: float | None = None
        self._state = GateState.CLOSED
        self._fault_code = 0
        self._hold_open = False
        self._position = 0.0  # 0 closed .. 1 open, at _since
        self._since = 0.0  # when the current state (or motion) began
        self._motion_end = 0.0
        self._close_at: float | None = None  # automatic closing; None: not armed
        self._held_reported = False

    # -- what the registers show ------------------------------------------------------------

    @property
    def state(self) -> GateState:
        return self._state

    @property
    def fault_code(self) -> int:
        return self._fault_code

    @property
    def hold_open(self) -> bool:
        return self._hold_open

    @property
    def warning_lamp(self) -> bool:
        """On while the gate moves."""
        return self._state in (GateState.OPENING, GateState.CLOSING)

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def last_seq(self) -> int:
        """The newest event's sequence number in this epoch; 0 while there is none."""
        return self._last_seq

    @property
    def now(self) -> float | None:
        """The latest time the model was advanced to (None before the first)."""
        return self._now

    @property
    def register_count(self) -> int:
        """Holding registers 0 .. register_count - 1 exist: the header and the ring."""
        return HEADER_REGISTERS + SLOT_REGISTERS * self.capacity

    def clock(self) -> int:
        """The controller's clock, UTC seconds (the ``clock`` register)."""
        return _uint32(self.wall_clock() + self.clock_offset_s)

    def slot(self, index: int) -> GateEvent | None:
        """The event in ring slot ``index``, or None if the slot is empty."""
        return self._slots[index]

    def header(self) -> list[int]:
        """Holding registers 0-15."""
        return [
            MAP_VERSION,
            int(self._state),
            self._fault_code,
            self.capacity,
            *_words(self._epoch),
            *_words(self._last_seq),
            *_words(self.clock()),
            *[0] * 6,
        ]

    def registers(self, address: int, count: int) -> list[int]:
        """Holding registers ``address`` .. ``address + count - 1``, as the map lays them out.

        Raises :class:`GateAddressError` for any address past the ring.
        """
        end = address + count
        if address < 0 or count < 1 or end > self.register_count:
            raise GateAddressError(
                f"registers {address}..{end - 1} outside 0..{self.register_count - 1}"
            )
        first_slot = max(0, address - HEADER_REGISTERS) // SLOT_REGISTERS
        last_slot = (end - 1 - HEADER_REGISTERS) // SLOT_REGISTERS  # -1: header only
        if address < HEADER_REGISTERS:
            words, base = self.header(), 0
        else:
            words, base = [], HEADER_REGISTERS + first_slot * SLOT_REGISTERS
        for index in range(first_slot, last_slot + 1):
            event = self._slots[index]
            words += event.slot_registers() if event else [0] * SLOT_REGISTERS
        return words[address - base : end - base]

    def coils(self, address: int, count: int) -> list[bool]:
        """Coils ``address`` .. ``address + count - 1``: open and close read 0 (they pulse)."""
        if address < 0 or count < 1 or address + count > COILS:
            raise GateAddressError(f"coils {address}..{address + count - 1} outside 0..3")
        values = [False, False, self._hold_open, self.warning_lamp]
        return values[address : address + count]

    # -- time --------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Move the gate to ``now``: finish motions, close automatically, record ``held_open``."""
        if self._now is not None and now < self._now:
            raise ValueError(f"time goes backwards: {now} < {self._now}")
        self._now = now
        while (at := self._next_transition()) is not None and at <= now:
            self._transition(at)

    def _next_transition(self) -> float | None:
        if self._state in (GateState.OPENING, GateState.CLOSING):
            return self._motion_end
        if self._state is not GateState.OPEN:
            return None
        candidates: list[float] = []
        if self._close_at is not None and not self._hold_open:
            candidates.append(self._close_at)
        if not self._held_reported:
            candidates.append(self._since + self.held_open_after_s)
        return min(candidates, default=None)

    def _transition(self, at: float) -> None:
        if self._state is GateState.OPENING:
            self._state, self._position, self._since = GateState.OPEN, 1.0, at
            self._held_reported = False
            if self._close_at is not None:
                self._close_at = at + self.auto_close_s
        elif self._state is GateState.CLOSING:
            self._state, self._position, self._since = GateState.CLOSED, 0.0, at
            self._record("closed", at)
        elif self._close_at is not None and not self._hold_open and self._close_at <= at:
            self._move(GateState.CLOSING, at)
        else:  # held open for held_open_after_s
            self._held_reported = True
            self._record("held_open", at, detail=min(0xFFFF, round(self.held_open_after_s)))

    def _position_at(self, t: float) -> float:
        if self._state not in (GateState.OPENING, GateState.CLOSING):
            return self._position
        moved = (t - self._since) / self.travel_s if self.travel_s > 0 else 1.0
        if self._state is GateState.OPENING:
            return min(1.0, self._position + moved)
        return max(0.0, self._position - moved)

    def _move(self, state: Literal[GateState.OPENING, GateState.CLOSING], t: float) -> None:
        position = self._position_at(t)
        distance = 1.0 - position if state is GateState.OPENING else position
        self._state, self._position, self._since = state, position, t
        self._motion_end = t + distance * self.travel_s

    # -- what happens at the gate ------------------------------------------------------------

    def command_open(self, now: float) -> bool:
        """The remote open command (coil 0): False, and nothing happens, while in fault."""
        return self._open(now, OpenedBy.REMOTE_COMMAND)

    def exit_button(self, now: float) -> bool:
        """Someone presses the exit button: like an open command, recorded as detail 2."""
        return self._open(now, OpenedBy.EXIT_BUTTON)

    def command_close(self, now: float) -> bool:
        """The remote close command (coil 1): False, and nothing happens, while in fault."""
        self.advance(now)
        if self._state is GateState.FAULT:
            return False
        if self._state in (GateState.OPEN, GateState.OPENING):
            self._move(GateState.CLOSING, now)
        self.advance(now)
        return True

    def present(
        self, credential: int | None, *, granted: bool, reason: int = 1, now: float
    ) -> None:
        """A badge is presented: ``granted`` opens the gate, otherwise ``denied`` with ``reason``.

        ``credential`` is the index in the controller's list (1..0xFFFFFFFE), or None for a badge
        not enrolled (which cannot be granted). A grant is recorded even in fault, where the gate
        cannot move.
        """
        if credential is not None and not 1 <= credential < NOT_ENROLLED:
            raise ValueError("credential must be 1..0xFFFFFFFE, or None for one not enrolled")
        if granted and credential is None:
            raise ValueError("a credential not enrolled cannot be granted")
        if not granted and not 1 <= reason <= 0xFFFF:
            raise ValueError("reason must be 1..0xFFFF (1 not enrolled .. 4 blocked)")
        self.advance(now)
        if not granted:
            self._record("denied", now, detail=reason, credential=credential or NOT_ENROLLED)
            return
        self._record("granted", now, credential=credential or 0)
        self._open(now, None)

    def force_open(self, now: float) -> None:
        """The gate is opened without a grant or command: ``forced_open``, open at once."""
        self.advance(now)
        self._record("forced_open", now)
        if self._state in (GateState.FAULT, GateState.OPEN):
            return
        self._state, self._position, self._since = GateState.OPEN, 1.0, now
        self._close_at = None  # not the controller's doing: it does not close it either
        self._held_reported = False
        self.advance(now)

    def set_hold_open(self, value: bool, now: float) -> None:
        """The ``hold_open`` coil: while set, an open gate does not close by itself."""
        self.advance(now)
        if self._hold_open and not value and self._close_at is not None:
            self._close_at = max(self._close_at, now)  # overdue: closes now, not in the past
        self._hold_open = value
        self.advance(now)

    def fault(self, code: int, now: float) -> None:
        """The controller detects a fault (1 motor .. 4 power, 0xFFFF other): the gate stops."""
        if not 1 <= code <= 0xFFFF:
            raise ValueError("a fault code is 1..0xFFFF")
        self.advance(now)
        if self._state is not GateState.FAULT:
            self._position = self._position_at(now)
            self._state, self._since = GateState.FAULT, now
        self._fault_code = code

    def clear_fault(self, now: float) -> None:
        """The fault is cleared: the gate is closed (``closed`` recorded if it was not)."""
        self.advance(now)
        if self._state is not GateState.FAULT:
            return
        was_closed = self._position == 0.0
        self._state, self._position, self._since = GateState.CLOSED, 0.0, now
        self._fault_code = 0
        if not was_closed:
            self._record("closed", now)

    def write_coil(self, address: int, value: bool, now: float) -> ExcCodes | None:
        """Function 5: None if done, else the exception code a controller answers."""
        if address in (Coil.OPEN, Coil.CLOSE):
            if not value:
                self.advance(now)
                return None
            command = self.command_open if address == Coil.OPEN else self.command_close
            return None if command(now) else ExcCodes.DEVICE_FAILURE
        if address == Coil.HOLD_OPEN:
            self.set_hold_open(value, now)
            return None
        return ExcCodes.ILLEGAL_ADDRESS  # the warning lamp is read only; nothing past it

    def _open(self, now: float, by: OpenedBy | None) -> bool:
        """Open (``by`` None: a grant, already recorded); False while in fault."""
        self.advance(now)
        if self._state is GateState.FAULT:
            return False
        if self._state in (GateState.CLOSED, GateState.CLOSING):
            if by is not None:
                self._record("opened", now, detail=int(by))
            self._move(GateState.OPENING, now)
            self._close_at = now  # armed; set when the gate is fully open
        elif self._state is GateState.OPEN:
            self._close_at = now + self.auto_close_s
        else:  # opening: closes automatically once open, whatever opened it
            self._close_at = now
        self.advance(now)
        return True

    # -- the event ring ----------------------------------------------------------------------

    def reset_log(self, new_epoch: int | None = None) -> None:
        """The log starts over (factory reset, lost log): a new epoch, no events, last_seq 0."""
        epoch = new_epoch if new_epoch is not None else self._epoch % _UINT32 + 1
        if not 1 <= epoch <= _UINT32 or epoch == self._epoch:
            raise ValueError("the new epoch must be a non-zero uint32 other than the current one")
        self._epoch = epoch
        self._last_seq = 0
        self._slots = [None] * self.capacity

    def _record(self, event: EventName, at: float, *, detail: int = 0, credential: int = 0) -> None:
        if self._last_seq == _UINT32:
            self.reset_log()
        seq = self._last_seq + 1
        recorded = GateEvent(seq, self._stamp(at), event, detail, credential, self._epoch)
        self._slots[(seq - 1) % self.capacity] = recorded
        self._last_seq = seq
        self.events.append(recorded)

    def _stamp(self, at: float) -> int:
        """The controller's clock at model time ``at`` (at or before the latest ``now``)."""
        ago = (self._now - at) if self._now is not None else 0.0
        return _uint32(self.wall_clock() + self.clock_offset_s - ago)


def _uint32(seconds: float) -> int:
    return min(_UINT32, max(0, math.floor(seconds)))


_Later = Literal["release_hold", "close"]


class RandomActivity:
    """Seeded, plausible traffic at one gate: a few events a minute on average.

    Mostly grants, some denials (with every reason), exit-button openings; now and then the gate
    is held open by its coil past ``held_open_after_s`` (``held_open``) or forced open and closed
    by command a minute or so later. Call :meth:`step` with the model's clock, often (every
    second or so): what is due happens at that ``now``.
    """

    def __init__(
        self, seed: int = 0, *, events_per_minute: float = 3.0, credentials: int = 200
    ) -> None:
        if events_per_minute <= 0 or credentials < 1:
            raise ValueError("events_per_minute must be > 0 and credentials >= 1")
        self._rng = random.Random(seed)
        self.events_per_minute = events_per_minute
        self.credentials = credentials
        self._next_at: float | None = None
        self._later: list[tuple[float, int, _Later]] = []  # a heap
        self._count = 0

    def step(self, gate: SimulatedGate, now: float) -> None:
        """Do at ``now`` everything due since the last step."""
        if self._next_at is None:
            self._next_at = now + self._gap()
        while self._later and self._later[0][0] <= now:
            _, _, action = heapq.heappop(self._later)
            if action == "release_hold":
                gate.set_hold_open(False, now)
            else:
                gate.command_close(now)
        while self._next_at <= now:
            self._act(gate, now)
            self._next_at += self._gap()

    def _gap(self) -> float:
        return self._rng.expovariate(self.events_per_minute / 60.0)

    def _credential(self) -> int:
        return self._rng.randint(1, self.credentials)

    def _later_at(self, at: float, action: _Later) -> None:
        self._count += 1
        heapq.heappush(self._later, (at, self._count, action))

    def _act(self, gate: SimulatedGate, now: float) -> None:
        draw = self._rng.random()
        if draw < 0.55:
            gate.present(self._credential(), granted=True, now=now)
        elif draw < 0.75:
            reason = self._rng.choice(list(DenyReason))
            credential = None if reason is DenyReason.NOT_ENROLLED else self._credential()
            gate.present(credential, granted=False, reason=reason, now=now)
        elif draw < 0.90:
            gate.exit_button(now)
        elif draw < 0.96:  # a delivery: the gate is held open on purpose, too long
            gate.set_hold_open(True, now)
            gate.present(self._credential(), granted=True, now=now)
            hold_s = gate.held_open_after_s + self._rng.uniform(5.0, 45.0)
            self._later_at(now + gate.travel_s + hold_s, "release_hold")
        else:
            gate.force_open(now)
            close_s = gate.held_open_after_s + self._rng.uniform(10.0, 60.0)
            self._later_at(now + close_s, "close")
