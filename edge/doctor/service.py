"""The checks of what the gateway talks to: Modbus devices, the BLE adapter, the MQTT broker and
the central API.

Each has two sources. While the gateway runs, its own view (``live``): its status and newest
readings, since a serial port cannot be shared and a Modbus TCP converter allows few
connections. When it is stopped, a direct probe (``probe``): one poll of each device, a short
scan, a connection to the broker. The central API is asked the same way in both
(``GET /v1/gateways/me``): an HTTP request disturbs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from edge.alerts.catalogue import duration
from edge.doctor.results import Check, Level, fail, ok, skip, warn
from edge.i18n import N_
from edge.schemas import GatewayConfig, ModbusDeviceSection
from edge.status import BleStatus, BusStatusView, DeviceStatusView, MqttStatus, UplinkStatus
from firmware_bridge.readings import Reading

SERVICE_CHECKS = frozenset({"modbus", "ble", "mqtt", "central"})
"""The checks the running gateway answers for itself (``/api/health``)."""

PLAUSIBLE: dict[str, tuple[float, float]] = {
    "V": (0.0, 1000.0),
    "A": (-10_000.0, 10_000.0),
    "Hz": (40.0, 70.0),
    "W": (-10_000_000.0, 10_000_000.0),
    "kWh": (0.0, 1e10),
    "m3": (0.0, 1e9),
}
"""What a building's meter can read, per unit: a value outside says a wrong profile, word order,
scale or unit id (a float read from the wrong registers is rarely near 230 V)."""

PROBE_TIMEOUT_S = 8.0
"""How long the probe waits for the first poll of every device."""
CONNECT_WAIT_S = 3.0
"""How long the probe waits for a bus to connect at all."""
BLE_PROBE_S = 4.0


TINIEST = 1e-6
"""Smaller than any reading a meter sends, but for 0: what a float32 read with its two words
swapped (the commonest mistake of a profile) often gives, as does one read from the wrong
registers."""


def implausible(unit: str, value: float) -> bool:
    if not math.isfinite(value) or 0 < abs(value) < TINIEST:
        return True
    low, high = PLAUSIBLE.get(unit, (-1e12, 1e12))
    return not low <= value <= high


# --- Modbus ---------------------------------------------------------------------------------


def modbus_live(
    config: GatewayConfig,
    buses: Sequence[BusStatusView],
    latest: Sequence[Mapping[str, Any]],
    now: float,
) -> list[Check]:
    """Each device as the running gateway sees it: answering or not, and its newest values."""
    values: dict[str, list[tuple[str, str, float]]] = {}
    for row in latest:
        values.setdefault(str(row["device"]), []).append(
            (str(row["point"]), str(row["unit"]), float(row["value"]))
        )
    return [
        _device_check(config, bus, device, values.get(device.name, []), now)
        for bus in buses
        for device in bus.devices
    ]


async def modbus_probe(config: GatewayConfig, timeout_s: float = PROBE_TIMEOUT_S) -> list[Check]:
    """One poll of each meter, directly (only while the gateway is stopped)."""
    from edge.daemon import build_buses

    devices = list(config.modbus.devices)
    found: list[Check] = [
        skip("modbus", N_("gate {name}: checked while the gateway runs"), g.name, name=g.name)
        for g in config.modbus.gates
    ]
    if not devices:
        return found or [skip("modbus", N_("no Modbus device configured"))]
    readings: list[Reading] = []
    buses = build_buses(devices, readings.append)
    tasks = [asyncio.create_task(bus.run(), name=f"doctor {bus.endpoint}") for bus in buses]
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < timeout_s:
            waiting = [
                bus.status()
                for bus in buses
                if any(d.reads_ok + d.reads_failed == 0 for d in bus.status().devices)
            ]
            if not waiting or all(t.done() for t in tasks):
                break
            if elapsed > CONNECT_WAIT_S and all(b.connects == 0 for b in waiting):
                break  # no connection at all: the device checks say so
            await asyncio.sleep(0.05)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    now = time.time()
    values: dict[str, list[tuple[str, str, float]]] = {}
    for reading in readings:
        values.setdefault(reading.device, []).append((reading.point, reading.unit, reading.value))
    for bus in buses:
        view = BusStatusView.model_validate(bus.status(), from_attributes=True)
        found += [
            _device_check(config, view, device, values.get(device.name, []), now)
            for device in view.devices
        ]
    return found


def _device_check(
    config: GatewayConfig,
    bus: BusStatusView,
    device: DeviceStatusView,
    values: Sequence[tuple[str, str, float]],
    now: float,
) -> Check:
    section = next((d for d in config.modbus.devices if d.name == device.name), None)
    params: dict[str, str | int | float] = {
        "device": device.name,
        "unit_id": device.unit_id,
        "endpoint": bus.endpoint,
        "timeouts": device.timeouts,
        "exceptions": device.exceptions,
        "frames": device.frame_errors,
    }
    never_polled = device.reads_ok == 0 and device.reads_failed == 0
    if never_polled and bus.connection != "connected":
        return fail(
            "modbus",
            N_("{device}: cannot connect to {endpoint}"),
            N_(
                "check the address and port (or serial port) of {endpoint}, that the converter"
                " is powered and on the network, and that nothing else holds the serial port"
            ),
            device.name,
            **params,
        )
    if never_polled and device.state == "unknown":
        return warn(
            "modbus",
            N_("{device} (unit {unit_id} on {endpoint}) has not been polled yet"),
            N_("wait for its first poll and run nbedge doctor again"),
            device.name,
            **params,
        )
    if not device.online:
        fix = (
            N_(
                "check its wiring, power and address: unit {unit_id} on {endpoint} (nbedge scan"
                " modbus lists the unit ids that answer)"
            )
            if device.exceptions == 0
            else N_(
                "it answers but refuses the requests: check that its profile matches the device"
                " and that unit {unit_id} is this device"
            )
        )
        if device.last_ok_wall_time is None:
            message = N_(
                "{device} (unit {unit_id} on {endpoint}) has never answered: {timeouts}"
                " timeout(s), {exceptions} refusal(s), {frames} bad frame(s)"
            )
        else:
            params["ago"] = duration(max(0.0, now - device.last_ok_wall_time), "en")
            message = N_(
                "{device} (unit {unit_id} on {endpoint}) stopped answering {ago} ago: {timeouts}"
                " timeout(s), {exceptions} refusal(s), {frames} bad frame(s)"
            )
        return fail("modbus", message, fix, device.name, **params)
    if section is None:  # a gate controller: it answers, its values are not a meter's
        return ok(
            "modbus",
            N_("{device} (unit {unit_id} on {endpoint}) answers"),
            device.name,
            **params,
        )
    odd = sorted(point for point, unit, value in values if implausible(unit, value))
    shown = ", ".join(odd[:6]) + (", ..." if len(odd) > 6 else "")
    params |= {"points": len(values), "count": len(odd), "odd": shown, "profile": section.profile}
    if odd:
        return warn(
            "modbus",
            N_(
                "{device} answers, but {count} of its {points} values are implausible for a"
                " meter: {odd}"
            ),
            N_(
                "check that the profile {profile} is this device's, and unit {unit_id}; compare"
                " with the meter's display"
            ),
            device.name,
            **params,
        )
    if not values:
        return warn(
            "modbus",
            N_("{device} answers, but gave no value yet"),
            N_("check that the profile {profile} is this device's"),
            device.name,
            **params,
        )
    return ok(
        "modbus",
        N_("{device} (unit {unit_id} on {endpoint}) answers: {points} plausible values"),
        device.name,
        **params,
    )


def device_of(config: GatewayConfig, name: str) -> ModbusDeviceSection | None:
    return next((d for d in config.modbus.devices if d.name == name), None)


# --- BLE ------------------------------------------------------------------------------------


def ble_live(config: GatewayConfig, ble: BleStatus | None) -> Check:
    if not config.ble.sensors:
        return skip("ble", N_("no BLE sensor configured"))
    if ble is None:
        return fail(
            "ble",
            N_("the BLE scanner is not running"),
            N_("journalctl -u nbedge-gateway says why"),
        )
    params: dict[str, str | int | float] = {
        "adapter": ble.adapter or "default",
        "mode": ble.mode,
        "frames": ble.frames,
        "heard": sum(1 for s in ble.sensors if s.last_seen is not None),
        "sensors": len(ble.sensors),
        "reason": ble.reason or "",
    }
    if not ble.scanning or not ble.healthy:
        return fail(
            "ble",
            N_("the adapter {adapter} is not scanning ({mode}): {reason}"),
            _ble_fix(ble.reason or "", ble.mode),
            **params,
        )
    silent = [s.name for s in ble.sensors if s.online is False]
    if silent:
        params["silent"] = ", ".join(silent[:6])
        return warn(
            "ble",
            N_("scanning on {adapter} ({mode}), but not hearing {silent}"),
            N_("check the sensors' batteries and distance to the gateway (nbedge scan ble)"),
            **params,
        )
    return ok(
        "ble",
        N_("scanning on {adapter} ({mode}); {heard} of {sensors} sensors heard, {frames} frames"),
        **params,
    )


async def ble_probe(config: GatewayConfig, seconds: float = BLE_PROBE_S) -> list[Check]:
    """A short scan in the configured mode, directly (only while the gateway is stopped); in
    active mode, also whether passive scanning (which wakes no sensor) would work here."""
    scanned = await _ble_scan(config, seconds)
    if config.ble.mode == "passive" or scanned.level is not Level.OK:
        return [scanned]
    return [scanned, await _passive_possible(config)]


async def _passive_possible(config: GatewayConfig) -> Check:
    from bleak.exc import BleakError

    from firmware_bridge.ble.discover import discover

    adapter = config.ble.adapter or "default"
    try:
        await asyncio.wait_for(discover(1.0, adapter=config.ble.adapter, mode="passive"), 16)
    except (BleakError, OSError, TimeoutError):
        return ok(
            "ble",
            N_(
                "passive scanning is not possible on {adapter} (bluetoothd runs without"
                " --experimental); active scanning works"
            ),
            "passive",
            adapter=adapter,
        )
    return ok(
        "ble",
        N_('passive scanning works on {adapter} too ([ble] mode = "passive" wakes no sensor)'),
        "passive",
        adapter=adapter,
    )


async def _ble_scan(config: GatewayConfig, seconds: float) -> Check:
    if not config.ble.sensors:
        return skip("ble", N_("no BLE sensor configured"))
    from bleak.exc import BleakError

    from firmware_bridge.ble.discover import discover
    from firmware_bridge.ble.scanner import explain_failure

    ble = config.ble
    keys = {s.mac: s.key_bytes for s in ble.sensors if s.key_bytes is not None}
    params: dict[str, str | int | float] = {
        "adapter": ble.adapter or "default",
        "mode": ble.mode,
        "sensors": len(ble.sensors),
    }
    try:
        found = await asyncio.wait_for(
            discover(seconds, adapter=ble.adapter, mode=ble.mode, keys=keys), seconds + 15
        )
    except (BleakError, OSError, TimeoutError) as exc:
        reason = explain_failure(exc, ble.mode)
        return fail(
            "ble",
            N_("the adapter {adapter} cannot scan ({mode}): {reason}"),
            _ble_fix(reason, ble.mode),
            reason=reason,
            **params,
        )
    configured = {s.mac.upper() for s in ble.sensors}
    heard = sum(1 for f in found if f.mac.upper() in configured)
    params |= {"heard": heard, "seconds": f"{seconds:g}"}
    if heard == 0:
        return warn(
            "ble",
            N_(
                "the adapter {adapter} scans ({mode}) but heard none of the {sensors} sensors"
                " in {seconds} s"
            ),
            N_("sensors send every minute or so: run nbedge scan ble --seconds 60 to see them"),
            **params,
        )
    return ok(
        "ble",
        N_(
            "the adapter {adapter} scans ({mode}); heard {heard} of {sensors} sensors"
            " in {seconds} s"
        ),
        **params,
    )


def _ble_fix(reason: str, mode: str) -> str:
    if "passive" in reason:
        return N_(
            "start bluetoothd with --experimental (systemctl edit bluetooth), or set"
            ' [ble] mode = "active"'
        )
    if "bluetoothd" in reason or "BlueZ" in reason:
        return N_("systemctl enable --now bluetooth, and check the adapter with bluetoothctl list")
    return N_("check the adapter with bluetoothctl list and rfkill list")


# --- MQTT -----------------------------------------------------------------------------------


def mqtt_live(config: GatewayConfig, mqtt: MqttStatus | None) -> Check:
    section = config.mqtt
    params: dict[str, str | int | float] = {
        "broker": f"{section.host}:{section.port}",
        "account": section.username or "anonymous",
    }
    if not section.enabled:
        return skip("mqtt", N_("MQTT is off in the configuration"))
    if mqtt is not None and mqtt.connected:
        return ok("mqtt", N_("connected to {broker} as {account}"), **params)
    params["failures"] = 0 if mqtt is None else mqtt.connection_failures
    return fail(
        "mqtt",
        N_("not connected to {broker} as {account} ({failures} failed attempt(s))"),
        _MQTT_FIX,
        **params,
    )


_MQTT_FIX = N_(
    "check mqtt.host, port, username and password, that the broker runs (systemctl status"
    " mosquitto) and that its password file has the account"
)


async def mqtt_probe(config: GatewayConfig, timeout_s: float = 5.0) -> Check:
    """Connect to the broker with the gateway's account, under a client id of its own."""
    import aiomqtt

    section = config.mqtt
    if not section.enabled:
        return skip("mqtt", N_("MQTT is off in the configuration"))
    params: dict[str, str | int | float] = {
        "broker": f"{section.host}:{section.port}",
        "account": section.username or "anonymous",
    }
    client = aiomqtt.Client(
        section.host,
        section.port,
        identifier=f"nbedge-doctor-{config.gateway.site}-{config.gateway.id}",
        username=section.username,
        password=section.password,
        timeout=timeout_s,
    )
    try:
        async with asyncio.timeout(timeout_s + 1), client:
            pass
    except aiomqtt.MqttCodeError as exc:
        params["reason"] = str(exc)
        return fail(
            "mqtt",
            N_("the broker {broker} refuses the account {account}: {reason}"),
            N_(
                "check mqtt.username and password against the broker's password file"
                " (mosquitto_passwd) and its ACL"
            ),
            **params,
        )
    except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
        params["reason"] = str(exc) or type(exc).__name__
        return fail("mqtt", N_("cannot reach the broker {broker}: {reason}"), _MQTT_FIX, **params)
    return ok("mqtt", N_("the broker {broker} accepts the account {account}"), **params)


