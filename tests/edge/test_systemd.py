"""The unit files verify cleanly, the gateway's unit lets it read its clock and boot id, and the
daemon speaks the notify protocol to a real socket."""

from __future__ import annotations

import functools
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from edge import systemd

UNITS = sorted((Path(__file__).resolve().parents[2] / "systemd").glob("*.service"))
GATEWAY_UNIT = Path(__file__).resolve().parents[2] / "systemd" / "nbedge-gateway.service"
CLOCK_READS = ("adjtimex", "clock_adjtime", "clock_adjtime64")  # glibc's adjtimex() is one of them
CLOCK_SETTERS = ("clock_settime", "settimeofday")


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_file_verifies_without_a_single_warning(unit: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify needs ExecStart's binary to exist: point it at one that does.
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/opt/nbedge/bin/nbedge", "/bin/true"))
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert result.stdout + result.stderr == ""  # verify exits 0 on warnings: any output fails


def test_notify_sends_datagrams_to_the_notify_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert systemd.notify("READY=1")
        assert systemd.notify("WATCHDOG=1")
        assert server.recv(64) == b"READY=1"
        assert server.recv(64) == b"WATCHDOG=1"


def test_notify_does_nothing_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False


def test_watchdog_interval_is_half_the_period(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert systemd.watchdog_interval_s() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert systemd.watchdog_interval_s() is None


def service_settings(unit: Path) -> list[tuple[str, str]]:
    """The ``[Service]`` assignments of a unit file, in order (a key may come more than once)."""
    section, found = "", []
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            found.append((key.strip(), value.strip()))
    return found


@functools.cache
def syscall_group(name: str) -> frozenset[str]:
    """The system calls of a ``@group``, nested groups resolved, as this systemd defines it."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip(f"systemd-analyze is not installed: cannot resolve {name}")
    result = subprocess.run(
        [analyze, "syscall-filter", name], capture_output=True, text=True, timeout=60, check=True
    )
    calls: set[str] = set()
    for line in result.stdout.splitlines()[1:]:  # the first line is the group's name
        item = line.strip()
        if item and not item.startswith("#"):
            calls |= syscall_group(item) if item.startswith("@") else {item}
    return frozenset(calls)


def syscall_filter(settings: list[tuple[str, str]]) -> tuple[bool, set[str]] | None:
    """``SystemCallFilter=`` lines resolved as systemd does: ``(allow_list, calls)``, or None if
    there is no filter. The first line decides: an allow list, or a deny list if it starts with
    ``~``. Later lines add to it, or, with the other sign, take away; an empty one resets."""
    allow_list: bool | None = None
    calls: set[str] = set()
    for key, value in settings:
        if key != "SystemCallFilter":
            continue
        if not value:
            allow_list, calls = None, set()
            continue
        invert = value.startswith("~")
        if allow_list is None:
            allow_list = not invert
            calls = set(syscall_group("@default")) if allow_list else set()
        for word in value.removeprefix("~").split():
            name = word.split(":", 1)[0]  # name:errno
            named = syscall_group(name) if name.startswith("@") else {name}
            calls = calls - named if invert == allow_list else calls | named
    return None if allow_list is None else (allow_list, calls)


def allows(settings: list[tuple[str, str]], call: str) -> bool:
    """Whether a service with these settings may make this system call."""
    if _on(dict(settings).get("ProtectClock", "no")) and call in syscall_group("@clock"):
        return False  # ProtectClock=yes adds a filter of its own: ~@clock
    resolved = syscall_filter(settings)
    if resolved is None:
        return True
    allow_list, calls = resolved
    return (call in calls) == allow_list


def _on(value: str) -> bool:
    return value.lower() in ("yes", "true", "on", "1")


def test_the_gateway_unit_lets_it_read_its_clock_and_boot_id() -> None:
    """ProtectClock=yes blocks even the read-only adjtimex on systemd 252, so the gateway never
    saw its clock synchronised under its own unit; ProcSubset=pid would hide the boot id."""
    settings = service_settings(GATEWAY_UNIT)
    values = dict(settings)  # the last assignment of each key
    assert not _on(values.get("ProtectClock", "no"))
    assert values.get("ProcSubset", "all") != "pid"
    for call in CLOCK_READS:
        assert allows(settings, call), call


def test_the_gateway_unit_still_cannot_set_the_clock() -> None:
    settings = service_settings(GATEWAY_UNIT)
    capabilities = dict(settings).get("CapabilityBoundingSet")
    assert capabilities is not None, "the unit must bound the capabilities"
    assert "CAP_SYS_TIME" not in capabilities.split()
    assert not capabilities.startswith("~")
    for call in CLOCK_SETTERS:
        assert not allows(settings, call), call


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_each_unit_stays_hardened(unit: Path, tmp_path: Path) -> None:
    """The exposure systemd scores for the unit (0 best, 10 worst) is at most 2.0 (3.8 and 3.2
    before the device list, the hidden process tree and the refused privileged calls)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/opt/nbedge/bin/nbedge", "/bin/true"))
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "--offline" in result.stderr:
        pytest.skip("this systemd-analyze cannot score a unit offline")
    [overall] = [line for line in result.stdout.splitlines() if "Overall exposure" in line]
    exposure = float(overall.split(":")[1].split()[0])
    assert exposure <= 2.0, result.stdout


def test_the_gateway_unit_allows_what_the_gateway_needs() -> None:
    """Hardening that would break the gateway in the field, checked where no systemd manager
    runs: serial ports, BlueZ over D-Bus, the network, the supplementary groups of the ports and
    the adapter, its state folder, the watchdog, and the calls it makes."""
    settings = service_settings(GATEWAY_UNIT)
    values = dict(settings)
    devices = {value.split()[0] for key, value in settings if key == "DeviceAllow"}
    assert {"char-ttyS", "char-ttyAMA", "char-ttyUSB", "char-ttyACM"} <= devices
    assert all(
        value.split()[1] == "rw" for key, value in settings if key == "DeviceAllow"
    )  # termios settings need write access
    assert not _on(values.get("PrivateDevices", "no"))  # it would hide /dev/tty*
    families = set(values["RestrictAddressFamilies"].split())
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= families  # D-Bus (BlueZ), MQTT, the API
    # The groups come from the user's own (packaging/deb/postinst): a group the unit names that
    # the machine lacks (no BlueZ, no bluetooth group) would stop it from starting.
    assert "SupplementaryGroups" not in values
    postinst = (GATEWAY_UNIT.parents[1] / "packaging" / "deb" / "postinst").read_text()
    assert "for group in dialout bluetooth" in postinst
    assert not _on(values.get("PrivateUsers", "no"))  # keep the groups' ids as the host's
    assert values["StateDirectory"] == "nbedge"
    assert values["Type"] == "notify"
    assert values["NotifyAccess"] == "main"
    assert float(values["WatchdogSec"]) > 0
    assert values["ExecReload"] == "/bin/kill -HUP $MAINPID"  # systemctl reload: SIGHUP
    assert values.get("ProtectProc") == "invisible"  # its own /proc stays readable
    for call in ("ioctl", "openat", "socket", "connect", "epoll_wait", "mmap", "mbind"):
        assert allows(settings, call), call
    for call in ("setuid", "chown", "mount", "clock_settime"):
        assert not allows(settings, call), call


def test_the_filter_resolver_reads_units_as_systemd_does() -> None:
    """What ProtectClock=yes installs (~@clock) refuses the reads; an allow list of a group
    refuses what is outside it; a later line with the other sign takes away."""
    assert not allows([("ProtectClock", "yes")], "clock_adjtime")
    assert not allows([("SystemCallFilter", "~@clock")], "clock_adjtime")
    assert allows([("SystemCallFilter", "~@clock")], "read")
    assert not allows([("SystemCallFilter", "@system-service")], "adjtimex")
    assert allows([("SystemCallFilter", "@system-service")], "read")
    lines = [("SystemCallFilter", "@system-service adjtimex"), ("SystemCallFilter", "~adjtimex")]
    assert not allows(lines, "adjtimex")
    assert allows([*lines, ("SystemCallFilter", "")], "adjtimex")  # reset: no filter
