"""Every kind of alert the gateway raises: its code, default severity, policy and texts.

An alert is a code with parameters (``use_stopped`` with ``hours_quiet`` and ``usual_uses``);
its texts are templates here, in English, translated in the gettext catalogues
(``edge/locale``) and rendered per language by :func:`render`. ``docs/alerts.md`` lists the same
table, and a test keeps the two in step.

Policy: ``needs_person`` says whether a person must resolve the alert; when not (the default for
info and warning), clearing it also resolves it with outcome ``auto``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge.i18n import N_, Language, translation

ParamValue = str | int | float | bool
Params = Mapping[str, ParamValue]


@dataclass(frozen=True, slots=True)
class AlertKind:
    """One kind of alert. ``raised`` maps a variant (the ``variant`` parameter, "" by default)
    to its text; ``enums`` maps a parameter's values to the words shown for them."""

    code: str
    severity: str
    meaning: str
    title: str
    """A few words naming the problem (a Home Assistant entity's name), translated."""
    raised: Mapping[str, str]
    cleared: str
    params: tuple[str, ...] = ()
    needs_person: bool | None = None
    """None: the default of its severity (critical needs a person; info and warning do not)."""
    source: str = ""
    enums: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    latched: bool = False
    """The condition stays active until a person resolves the alert (a leak, smoke, an SOS);
    a repeat while it is open is one more ``raised`` event of the same alert."""
    superseded: str = ""
    """The cleared text when a graver alert takes over from this one (its clearing finding
    carries ``superseded: true``): the condition goes on, under the other code."""

    @property
    def person_needed(self) -> bool:
        return self.needs_person if self.needs_person is not None else self.severity == "critical"


_DURATION_PARAMS: Final = ("open_s", "limit_s", "silent_s", "interval_s")
"""Parameters in seconds that texts show as a duration (``{open}`` for ``open_s``)."""

