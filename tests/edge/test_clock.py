"""The gateway's clock with injected time sources: stamps, sync checks and the learnt offset."""

from __future__ import annotations

from edge.clock import Clock

NS = 1_000_000_000


class FakeTime:
    """A wall clock that can jump and a monotonic clock that cannot, plus an NTP state."""

    def __init__(self, wall: float, *, monotonic_s: float = 10.0, synced: bool = False) -> None:
        self.now = wall
        self.mono_ns = int(monotonic_s * NS)
        self.ntp = synced
        self.checks = 0

    def wall(self) -> float:
        return self.now

    def monotonic_ns(self) -> int:
        return self.mono_ns

    def synchronised(self) -> bool:
        self.checks += 1
        return self.ntp

    def advance(self, seconds: float) -> None:
        """Time passes: both clocks move."""
        self.now += seconds
        self.mono_ns += int(seconds * NS)

    def step(self, seconds: float) -> None:
        """The wall clock is set (NTP step or an operator): only it moves."""
        self.now += seconds

    def clock(self, *, boot_id: str = "boot-a", recheck_s: float = 0.0) -> Clock:
        return Clock(
            recheck_s=recheck_s,
            wall=self.wall,
            monotonic_ns=self.monotonic_ns,
            synchronised=self.synchronised,
            boot_id=boot_id,
        )


def test_stamps_carry_the_injected_times_and_boot() -> None:
    fake = FakeTime(1_600_000_000.0, monotonic_s=42.0)
    stamp = fake.clock(boot_id="b1").stamp()
    assert (stamp.wall_time, stamp.boot_id, stamp.monotonic_ns, stamp.clock_synced) == (
        1_600_000_000.0,
        "b1",
        42 * NS,
        False,
    )


def test_offset_is_learnt_when_the_clock_first_synchronises_and_kept() -> None:
    fake = FakeTime(1_600_000_000.0, monotonic_s=100.0)  # a stale fake-hwclock time
    clock = fake.clock()
    assert clock.sync_offset() is None
    fake.advance(30)
    fake.step(200_000_000.0)  # NTP answers: the wall clock jumps forward
    fake.ntp = True
    offset = clock.sync_offset()
    assert offset == 1_800_000_030.0 - 130.0
    # The offset maps monotonic time before the step to the true wall time.
    assert 100.0 + offset == 1_800_000_000.0
    fake.advance(3600)
    fake.step(-5.0)  # later corrections do not change what was learnt
    assert clock.sync_offset() == offset
    assert clock.stamp().clock_synced


def test_synchronisation_is_rechecked_at_most_every_recheck_s() -> None:
    fake = FakeTime(1_700_000_000.0)
    clock = fake.clock(recheck_s=60.0)
    checks = fake.checks
    fake.ntp = True
    fake.advance(59)
    assert not clock.synced()
    assert fake.checks == checks
    fake.advance(1)
    assert clock.synced()
    assert fake.checks == checks + 1
