"""Logging in and out, changing one's password, an installer resetting someone's, and the
reader's language and text size (cookies of the browser, kept a year)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from edge.i18n import LANGUAGES, N_
from edge.people import PeopleError, Person, Role
from edge.people.passwords import check_password
from edge.web.auth import Access, page_person
from edge.web.pages import Console, local_path
from edge.web.sessions import COOKIE, LOGIN_COOKIE, Session, same_token

log = logging.getLogger(__name__)
SignedIn = Annotated[tuple[Session, Person], Depends(page_person(Role.VIEWER))]
Installer = Annotated[tuple[Session, Person], Depends(page_person(Role.INSTALLER))]
YEAR_S = 365 * 86_400
FormText = Annotated[str, Form(max_length=200)]


def router(console: Console, access: Access) -> APIRouter:
    pages = APIRouter()

    def login_page(
        request: Request, *, error: str | None = None, status: int = 200, wait_s: float = 0
    ) -> HTMLResponse:
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
        response = console.page(
            request,
            "login.html",
            None,
            status=status,
            csrf=token,
            error=error,
            wait_s=round(wait_s),
            next=local_path(request.query_params.get("next")),
        )
        response.set_cookie(
            LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=console.site.https
        )
        if wait_s:
            response.headers["Retry-After"] = str(max(1, round(wait_s)))
        return response

    @pages.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> HTMLResponse:
        return login_page(request)

    @pages.post("/login", response_class=HTMLResponse)
    async def login(
        request: Request, name: FormText, password: FormText, csrf: FormText
    ) -> Response:
        if not same_token(request.cookies.get(LOGIN_COOKIE) or "", csrf):
            access.csrf_refused += 1
            return login_page(request, error=N_("The page was out of date. Try again."), status=403)
        address = request.client.host if request.client else "unknown"
        wait = access.throttle.wait_s(address, name)
        if wait > 0:
            access.throttle.refuse()
            return login_page(
                request, error=N_("Too many failed attempts."), status=429, wait_s=wait
            )
        person = await asyncio.to_thread(access.people.verify_password, name, password)
        if person is None:
            access.throttle.failure(address, name)
            log.warning(
                "console: login failed",
                extra={"account": name[:64], "client": address, "failed": access.throttle.failed},
            )
            return login_page(request, error=N_("Wrong name or password."), status=401)
        access.throttle.success(address, name)
        session = access.sessions.start(person.name)
        log.info("console: logged in", extra={"person": person.name, "client": address})
        target = local_path(request.query_params.get("next")) or "/alerts"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            session.token,
            httponly=True,
            samesite="lax",
            secure=console.site.https,
            max_age=int(console.site.session_max_s),
        )
        response.delete_cookie(LOGIN_COOKIE)
        return response

    @pages.post("/logout")
    async def logout(request: Request, who: SignedIn, csrf: FormText) -> Response:
        access.check_csrf(request, who[0], csrf)
        access.sessions.end(who[0].token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @pages.get("/account", response_class=HTMLResponse)
    async def account(request: Request, who: SignedIn) -> HTMLResponse:
        return console.page(request, "account.html", who, done=request.query_params.get("done"))

    @pages.post("/account/password", response_class=HTMLResponse)
    async def change_password(
        request: Request,
        who: SignedIn,
        csrf: FormText,
        current: FormText,
        new: FormText,
        again: FormText,
    ) -> Response:
        session, person = who
        access.check_csrf(request, session, csrf)
        problem = _new_password_problem(new, again)
        if problem is None:
            held = await asyncio.to_thread(access.people.verify_password, person.name, current)
            if held is None:
                problem = N_("The current password is wrong.")
        if problem is not None:
            return console.page(request, "account.html", who, error=problem, status=400)
        try:
            await asyncio.to_thread(access.people.set_password, person.name, new)
        except PeopleError as exc:
            log.warning("console: password not changed", extra={"reason": str(exc)})
            problem = N_("This account's password cannot be changed here.")
            return console.page(request, "account.html", who, error=problem, status=409)
        access.sessions.end_all(person.name, keep=session.token)
        log.info("console: password changed", extra={"person": person.name})
        return RedirectResponse("/account?done=password", status_code=303)

    @pages.get("/people", response_class=HTMLResponse)
    async def people(request: Request, who: Installer) -> HTMLResponse:
        return console.page(
            request,
            "people.html",
            who,
            people=access.people.people(),
            done=request.query_params.get("done"),
        )

    @pages.post("/people/{name}/password", response_class=HTMLResponse)
    async def reset_password(
        request: Request, name: str, who: Installer, csrf: FormText, new: FormText, again: FormText
    ) -> Response:
        access.check_csrf(request, who[0], csrf)
        problem = _new_password_problem(new, again)
        if problem is None:
            try:
                await asyncio.to_thread(access.people.set_password, name, new)
            except PeopleError as exc:
                log.warning("console: password not reset", extra={"reason": str(exc)})
                problem = N_("This account's password cannot be changed here.")
        if problem is not None:
            return console.page(
                request, "people.html", who, people=access.people.people(), error=problem,
                error_for=name, status=400,
            )  # fmt: skip
        ended = access.sessions.end_all(name)
        log.info(
            "console: password reset",
            extra={"person": name, "by": who[1].name, "sessions_ended": ended},
        )
        return RedirectResponse("/people?done=" + name, status_code=303)

    @pages.get("/language/{language}")
    async def language(request: Request, language: str) -> Response:
        if language not in LANGUAGES:
            raise HTTPException(status_code=404, detail=f"no language {language!r}")
        response = RedirectResponse(local_path(request.query_params.get("next")) or "/", 303)
        response.set_cookie("nbedge_lang", language, max_age=YEAR_S, samesite="lax")
        return response

    @pages.get("/text/{size}")
    async def text_size(request: Request, size: str) -> Response:
        if size not in ("normal", "large"):
            raise HTTPException(status_code=404, detail=f"no text size {size!r}")
        response = RedirectResponse(local_path(request.query_params.get("next")) or "/", 303)
        response.set_cookie("nbedge_text", size, max_age=YEAR_S, samesite="lax")
        return response

    return pages


def _new_password_problem(new: str, again: str) -> str | None:
    if new != again:
        return N_("The two new passwords differ.")
    try:
        check_password(new)
    except PeopleError:
        return N_("A password needs at least 8 characters.")
    return None
