"""The console's pages: Jinja2 templates, translated through the gateway's gettext catalogues.

Every text of a template is in ``{{ _("...") }}`` or ``{% trans %}``; ``make translations``
extracts them (``babel.cfg``) beside the alert texts, and a test fails while one has no Chinese.
Times are shown in the site's time zone, and as "12 min ago" in the reader's language (Babel).
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import jinja2
from babel.dates import format_datetime, format_timedelta
from babel.numbers import format_decimal

from edge.alerts import Alert
from edge.alerts.catalogue import OUTCOMES
from edge.i18n import LANGUAGES, N_, Language, translation
from edge.web.view import ConsoleSite

TEMPLATES: Final = Path(__file__).resolve().parent / "templates"
_BABEL_LOCALE: Final[Mapping[Language, str]] = {"en": "en_GB", "zh-Hans": "zh_Hans_CN"}
GATE_STATES: Final[Mapping[str, str]] = {
    "closed": N_("closed"),
    "opening": N_("opening"),
    "open": N_("open"),
    "closing": N_("closing"),
    "held_open": N_("held open"),
}
ROLE_WORDS: Final = (N_("viewer"), N_("responder"), N_("installer"))
"""The roles as pages name them (``edge.people.Role``)."""
_language: contextvars.ContextVar[Language] = contextvars.ContextVar("language", default="en")


def _gettext(message: str) -> str:
    return translation(_language.get()).gettext(message)


def _ngettext(singular: str, plural: str, n: int) -> str:
    return translation(_language.get()).ngettext(singular, plural, n)


class Pages:
    """The template environment of one console, and what its pages need to format values."""

    def __init__(self, site: ConsoleSite, *, now: Any) -> None:
        self.site = site
        self._now = now
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            extensions=["jinja2.ext.i18n"],
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.install_gettext_callables(  # type: ignore[attr-defined]
            _gettext, _ngettext, newstyle=True
        )
        self.env.globals.update(
            label=site.label,
            home_label=site.home,
            source=site.source,
            site=site,
            languages=LANGUAGES,
            outcomes=[code for code in OUTCOMES if code != "auto"],
            outcome_word=self.outcome_word,
            gate_word=lambda state: _gettext(GATE_STATES[state]) if state in GATE_STATES else state,
        )
        self.env.filters.update(
            localtime=self.localtime,
            ago=self.ago,
            number=self.number,
            alert_text=self.alert_text,
            code=_code,
        )

    def render(self, name: str, language: Language, **context: Any) -> str:
        token = _language.set(language)
        try:
            return self.env.get_template(name).render(language=language, **context)
        finally:
            _language.reset(token)

    # --- filters: they read the language of the page being rendered ------------------------

    def localtime(self, timestamp: float | None, form: str = "short") -> str:
        """``14:05`` today, ``12月1日 14:05`` (``1 Dec, 14:05``) on another day, site time."""
        if timestamp is None or not math.isfinite(timestamp):
            return ""
        zone = self.site.timezone
        when = datetime.fromtimestamp(timestamp, zone)
        today = datetime.fromtimestamp(self._now(), zone).date()
        locale = _BABEL_LOCALE[_language.get()]
        if form == "short" and when.date() == today:
            return format_datetime(when, "HH:mm", tzinfo=zone, locale=locale)
        skeleton = "MMMdHm" if form == "short" else "yMMMdHm"
        pattern = format_datetime(when, skeleton, tzinfo=zone, locale=locale)
        return pattern

    def ago(self, timestamp: float | None) -> str:
        """``12 min ago`` / ``12分钟前``."""
        if timestamp is None or not math.isfinite(timestamp):
            return ""
        delta = timedelta(seconds=timestamp - self._now())
        return format_timedelta(
            delta,
            threshold=1.5,
            add_direction=True,
            format="short",
            locale=_BABEL_LOCALE[_language.get()],
        )

    def number(self, value: float | None, digits: int = 1) -> str:
        if value is None or not math.isfinite(value):
            return "\u2013"  # an en dash: no value
        pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "")
        return format_decimal(value, format=pattern, locale=_BABEL_LOCALE[_language.get()])

    def alert_text(self, alert: Alert, event: str = "raised") -> str:
        """The alert's text in the page's language, with the labels people know the device by."""
        return alert.text(_language.get(), event=event, device=self.site.source(alert))

    def outcome_word(self, code: str | None) -> str:
        if code is None:
            return ""
        return _gettext(OUTCOMES[code]) if code in OUTCOMES else code


def _code(value: object) -> str:
    """An enumeration's value (``DeviceState.ONLINE`` → ``online``), or the text itself."""
    return str(getattr(value, "value", value))
