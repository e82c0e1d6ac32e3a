"""Device profiles: a device's register map, loaded from a TOML file, as frozen dataclasses.

A profile is data: adding a device model means adding a ``.toml`` file to
``firmware_bridge/profiles/`` (or pointing at one by path), never code. The file format::

    # Datasheet title and version the addresses come from.
    [profile]
    name = "eastron_sdm630"          # how configs refer to it; the packaged file is <name>.toml
    manufacturer = "Eastron"
    model = "SDM630-Modbus V2"
    source = "Eastron SDM630-Modbus V2 user manual, Modbus protocol section"
    max_registers = 80               # optional: most registers the device answers per read (125)
    max_gap = 16                     # optional: unused registers one read may span

    [[points]]
    name = "voltage_l1"              # snake_case, unique in the profile
    description = "Phase 1 volts"    # optional
    function = "input"               # "input" (function 4) or "holding" (function 3)
    address = 0x0000                 # zero-based protocol address (register 30001 is 0x0000)
    type = "float32"                 # int16 uint16 int32 uint32 int64 uint64 float32 float64
    word_order = "big"               # optional: "big" (high word first, default) or "little"
    unit = "V"
    scale = 1.0                      # optional: value = raw * scale
    kind = "gauge"                   # optional: "gauge" (default: a level such as volts) or
                                     # "counter" (monotonic, e.g. kWh: summaries carry a delta)
    invalid = 0xFFFFFFFF             # optional, integer types: the raw value that means "not
                                     # available"; such a reading is dropped and counted

Pydantic checks the file's shape (unknown keys refused); the loader then refuses duplicate point
names and overlapping registers. Every problem is reported at once as a :class:`ConfigError`
whose issues name the field (``points[3].address``).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from firmware_bridge.modbus.plan import (
    DEFAULT_MAX_GAP,
    MODBUS_MAX_REGISTERS,
    REGISTER_TYPES,
    Function,
    WordOrder,
)
from nbedge.errors import ConfigError, ConfigIssue

TypeName = Literal["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
PointKind = Literal["gauge", "counter"]
"""A gauge is a level (volts, watts); a counter only grows (kWh), but for a reset or a new meter."""

_PACKAGE: Final = "firmware_bridge"
_FOLDER: Final = "profiles"
_NAME_PATTERN: Final = r"^[a-z][a-z0-9_]*$"


@dataclass(frozen=True, slots=True)
class PointSpec:
    """One value a device exposes: where its registers are and how to read them."""

    name: str
    function: Function
    address: int
    type: str
    unit: str
    word_order: WordOrder = "big"
    scale: float = 1.0
    description: str = ""
    kind: PointKind = "gauge"
    invalid: int | None = None
    """The raw integer (before ``scale``) the device sends for "not available", if any."""

    @property
    def count(self) -> int:
        """How many registers the point takes."""
        return REGISTER_TYPES[self.type].registers


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """A device model's register map and read limits, as loaded from its profile file."""

    name: str
    manufacturer: str
    model: str
    source: str
    points: tuple[PointSpec, ...]
    max_registers: int = MODBUS_MAX_REGISTERS
    max_gap: int = DEFAULT_MAX_GAP

    def point(self, name: str) -> PointSpec:
        """The point called ``name`` (KeyError if the profile has none)."""
        for point in self.points:
            if point.name == name:
                return point
        raise KeyError(f"profile {self.name!r} has no point {name!r}")

    @property
    def point_names(self) -> tuple[str, ...]:
        """The points' names, in file order."""
        return tuple(p.name for p in self.points)

    @property
    def counter_names(self) -> frozenset[str]:
        """The names of the points that are counters."""
        return frozenset(p.name for p in self.points if p.kind == "counter")


# --- the file's schema (pydantic, at the boundary only) -----------------------------------------


class _PointModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, Field(pattern=_NAME_PATTERN, max_length=64)]
    description: str = ""
    function: Function
    address: Annotated[int, Field(ge=0, le=0xFFFF)]
    type: TypeName
    word_order: WordOrder = "big"
    unit: Annotated[str, Field(max_length=16)]
    scale: float = 1.0
    kind: PointKind = "gauge"
    invalid: int | None = None

    @model_validator(mode="after")
    def _invalid_fits_the_type(self) -> _PointModel:
        if self.invalid is None:
            return self
        if self.type.startswith("float"):
            raise ValueError("invalid applies to integer types (floats use NaN)")
        bits = REGISTER_TYPES[self.type].registers * 16
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if self.type.startswith("uint"):
            low, high = 0, 2**bits - 1
        if not low <= self.invalid <= high:
            raise ValueError(f"invalid {self.invalid} does not fit {self.type}")
        return self

    @field_validator("scale", mode="before")
    @classmethod
    def _int_scale_is_fine(cls, value: object) -> object:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("scale")
    @classmethod
    def _finite_non_zero(cls, value: float) -> float:
        if not math.isfinite(value) or value == 0.0:
            raise ValueError("scale must be a finite number other than 0")
        return value


