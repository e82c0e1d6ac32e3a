"""The gateway's clock with injected time sources: stamps, sync checks and the learnt offset; and
the real kernel read under a seccomp filter that refuses it, as systemd's ProtectClock=yes does."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

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


# Run in a child process: install a seccomp filter that answers EPERM to adjtimex and
# clock_adjtime, as systemd's ProtectClock=yes does, then use the gateway's clock.
_DENY_CLOCK_READS = """
import ctypes, errno, logging, platform, struct, sys

numbers = {"x86_64": (159, 305), "aarch64": (171, 266)}[platform.machine()]
if sys.argv[1] == "deny":
    load_nr, jump_eq, ret = 0x20, 0x15, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_RET|K
    program = b"".join([
        struct.pack("HBBI", load_nr, 0, 0, 0),  # seccomp_data.nr
        struct.pack("HBBI", jump_eq, 2, 0, numbers[0]),
        struct.pack("HBBI", jump_eq, 1, 0, numbers[1]),
        struct.pack("HBBI", ret, 0, 0, 0x7FFF0000),  # SECCOMP_RET_ALLOW
        struct.pack("HBBI", ret, 0, 0, 0x00050000 | errno.EPERM),  # SECCOMP_RET_ERRNO
    ])

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(  # PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP
        22, 2, ctypes.byref(Program(len(program) // 8, program)), 0, 0
    ):
        sys.exit(77)

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
from edge.clock import Clock

clock = Clock(recheck_s=0)
print([clock.synced() for _ in range(3)], clock.sync_offset())
"""


def _clock_under(mode: str) -> subprocess.CompletedProcess[str]:
    if platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip(f"no syscall numbers for {platform.machine()} in this test")
    result = subprocess.run(
        [sys.executable, "-c", _DENY_CLOCK_READS, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode == 77:
        pytest.skip("this kernel or container does not let a process install a seccomp filter")
    assert result.returncode == 0, result.stderr
    return result


def test_a_refused_clock_read_is_logged_once_and_means_not_synchronised() -> None:
    denied = _clock_under("deny")
    assert denied.stdout.strip() == "[False, False, False] None"
    warnings = [line for line in denied.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1, denied.stderr  # four reads, one line
    assert "cannot read whether the clock is synchronised" in warnings[0]
    assert "ProtectClock=yes" in warnings[0]
    allowed = _clock_under("allow")  # the same process without the filter reads the clock
    assert "cannot read" not in allowed.stderr
