"""Fixtures shared by every test: free loopback ports, a real Mosquitto, BlueZoo on a private
D-Bus, a guard against leaks."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sim.bluez import HarnessUnavailable, PrivateBlueZ, private_bluez

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MOSQUITTO = ROOT / "examples" / "mosquitto"
BROKER_ACCOUNTS = {
    "nbedge-gateway": "gateway-secret-1",
    "wang.fang": "wang-fang-secret",
    "li.lei": "li-lei-secret-22",
    "zhao.min": "zhao-min-secret",
    "siren-1": "siren-one-secret",
    "homeassistant": "home-assistant-secret",
}
"""The accounts of ``secured_mosquitto`` and their passwords."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait, without blocking the loop, until ``condition()`` holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.02)


@pytest.fixture
def port() -> int:
    return free_port()


@dataclass(frozen=True)
class Broker:
    host: str
    port: int


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto on a free loopback port, anonymous clients allowed, stopped afterwards."""
    broker_port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "log_dest stderr\nlog_type error\nlog_type warning\n"
    )
    yield from _run_mosquitto(conf, broker_port)


@pytest.fixture
def secured_mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto with the shipped configuration and ACL (examples/mosquitto/), only its
    listener moved to a free loopback port, and a password file made with ``mosquitto_passwd``
    holding ``BROKER_ACCOUNTS``."""
    passwd_tool = shutil.which("mosquitto_passwd")
    if passwd_tool is None:
        pytest.fail("mosquitto_passwd is not installed (Debian package mosquitto)")
    passwords = tmp_path / "nbedge.passwd"
    passwords.touch(mode=0o600)
    for user, password in BROKER_ACCOUNTS.items():
        subprocess.run([passwd_tool, "-b", str(passwords), user, password], check=True)
    broker_port = free_port()
    lines = []
    for line in (SHIPPED_MOSQUITTO / "nbedge.conf").read_text().splitlines():
        key = line.split(maxsplit=1)[0] if line.strip() else ""
        if key == "listener":
            line = f"listener {broker_port} 127.0.0.1"
        elif key == "password_file":
            line = f"password_file {passwords}"
        elif key == "acl_file":
            line = f"acl_file {SHIPPED_MOSQUITTO / 'nbedge.acl'}"
        lines.append(line)
    # Run as root, Mosquitto drops to its own user before it reads the password file, which it
    # could not read in the test's private folder.
    lines += ["persistence false", "log_dest stderr", "log_type error"]
    if os.geteuid() == 0:
        lines.append("user root")
    conf = tmp_path / "secured.conf"
    conf.write_text("\n".join(lines) + "\n")
    yield from _run_mosquitto(conf, broker_port)


def _run_mosquitto(conf: Path, broker_port: int) -> Iterator[Broker]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.fail("mosquitto is not installed: run the README's test command, which installs it")
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        wait_for_port(broker_port)
        yield Broker("127.0.0.1", broker_port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.fixture
async def bluez(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[PrivateBlueZ]:
    """BlueZoo on a private bus with adapters hci0 (00:00:00:00:0A:01) and hci1 (...:0A:02),
    which bleak (connecting later, in this loop) will use."""
    try:
        async with private_bluez(scan_interval_s=1) as harness:
            monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", harness.address)
            yield harness
    except HarnessUnavailable as exc:
        if os.environ.get("CI"):  # the README's test command installs both: never skip there
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves threads running behind it (as pymodbus's own suite does)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        leaked = [
            t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"


@pytest.fixture(autouse=True)
def root_logging_restored() -> Iterator[None]:
    """A test that runs ``nbedge run`` in this process configures the root logger to write to
    its captured output: put the handlers and level back, so that later tests do not log to a
    closed file."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
