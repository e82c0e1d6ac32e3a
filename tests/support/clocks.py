"""Virtual time for a whole gateway: wall and monotonic time that move only when a test says so;
and ``SetClock``, the same for the central API's clock.

``VirtualTime.clock()`` is an ``edge.clock.Clock`` whose ``sleep`` waits on virtual time; give it
to a ``Gateway`` and every service that schedules runs on it. ``advance(seconds)`` moves time
forward from one sleeper's deadline to the next: at each, the sleepers due are woken and the
test waits (in real time, bounded) until every one of them has gone back to sleep or ended, so
that what a service does at a moment is done before time moves on. Work a service hands to a
thread or a socket meanwhile takes real time; virtual time stands still while it does.
``step_wall(seconds)`` steps the wall clock alone (as NTP or a person setting it does): the
monotonic clock and the sleepers' deadlines do not move.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from edge.clock import Clock

NS = 1_000_000_000


@dataclass(order=True)
class _Sleeper:
    deadline: float
    order: int
    task: asyncio.Task[object] | None = field(compare=False)
    woken: asyncio.Future[None] = field(compare=False)


class VirtualTime:
    """Time that starts at wall time ``wall`` and moves only in ``advance``.

    ``spin_turns``: turns of the event loop a step waits for the woken tasks without sleeping,
    before it polls them every millisecond. 0 (polled at once) leaves real time, a millisecond
    or more per step, to the work that does not wait on this clock (the store writer's batches);
    more makes a test with many sleepers (a BLE service ticks every second) much faster, where
    it waits for that work itself.
    """

    def __init__(self, wall: float, *, monotonic_s: float = 1000.0, spin_turns: int = 0) -> None:
        self._wall0 = wall
        self._mono0 = monotonic_s
        self._spin_turns = spin_turns
        self.elapsed = 0.0
        self.wall_step = 0.0
        self._heap: list[_Sleeper] = []
        self._order = itertools.count()
        self._sleeping: dict[asyncio.Task[object], _Sleeper] = {}

    def time(self) -> float:
        return self._wall0 + self.elapsed + self.wall_step

    def step_wall(self, seconds: float) -> None:
        """Step the wall clock by ``seconds`` (forward or back); monotonic time does not move."""
        self.wall_step += seconds

    def monotonic_ns(self) -> int:
        return int((self._mono0 + self.elapsed) * NS)

    def clock(
        self, *, synchronised: Callable[[], bool] = lambda: True, boot_id: str = "boot-virtual"
    ) -> Clock:
        return Clock(
            wall=self.time,
            monotonic_ns=self.monotonic_ns,
            sleep=self.sleep,
            synchronised=synchronised,
            boot_id=boot_id,
        )

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        task = asyncio.current_task()
        sleeper = _Sleeper(
            self.elapsed + seconds,
            next(self._order),
            task,
            asyncio.get_running_loop().create_future(),
        )
        heapq.heappush(self._heap, sleeper)
        if task is not None:
            self._sleeping[task] = sleeper
        try:
            await sleeper.woken
        finally:
            if task is not None and self._sleeping.get(task) is sleeper:
                del self._sleeping[task]

    def asleep(self, names: set[str]) -> bool:
        """Whether a task of each of these names sleeps on this clock now."""
        return names <= {task.get_name() for task in self._sleeping}

    async def advance(self, seconds: float, *, settle_s: float = 60.0) -> None:
        """Move time forward ``seconds``, waking every sleeper whose deadline passes, in order."""
        target = self.elapsed + seconds
        while True:
            await asyncio.sleep(0)
            while self._heap and self._heap[0].woken.done():  # cancelled sleeps
                heapq.heappop(self._heap)
            if not self._heap or self._heap[0].deadline > target:
                break
            self.elapsed = max(self.elapsed, self._heap[0].deadline)
            woken: list[_Sleeper] = []
            while self._heap and self._heap[0].deadline <= self.elapsed:
                sleeper = heapq.heappop(self._heap)
                if not sleeper.woken.done():
                    sleeper.woken.set_result(None)
                    woken.append(sleeper)
            await self._settle(woken, settle_s)
        self.elapsed = target

    async def _settle(self, woken: list[_Sleeper], timeout_s: float) -> None:
        """Wait until each woken task sleeps again (on a new deadline) or has ended."""
        deadline = time.monotonic() + timeout_s
        turns = 0
        while True:
            busy = [
                s.task
                for s in woken
                if s.task is not None
                and not s.task.done()
                and self._sleeping.get(s.task, s) is s  # not asleep again yet
            ]
            if not busy:
                return
            if time.monotonic() > deadline:
                names = [task.get_name() for task in busy]
                raise AssertionError(f"tasks still busy {timeout_s} s after waking: {names}")
            turns += 1
            await asyncio.sleep(0 if turns <= self._spin_turns else 0.001)


class SetClock:
    """A wall clock of aware UTC datetimes that moves only when a test moves it; thread-safe.

    The central API takes it as its ``now`` (``create_app(now=...)``).
    """

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now
