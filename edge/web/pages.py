"""How a console page is answered: its language, its text size, the signed-in person, and the
whole page or, for the live updates, only its ``<main>`` (``X-Fragment: 1``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse

from edge.i18n import LANGUAGES, Language, negotiate
from edge.people import Person, Role
from edge.web.render import Pages
from edge.web.sessions import Session
from edge.web.view import ConsoleSite

STYLE_VERSION = "4"
"""Bumped when the static files change, so phones do not keep a stale copy."""


def local_path(target: str | None) -> str | None:
    """``target`` if it is a path of this site (``/alerts?x=1``), else ``None``: a login never
    sends the browser elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return None
    return target[:500]


def language_of(request: Request) -> Language:
    """The reader's choice (the language switch), else their browser's ``Accept-Language``."""
    chosen = request.cookies.get("nbedge_lang")
    if chosen in LANGUAGES:
        return chosen
    return negotiate(request.headers.get("accept-language"))


class Console:
    def __init__(self, site: ConsoleSite, *, now: Callable[[], float]) -> None:
        self.site = site
        self.now = now
        self.pages = Pages(site, now=now)

    def page(
        self,
        request: Request,
        template: str,
        who: tuple[Session, Person] | None,
        *,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        language = language_of(request)
        session, person = (None, None) if who is None else who
        body = self.pages.render(
            template,
            language,
            fragment=request.headers.get("x-fragment") == "1",
            person=person,
            csrf=context.pop("csrf", None) or (session.csrf if session else ""),
            responder=person is not None and person.role >= Role.RESPONDER,
            installer=person is not None and person.role >= Role.INSTALLER,
            large=request.cookies.get("nbedge_text") == "large",
            path=request.url.path,
            style_version=STYLE_VERSION,
            now=self.now(),
            **context,
        )
        response = HTMLResponse(body, status_code=status)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Language"] = language
        response.headers["Vary"] = "Accept-Language, Cookie"
        return response