KINDS: Final[tuple[AlertKind, ...]] = (
    AlertKind(
        code="voltage",
        title=N_("voltage out of range"),
        severity="warning",
        meaning="A phase voltage outside the nominal voltage +-10 % (EN 50160).",
        raised={
            "over": N_("overvoltage on {point}: {value:.1f} V (limit {limit:.1f} V, EN 50160)"),
            "under": N_("undervoltage on {point}: {value:.1f} V (limit {limit:.1f} V, EN 50160)"),
        },
        cleared=N_("voltage on {point} back to {value:.1f} V"),
        params=("variant", "value", "limit"),
        source="voltage rule (readings)",
    ),
    AlertKind(
        code="threshold",
        title=N_("limit crossed"),
        severity="warning",
        meaning="A point above or below the limit of a [[rules.threshold]] of the"
        " configuration (its severity is the rule's).",
        raised={
            "above": N_(
                "{label}: {point} of {device} at {value:.1f} {unit}, above {limit:.1f} {unit}"
            ),
            "below": N_(
                "{label}: {point} of {device} at {value:.1f} {unit}, below {limit:.1f} {unit}"
            ),
        },
        cleared=N_("{label}: {point} of {device} back to {value:.1f} {unit}"),
        params=("rule", "label", "variant", "value", "limit", "unit", "for_s"),
        source="threshold rules of the configuration (readings)",
    ),
    AlertKind(
        code="window",
        title=N_("out of hours"),
        severity="warning",
        meaning="A condition of a [[rules.window]] held within its local hours (water flowing"
        " at night); its severity is the rule's.",
        raised={
            "": N_("{label}: {point} of {device} at {value:.1f} {unit} between {start} and {end}")
        },
        cleared=N_("{label}: {point} of {device} no longer meets the condition"),
        params=("rule", "label", "value", "unit", "start", "end"),
        source="window rules of the configuration (readings)",
    ),
    AlertKind(
        code="every_interval",
        title=N_("never at rest"),
        severity="warning",
        meaning="A counter of an [[rules.every_interval]] rose in each of its intervals in a"
        " row (water used in every half hour of a day: a suspected leak); its severity is the"
        " rule's.",
        raised={
            "": N_(
                "{label}: {point} of {device} rose in each of the last {intervals} intervals of"
                " {interval} ({used:g} {unit} in all)"
            )
        },
        cleared=N_("{label}: {point} of {device} was at rest for an interval"),
        params=("rule", "label", "intervals", "interval_s", "used", "unit"),
        source="every-interval rules of the configuration (readings)",
    ),
    AlertKind(
        code="water_leak",
        title=N_("water leak"),
        severity="critical",
        meaning="A leak sensor is wet. Latched: it stays until a person resolves it.",
        raised={"": N_("water leak at {device}")},
        cleared=N_("{device}: the leak was seen to"),
        source="BLE leak sensors",
        latched=True,
    ),
    AlertKind(
        code="smoke",
        title=N_("smoke"),
        severity="critical",
        meaning="A smoke sensor detects smoke. Latched: it stays until a person resolves it.",
        raised={"": N_("smoke at {device}")},
        cleared=N_("{device}: the smoke was seen to"),
        source="BLE smoke sensors",
        latched=True,
    ),
    AlertKind(
        code="sos",
        title=N_("SOS button pressed"),
        severity="critical",
        meaning="An SOS button was pressed. Latched: it stays until a person resolves it; each"
        " press again is one more event of the same alert.",
        raised={"": N_("SOS: {device} was pressed")},
        cleared=N_("{device}: the SOS was answered"),
        params=("press",),
        source="BLE buttons",
        latched=True,
    ),
    AlertKind(
        code="press_to_test",
        title=N_("button to test"),
        severity="info",
        meaning="A button, which sends only when pressed, has not been heard for its"
        " test_every_s: press it once to show that it works.",
        raised={"": N_("{device} not pressed for {silent}: press it once to test it")},
        cleared=N_("{device} works"),
        params=("silent_s",),
        source="BLE buttons",
    ),
    AlertKind(
        code="gate_fault",
        title=N_("gate fault"),
        severity="warning",
        meaning="A gate or barrier controller reports a fault.",
        raised={"": N_("{device} in fault: {fault} (code {fault_code})")},
        cleared=N_("{device} out of fault"),
        params=("fault", "fault_code"),
        source="gate-fault rule (readings)",
        enums={
            "fault": {
                "none": N_("none"),
                "motor overcurrent": N_("motor overcurrent"),
                "obstacle or safety edge": N_("obstacle or safety edge"),
                "limit switch": N_("limit switch"),
                "power supply or battery": N_("power supply or battery"),
                "other": N_("other"),
            }
        },
    ),
    AlertKind(
        code="device_silent",
        title=N_("not answering"),
        severity="warning",
        meaning="A Modbus device stopped answering.",
        raised={
            "": N_(
                "{device} silent: no answer since {since} ({failures} failed polls; last: {reason})"
            ),
            "never": N_(
                "{device} silent: no answer since the gateway started ({failures} failed "
                "polls; last: {reason})"
            ),
        },
        cleared=N_("{device} answers again"),
        params=("variant", "since", "zone", "failures", "reason"),
        source="Modbus bus (device state)",
    ),
    AlertKind(
        code="door_held_open",
        title=N_("door held open"),
        severity="warning",
        meaning="A door open for longer than its sensor's held_open_s.",
        raised={"": N_("{device} open for {open} (limit {limit})")},
        cleared=N_("{device} closed after {open} open"),
        params=("open_s", "limit_s"),
        source="BLE door sensors",
    ),
    AlertKind(
        code="sensor_silent",
        title=N_("sensor silent"),
        severity="warning",
        meaning="No frame from a BLE sensor for its silent_s.",
        raised={
            "": N_("{device} silent: no frame for {silent}"),
            "never": N_("{device} silent: never heard for {silent}"),
        },
        cleared=N_("{device} heard again"),
        params=("variant", "silent_s"),
        source="BLE door sensors",
    ),
    AlertKind(
        code="low_battery",
        title=N_("battery low"),
        severity="info",
        meaning="A BLE sensor's battery at or below its low_battery_pct.",
        raised={"": N_("{device} battery at {battery:.0f} % (replace at {low:.0f} %)")},
        cleared=N_("{device} battery at {battery:.0f} %"),
        params=("battery", "low"),
        source="BLE door sensors",
    ),
    AlertKind(
        code="ble_adapter",
        title=N_("Bluetooth adapter not receiving"),
        severity="critical",
        meaning="The Bluetooth adapter does not receive: no door sensor is heard.",
        raised={"": N_("BLE adapter unhealthy: {reason}")},
        cleared=N_("BLE adapter receives again"),
        params=("reason",),
        needs_person=False,
        source="BLE scanner",
    ),
    AlertKind(
        code="demand_capacity",
        title=N_("forecast above capacity"),
        severity="warning",
        meaning="A forecast hour above the building's capacity_kwh.",
        raised={
            "": N_(
                "{device}: {peak:.1f} kWh forecast for {hour:02d}:00 local ({hours_ahead} h "
                "from now), above the capacity of {capacity:g} kWh"
            )
        },
        cleared=N_("{device}: forecast peak {peak:.1f} kWh, within capacity again"),
        params=("peak", "hour", "hours_ahead", "capacity"),
        source="demand model",
    ),
    AlertKind(
        code="unusual_use",
        title=N_("unusual use"),
        severity="warning",
        meaning="An hour of a meter unusual for it (the anomaly model, or a run of zeros or of "
        "one value).",
        raised={
            "high": N_(
                "{point}: use {ratio:.1f}x the usual for {weekday} {hour:02d}:00 "
                "(expected {expected}, measured {measured})"
            ),
            "low": N_(
                "{point}: use {percent:.0f} % below the usual for {weekday} {hour:02d}:00 "
                "(expected {expected}, measured {measured})"
            ),
            "above": N_(
                "{point}: use above the usual for {weekday} {hour:02d}:00 (expected "
                "{expected}, measured {measured})"
            ),
            "below": N_(
                "{point}: use below the usual for {weekday} {hour:02d}:00 (expected "
                "{expected}, measured {measured})"
            ),
            "flat": N_("{point}: reading unchanged at {measured} for {run_h} h"),
            "zero": N_("{point}: no consumption for {run_h} h"),
        },
        cleared=N_("{point}: usual use again for {hours} h"),
        params=(
            "variant",
            "ratio",
            "percent",
            "weekday",
            "hour",
            "expected",
            "measured",
            "run_h",
            "hours",
        ),
        source="anomaly model",
        enums={
            "weekday": {
                "0": N_("Monday"),
                "1": N_("Tuesday"),
                "2": N_("Wednesday"),
                "3": N_("Thursday"),
                "4": N_("Friday"),
                "5": N_("Saturday"),
                "6": N_("Sunday"),
            }
        },
    ),
    AlertKind(
        code="use_quiet",
        title=N_("quiet home"),
        severity="warning",
        meaning="A watched home quiet where it is usually active, within about 3 hours of a"
        " stop (stage one, a warning): please phone to check in. Some of these are outings.",
        raised={
            "": N_(
                "{device}: quiet for {hours_quiet:g} h where usually active in {usual_uses:.1f} "
                "of these hours; please check in"
            )
        },
        cleared=N_("{device}: in use again"),
        superseded=N_("{device}: still quiet; a visit is asked for now"),
        params=("hours_quiet", "usual_uses"),
        source="cessation model",
    ),
    AlertKind(
        code="use_stopped",
        title=N_("use stopped"),
        severity="critical",
        meaning="A quiet home that a door or motion sensor agrees with, or whose quiet has gone"
        " on past its longer window (stage two, critical): a visit.",
        raised={
            "": N_(
                "{device}: no {meters} use for {hours_quiet:g} h, usually active in "
                "{usual_uses:.1f} of these hours; please visit"
            ),
            "door": N_(
                "{device}: no {meters} use for {hours_quiet:g} h since the door opened, "
                "usually active in {usual_uses:.1f} of these hours; please visit"
            ),
            "motion": N_(
                "{device}: no {meters} use for {hours_quiet:g} h and no movement seen for "
                "{hours_still:g} h, usually active in {usual_uses:.1f} of these hours; please visit"
            ),
            "night": N_(
                "{device}: no {meters} use for {hours_quiet:g} h, usually up by "
                "{up_by:02d}:00 and active in {usual_uses:.1f} of the hours outside the "
                "night; please visit"
            ),
        },
        cleared=N_("{device}: in use again"),
        params=(
            "variant",
            "meters",
            "hours_quiet",
            "hours_still",
            "usual_uses",
            "up_by",
            "stopped_by",
        ),
        source="cessation model",
        enums={
            "meters": {
                "electricity": N_("electricity"),
                "water": N_("water"),
                "electricity+water": N_("electricity or water"),
            }
        },
    ),
    AlertKind(
        code="records_refused",
        title=N_("records refused by the central API"),
        severity="warning",
        meaning="Records the central API refused, kept on the gateway; the rest flows.",
        raised={
            "": N_(
                "the central API refused {count} records, kept on the gateway and sent again "
                "after an upgrade; the rest flows. Last: {last}"
            )
        },
        cleared=N_("no record is refused by the central API any more"),
        params=("count", "last"),
        source="sync client",
    ),
    AlertKind(
        code="disk_full",
        title=N_("disk full"),
        severity="critical",
        meaning="The store's disk is full: the oldest bulk data gives way so that alerts are kept.",
        raised={
            "reserve": N_(
                "the store's disk is full: {free_mib:.1f} MiB free of {total_mib:.1f} "
                "MiB (watermark {watermark_mib:.1f} MiB); the oldest readings give way "
                "so that alerts are kept"
            ),
            "no_reserve": N_(
                "the store's disk is full: {free_mib:.1f} MiB free of "
                "{total_mib:.1f} MiB, its reserve given back; the oldest readings "
                "give way so that alerts are kept"
            ),
        },
        cleared=N_("the store's disk has room again: {free_mib:.1f} MiB free"),
        params=("variant", "free_mib", "total_mib", "watermark_mib"),
        source="store",
    ),
    AlertKind(
        code="gateway_silent",
        title=N_("gateway not reporting"),
        severity="warning",
        meaning="A gateway that stopped reporting (raised by the central API, not the gateway).",
        raised={"": N_("gateway {device} has not reported for {silent}")},
        cleared=N_("gateway {device} reports again"),
        params=("silent_s",),
        source="central API",
    ),
)

