"""The ``nbedge`` command.

Each command imports what it needs when it runs, so ``nbedge --help`` and ``nbedge config check``
stay quick and light on a Raspberry Pi.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nbedge import __version__
from nbedge.errors import EX_CONFIG, ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from cloud_sync.central.settings import CentralSettings
    from edge.schemas import GatewayConfig

DEFAULT_CONFIG = Path("/etc/nbedge/gateway.toml")
DEFAULT_TOKEN_FILE = Path("/var/lib/nbedge/credential")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"nbedge: configuration error in {exc}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbedge",
        description="Gateway software for the buildings of a neighbourhood.",
    )
    parser.add_argument("--version", action="version", version=f"nbedge {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser("run", help="run the gateway daemon")
    run.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="gateway TOML file")
    run.set_defaults(handler=_run)

    config = commands.add_parser("config", help="work with configuration files")
    config_commands = config.add_subparsers(title="config commands", metavar="COMMAND")
    check = config_commands.add_parser("check", help="validate a gateway configuration file")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=_config_check)

    demo = commands.add_parser(
        "demo", help="run a whole simulated building, broker, gateway and central API on 127.0.0.1"
    )
    demo.add_argument("--state-dir", type=Path, help="where the demo keeps its files (temporary)")
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.set_defaults(handler=_demo)

    central = commands.add_parser("central", help="the central API service")
    central_commands = central.add_subparsers(title="central commands", metavar="COMMAND")
    serve = central_commands.add_parser("serve", help="serve the central API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=_central_serve)
    add = central_commands.add_parser(
        "add-gateway", help="register a site's gateway and print its credential"
    )
    add.add_argument("--site", required=True)
    add.add_argument("--gateway", required=True)
    add.add_argument("--site-name", help="the building's name (default: its id)")
    add.set_defaults(handler=_central_add_gateway)

    code = central_commands.add_parser(
        "claim-code", help="make a one-time code with which a gateway claims its credential"
    )
    code.add_argument("--site", required=True)
    code.add_argument("--gateway", required=True)
    code.add_argument("--site-name", help="the building's name, when the site is new")
    code.add_argument("--ttl", type=float, default=86400, help="seconds the code stays valid")
    code.set_defaults(handler=_central_claim_code)

    maintenance = commands.add_parser(
        "maintenance", help="while testing sensors: alerts raised are tests, nobody is paged"
    )
    maintenance.add_argument("action", choices=["on", "off", "status"])
    maintenance.add_argument(
        "--for", dest="duration", default="1h", help="how long, e.g. 2h, 90m (at most 7d)"
    )
    maintenance.add_argument("--reason", default="", help="what is being tested")
    maintenance.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    maintenance.set_defaults(handler=_maintenance)

    doctor = commands.add_parser(
        "doctor", help="check what works and what does not, each problem with its fix"
    )
    doctor.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="gateway TOML file")
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    doctor.add_argument(
        "--user", default="nbedge", help="the service user whose access is checked (nbedge)"
    )
    doctor.set_defaults(handler=_doctor)

    provision = commands.add_parser(
        "provision", help="claim this gateway at the central API with a one-time code"
    )
    provision.add_argument("--central", required=True, help="base URL of the central API")
    provision.add_argument("--code", required=True, help="the one-time claim code")
    provision.add_argument(
        "--ca-file",
        type=Path,
        help="PEM file of the CA to trust for the central API (default: the system's CAs)",
    )
    provision.add_argument(
        "--token-file",
        type=Path,
        default=DEFAULT_TOKEN_FILE,
        help=f"where to keep the credential (mode 0600; default {DEFAULT_TOKEN_FILE})",
    )
    provision.add_argument(
        "--config",
        type=Path,
        help="gateway TOML file to fill in the [gateway] and [uplink] settings of (default "
        f"{DEFAULT_CONFIG} when it exists and this user may write it)",
    )
    provision.add_argument(
        "--user",
        help="the user the gateway runs as, who must own the credential when provision runs as "
        "root (default nbedge)",
    )
    provision.set_defaults(handler=_provision)

    token = commands.add_parser(
        "local-token",
        help="make an operator's token for the configuration (superseded by nbedge users)",
        description="Print a new random bearer token for an operator, and the "
        "[[local_api.operators]] entry (name and the token's SHA-256) to add to the gateway's "
        "configuration. The token is shown once and never stored by the gateway. An operator "
        "is an installer; nbedge users adds people of every role without a restart.",
    )
    token.add_argument("name", help="the operator, as the command log will name them")
    token.set_defaults(handler=_local_token)

    sim = commands.add_parser("sim", help="simulated field devices for trials and tests")
    sim_commands = sim.add_subparsers(title="sim commands", metavar="COMMAND")
    building = sim_commands.add_parser(
        "building",
        help="serve simulated Eastron SDM630 meters (and gate controllers) over Modbus TCP",
    )
    building.add_argument("--host", default="127.0.0.1")
    building.add_argument("--port", type=int, default=5020)
    building.add_argument("--meters", type=int, default=1, help="meters on unit ids 1..N")
    building.add_argument(
        "--gates",
        type=int,
        default=0,
        help="gate controllers (docs/gate-controller.md) with random badge traffic, on the unit "
        "ids after the meters",
    )
    building.add_argument(
        "--voltage-event-every",
        type=float,
        default=0,
        metavar="SECONDS",
        help="push voltage out of the EN 50160 band for 20 s this often (0: never)",
    )
    building.add_argument(
        "--rtu",
        action="store_true",
        help='RTU framing over TCP (read it as serial_port = "socket://HOST:PORT")',
    )
    building.set_defaults(handler=_sim_building)

    scan = commands.add_parser("scan", help="find field devices and suggest their profiles")
    scan_commands = scan.add_subparsers(title="scan commands", metavar="COMMAND")
    modbus = scan_commands.add_parser(
        "modbus",
        help="find the Modbus unit ids that answer, over TCP or on a serial port (RTU)",
        description="Probe each unit id in turn; print progress to stderr and a table of the "
        "units that answered, with a suggested profile, to stdout. Ctrl-C stops the scan and "
        "prints what was found so far (exit status 130).",
    )
    link = modbus.add_mutually_exclusive_group(required=True)
    link.add_argument("--host", help="Modbus TCP endpoint (meter or TCP/RTU gateway)")
    link.add_argument(
        "--serial-port", help="serial port for Modbus RTU: /dev/ttyUSB0, or socket://HOST:PORT"
    )
    modbus.add_argument("--port", type=int, default=502, help="TCP port (default 502)")
    modbus.add_argument("--baudrate", type=int, default=9600, help="serial (default 9600)")
    modbus.add_argument("--parity", choices=("N", "E", "O"), default="N", help="serial (N)")
    modbus.add_argument("--stopbits", type=int, choices=(1, 2), default=1, help="serial (1)")
    modbus.add_argument(
        "--units", default="1-247", help="unit ids, e.g. 1-247 (default) or 1,2,10-20"
    )
    modbus.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=0.3,
        help="seconds to wait per unit (default 0.3)",
    )
    modbus.set_defaults(handler=_scan_modbus)
    ble = scan_commands.add_parser(
        "ble",
        help="list the BTHome sensors (door/window, buttons) in range",
        description="Listen for BTHome v2 advertisements and print each sensor heard: address, "
        "name, kind, encrypted or not, signal strength and last values. Copy the address "
        "(and the key of an encrypted sensor) into [[ble.sensors]].",
    )
    ble.add_argument(
        "--seconds", type=_scan_seconds, default=10.0, help="how long to listen (default 10)"
    )
    ble.add_argument("--adapter", help="Bluetooth adapter, e.g. hci0 (default: the first one)")
    ble.add_argument(
        "--passive",
        action="store_true",
        help="passive scanning (needs bluetoothd --experimental)",
    )
    ble.add_argument(
        "--config",
        type=Path,
        help="a gateway configuration whose bind keys decrypt the sensors it names",
    )
    ble.set_defaults(handler=_scan_ble)

    backup = commands.add_parser(
        "backup",
        help="save what an SD-card swap must keep: configuration, credential, keys, people",
        description="Write an archive (tar.gz, mode 0600) of the configuration and the files it "
        "relies on that cannot be made again: the credential, the central API's CA, the "
        "console's certificate and key, the credential key, the people and device profiles "
        "named by path. Not the store.",
    )
    backup.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="gateway TOML file")
    backup.add_argument("out", type=Path, help="the archive to write, e.g. gateway.tar.gz")
    backup.set_defaults(handler=_backup)
    restore = commands.add_parser(
        "restore",
        help="put the files of a backup back at their paths, modes and owners",
        description="Check the configuration in the archive, then put each file back where it "
        "was, with its mode and owner. A file that exists and differs is replaced only with "
        "--force; nothing is written when a check fails.",
    )
    restore.add_argument("archive", type=Path, help="an archive made by nbedge backup")
    restore.add_argument(
        "--force", action="store_true", help="replace files that exist and differ from the backup's"
    )
    restore.set_defaults(handler=_restore)

    from edge import people_commands
    from models import commands as models_commands

    people_commands.register(commands)
    models_commands.register(commands)
    return parser


def _run(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from edge.daemon import run_gateway
    from edge.logs import configure_logging
    from edge.runlock import AlreadyRunning
    from edge.store.schema import SchemaTooNew

    config = load_config(args.config)
    configure_logging(config.log.level, config.log.format)
    try:
        asyncio.run(run_gateway(config, args.config))
    except (SchemaTooNew, AlreadyRunning) as exc:  # a person must look: no restart loop
        logging.getLogger("edge.daemon").critical("cannot run: %s", exc)
        print(f"nbedge: {exc}", file=sys.stderr)
        return EX_CONFIG
    return 0


def _maintenance(args: argparse.Namespace) -> int:
    import getpass
    import time
    from datetime import UTC, datetime

    from edge import maintenance
    from edge.config import load_config

    state_dir = load_config(args.config).gateway.state_dir

    def when(timestamp: float) -> str:
        return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")

    now = time.time()
    if args.action == "on":
        try:
            seconds = maintenance.parse_duration(args.duration)
        except ValueError as exc:
            print(f"nbedge: {exc}", file=sys.stderr)
            return 2
        window = maintenance.Window(
            since=now, until=now + seconds, by=getpass.getuser()[:64], reason=args.reason[:200]
        )
        maintenance.write(state_dir, window)
        print(
            f"maintenance until {when(window.until)}: alerts raised meanwhile are tests,"
            " nobody is paged (nbedge maintenance off ends it)"
        )
        return 0
    if args.action == "off":
        ended = maintenance.end(state_dir)
        print("maintenance ended" if ended else "no maintenance was in force")
        return 0
    current = maintenance.read(state_dir)
    if current is None or not current.active(now):
        print("no maintenance in force")
        return 1
    reason = f" ({current.reason})" if current.reason else ""
    print(f"maintenance until {when(current.until)}, by {current.by}{reason}")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from edge.doctor import diagnose, exit_status, print_checks

    logging.disable(logging.CRITICAL)  # the checks say what went wrong, each with its fix
    checks = asyncio.run(diagnose(args.config, user=args.user))
    print_checks(checks, as_json=args.json)
    return exit_status(checks)


def _config_check(args: argparse.Namespace) -> int:
    from edge.config import load_config

    config = load_config(args.file)
    devices = len(config.modbus.devices)
    gates = f", {len(config.modbus.gates)} gate(s)" if config.modbus.gates else ""
    m = config.models
    models = (
        f", models: {len(m.demand)} forecast(s), {len(m.anomaly)} scored meter(s), "
        f"{len(m.dwellings)} dwelling(s)"
        if m.enabled
        else ""
    )
    kinds = Counter(sensor.kind for sensor in config.ble.sensors)
    sensors = (
        f", {len(config.ble.sensors)} BLE sensor(s) ("
        + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        + ")"
        if kinds
        else ""
    )
    own = sum(len(rules) for _, rules in config.rules.on_points())
    rules = f", {own} rule(s) of your own" if own else ""
    print(
        f"{args.file}: ok (gateway {config.gateway.id}, site {config.gateway.site}, "
        f"{devices} Modbus device(s){gates}{sensors}{rules}{models})"
    )
    for note in config_notes(config):
        print(f"note: {note}")
    return 0


def config_notes(config: GatewayConfig) -> list[str]:
    """What a valid configuration does that its author may not mean: a point watched by a rule of
    their own and by the built-in voltage rule (two alerts for one fault)."""
    voltage = config.rules.voltage
    if not voltage.enabled:
        return []
    return [
        f"rules.threshold.{i} ({rule.name}) and [rules.voltage] (EN 50160, "
        f"{voltage.nominal_v:g} V +-{voltage.tolerance_pct:g} %) both watch {rule.point}: one "
        "fault raises two alerts; set enabled = false in [rules.voltage] to keep yours alone"
        for i, rule in enumerate(config.rules.threshold)
        if rule.point in voltage.points
    ]


def _demo(args: argparse.Namespace) -> int:
    from edge.demo import run_demo

    return asyncio.run(run_demo(state_dir=args.state_dir, duration_s=args.duration))


EX_UNAVAILABLE = 69
"""sysexits: a service the command needs is not there."""


def _central_installed() -> bool:
    """Whether the ``central`` extra is here; if not, says so (the gateway's package has none)."""
    import importlib.util

    missing = [
        m for m in ("sqlalchemy", "alembic", "psycopg") if importlib.util.find_spec(m) is None
    ]
    if missing:
        print(
            "nbedge: the central API is not installed here (missing: "
            f"{', '.join(missing)}); it runs on its own server: pip install 'nbedge[central]'",
            file=sys.stderr,
        )
    return not missing


def _central_serve(args: argparse.Namespace) -> int:
    if not _central_installed():
        return EX_UNAVAILABLE
    import uvicorn

    from cloud_sync.central.app import create_app

    settings = _central_settings()
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


def _central_add_gateway(args: argparse.Namespace) -> int:
    if not _central_installed():
        return EX_UNAVAILABLE
    from cloud_sync.central import admin

    return _for_site_gateway(
        args, lambda engine: admin.register_gateway(engine, args.site, args.gateway)
    )


def _central_claim_code(args: argparse.Namespace) -> int:
    if not _central_installed():
        return EX_UNAVAILABLE
    from cloud_sync.central import admin

    return _for_site_gateway(
        args,
        lambda engine: admin.create_claim_code(engine, args.site, args.gateway, ttl_s=args.ttl),
    )


def _for_site_gateway(args: argparse.Namespace, action: Callable[[Engine], str]) -> int:
    """Open the central database, make sure the site exists, run ``action``, print its answer."""
    from cloud_sync.central import admin
    from cloud_sync.central.db import site_exists

    settings = _central_settings()
    engine = admin.make_engine(settings.database_url)
    try:
        admin.init_db(engine)
        if args.site_name is not None or not site_exists(engine, args.site):
            admin.register_site(engine, args.site, args.site_name or args.site)
        answer = action(engine)
    except admin.AdminError as exc:
        print(f"nbedge: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(answer)
    return 0


def _provision(args: argparse.Namespace) -> int:
    from cloud_sync.client import trust
    from cloud_sync.provision import claim_gateway
    from edge import provision
    from edge.layout import SERVICE_USER
    from nbedge.errors import UplinkRejected, UplinkUnavailable

    config = _provision_config(args.config)
    if isinstance(config, str):
        print(f"nbedge: {config}", file=sys.stderr)
        return EX_CONFIG
    # A broken file is refused before the one-time code is spent.
    document = None if config is None else provision.parse(config.read_text(), source=str(config))
    try:
        verify = trust(args.ca_file)
    except (OSError, ssl.SSLError) as exc:
        print(f"nbedge: cannot read the CA file {args.ca_file}: {exc}", file=sys.stderr)
        return EX_CONFIG
    url = args.central.rstrip("/")
    try:
        credential = asyncio.run(claim_gateway(url, args.code, verify=verify))
    except (UplinkRejected, UplinkUnavailable) as exc:
        print(f"nbedge: the central API did not give a credential: {exc}", file=sys.stderr)
        return 1
    user = args.user or SERVICE_USER
    owner = provision.write_credential(args.token_file, credential.token, user)
    print(
        f"claimed gateway {credential.gateway_id} of site {credential.site_id}; "
        f"credential written to {args.token_file} (mode 0600, owner {owner})"
    )
    if owner != user:
        fix = (
            f"run provision as root or as {user}"
            if provision.service_owner(user) is not None
            else f"this machine has no user {user}: install the nbedge package, or pass --user"
        )
        print(
            f"nbedge: warning: the credential is {owner}'s; a gateway running as {user} cannot "
            f"read it: {fix}",
            file=sys.stderr,
        )
    settings = provision.Settings(
        credential.gateway_id, credential.site_id, url, args.token_file, args.ca_file
    )
    if config is None or document is None:
        print(
            f"\nIn {DEFAULT_CONFIG} (not written: run provision as root, or pass --config FILE):"
            f"\n{settings.lines()}"
        )
        return 0
    try:
        provision.write_config(config, provision.fill_in(document, settings, source=str(config)))
    except ConfigError as exc:
        print(
            f"nbedge: {config} not changed: with these settings it would not be valid:\n  "
            + "\n  ".join(str(issue) for issue in exc.issues)
            + "\nThe credential is kept. Put in by hand, once the file is right:\n"
            + settings.lines(),
            file=sys.stderr,
        )
        return EX_CONFIG
    changed = "gateway.id, gateway.site, uplink.url, uplink.token_file"
    print(f"{config}: set {changed}{', uplink.ca_file' if args.ca_file else ''}; checked: ok")
    return 0


def _provision_config(given: Path | None) -> Path | str | None:
    """The configuration file provision fills in, None for none, or why the given one cannot be."""
    import os

    path = given or DEFAULT_CONFIG
    writable = os.access(path, os.R_OK | os.W_OK) and os.access(path.parent, os.W_OK)
    if writable:
        return path
    if given is None:
        return None
    if not path.is_file():
        return f"{path}: no such configuration file"
    return f"{path}: this user may not change it (run provision as root)"


def _central_settings() -> CentralSettings:
    from pydantic import ValidationError

    from cloud_sync.central.settings import CentralSettings
    from edge.config import issues_from_validation

    try:
        return CentralSettings()  # type: ignore[call-arg]  # read from the environment
    except ValidationError as exc:
        raise ConfigError(
            "central settings (NBEDGE_CENTRAL_*)", issues_from_validation(exc)
        ) from exc


def _local_token(args: argparse.Namespace) -> int:
    import hashlib
    import secrets

    from edge.schemas import OperatorSection

    token = secrets.token_urlsafe(32)
    digest = hashlib.sha256(token.encode()).hexdigest()
    try:
        OperatorSection(name=args.name, token_sha256=digest)
    except ValueError as exc:
        print(f"nbedge: {args.name!r} is not a valid operator name: {exc}", file=sys.stderr)
        return 2
    print(f"token for {args.name} (give it to them; it is not shown again):\n  {token}\n")
    print("add to the gateway's configuration, then restart it:\n")
    print(f'[[local_api.operators]]\nname = "{args.name}"\ntoken_sha256 = "{digest}"')
    return 0


def _sim_building(args: argparse.Namespace) -> int:
    from sim.modbus_server import serve_building

    framing = "RTU framing over TCP" if args.rtu else "Modbus TCP"
    gates = (
        f", {args.gates} gate(s) on unit ids {args.meters + 1}..{args.meters + args.gates}"
        if args.gates
        else ""
    )
    print(
        f"simulated building: {args.meters} SDM630 meter(s) on unit ids 1..{args.meters}{gates},"
        f" {framing} on {args.host}:{args.port}; Ctrl-C to stop",
        flush=True,
    )
    asyncio.run(
        serve_building(
            host=args.host,
            port=args.port,
            meters=args.meters,
            gates=args.gates,
            voltage_event_every_s=args.voltage_event_every,
            framer="rtu" if args.rtu else "tcp",
        )
    )
    return 0


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 60:
        raise argparse.ArgumentTypeError(f"seconds must be > 0 and <= 60, not {text}")
    return value


def _scan_modbus(args: argparse.Namespace) -> int:
    from firmware_bridge.modbus.bus import Link, SerialLine, TcpLink
    from firmware_bridge.modbus.profiles import available_profiles, load_profile
    from firmware_bridge.modbus.scan import UnitProbe, parse_units, scan_units
    from nbedge.errors import DeviceUnavailable

    try:
        units = parse_units(args.units)
        link: Link = (
            TcpLink(args.host, args.port)
            if args.host is not None
            else SerialLine(args.serial_port, args.baudrate, args.parity, args.stopbits)
        )
    except ValueError as exc:
        print(f"nbedge: {exc}", file=sys.stderr)
        return 2
    profiles = [load_profile(name) for name in available_profiles()]
    found: list[UnitProbe] = []
    tty = sys.stderr.isatty()

    async def scan() -> None:
        async for probe in scan_units(link, units, profiles, timeout_s=args.timeout):
            if probe.answered:
                found.append(probe)
                suggestion = " or ".join(probe.profiles) or "no profile matched"
                print(f"unit {probe.unit_id}: answered ({suggestion})", file=sys.stderr)
            elif tty:
                print(f"unit {probe.unit_id} ...", end="\r", file=sys.stderr, flush=True)

    print(
        f"scanning {link.endpoint}, {len(units)} unit id(s), {args.timeout} s each",
        file=sys.stderr,
        flush=True,
    )
    status = 0
    try:
        asyncio.run(scan())
    except KeyboardInterrupt:
        print("interrupted: the units found so far", file=sys.stderr)
        status = 130
    except DeviceUnavailable as exc:
        print(f"nbedge: {exc}", file=sys.stderr)
        status = 1
    print(f"{'unit':>4}  {'answered':<22}  suggested profile")
    for probe in found:
        print(f"{probe.unit_id:>4}  {probe.answer:<22}  {' or '.join(probe.profiles) or '-'}")
    print(f"{len(found)} unit(s) answered", file=sys.stderr)
    return status


def _scan_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"seconds must be > 0 and <= 3600, not {text}")
    return value


def _scan_ble(args: argparse.Namespace) -> int:
    from bleak.exc import BleakError

    from firmware_bridge.ble.discover import discover
    from firmware_bridge.ble.scanner import ScanMode, explain_failure

    keys: dict[str, bytes] = {}
    if args.config is not None:
        from edge.config import load_config
        from nbedge.errors import ConfigError

        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 78
        keys = {s.mac: s.key_bytes for s in config.ble.sensors if s.key_bytes is not None}
    mode: ScanMode = "passive" if args.passive else "active"
    print(
        f"listening for BTHome sensors for {args.seconds:g} s"
        f" on {args.adapter or 'the default adapter'} ({mode})",
        file=sys.stderr,
        flush=True,
    )
    try:
        found = asyncio.run(discover(args.seconds, adapter=args.adapter, mode=mode, keys=keys))
    except KeyboardInterrupt:
        return 130
    except (BleakError, OSError) as exc:
        print(f"nbedge: cannot scan: {explain_failure(exc, mode)}", file=sys.stderr)
        return 1
    print(
        f"{'address':<17}  {'name':<14}  {'kind':<12}  {'encrypted':<9}  {'rssi':>4}  last values"
    )
    for sensor in found:
        values = sensor.problem or ", ".join(f"{k}={_show(v)}" for k, v in sensor.values.items())
        print(
            f"{sensor.mac:<17}  {(sensor.name or '-')[:14]:<14}  {sensor.kind:<12}  "
            f"{'yes' if sensor.encrypted else 'no':<9}  "
            f"{sensor.rssi if sensor.rssi is not None else '-':>4}  {values}"
        )
    print(f"{len(found)} BTHome sensor(s) heard", file=sys.stderr)
    return 0


def _backup(args: argparse.Namespace) -> int:
    from edge.backup import BackupError, write_backup

    try:
        kept, missing = write_backup(args.out, args.config)
    except (BackupError, OSError) as exc:
        print(f"nbedge: no backup written: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: {len(kept)} file(s), mode 0600; keep it off the gateway, it holds secrets")
    for entry in kept:
        print(f"  {entry.what}: {entry.path}")
    for entry in missing:
        print(f"  {entry.what}: {entry.path} (not there: nothing to keep)")
    print("Not in it: the store (what is not synced yet stays on the old card only)")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from edge.backup import BackupError, restore

    try:
        restored = restore(args.archive, force=args.force)
    except BackupError as exc:
        print(f"nbedge: nothing restored: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"nbedge: restore stopped: {exc}", file=sys.stderr)
        return 1
    print(
        f"{args.archive}: gateway {restored.gateway} of site {restored.site}; {restored.config}: ok"
    )
    for entry in restored.files:
        print(f"  {entry.what}: {entry.path} (restored)")
    for entry in restored.unchanged:
        print(f"  {entry.what}: {entry.path} (already as in the backup)")
    return 0


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "open" if value else "closed"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
