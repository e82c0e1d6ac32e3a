"""The checks that read files and the machine only, safe whether the gateway runs or not:
file modes and owners, the clock, the disk and the store's size, the model bundles, the unit.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edge.clock import clock_synchronised
from edge.doctor.results import Check, fail, ok, skip, warn
from edge.i18n import N_
from edge.layout import CREDENTIAL_KEY_FILE, SERVICE_USER
from edge.people import PEOPLE_FILE
from edge.schemas import GatewayConfig

UNIT = "nbedge-gateway.service"


@dataclass(frozen=True)
class Account:
    """Who the gateway runs as: its user and the groups it is in."""

    name: str
    uid: int
    gids: frozenset[int]

    @classmethod
    def service(cls, name: str = SERVICE_USER) -> Account:
        """The service user, or whoever runs this where there is none (a developer's machine)."""
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            entry = pwd.getpwuid(os.geteuid())
        groups = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem}
        return cls(entry.pw_name, entry.pw_uid, frozenset(groups))


def files(config: GatewayConfig, config_path: Path | None, account: Account) -> list[Check]:
    """The files that hold secrets: readable by the service user, by nobody else."""
    state = config.gateway.state_dir
    wanted: list[tuple[Path, bool]] = []  # (path, must exist)
    if config_path is not None:
        wanted.append((config_path, True))
    if config.uplink is not None and config.uplink.token_file is not None:
        wanted.append((config.uplink.token_file, True))
    wanted.append((state / CREDENTIAL_KEY_FILE, False))
    wanted.append((state / PEOPLE_FILE, False))
    if config.local_api.tls_key is not None:
        wanted.append((config.local_api.tls_key, True))
    return [file_check(path, account, required) for path, required in wanted]


def file_check(path: Path, account: Account, required: bool = True) -> Check:
    """One file: it exists (when ``required``), the service user reads it, others do not."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if required:
            return fail(
                "files",
                N_("{path} is missing"),
                N_("create it, or correct its path in the configuration"),
                str(path),
                path=str(path),
            )
        return ok("files", N_("{path}: not made yet"), str(path), path=str(path))
    except OSError as exc:
        return fail(
            "files",
            N_("{path} cannot be read: {reason}"),
            N_("run nbedge doctor as root or as {user}"),
            str(path),
            path=str(path),
            reason=exc.strerror or str(exc),
            user=account.name,
        )
    mode = stat.S_IMODE(info.st_mode)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    try:
        owner = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        owner = str(info.st_uid)
    params = {"path": str(path), "mode": f"{mode:04o}", "owner": owner, "group": group}
    readable = (
        account.uid == 0
        or (info.st_uid == account.uid and mode & stat.S_IRUSR)
        or (info.st_gid in account.gids and mode & stat.S_IRGRP)
        or mode & stat.S_IROTH
    )
    if not readable:
        return fail(
            "files",
            N_("{path} ({owner}:{group} {mode}) cannot be read by the service user {user}"),
            N_("chown {user} {path}, or chgrp {user} {path} && chmod g+r {path}"),
            str(path),
            user=account.name,
            **params,
        )
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        return fail(
            "files",
            N_("{path} ({owner}:{group} {mode}) can be read by every user of the machine"),
            N_("chmod o-rwx {path}"),
            str(path),
            **params,
        )
    if mode & stat.S_IWGRP and info.st_gid not in account.gids:
        return warn(
            "files",
            N_("{path} ({owner}:{group} {mode}) can be changed by the group {group}"),
            N_("chmod g-w {path}"),
            str(path),
            **params,
        )
    return ok("files", N_("{path}: {owner}:{group} {mode}"), str(path), **params)


def clock() -> Check:
    if clock_synchronised():
        return ok("clock", N_("the clock is synchronised"))
    return warn(
        "clock",
        N_("the clock is not synchronised: records are marked clock_synced false"),
        N_(
            "timedatectl set-ntp true, and check that an NTP server is reachable"
            " (timedatectl timesync-status)"
        ),
    )


def disk(config: GatewayConfig) -> Check:
    """Free disk under the store and the store's size against its quota, from the files."""
    path = config.database_path
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # the gateway makes it at start
        folder = folder.parent
    try:
        usage = shutil.disk_usage(folder)
    except OSError as exc:
        return fail(
            "disk",
            N_("cannot measure the disk of {path}: {reason}"),
            N_("create {path}'s folder, owned by the service user"),
            path=str(path),
            reason=exc.strerror or str(exc),
        )
    size = sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    quota = config.store.max_bytes
    params = {
        "free": _mib(usage.free),
        "size": _mib(size),
        "quota": _mib(quota),
        "watermark": _mib(config.store.min_free_bytes),
        "path": str(path),
    }
    if usage.free < config.store.min_free_bytes:
        return fail(
            "disk",
            N_("{free} free, below the store's watermark of {watermark}: the store stops writing"),
            N_("free space on the disk of {path} (old logs, files left by hand)"),
            **params,
        )
    if size > quota:
        return warn(
            "disk",
            N_("the store ({size}) is over its quota of {quota}: the oldest records are evicted"),
            N_("raise store.max_bytes if the disk allows, or shorten the retention"),
            **params,
        )
    if usage.free < 2 * config.store.min_free_bytes:
        return warn(
            "disk",
            N_("only {free} free (the store stops writing below {watermark})"),
            N_("free space on the disk of {path}"),
            **params,
        )
    return ok("disk", N_("{free} free; the store holds {size} of its {quota} quota"), **params)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB" if n >= 1 << 20 else f"{n / 1024:.0f} KiB"