CATALOGUE: Final[Mapping[str, AlertKind]] = {kind.code: kind for kind in KINDS}

OUTCOMES: Final[Mapping[str, str]] = {
    "resident_ok": N_("resident is fine"),
    "help_given": N_("help given"),
    "false_alarm": N_("false alarm"),
    "device_fault": N_("device fault"),
    "other": N_("other"),
    "auto": N_("resolved by itself"),
}

EVENT_TEXTS: Final[Mapping[str, str]] = {
    "acknowledged": N_("acknowledged by {by}"),
    "resolved": N_("resolved by {by}: {outcome}"),
    "resolved_auto": N_("resolved: {outcome}"),
    "escalated": N_("not acknowledged: escalated to {audience} (level {level})"),
}

AUDIENCES: Final[Mapping[str, str]] = {
    "grid_worker": N_("the grid worker"),
    "community_office": N_("the community office"),
    "family": N_("the family"),
    "social_worker": N_("the social worker"),
}


def kind(code: str) -> AlertKind:
    """The catalogue's kind of ``code``; KeyError for a code nobody defined."""
    return CATALOGUE[code]


TEST_TEXT = N_("Test: {text}")
"""An alert raised in a maintenance window (``edge.maintenance``)."""
REMOVED_TEXT = N_("{device} was taken out of the configuration: no longer watched")
"""The cleared text of an alert whose device, gate, sensor or dwelling a reload removed (its
finding carries ``removed: true``)."""


