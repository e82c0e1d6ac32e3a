"""The languages people read the gateway in: English and Simplified Chinese.

Texts are written in English in the code (marked with ``N_`` where they are defined) and
translated in gettext catalogues under ``edge/locale/`` (``make translations`` extracts, merges
and compiles them with Babel; the compiled ``.mo`` files ship in the package).

Usage: ``translation("zh-Hans").gettext(msgid)``; ``negotiate("zh-CN,zh;q=0.9,en;q=0.8")`` picks
the best language of an ``Accept-Language`` header.
"""

from __future__ import annotations

import functools
import gettext
from pathlib import Path
from typing import Final, Literal

Language = Literal["en", "zh-Hans"]
LANGUAGES: Final[tuple[Language, ...]] = ("en", "zh-Hans")
"""Every language of the gateway's texts; the first is the source and the fallback."""
DOMAIN: Final = "nbedge"
LOCALE_DIR: Final = Path(__file__).resolve().parent / "locale"
_GETTEXT_NAMES: Final[dict[Language, str]] = {"en": "en", "zh-Hans": "zh_Hans"}


def N_(message: str) -> str:
    """Mark ``message`` for translation where it is defined; it is translated where it is shown."""
    return message


@functools.cache
def translation(language: Language) -> gettext.NullTranslations:
    """The catalogue of ``language`` (English: the texts as written)."""
    if language == "en":
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[_GETTEXT_NAMES[language]])


def negotiate(accept_language: str | None, default: Language = "en") -> Language:
    """The language an ``Accept-Language`` header prefers among ``LANGUAGES``: any ``zh``
    (``zh-CN``, ``zh-Hans``, ``zh-TW``...) reads Simplified Chinese, the only Chinese there is;
    weights are honoured."""
    best: tuple[float, Language] | None = None
    for position, part in enumerate((accept_language or "").split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                continue
        if not 0 < weight <= 1:
            continue
        language: Language | None = None
        if tag == "zh" or tag.startswith("zh-"):
            language = "zh-Hans"
        elif tag == "en" or tag.startswith("en-"):
            language = "en"
        if language is not None and (best is None or weight > best[0]):
            best = (weight - position * 1e-6, language)
    return default if best is None else best[1]
