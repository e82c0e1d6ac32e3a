"""What one check of ``nbedge doctor`` found: a level, a message and, for a problem, its fix.

Messages and fixes are English templates marked for translation (``N_``) with their parameters
apart, so that the same result reads in English on the command line and in Chinese on the
console's health page, and travels as JSON from the running gateway to ``nbedge doctor``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

from edge.i18n import N_, Language, translation

Param = str | int | float


class Level(enum.StrEnum):
    OK = "ok"
    SKIP = "skip"
    """Not checked here, and why (for example no systemd manager runs)."""
    WARN = "warn"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Level.OK: 0, Level.SKIP: 0, Level.WARN: 1, Level.FAIL: 2}

TITLES: dict[str, str] = {
    "config": N_("Configuration"),
    "files": N_("File permissions"),
    "daemon": N_("Gateway process"),
    "unit": N_("Service"),
    "clock": N_("Clock"),
    "disk": N_("Disk and store"),
    "models": N_("Models"),
    "modbus": N_("Modbus device"),
    "ble": N_("Bluetooth"),
    "mqtt": N_("MQTT broker"),
    "central": N_("Central API"),
}
"""Every check's name, in the order they are shown."""


class Check(BaseModel):
    """One check's result. ``subject`` tells which of several (a device, a file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    check: str
    level: Level
    message: str
    """An English template with ``{name}`` fields, translated where it is shown."""
    params: dict[str, Param] = {}
    fix: str | None = None
    """What to do about a warning or a failure, a template as ``message``."""
    subject: str = ""

    def text(self, language: Language = "en") -> str:
        return _render(self.message, self.params, language)

    def fix_text(self, language: Language = "en") -> str | None:
        return None if self.fix is None else _render(self.fix, self.params, language)

    def title(self, language: Language = "en") -> str:
        return translation(language).gettext(TITLES.get(self.check, self.check))

    def shown(self, language: Language = "en") -> dict[str, Any]:
        """The result as ``--json`` and the health page give it: words, not templates."""
        return {
            "check": self.check,
            "subject": self.subject,
            "level": self.level.value,
            "title": self.title(language),
            "message": self.text(language),
            "fix": self.fix_text(language),
        }


def _render(template: str, params: dict[str, Param], language: Language) -> str:
    text = translation(language).gettext(template)
    try:
        return text.format(**params)
    except (KeyError, IndexError, ValueError):  # a translation that names a missing field
        return template.format(**params)


def ok(check: str, message: str, subject: str = "", /, **params: Param) -> Check:
    return Check(check=check, level=Level.OK, message=message, params=params, subject=subject)


def skip(check: str, message: str, subject: str = "", /, **params: Param) -> Check:
    return Check(check=check, level=Level.SKIP, message=message, params=params, subject=subject)


def warn(check: str, message: str, fix: str, subject: str = "", /, **params: Param) -> Check:
    return Check(
        check=check, level=Level.WARN, message=message, fix=fix, params=params, subject=subject
    )


def fail(check: str, message: str, fix: str, subject: str = "", /, **params: Param) -> Check:
    return Check(
        check=check, level=Level.FAIL, message=message, fix=fix, params=params, subject=subject
    )


def worst(checks: Iterable[Check]) -> Level:
    """The worst level among ``checks`` (``OK`` for none); a skip counts as ok."""
    found = Level.OK
    for check in checks:
        if check.level.rank > found.rank:
            found = check.level
    return found


def ordered(checks: Iterable[Check]) -> list[Check]:
    """``checks`` in the order of ``TITLES``, each kind's results in the order found."""
    order = {name: i for i, name in enumerate(TITLES)}
    return sorted(checks, key=lambda c: order.get(c.check, len(order)))