def render(
    code: str,
    event: str,
    params: Params,
    language: Language,
    *,
    device: str = "",
    point: str = "",
    by: str | None = None,
    outcome: str | None = None,
    audience: str | None = None,
    level: int = 0,
    test: bool = False,
) -> str:
    """The text of an alert event (``raised``, ``cleared``, ``acknowledged``, ``resolved``,
    ``escalated``) in ``language``: the kind's text for raised and cleared, else the event's
    sentence after the kind's raised text. ``test``: raised in a maintenance window, said first."""
    tr = translation(language)
    text = _render(code, event, params, language, device, point, by, outcome, audience, level)
    return _format(tr.gettext(TEST_TEXT), {"text": text}) if test else text


def _render(
    code: str,
    event: str,
    params: Params,
    language: Language,
    device: str,
    point: str,
    by: str | None,
    outcome: str | None,
    audience: str | None,
    level: int,
) -> str:
    entry = CATALOGUE[code]
    tr = translation(language)
    label = params.get("sensor_label")  # a BLE sensor named as people know it (edge.doors)
    named = label if isinstance(label, str) and label else device
    values = _localised(entry, params, language) | {"device": named, "point": point}
    if event == "cleared":
        cleared = entry.cleared
        if params.get("removed") is True:
            cleared = REMOVED_TEXT
        elif params.get("superseded") is True and entry.superseded:
            cleared = entry.superseded
        return _format(tr.gettext(cleared), values)
    variant = str(params.get("variant", ""))
    template = entry.raised.get(variant) or next(iter(entry.raised.values()))
    text = _format(tr.gettext(template), values)
    if event == "raised":
        return text
    words = {
        "by": by or "",
        "outcome": _word(OUTCOMES, outcome, language),
        "audience": _word(AUDIENCES, audience, language),
        "level": level,
    }
    key = "resolved_auto" if event == "resolved" and outcome == "auto" else event
    sentence = _format(tr.gettext(EVENT_TEXTS[key]), words)
    separator = "\uff1b" if language == "zh-Hans" else "; "  # a full-width semicolon
    return f"{text}{separator}{sentence}"