def models(config: GatewayConfig, shipped_dir: Path | None = None) -> list[Check]:
    """Each configured kind's bundles verify: the shipped one and any in the state folder."""
    if not (config.models.demand or config.models.anomaly):
        return (
            [ok("models", N_("the dwellings' detector needs no bundle"))]
            if config.models.dwellings
            else [skip("models", N_("no model configured"))]
        )
    from edge.analytics import SHIPPED_DIR
    from models import anomaly, demand
    from models.bundle import load_bundle, trusted_keys
    from nbedge.errors import ModelRejected

    keys = trusted_keys(config.models.trusted_keys)
    shipped = SHIPPED_DIR if shipped_dir is None else shipped_dir
    found = []
    kinds = [("demand", demand.FEATURE_VERSION)] if config.models.demand else []
    kinds += [("anomaly", anomaly.FEATURE_VERSION)] if config.models.anomaly else []
    for kind, version in kinds:
        folders = [shipped / kind, config.gateway.state_dir / "models" / kind]
        for folder in folders:
            if folder.is_relative_to(config.gateway.state_dir) and not folder.exists():
                continue
            try:
                bundle = load_bundle(folder, keys=keys, kind=kind, feature_version=version)
            except ModelRejected as exc:
                found.append(
                    fail(
                        "models",
                        N_("the {kind} bundle in {path} is refused: {reason}"),
                        N_(
                            "put a bundle signed by a trusted key there (docs/models.md), or"
                            " remove it to use the shipped one"
                        ),
                        kind,
                        kind=kind,
                        path=str(folder),
                        reason=exc.reason,
                    )
                )
                continue
            found.append(
                ok(
                    "models",
                    N_("the {kind} bundle {label} verifies (signed by {key})"),
                    kind,
                    kind=kind,
                    label=bundle.label,
                    key=bundle.key_id,
                )
            )
    return found


def unit(run: subprocess.CompletedProcess[str] | None = None) -> Check:
    """The systemd unit's state and watchdog (``systemctl show``); skipped without a manager."""
    if run is None:
        systemctl = shutil.which("systemctl")
        if not Path("/run/systemd/system").is_dir() or systemctl is None:
            return skip("unit", N_("no systemd manager runs here"))
        properties = "LoadState,ActiveState,SubState,UnitFileState,WatchdogUSec,NRestarts"
        try:
            run = subprocess.run(  # noqa: S603 (fixed arguments)
                [systemctl, "show", UNIT, f"--property={properties}"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return skip("unit", N_("systemctl did not answer: {reason}"), reason=str(exc))
    return unit_from_show(run.stdout)


def unit_from_show(text: str) -> Check:
    """The unit check from ``systemctl show``'s ``Key=value`` lines."""
    shown = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    params: dict[str, str] = {
        "unit": UNIT,
        "state": f"{shown.get('ActiveState', '?')} ({shown.get('SubState', '?')})",
        "enabled": shown.get("UnitFileState", "?"),
        "restarts": shown.get("NRestarts", "0"),
        "watchdog": shown.get("WatchdogUSec", "0"),
    }
    if shown.get("LoadState") != "loaded":
        return fail(
            "unit",
            N_("{unit} is not installed"),
            N_("install the nbedge package (docs/installer.md)"),
            **params,
        )
    active = shown.get("ActiveState")
    if active == "failed":
        return fail(
            "unit",
            N_("{unit} failed ({state}), after {restarts} restart(s)"),
            N_("journalctl -u {unit} -n 50 says why; then systemctl restart {unit}"),
            **params,
        )
    if active != "active":
        return warn(
            "unit",
            N_("{unit} is {state}, {enabled} at boot"),
            N_("systemctl enable --now {unit}"),
            **params,
        )
    if params["watchdog"] in ("0", "infinity", ""):
        return warn(
            "unit",
            N_("{unit} runs without a watchdog"),
            N_("keep WatchdogSec= of the shipped unit"),
            **params,
        )
    if params["enabled"] not in ("enabled", "static"):
        return warn(
            "unit",
            N_("{unit} runs but is {enabled}: it will not start at boot"),
            N_("systemctl enable {unit}"),
            **params,
        )
    return ok(
        "unit",
        N_("{unit} is {state}, watchdog {watchdog}, {restarts} restart(s)"),
        **params,
    )
