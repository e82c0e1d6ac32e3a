"""A private BlueZ for tests (BlueZoo on its own D-Bus) and an LE advertiser that feeds it.

This kernel-free setup runs the real bleak BlueZ backend: :func:`private_bluez` starts a
``dbus-daemon`` on a socket in a temporary folder and BlueZoo (a mock ``org.bluez``) on it with
two adapters; :class:`BlueZAdvertiser` registers an ``org.bluez.LEAdvertisement1`` with BTHome
service data on one adapter, and a scanner on the other adapter sees it as a device. What BlueZoo
honours (measured against BlueZoo 1.0.2):

- it reports an adapter's advertisement to scanning adapters once per ``--scan-interval``
  (whole seconds), the first time as discovery starts, so a change is seen 0-1 scan intervals
  later; only the first advertisement registered on an adapter is reported;
- it reads the advertisement's properties on registration and follows ``PropertiesChanged``:
  emitting it for ``ServiceData`` is enough to change what scanners see (at the next scan);
  unregistering stops the reports (the device stays known to the scanner);
- an advertisement is only reported when discoverable: its ``Discoverable`` property, or else
  the advertising adapter's; the advertiser sets ``Discoverable`` true;
- without ``LocalName`` the scanner sees the advertising adapter's name;
- the device's ``ServiceData`` changes only when it differs, so an identical advert gives no
  new scanner callback; RSSI is always 0; passive scanning is not supported (bleak refuses
  it: no advertisement monitor manager).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Final, Literal, Self

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusBool, DBusDict, DBusSignature, DBusStr
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_property, method

from sim.bthome import BTHOME_UUID, SimulatedDoorSensor, SimulatedSensor

_BLUEZ: Final = "org.bluez"
_ADVERTISING_MANAGER: Final = "org.bluez.LEAdvertisingManager1"
_OBJECT_MANAGER: Final = "org.freedesktop.DBus.ObjectManager"
_STOP_TIMEOUT_S: Final = 5.0
_CALL_TIMEOUT_S: Final = 5.0


class HarnessUnavailable(RuntimeError):
    """A program the private BlueZ needs is not installed; the message names what to install."""


class HarnessFailed(RuntimeError):
    """The private BlueZ did not come up in time, or BlueZoo refused a request."""


@dataclass(frozen=True, slots=True)
class PrivateBlueZ:
    """A running private BlueZ: ``address`` goes into ``DBUS_SYSTEM_BUS_ADDRESS``."""

    address: str
    adapters: tuple[str, ...]


def _find_programs() -> tuple[str, str]:
    dbus_daemon = shutil.which("dbus-daemon") or "/usr/bin/dbus-daemon"
    if not Path(dbus_daemon).exists():
        raise HarnessUnavailable("dbus-daemon is not installed: apt-get install dbus-daemon")
    bluezoo = Path(sys.executable).parent / "bluezoo"
    found = str(bluezoo) if bluezoo.exists() else shutil.which("bluezoo")
    if found is None:
        raise HarnessUnavailable("bluezoo is not installed: pip install bluezoo")
    return dbus_daemon, found


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), _STOP_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _call(bus: MessageBus, message: Message) -> Message:
    reply = await asyncio.wait_for(bus.call(message), _CALL_TIMEOUT_S)
    if reply is None or reply.message_type == MessageType.ERROR:
        detail = reply.body if reply is not None else "no reply"
        raise HarnessFailed(f"{message.interface}.{message.member} failed: {detail}")
    return reply


async def _powered_adapters(bus: MessageBus) -> list[str]:
    reply = await _call(
        bus,
        Message(
            destination=_BLUEZ,
            path="/",
            interface=_OBJECT_MANAGER,
            member="GetManagedObjects",
        ),
    )
    objects: dict[str, dict[str, dict[str, Variant]]] = reply.body[0]
    return sorted(
        path.rsplit("/", 1)[-1]
        for path, interfaces in objects.items()
        if "org.bluez.Adapter1" in interfaces
        and interfaces["org.bluez.Adapter1"].get("Powered", Variant("b", False)).value
    )


@contextlib.asynccontextmanager
async def private_bluez(
    adapters: Sequence[str] = ("00:00:00:00:0A:01", "00:00:00:00:0A:02"),
    *,
    scan_interval_s: int = 1,
    startup_timeout_s: float = 15.0,
) -> AsyncIterator[PrivateBlueZ]:
    """Run BlueZoo with ``adapters`` (MAC addresses, hci0, hci1, ...) on a private D-Bus.

    Yields once ``org.bluez`` owns the bus and every adapter is powered; on exit stops both
    processes (terminate, then kill after 5 s) and removes the socket's folder. Raises
    :class:`HarnessUnavailable` when dbus-daemon or bluezoo is missing, :class:`HarnessFailed`
    when they do not come up within ``startup_timeout_s``.
    """
    dbus_daemon, bluezoo = _find_programs()
    folder = Path(tempfile.mkdtemp(prefix="nbedge-bluez-"))
    address = f"unix:path={folder / 'bus'}"
    procs: list[asyncio.subprocess.Process] = []
    deadline = time.monotonic() + startup_timeout_s
    try:
        daemon = await asyncio.create_subprocess_exec(
            dbus_daemon,
            "--session",
            f"--address={address}",
            "--nofork",
            "--nopidfile",
            "--print-address",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        procs.append(daemon)
        if daemon.stdout is None:
            raise HarnessFailed("dbus-daemon's output is not readable")
        try:
            printed = await asyncio.wait_for(daemon.stdout.readline(), startup_timeout_s)
        except TimeoutError as exc:
            raise HarnessFailed("dbus-daemon did not print its address") from exc
        if not printed:
            raise HarnessFailed(f"dbus-daemon exited with status {await daemon.wait()}")
        log = folder / "bluezoo.log"
        with log.open("wb") as log_file:
            args = ["--auto-enable", "--scan-interval", str(scan_interval_s)]
            for mac in adapters:
                args += ["-a", mac]
            procs.append(
                await asyncio.create_subprocess_exec(
                    bluezoo,
                    *args,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address},
                )
            )
        names = tuple(f"hci{i}" for i in range(len(adapters)))
        await _wait_for_adapters(address, procs[1], names, deadline, log)
        yield PrivateBlueZ(address=address, adapters=names)
    finally:
        for proc in reversed(procs):
            await _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


async def _wait_for_adapters(
    address: str,
    bluezoo: asyncio.subprocess.Process,
    names: tuple[str, ...],
    deadline: float,
    log: Path,
) -> None:
    bus = await asyncio.wait_for(MessageBus(bus_address=address).connect(), _CALL_TIMEOUT_S)
    try:
        while True:
            if bluezoo.returncode is not None:
                text = await asyncio.to_thread(log.read_text, errors="replace")
                tail = text[-2000:]
                raise HarnessFailed(f"bluezoo exited with status {bluezoo.returncode}:\n{tail}")
            with contextlib.suppress(HarnessFailed):
                if set(names) <= set(await _powered_adapters(bus)):
                    return
            if time.monotonic() > deadline:
                raise HarnessFailed(f"bluezoo did not power {', '.join(names)} in time")
            await asyncio.sleep(0.05)
    finally:
        bus.disconnect()


AdvertisementType = Literal["broadcast", "peripheral"]


class _Advertisement(ServiceInterface):
    """The exported ``org.bluez.LEAdvertisement1`` object."""

    def __init__(
        self, ad_type: AdvertisementType, service_data: bytes, local_name: str | None
    ) -> None:
        super().__init__("org.bluez.LEAdvertisement1")
        self._type = ad_type
        self.service_data = service_data
        self._local_name = local_name
        self.released = False

    @method()
    def Release(self) -> Annotated[None, DBusSignature("")]:
        self.released = True

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> DBusStr:
        return self._type

    @dbus_property(access=PropertyAccess.READ)
    def ServiceData(self) -> DBusDict:
        return {BTHOME_UUID: Variant("ay", self.service_data)}

    @dbus_property(access=PropertyAccess.READ)
    def Discoverable(self) -> DBusBool:
        return True


class _NamedAdvertisement(_Advertisement):
    """An advertisement that also carries ``LocalName``."""

    @dbus_property(access=PropertyAccess.READ)
    def LocalName(self) -> DBusStr:
        return self._local_name or ""


class BlueZAdvertiser:
    """Advertises BTHome service data through BlueZ's LE advertising manager on ``adapter``.

    ``async with BlueZAdvertiser(address, adapter="hci1") as adv`` connects to the bus at
    ``bus_address`` (None: the system bus), exports the advertisement and registers it;
    :meth:`set_service_data` changes the data (a ``PropertiesChanged`` signal, which BlueZoo
    follows); leaving the block unregisters it and disconnects.
    """

    def __init__(
        self,
        bus_address: str | None,
        adapter: str = "hci1",
        local_name: str | None = None,
        *,
        ad_type: AdvertisementType = "broadcast",
        service_data: bytes = b"\x40",
    ) -> None:
        self.bus_address = bus_address
        self.adapter = adapter
        self.path = f"/org/nbedge/advertisement/{adapter}"
        kind = _Advertisement if local_name is None else _NamedAdvertisement
        self._advertisement = kind(ad_type, service_data, local_name)
        self._registered = False
        self._bus: MessageBus | None = None

    @property
    def service_data(self) -> bytes:
        """What is advertised now."""
        return self._advertisement.service_data

    async def __aenter__(self) -> Self:
        if self.bus_address is None:
            bus = MessageBus(bus_type=BusType.SYSTEM)
        else:
            bus = MessageBus(bus_address=self.bus_address)
        self._bus = await asyncio.wait_for(bus.connect(), _CALL_TIMEOUT_S)
        try:
            self._bus.export(self.path, self._advertisement)
            await self._register()
        except BaseException:
            self._bus.disconnect()
            self._bus = None
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        bus, self._bus = self._bus, None
        if bus is None:
            return
        try:
            if bus.connected and self._registered:
                with contextlib.suppress(HarnessFailed, TimeoutError):
                    await self._manager_call("UnregisterAdvertisement", "o", [self.path], bus)
        finally:
            bus.disconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    bus.wait_for_disconnect(),  # type: ignore[no-untyped-call]
                    _STOP_TIMEOUT_S,
                )

    async def _manager_call(
        self, member: str, signature: str, body: list[Any], bus: MessageBus | None = None
    ) -> None:
        bus = bus or self._bus
        if bus is None:
            raise HarnessFailed("the advertiser is not connected")
        await _call(
            bus,
            Message(
                destination=_BLUEZ,
                path=f"/org/bluez/{self.adapter}",
                interface=_ADVERTISING_MANAGER,
                member=member,
                signature=signature,
                body=body,
            ),
        )

    async def _register(self) -> None:
        await self._manager_call("RegisterAdvertisement", "oa{sv}", [self.path, {}])
        self._registered = True

    @property
    def registered(self) -> bool:
        """Whether the advertisement is registered (on air) now."""
        return self._registered

    async def set_service_data(self, data: bytes) -> None:
        """Advertise ``data`` from now on (scanners see it at their next scan).

        Registers the advertisement again if :meth:`withdraw` took it off the air.
        """
        changed = data != self._advertisement.service_data
        self._advertisement.service_data = data
        if not self._registered:
            await self._register()
        elif changed:
            self._advertisement.emit_properties_changed(
                {"ServiceData": {BTHOME_UUID: Variant("ay", data)}}
            )

    async def withdraw(self) -> None:
        """Take the advertisement off the air (unregister it) until the next data is set."""
        if self._registered:
            self._registered = False
            await self._manager_call("UnregisterAdvertisement", "o", [self.path])


async def run_sensor(
    advertiser: BlueZAdvertiser,
    sensor: SimulatedDoorSensor | SimulatedSensor,
    *,
    tick_s: float = 0.5,
    clock: Callable[[], float] = time.time,
) -> None:
    """Push ``sensor``'s current service data to ``advertiser`` whenever it changes, forever.

    While the sensor is silent its advertisement is withdrawn (unregistered), and registered
    again with the current data when it speaks again.
    """
    while True:
        data = sensor.advertise(clock())
        if data is None:
            await advertiser.withdraw()
        else:
            await advertiser.set_service_data(data)
        await asyncio.sleep(tick_s)
