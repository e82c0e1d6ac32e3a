"""``nbedge doctor``: what works and what does not, one line per check, each problem with its fix.

Two callers. The command line (``diagnose``) checks the configuration file, the files, the
clock, the disk, the bundles and the unit itself; for the devices, the broker and the central
API it asks the running gateway (``GET /api/health`` of its local API), and probes them
directly only when no gateway holds the state folder's lock (``edge.runlock``). The running
gateway (``gateway_health``) answers that request and fills the console's health page.

Exit status of the command: 0 when every check is ok (or skipped), 1 for a warning, 2 for a
failure. docs/doctor.md lists every check.
"""

from __future__ import annotations

import json
import os
import pwd
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import httpx

from edge import systemd
from edge.alerts.catalogue import duration
from edge.doctor import local, service
from edge.doctor.results import Check, Level, fail, ok, ordered, skip, warn, worst
from edge.i18n import N_, Language
from edge.layout import SERVICE_USER
from edge.runlock import running_pid
from edge.schemas import GatewayConfig

if TYPE_CHECKING:
    from edge.daemon import Gateway

__all__ = ["Check", "Level", "diagnose", "exit_status", "gateway_health", "print_checks"]

HEALTH_PATH = "/api/health"


# --- inside the running gateway ---------------------------------------------------------------


async def gateway_health(gateway: Gateway) -> list[Check]:
    """Every check as the running gateway sees it (``/api/health``, the health page)."""
    config = gateway.config
    status = await gateway.status()
    checks = [
        ok(
            "daemon",
            N_("running for {uptime}, pid {pid}"),
            uptime=duration(status.uptime_s, "en"),
            pid=os.getpid(),
        ),
        *local.files(config, None, local.Account.service(pwd.getpwuid(os.geteuid()).pw_name)),
        local.clock(),
        local.disk(config),
        *local.models(config),
        _unit_from_inside(),
        *service.modbus_live(
            config, status.modbus, await gateway.latest_readings(), gateway.clock.wall_time()
        ),
        service.ble_live(config, status.ble),
        service.mqtt_live(config, status.mqtt),
        await service.central(config, status.uplink),
    ]
    return ordered(checks)


def _unit_from_inside() -> Check:
    interval = systemd.watchdog_interval_s()
    if not os.environ.get("NOTIFY_SOCKET"):
        return skip("unit", N_("not run by systemd"))
    if interval is None:
        return warn(
            "unit",
            N_("run by systemd without a watchdog"),
            N_("keep WatchdogSec= of the shipped unit"),
        )
    return ok(
        "unit", N_("run by systemd; the watchdog is fed every {every} s"), every=f"{interval:g}"
    )


# --- the command ------------------------------------------------------------------------------


async def diagnose(config_path: Path, *, user: str = SERVICE_USER) -> list[Check]:
    """Every check of the gateway configured in ``config_path``."""
    from edge.config import load_config
    from nbedge.errors import ConfigError

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        issues = "; ".join(str(issue) for issue in exc.issues[:5])
        return [
            fail(
                "config",
                N_("{path} is not valid: {issues}"),
                N_("nbedge config check {path} lists every error with its field"),
                path=str(config_path),
                issues=issues,
            )
        ]
    checks = [
        ok(
            "config",
            N_("{path} is valid: gateway {gateway} of site {site}, {devices} Modbus device(s)"),
            path=str(config_path),
            gateway=config.gateway.id,
            site=config.gateway.site,
            devices=len(config.modbus.devices),
        ),
        *local.files(config, config_path, local.Account.service(user)),
        local.clock(),
        local.disk(config),
        *local.models(config),
        local.unit(),
    ]
    checks += await _services(config)
    return ordered(checks)


async def _services(config: GatewayConfig) -> list[Check]:
    pid = running_pid(config.gateway.state_dir)
    if pid is None:
        probed = [
            warn(
                "daemon",
                N_("the gateway is not running: the devices are probed directly"),
                N_("systemctl enable --now nbedge-gateway"),
            ),
            *await service.modbus_probe(config),
            *await service.ble_probe(config),
            await service.mqtt_probe(config),
            await service.central(config),
        ]
        return probed
    answer = await _ask(config) if config.local_api.enabled else None
    if isinstance(answer, list):
        return [
            ok("daemon", N_("running, pid {pid}; asked it at {url}"), pid=pid, url=_url(config)),
            *(c for c in answer if c.check in service.SERVICE_CHECKS),
        ]
    why = (
        N_("running, pid {pid}, with its local API off")
        if answer is None
        else N_("running, pid {pid}, but its local API at {url} does not answer: {reason}")
    )
    held = [
        skip(name, N_("not checked: the gateway holds its buses and doctor does not open them"))
        for name in ("modbus", "ble")
    ]
    return [
        warn(
            "daemon",
            why,
            N_("restart it: systemctl restart nbedge-gateway"),
            pid=pid,
            url=_url(config),
            reason=answer or "",
        ),
        *held,
        await service.mqtt_probe(config),
        await service.central(config),
    ]


def _url(config: GatewayConfig) -> str:
    section = config.local_api
    scheme = "https" if section.tls_cert is not None else "http"
    host = "127.0.0.1" if section.host in ("0.0.0.0", "") else section.host  # noqa: S104
    host = "[::1]" if host == "::" else (f"[{host}]" if ":" in host else host)
    return f"{scheme}://{host}:{section.port}"


async def _ask(config: GatewayConfig) -> list[Check] | str:
    """The running gateway's own checks, or why it did not give them."""
    verify: ssl.SSLContext | bool = True
    cert = config.local_api.tls_cert
    if cert is not None:  # its own certificate, pinned: often self-signed, names a LAN address
        verify = ssl.create_default_context(cafile=str(cert))
        verify.check_hostname = False
    try:
        async with httpx.AsyncClient(base_url=_url(config), verify=verify, timeout=30) as http:
            answer = await http.get(HEALTH_PATH)
        answer.raise_for_status()
        return [Check.model_validate(item) for item in answer.json()["checks"]]
    except (httpx.HTTPError, OSError, ValueError, KeyError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}".rstrip(": ")


# --- output -----------------------------------------------------------------------------------


def exit_status(checks: Sequence[Check]) -> int:
    return worst(checks).rank


def print_checks(
    checks: Sequence[Check],
    *,
    as_json: bool = False,
    language: Language = "en",
    out: TextIO = sys.stdout,
) -> None:
    if as_json:
        document: dict[str, Any] = {
            "worst": worst(checks).value,
            "at": time.time(),
            "checks": [c.shown(language) for c in checks],
        }
        json.dump(document, out, ensure_ascii=False, indent=2)
        out.write("\n")
        return
    width = max((len(c.title(language)) for c in checks), default=10)
    for c in checks:
        mark = "FAIL" if c.level is Level.FAIL else c.level.value
        out.write(f"{mark:<5} {c.title(language):<{width}}  {c.text(language)}\n")
        fix = c.fix_text(language)
        if fix is not None:
            out.write(f"{'':<5} {'':<{width}}  fix: {fix}\n")
    counts = {level: sum(1 for c in checks if c.level is level) for level in Level}
    out.write(
        f"{counts[Level.OK]} ok, {counts[Level.WARN]} warning(s), {counts[Level.FAIL]}"
        f" failure(s), {counts[Level.SKIP]} skipped\n"
    )