class _ProfileMetaModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, Field(pattern=_NAME_PATTERN, max_length=64)]
    manufacturer: Annotated[str, Field(min_length=1)]
    model: Annotated[str, Field(min_length=1)]
    source: Annotated[str, Field(min_length=1)]
    max_registers: Annotated[int, Field(ge=1, le=MODBUS_MAX_REGISTERS)] = MODBUS_MAX_REGISTERS
    max_gap: Annotated[int, Field(ge=0, le=MODBUS_MAX_REGISTERS)] = DEFAULT_MAX_GAP


class _ProfileFileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    profile: _ProfileMetaModel
    points: Annotated[list[_PointModel], Field(min_length=1)]


# --- loading -------------------------------------------------------------------------------------


def _profiles_folder() -> Traversable:
    return resources.files(_PACKAGE).joinpath(_FOLDER)


def available_profiles() -> list[str]:
    """Names of the profiles shipped with nbedge, sorted."""
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in _profiles_folder().iterdir()
        if entry.is_file() and entry.name.endswith(".toml")
    )


def profile_file(name_or_path: str) -> Path | None:
    """The file a profile setting names, or None for the name of a packaged profile."""
    looks_like_path = name_or_path.endswith(".toml") or "/" in name_or_path or "\\" in name_or_path
    return Path(name_or_path) if looks_like_path else None


def load_profile(name_or_path: str) -> DeviceProfile:
    """Load a packaged profile by name (``"eastron_sdm630"``) or a profile file by path.

    Raises :class:`ConfigError` listing every issue for an unknown name, an unreadable file, a TOML
    syntax error, or a file that does not follow the format.
    """
    path = profile_file(name_or_path)
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(name_or_path, [ConfigIssue("(file)", str(exc))]) from exc
        return parse_profile(text, source=str(path))
    entry = _profiles_folder().joinpath(f"{name_or_path}.toml")
    if not entry.is_file():
        known = ", ".join(available_profiles()) or "none"
        issue = ConfigIssue("profile", f"unknown profile {name_or_path!r}; known: {known}")
        raise ConfigError(name_or_path, [issue])
    return parse_profile(entry.read_text(encoding="utf-8"), source=name_or_path)


def parse_profile(text: str, source: str = "<profile>") -> DeviceProfile:
    """Parse and validate the text of a profile file (``source`` names it in errors)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [ConfigIssue("(file)", f"not valid TOML: {exc}")]) from exc
    try:
        model = _ProfileFileModel.model_validate(raw)
    except ValidationError as exc:
        issues = [ConfigIssue(_loc_path(err["loc"]), err["msg"]) for err in exc.errors()]
        raise ConfigError(source, issues) from exc
    issues = _layout_issues(model)
    if issues:
        raise ConfigError(source, issues)
    meta = model.profile
    return DeviceProfile(
        name=meta.name,
        manufacturer=meta.manufacturer,
        model=meta.model,
        source=meta.source,
        max_registers=meta.max_registers,
        max_gap=meta.max_gap,
        points=tuple(
            PointSpec(
                name=p.name,
                function=p.function,
                address=p.address,
                type=p.type,
                unit=p.unit,
                word_order=p.word_order,
                scale=p.scale,
                description=p.description,
                kind=p.kind,
                invalid=p.invalid,
            )
            for p in model.points
        ),
    )


def _loc_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path or "(file)"


def _layout_issues(model: _ProfileFileModel) -> list[ConfigIssue]:
    """Duplicate names, overlapping registers, points past the address space or the read limit."""
    issues: list[ConfigIssue] = []
    first_index: dict[str, int] = {}
    for i, point in enumerate(model.points):
        if point.name in first_index:
            issues.append(
                ConfigIssue(
                    f"points[{i}].name",
                    f"duplicate point name {point.name!r} "
                    f"(first at points[{first_index[point.name]}])",
                )
            )
        else:
            first_index[point.name] = i
    spans = sorted(
        (p.function, p.address, p.address + REGISTER_TYPES[p.type].registers, i)
        for i, p in enumerate(model.points)
    )
    reach: tuple[str, int, int] | None = None  # function, end, index of the furthest-reaching point
    for function, start, end, i in spans:
        if reach is not None and reach[0] == function and start < reach[1]:
            other = model.points[reach[2]]
            issues.append(
                ConfigIssue(
                    f"points[{i}].address",
                    f"{function} register {start:#06x} overlaps points[{reach[2]}] "
                    f"({other.name!r} at {other.address:#06x}..{reach[1] - 1:#06x})",
                )
            )
        if reach is None or reach[0] != function or end > reach[1]:
            reach = (function, end, i)
    for i, point in enumerate(model.points):
        size = REGISTER_TYPES[point.type].registers
        if point.address + size > 0x10000:
            issues.append(ConfigIssue(f"points[{i}].address", "runs past register 0xFFFF"))
        if size > model.profile.max_registers:
            issues.append(
                ConfigIssue(
                    f"points[{i}].type",
                    f"{point.type} needs {size} registers, more than profile.max_registers",
                )
            )
    return issues