def _word(words: Mapping[str, str], value: str | None, language: Language) -> str:
    """``value`` in words (an outcome, an audience); one not in ``words`` as it is."""
    if value is None:
        return ""
    return translation(language).gettext(words[value]) if value in words else value


def _localised(entry: AlertKind, params: Params, language: Language) -> dict[str, object]:
    """The parameters as texts show them: enumerated values in words, durations, times."""
    tr = translation(language)
    values: dict[str, object] = dict(params)
    for name, words in entry.enums.items():
        if name in params:
            value = str(params[name])
            values[name] = tr.gettext(words[value]) if value in words else value
    for name in _DURATION_PARAMS:
        if name in params:
            values[name.removesuffix("_s")] = duration(float(params[name]), language)
    since = params.get("since")
    if isinstance(since, int | float) and not isinstance(since, bool) and math.isfinite(since):
        values["since"] = local_time(since, params.get("zone"))
    for name in ("expected", "measured"):
        if isinstance(params.get(name), float):
            values[name] = _number(float(params[name]))
    return values


def local_time(timestamp: float, zone: object) -> str:
    """``2026-03-02 20:03:10 UTC+8``: the time in the site's zone (an IANA name; UTC when there
    is none or it is not known here), with its offset from UTC, which reads the same in every
    language and wherever the text is shown (an abbreviation such as CST names three zones)."""
    tz: tzinfo = UTC
    if isinstance(zone, str) and zone:
        with contextlib.suppress(ZoneInfoNotFoundError, ValueError):  # UTC, said in the text
            tz = ZoneInfo(zone)
    try:
        when = datetime.fromtimestamp(timestamp, tz)
    except (OverflowError, OSError, ValueError):  # beyond what a calendar holds
        return f"{timestamp:.0f}"
    minutes = round((when.utcoffset() or timedelta()).total_seconds() / 60)
    hours, rest = divmod(abs(minutes), 60)
    offset = (
        ""
        if not minutes
        else f"{'+' if minutes > 0 else '-'}{hours}" + (f":{rest:02d}" if rest else "")
    )
    return f"{when:%Y-%m-%d %H:%M:%S} UTC{offset}"


def duration(seconds: float, language: Language) -> str:
    """``45 s``, ``20 min``, ``2.5 h`` (秒, 分钟, 小时 in Chinese)."""
    tr = translation(language)
    if seconds < 120:
        return _format(tr.gettext(N_("{n:.0f} s")), {"n": seconds})
    if seconds < 2 * 3600:
        return _format(tr.gettext(N_("{n:.0f} min")), {"n": seconds / 60})
    return _format(tr.gettext(N_("{n:.1f} h")), {"n": seconds / 3600})


def _number(value: float) -> str:
    """A measured figure as the anomaly reasons show it: 3 significant digits at most."""
    if value == 0 or math.isnan(value):
        return f"{value:g}"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _format(template: str, values: Mapping[str, object]) -> str:
    """``template.format(**values)``; a template that cannot be filled shows as written, so a
    bad translation or a missing parameter never stops an alert."""
    try:
        return template.format_map(dict(values))
    except (KeyError, ValueError, IndexError, TypeError):
        return template
