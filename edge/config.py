"""Load and check the gateway's configuration file.

``load_config`` reads TOML, validates it against ``edge.schemas.GatewayConfig`` and resolves each
Modbus device's profile. It reports every problem at once, each with the path of the field and what
is wrong, as a ``ConfigError`` (the CLI exits 78 on it).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge.schemas import GatewayConfig
from nbedge.errors import ConfigError, ConfigIssue

_SECRET_WORDS = ("token", "password", "secret", "key")


def load_config(path: Path) -> GatewayConfig:
    """Read, validate and return the configuration in ``path``, or raise ``ConfigError``."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [ConfigIssue("(file)", f"cannot read: {exc.strerror}")]) from exc
    config = parse_config(text, source=source)
    if config.ble.has_keys:
        _check_key_file_mode(path)
    return config


def _check_key_file_mode(path: Path) -> None:
    """A file holding BLE bind keys may be read by its group (the service's), nothing more."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o027:
        raise ConfigError(
            str(path),
            [
                ConfigIssue(
                    "ble.sensors",
                    f"the file holds bind keys and its mode is {mode:04o}: others may read or "
                    f"change it; run chmod 640 {path} (owner root, group nbedge) or chmod 600",
                )
            ],
        )


def parse_config(text: str, *, source: str = "<config>") -> GatewayConfig:
    """Validate configuration ``text`` (TOML), or raise ``ConfigError`` listing every issue."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [ConfigIssue("(syntax)", str(exc))]) from exc
    try:
        config = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(source, issues_from_validation(exc)) from exc
    issues = _check_profiles(config)
    if not issues:
        issues = _check_model_meters(config)
    if issues:
        raise ConfigError(source, issues)
    return config


def issues_from_validation(exc: ValidationError) -> list[ConfigIssue]:
    """One ``ConfigIssue`` per pydantic error, with a path such as ``modbus.devices.0.port``."""
    issues = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"]) or "(top level)"
        secret = any(word in path for word in _SECRET_WORDS)
        issues.append(ConfigIssue(path, _explain(error, show_input=not secret)))
    return issues


def _explain(error: Any, *, show_input: bool) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (check its spelling against docs/configuration.md)"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    # only a single value is echoed: a section's or the whole file's (from a check across keys)
    # would hold every key under it, secrets included
    scalar = isinstance(error.get("input"), str | int | float | bool)
    if show_input and scalar and kind not in {"model_type", "dict_type"}:
        return f"{message} (got {error['input']!r})"
    return message


def _check_profiles(config: GatewayConfig) -> list[ConfigIssue]:
    from firmware_bridge.modbus.profiles import load_profile

    issues = []
    for index, device in enumerate(config.modbus.devices):
        try:
            load_profile(device.profile)
        except ConfigError as exc:
            for issue in exc.issues:
                detail = issue.message if issue.path in {"", "(file)"} else str(issue)
                issues.append(ConfigIssue(f"modbus.devices.{index}.profile", detail))
    return issues


def _check_model_meters(config: GatewayConfig) -> list[ConfigIssue]:
    """Every ``device:point`` of ``[models]`` names a meter's point; counters where one is due."""
    from firmware_bridge.modbus.profiles import load_profile

    profiles = {d.name: load_profile(d.profile) for d in config.modbus.devices}
    models = config.models
    wanted: list[tuple[str, str, bool]] = []  # path, device:point, must be a counter
    for i, series in enumerate(models.demand):
        wanted += [(f"models.demand.{i}.meters.{j}", m, True) for j, m in enumerate(series.meters)]
        if series.temperature is not None:
            wanted.append((f"models.demand.{i}.temperature", series.temperature, False))
    wanted += [(f"models.anomaly.{i}.meter", a.meter, True) for i, a in enumerate(models.anomaly)]
    for i, home in enumerate(models.dwellings):
        wanted += [(f"models.dwellings.{i}.meters.{j}", m, True) for j, m in enumerate(home.meters)]
    issues = []
    for path, meter, counter in wanted:
        device, point = meter.split(":")
        profile = profiles.get(device)
        if profile is None:
            issues.append(ConfigIssue(path, f"{device!r} is not a device of [[modbus.devices]]"))
            continue
        kinds = {p.name: p.kind for p in profile.points}
        if point not in kinds:
            issues.append(
                ConfigIssue(
                    path,
                    f"{device} ({profile.name}) has no point {point!r}: {', '.join(sorted(kinds))}",
                )
            )
        elif counter and kinds[point] != "counter":
            issues.append(ConfigIssue(path, f"{meter} is a {kinds[point]}, a counter is needed"))
    for i, home in enumerate(models.dwellings):
        home_kinds = []
        for meter in home.meters:
            device, point = meter.split(":")
            profile = profiles.get(device)
            if profile is not None and point in {p.name for p in profile.points}:
                home_kinds.append(meter_kind(profile.point(point).unit)[0])
        if len(set(home_kinds)) != len(home_kinds):
            issues.append(
                ConfigIssue(
                    f"models.dwellings.{i}.meters", "at most one electricity and one water meter"
                )
            )
    if models.enabled and 3600 % config.store.summary_interval_s:
        issues.append(
            ConfigIssue("store.summary_interval_s", "the models need summaries that divide an hour")
        )
    return issues


def meter_kind(unit: str) -> tuple[str, float]:
    """A counter's kind for the cessation model, and the factor to its unit (kWh or litres)."""
    unit = unit.strip().lower()
    if unit in {"m3", "m³"}:
        return "water", 1000.0
    if unit in {"l", "litre", "liter", "litres", "liters"}:
        return "water", 1.0
    if unit == "wh":
        return "electricity", 0.001
    return "electricity", 1.0
