"""The alert catalogue: every code a source raises is in it and in docs/alerts.md, every text
renders in English and Simplified Chinese, and the compiled catalogues are complete and current."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from edge import analytics, daemon, doors, rules
from edge.alerts import CATALOGUE, AlertBook, Finding
from edge.alerts.catalogue import AUDIENCES, EVENT_TEXTS, KINDS, OUTCOMES, render
from edge.i18n import LANGUAGES, LOCALE_DIR, negotiate
from edge.store import disk

ROOT = Path(__file__).resolve().parents[2]
PO = LOCALE_DIR / "zh_Hans" / "LC_MESSAGES" / "nbedge.po"

SAMPLE: dict[str, object] = {
    "value": 262.0,
    "limit": 253.0,
    "fault": "obstacle or safety edge",
    "fault_code": 2,
    "since": 1_700_000_000.0,
    "failures": 3,
    "reason": "no answer within 1.0 s",
    "open_s": 1200.0,
    "limit_s": 600.0,
    "silent_s": 3600.0,
    "battery": 12.0,
    "low": 20.0,
    "peak": 82.5,
    "hour": 19,
    "hours_ahead": 4,
    "capacity": 70.0,
    "ratio": 3.4,
    "percent": 40.0,
    "weekday": 1,
    "expected": 12.1,
    "measured": 41.0,
    "run_h": 9,
    "hours": 3,
    "hours_quiet": 4.0,
    "usual_uses": 3.6,
    "meters": "electricity+water",
    "up_by": 8,
    "stopped_by": "motion",
    "hours_still": 2.0,
    "count": 2,
    "last": "gw-1:ab:7: invalid: body.x",
    "free_mib": 0.2,
    "total_mib": 4.0,
    "watermark_mib": 0.4,
    "rule": "supply_gb",
    "label": "供电电压",
    "unit": "V",
    "for_s": 60.0,
    "start": "23:00",
    "end": "05:00",
    "intervals": 48,
    "interval_s": 1800.0,
    "used": 412.5,
    "press": "long_press",
    "zone": "Asia/Shanghai",
}


def test_every_code_a_source_raises_is_in_the_catalogue() -> None:
    codes = {
        rules.VOLTAGE_RULE,
        rules.GATE_FAULT_RULE,
        rules.DEVICE_SILENT_RULE,
        rules.THRESHOLD_RULE,
        rules.WINDOW_RULE,
        rules.EVERY_INTERVAL_RULE,
        doors.HELD_OPEN_RULE,
        doors.LEAK_RULE,
        doors.SMOKE_RULE,
        doors.SOS_RULE,
        doors.PRESS_TEST_RULE,
        doors.SILENT_RULE,
        doors.LOW_BATTERY_RULE,
        doors.ADAPTER_RULE,
        analytics.DEMAND_RULE,
        analytics.ANOMALY_RULE,
        analytics.CESSATION_RULE,
        analytics.QUIET_RULE,
        daemon.REFUSED_RULE,
        disk.DISK_FULL_RULE,
    }
    assert codes <= set(CATALOGUE)
    assert set(CATALOGUE) - codes == {"gateway_silent"}  # the central API's


def test_the_docs_list_every_kind_with_its_severity_and_policy() -> None:
    text = (ROOT / "docs" / "alerts.md").read_text()
    rows = re.findall(r"^\| `([a-z_]+)` \| (\w+) \| (yes|no) \|", text, re.MULTILINE)
    documented = {code: (severity, person == "yes") for code, severity, person in rows}
    assert documented == {k.code: (k.severity, k.person_needed) for k in KINDS}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.code)
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_text_renders_with_its_parameters(kind: object, language: str) -> None:
    from edge.alerts.catalogue import AlertKind

    assert isinstance(kind, AlertKind)
    for variant in kind.raised:
        params = {p: SAMPLE[p] for p in kind.params if p != "variant"} | {"variant": variant}
        for event in ("raised", "cleared", "acknowledged", "resolved", "escalated"):
            text = render(
                kind.code,
                event,
                params,
                language,  # type: ignore[arg-type]
                device="flat-1",
                point="voltage_l1",
                by="王芳",
                outcome="resident_ok",
                audience="community_office",
                level=2,
            )
            assert "{" not in text, text
            assert text.strip()
            if language == "zh-Hans":  # no English words but ids, units and technical details
                words = set(re.findall(r"[A-Za-z]{3,}", text))
                allowed = {"flat", "voltage", "API", "EN", "UTC", "MiB", "kWh", "answer", "within",
                           "invalid", "body", "BLE"}  # fmt: skip
                assert words <= allowed, (kind.code, event, text)


def test_every_text_is_translated_and_the_compiled_catalogue_is_current(tmp_path: Path) -> None:
    with PO.open("rb") as f:
        catalogue = read_po(f)
    untranslated = [m.id for m in catalogue if m.id and (not m.string or m.fuzzy)]
    assert untranslated == []
    msgids = {m.id for m in catalogue if m.id}
    written = set()
    for kind in KINDS:
        written |= {*kind.raised.values(), kind.cleared}
        for words in kind.enums.values():
            written |= set(words.values())
    written |= {*OUTCOMES.values(), *EVENT_TEXTS.values(), *AUDIENCES.values()}
    assert written <= msgids, sorted(written - msgids)
    compiled = tmp_path / "nbedge.mo"
    with compiled.open("wb") as f:
        write_mo(f, catalogue)
    assert compiled.read_bytes() == (PO.parent / "nbedge.mo").read_bytes(), "run make translations"


def test_the_compiled_catalogues_ship_in_the_package() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert '"locale/*/LC_MESSAGES/*.mo"' in text
    assert (PO.parent / "nbedge.mo").is_file()


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-Hans"),
        ("en-GB,en;q=0.9,zh;q=0.5", "en"),
        ("zh-TW", "zh-Hans"),
        ("fr-FR,de", "en"),
        ("", "en"),
        (None, "en"),
        ("en;q=0.1,zh;q=0.2", "zh-Hans"),
        ("zh;q=abc,en", "en"),
        ("*;q=1" + ",x" * 10_000, "en"),
    ],
)
def test_the_language_of_an_accept_language_header(header: str | None, language: str) -> None:
    assert negotiate(header) == language


def test_a_text_missing_a_parameter_shows_what_it_can_not_a_traceback() -> None:
    book = AlertBook()
    [alert] = book.apply(
        Finding(code="use_stopped", device="flat-1", point="use", active=True, value=1.0, at=0.0)
    )
    assert alert.message  # an alert is never lost to its text