# --- the central API ------------------------------------------------------------------------


async def central(config: GatewayConfig, uplink_status: UplinkStatus | None = None) -> Check:
    """Reachable, its certificate trusted, our credential accepted: ``GET /v1/gateways/me``.
    ``uplink_status``, when the gateway runs, adds what its sync client last saw."""
    from cloud_sync.client import trust, whoami
    from nbedge.errors import UplinkRejected, UplinkUnavailable

    uplink = config.uplink
    if uplink is None or not uplink.enabled:
        return skip("central", N_("no central API configured: alerts stay local"))
    url = str(uplink.url).rstrip("/")
    params: dict[str, str | int | float] = {"url": url}
    try:
        token = uplink.token or (uplink.token_file.read_text().strip() if uplink.token_file else "")
    except OSError as exc:
        params["reason"] = exc.strerror or str(exc)
        return fail(
            "central",
            N_("cannot read the credential: {reason}"),
            N_("claim one: nbedge provision --central {url} --code ..."),
            **params,
        )
    try:
        verify = trust(uplink.ca_file)
    except (OSError, ValueError) as exc:
        params["reason"] = str(exc)
        return fail(
            "central",
            N_("cannot read uplink.ca_file: {reason}"),
            N_("point uplink.ca_file at the PEM certificate of the central API's CA"),
            **params,
        )
    try:
        me = await whoami(url, token, verify=verify, timeout_s=min(uplink.timeout_s, 10.0))
    except UplinkUnavailable as exc:
        params["reason"] = exc.reason
        if "certificate is not trusted" in exc.reason:
            return fail(
                "central",
                N_("{url}: {reason}"),
                N_(
                    "if the central API uses a private CA, set uplink.ca_file to its certificate;"
                    " else check the certificate's dates and host names"
                ),
                **params,
            )
        return fail(
            "central",
            N_("{url} cannot be reached: {reason}"),
            N_("check uplink.url, the network and DNS; records wait in the outbox meanwhile"),
            **params,
        )
    except UplinkRejected as exc:
        params["reason"] = f"{exc.status}: {exc.detail}"
        return fail(
            "central",
            N_("{url} refuses our credential ({reason})"),
            N_("claim a new one: nbedge provision --central {url} --code ..."),
            **params,
        )
    params |= {"gateway": me.gateway_id, "site": me.site_id}
    if (me.gateway_id, me.site_id) != (config.gateway.id, config.gateway.site):
        params |= {"ours": config.gateway.id, "our_site": config.gateway.site}
        return fail(
            "central",
            N_(
                "the credential belongs to gateway {gateway} of site {site}, but the"
                " configuration says {ours} of {our_site}"
            ),
            N_("correct [gateway] id and site, or claim this gateway's own credential"),
            **params,
        )
    if uplink_status is not None and uplink_status.state == "rejected":
        params["reason"] = uplink_status.last_error or ""
        return warn(
            "central",
            N_("our credential is accepted, but the central API refuses our batches: {reason}"),
            N_("upgrade the gateway or the central API so that they share a wire version"),
            **params,
        )
    return ok(
        "central",
        N_("{url} is trusted and accepts our credential (gateway {gateway} of site {site})"),
        **params,
    )
